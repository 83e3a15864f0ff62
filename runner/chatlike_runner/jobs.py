"""Jobs on a finished run (`eval`, `chat`, `export`): the run's published folder and its held-out set are staged into a
container of the run's image, on the same engine path as a run (preflight, container options, follow), and
what the job writes is published whole into OUT/<run-id>/<kind>/. The job's container and volumes are removed
whatever happens, Ctrl-C included; jobs work after `rm`, and on another engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

from . import artifacts, build, preflight, records, stage
from .core import constants as c
from .core.errors import ChatlikeError
from .core.trainlog import lines
from .core.unpack import unpack
from .engine import Attached, Engine, Image, Run
from .events import ChatReady, Event, Following, JobDone, Note, Progress, Question, Said
from .follow import CtrlC, follow, uninterruptible
from .parsing import parse_env_names, parse_gpus
from .plan import JobPlan, container_options, owned_by
from .redact import redactor

HELDOUT_IN = f"{c.INPUT_DIR}/{c.JOB_HELDOUT}"


def published_run(out_dir: Path, ref: str) -> tuple[Path, dict[str, Any]]:
    """A run copied home whole (OUT/<run-id>, its id or the start of it), with an adapter, and its manifest."""
    record = records.finished(out_dir, ref, "`chatlike-runner fetch RUN` copies a finished run home, --out names "
                                            "where runs were copied")
    if not (record.folder / "adapter_config.json").is_file():
        raise ChatlikeError(f"run {record.run_id} has no adapter in {record.folder} (it {record.data.get('status')}); "
                            "only a run that finished training can be used")
    return record.folder, record.data


def heldout_of(manifest: dict[str, Any], heldout: Path | None, required: bool) -> Path | None:
    """The held-out set: the one given, else the heldout.jsonl that `prepare` wrote beside the run's dataset."""
    if heldout is None:
        data = (manifest.get("flags") or {}).get("data") or []
        heldout = Path(data[0]).parent / "heldout.jsonl" if data else None
    if heldout is None or not heldout.is_file():
        if not required:
            return None
        raise ChatlikeError(f"held-out file {heldout or 'heldout.jsonl'} does not exist; pass --heldout PATH "
                            "(`chatlike-runner prepare` writes one beside train.jsonl)")
    if not heldout.read_text(encoding="utf-8", errors="replace").strip():
        raise ChatlikeError(f"held-out file {heldout} is empty: no held-out conversation to use; prepare with "
                            "--heldout-share above 0, or pass --heldout PATH")
    return heldout


def training_of(manifest: dict[str, Any]) -> tuple[tuple[Path, ...], str | None]:
    """The run's training data (files or folders), where it trained on it from, unchanged; else nothing, and why
    (a note)."""
    data = [Path(p) for p in (manifest.get("flags") or {}).get("data") or []]
    recorded = set((manifest.get("dataset_sha256") or {}).values())
    if not data:
        return (), "the run's manifest names no training data"
    for path in data:
        if not path.exists():
            return (), f"the run's training data {path} is not there any more"
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file() and recorded and _sha256(file) not in recorded:
                return (), f"the run's training data {file} changed since the run"
    return tuple(data), None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def plan_job(kind: str, run_dir: Path, manifest: dict[str, Any], *, heldout: Path | None, image: str | None, host: str | None,
             gpus: str | None, env: tuple[str, ...], options: tuple[str, ...], interactive: bool = False,
             training: tuple[Path, ...] = ()) -> JobPlan:
    """A job on the run published in `run_dir`, with the run's own image and GPUs unless told otherwise. The
    held-out set is needed by eval; chat reads training's system prompt from it when there is one."""
    flags = manifest.get("flags") or {}
    found = heldout_of(manifest, heldout, required=kind != c.ROLE_CHAT)
    return JobPlan(
        run_id=manifest["run_id"], kind=kind, stamp=time.strftime("%Y%m%d-%H%M%S", time.gmtime()),
        image=image or flags.get("image") or c.DEFAULT_IMAGE, host=host, run_dir=run_dir, heldout=found,
        gpus=parse_gpus(gpus or flags.get("gpus") or "none"), env_names=parse_env_names(env, os.environ),
        options=(("--heldout", HELDOUT_IN) if found else ()) + options if kind == c.ROLE_CHAT else (HELDOUT_IN, *options),
        interactive=interactive, training=training,
    )


@contextlib.contextmanager
def job_container(plan: JobPlan) -> Iterator[tuple[Engine, Image, Run]]:
    """Preflight, then the job's volumes and container with its inputs staged; all removed at the end."""
    inputs = [plan.run_dir] + ([plan.heldout] if plan.heldout else [])
    found = preflight.checks(plan.host, plan.image, plan.gpus, plan.run_dir, inputs)
    preflight.require(found)
    engine, image = found[0].data, found[2].data
    try:
        run = engine.create(image.id, container_options(plan), plan.volume_labels)
        engine.put(run, c.INPUT_DIR, stage.job_archive(plan, {}))
        yield engine, image, run
    finally:
        with uninterruptible():
            engine.remove(owned_by(plan.job_id))


def _failure(engine: Engine, run: Run, plan: JobPlan, said: str = "") -> ChatlikeError:
    """Why the job's container ended badly: the last line chatlike-train said."""
    if not said:
        text = "".join(redactor(plan.env_names).stream(engine.logs(run, follow=False)))
        said = next((line for line in reversed(text.splitlines()) if line.startswith("chatlike-train: ")), "")
    reason = said.removeprefix("chatlike-train: ") or "its log is above"
    return ChatlikeError(f"the {plan.kind} of run {plan.run_id} failed (exit {run.exit_code}): {reason}")


def _published_job(plan: JobPlan, force: bool, answers: Iterator[str] | None = None) -> Iterator[Event]:
    """Run a job that writes a folder to its end, and publish that folder whole as OUT/<run-id>/<kind>/. An
    interactive job (a blind eval) is attached instead of followed: its questions go out as events, and each
    of `answers` goes back to it; Ctrl-C there is the person's, as in chat (at a question it ends the test)."""
    final = _final(plan, force)
    with job_container(plan) as (engine, image, run):
        if plan.interactive:
            yield from _questions(engine, run, plan, answers or iter(()))
            _publish(engine, run, plan, final)
        else:
            with CtrlC(f"still cleaning up: the {plan.kind} is being removed") as ctrl_c:
                engine.start(run)
                yield Note(f"{plan.kind} of run {plan.run_id} started on {engine.url}")
                yield Following(plan.job_id)
                if (yield from follow(engine, run, redactor(plan.env_names), ctrl_c)):
                    yield Note(f"stopping the {plan.kind}…", warning=True)
                    raise ChatlikeError(f"{plan.kind} interrupted; nothing was written", c.INTERRUPTED_EXIT)
                _publish(engine, run, plan, final)
    yield JobDone(plan.run_id, plan.kind, final, image.id)


def _final(plan: JobPlan, force: bool) -> Path:
    """Where the job's folder is published: refused when there is one already, unless `force`."""
    final = plan.run_dir / plan.kind
    if final.exists() and not force:
        raise ChatlikeError(f"{final} already exists; pass --force to replace it with a new {plan.kind}")
    return final


def _publish(engine: Engine, run: Run, plan: JobPlan, final: Path) -> None:
    """The ended job's output folder, published whole as `final`, when it succeeded."""
    run = engine.refresh(run)
    if run.status != "succeeded":
        raise _failure(engine, run, plan)
    artifacts.publish_folder(final, lambda tmp: unpack(engine.archive(run, c.OUTPUT_DIR), tmp),
                             f"copying the {plan.kind} out", f"`chatlike-runner {plan.kind} {plan.run_id} --force`")


def _questions(engine: Engine, run: Run, plan: JobPlan, answers: Iterator[str]) -> Iterator[Event]:
    """An attached eval: its progress as it scores and replies, then each question, answered from `answers`
    (their end ends the test: what was answered is kept); returns when the job has ended."""
    attached = engine.attach(run)
    try:
        engine.start(run)
        yield Note(f"{plan.kind} of run {plan.run_id} started on {engine.url}: it scores and writes every reply "
                   "first, then asks")
        replies = _Replies(attached)
        for event in replies:
            if "progress" in event:
                yield Progress(event["progress"])
            elif "question" in event:
                yield Question(**event["question"])
                answer = next(answers, None)
                if answer is None:
                    attached.close_input()
                else:
                    attached.send(answer.encode("utf-8") + b"\n")
            elif "done" in event:
                break
        attached.close_input()
    finally:
        attached.close()
    engine.wait(run)


def evaluate(out_dir: Path, ref: str, *, heldout: Path | None, image: str | None, host: str | None, gpus: str | None,
             env: tuple[str, ...], samples: int, seed: int, force: bool, blind: int = 0, versus_base: bool = False,
             answers: Iterator[str] | None = None) -> Iterator[Event]:
    """`eval`: the job, its report published into OUT/<run-id>/eval/, and its verdict in the run's manifest.
    With `blind`, that many blind questions a round, answered from `answers` (1, 2 or s each)."""
    run_dir, manifest = published_run(out_dir, ref)
    training, missing = training_of(manifest)
    options = (c.OUTPUT_DIR, "--samples", str(samples), "--seed", str(seed))
    options += ("--training", f"{c.INPUT_DIR}/{c.JOB_TRAINING}") if training else ()
    options += (("--blind", str(blind)) + (("--versus-base",) if versus_base else ())) if blind else ()
    plan = plan_job(c.ROLE_EVAL, run_dir, manifest, heldout=heldout, image=image, host=host, gpus=gpus, env=env,
                    options=options, interactive=bool(blind), training=training)
    if missing:
        yield Note(f"{missing}: authorship and memorization are not measured (they learn from and compare with it)",
                   warning=True)
    for event in _published_job(plan, force, answers):
        if isinstance(event, JobDone):
            report = json.loads((event.path / "report.json").read_text(encoding="utf-8"))
            failures = report["failures"]
            artifacts.record(plan.run_dir, "evals", {
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "path": f"{plan.kind}/report.json",
                "verdict": report["verdict"], "nll": report["nll"], "heldout": report["heldout"]["sha256"],
                "image_id": event.image_id,
                "authorship": {name: score["share"] for name, score in
                               ((report.get("authorship") or {}).get("scores") or {}).items()},
                "memorized": len(failures["tuned"]["memorized"]) if failures["memorization_checked"] else None,
                "replies": failures["tuned"]["replies"], "blind": report.get("blind"),
            })
            event = JobDone(event.run_id, event.kind, event.path, event.image_id, report)
        yield event


def export(out_dir: Path, ref: str, *, quant: str, name: str, heldout: Path | None, image: str | None,
           host: str | None, gpus: str | None, env: tuple[str, ...], force: bool) -> Iterator[Event]:
    """`export`: the GGUF, its Modelfile and llama.cpp's checks published into OUT/<run-id>/export/; the event
    also carries the run's latest eval's count of memorized replies (`memorized`: None when never evaluated)."""
    run_dir, manifest = published_run(out_dir, ref)
    plan = plan_job(c.ROLE_EXPORT, run_dir, manifest, heldout=heldout, image=image, host=host, gpus=gpus, env=env,
                    options=(c.OUTPUT_DIR, "--gguf", quant, "--name", name))
    latest = (manifest.get("evals") or [{}])[-1]
    _final(plan, force)  # before a first export's build of llama.cpp
    plan = yield from _with_llama_cpp(plan)
    for event in _published_job(plan, force):
        if isinstance(event, JobDone):
            checks = json.loads((event.path / "check.json").read_text(encoding="utf-8"))
            artifacts.record(plan.run_dir, "exports", {
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "path": f"{plan.kind}/{name}.{quant}.gguf",
                "gguf": quant, "prompts": checks["prompts"], "logits": checks["logits"], "image_id": event.image_id,
            })
            memorized = {key: latest.get(key) for key in ("memorized", "replies", "at")}
            event = JobDone(event.run_id, event.kind, event.path, event.image_id, {**checks, "memorized": memorized})
        yield event


def _with_llama_cpp(plan: JobPlan) -> Generator[Event, None, JobPlan]:
    """The export job on an image with llama.cpp: the run's own when it has it, else its export image, built the
    first time (llama.cpp is left out of the training image). When the engine or the image cannot be read, the
    plan as it is: preflight says what is wrong with the other checks."""
    engine = preflight.engine_check(plan.host).data
    image = engine.image(plan.image) if engine else None
    if engine is None or image is None or c.LABEL_LLAMA_CPP in image.labels:
        return plan
    tag = build.export_tag(image.id)
    if engine.image(tag) is None:
        yield Note(f"export needs llama.cpp, which {plan.image} leaves out: building {tag} on it, once (about "
                   f"{build.EXPORT_BUILD_MINUTES} minutes; it downloads llama-cpp-python's source from the package index)")
        base = f"{tag}-base"  # a name for the training image to build FROM (BuildKit takes no bare id there)
        engine.tag(image.id, base)
        code = build.build_export(base, image.id, plan.host)
        if code != 0:
            raise ChatlikeError(f"building {tag} failed (exit {code}); the build's output above says why "
                                "(it needs the package index once; --image IMAGE names an image that has llama.cpp)")
    return dataclasses.replace(plan, image=tag)


def chat(out_dir: Path, ref: str, turns: Iterable[str], *, heldout: Path | None, image: str | None, host: str | None,
         gpus: str | None, env: tuple[str, ...], options: tuple[str, ...]) -> Iterator[Event]:
    """`chat`: the model in a container, attached; each of `turns` (read only when the model is ready for it)
    goes to it, and its replies come back as they are generated."""
    plan = plan_job(c.ROLE_CHAT, *published_run(out_dir, ref), heldout=heldout, image=image, host=host, gpus=gpus, env=env,
                    options=options, interactive=True)
    with job_container(plan) as (engine, _, run):
        attached = engine.attach(run)
        try:
            engine.start(run)
            yield Note(f"chat with run {plan.run_id} on {engine.url}: loading the model…")
            replies = _Replies(attached)
            ready = next((event for event in replies if "ready" in event), None)
            if ready is None:
                engine.wait(run)
                raise _failure(engine, engine.refresh(run), plan, replies.stderr[-1] if replies.stderr else "")
            yield ChatReady(plan.run_id, ready.get("system"), ready.get("help", ""))
            for turn in turns:
                if turn.strip():
                    attached.send(turn.encode("utf-8") + b"\n")
                    yield from _answer(iter(replies))
            attached.close_input()
        finally:
            attached.close()


class _Replies:
    """The chat container's JSON events from its stdout, as they come; its stderr lines are kept, for a failure."""

    def __init__(self, attached: Attached) -> None:
        self.stderr: list[str] = []
        self._events = self._parse(attached.frames())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._events

    def _stdout(self, frames: Iterator[tuple[int, bytes]]) -> Iterator[bytes]:
        for stream, data in frames:
            if stream == 2:
                self.stderr.extend(data.decode("utf-8", "replace").splitlines())
            else:
                yield data

    def _parse(self, frames: Iterator[tuple[int, bytes]]) -> Iterator[dict[str, Any]]:
        for line in lines(self._stdout(frames)):
            try:
                yield json.loads(line)
            except ValueError:
                continue  # a library's stray print: not an event


def _answer(replies: Iterator[dict[str, Any]]) -> Iterator[Event]:
    """The container's answer to one turn: a reply token by token and its end, or a note."""
    for event in replies:
        if "token" in event:
            yield Said(event.get("who", "tuned"), event["token"])
        elif "end" in event:
            yield Said(event["end"], end=event.get("stopped", "eot"))
            return
        elif "note" in event:
            yield Note(event["note"])
            return
    raise ChatlikeError("the chat ended unexpectedly (the model's container stopped); its log says why: "
                        "run `chatlike-runner chat` again, or check memory with --gpus")
