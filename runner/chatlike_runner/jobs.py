"""Jobs on a finished run (`eval`): the run's published folder and its held-out set are staged into a container
of the run's image, on the same engine path as a run (preflight, launch, follow), and the job's output is
published whole into OUT/<run-id>/<kind>/. The job's container and volumes are removed whatever happens, Ctrl-C
included; so they work after `rm`, and on another engine.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import artifacts, preflight, stage
from . import constants as c
from .engine import Engine, Run
from .errors import ChatlikeError
from .events import Event, Following, JobDone, Note
from .flags import parse_env_names, parse_gpus
from .follow import CtrlC, follow, uninterruptible
from .plan import JobPlan, container_options
from .progress import redactor
from .unpack import unpack


def published_run(out_dir: Path, ref: str) -> tuple[Path, dict[str, Any]]:
    """A run copied home whole (OUT/<run-id>, its id or the start of it) and its manifest."""
    matches = sorted(p for p in out_dir.glob(f"{ref}*") if p.is_dir() and not p.name.endswith(".partial")
                     and artifacts.is_published(p, p.name))
    if len(matches) != 1:
        found = "no finished run" if not matches else "several finished runs"
        raise ChatlikeError(f"{found} {ref!r} in {out_dir}; `chatlike-runner fetch RUN` copies a finished run home, "
                            "--out names where runs were copied")
    manifest = json.loads((matches[0] / artifacts.MANIFEST).read_text(encoding="utf-8"))
    if not (matches[0] / "adapter_config.json").is_file():
        raise ChatlikeError(f"run {matches[0].name} has no adapter in {matches[0]} (it {manifest.get('status')}); "
                            "only a run that finished training can be evaluated")
    return matches[0], manifest


def heldout_of(manifest: dict[str, Any], heldout: Path | None) -> Path:
    """The held-out set: the one given, else the heldout.jsonl that `prepare` wrote beside the run's dataset."""
    if heldout is None:
        data = (manifest.get("flags") or {}).get("data") or []
        if not data:
            raise ChatlikeError("the run's manifest names no dataset to find its heldout.jsonl by; pass --heldout PATH")
        heldout = Path(data[0]).parent / "heldout.jsonl"
    try:
        size = heldout.stat().st_size
    except OSError:
        raise ChatlikeError(f"held-out file {heldout} does not exist; pass --heldout PATH "
                            "(`chatlike-runner prepare` writes one beside train.jsonl)") from None
    if size == 0 or not heldout.read_text(encoding="utf-8", errors="replace").strip():
        raise ChatlikeError(f"held-out file {heldout} is empty: nothing to evaluate on; prepare with --heldout-share "
                            "above 0, or pass --heldout PATH")
    return heldout


def plan_job(kind: str, out_dir: Path, ref: str, *, heldout: Path | None, image: str | None, host: str | None,
             gpus: str | None, env: tuple[str, ...], options: tuple[str, ...]) -> JobPlan:
    """A job on run `ref`, with the run's own image and GPUs unless told otherwise."""
    run_dir, manifest = published_run(out_dir, ref)
    flags = manifest.get("flags") or {}
    return JobPlan(
        run_id=manifest["run_id"], kind=kind, stamp=time.strftime("%Y%m%d-%H%M%S", time.gmtime()),
        image=image or flags.get("image") or c.DEFAULT_IMAGE, host=host, run_dir=run_dir,
        heldout=heldout_of(manifest, heldout), gpus=parse_gpus(gpus or flags.get("gpus") or "none"),
        env_names=parse_env_names(env, os.environ), options=options,
    )


def run_job(plan: JobPlan, force: bool) -> Iterator[Event]:
    """Check, create, stage, start and follow the job; publish its output into the run's folder."""
    final = plan.run_dir / plan.kind
    if final.exists() and not force:
        raise ChatlikeError(f"{final} already exists; pass --force to replace it with a new {plan.kind}")
    found = preflight.checks(plan.host, plan.image, plan.gpus, plan.run_dir, [plan.heldout, plan.run_dir])
    preflight.require(found)
    engine, image = found[0].data, found[2].data
    run = engine.create(plan.job_id, image.id, container_options(plan), [plan.input_volume, plan.output_volume])
    try:
        with CtrlC(f"still cleaning up: the {plan.kind}'s container is being removed") as ctrl_c:
            engine.put(run, c.INPUT_DIR, stage.job_archive(plan, {}))
            engine.start(run)
            yield Note(f"{plan.kind} of run {plan.run_id} started on {engine.url}")
            yield Following(plan.job_id)
            redact = redactor(plan.env_names)
            if (yield from follow(engine, run, redact, ctrl_c)):
                yield Note(f"stopping the {plan.kind}…", warning=True)
                raise ChatlikeError(f"{plan.kind} interrupted; nothing was written", c.INTERRUPTED_EXIT)
            run = engine.refresh(run)
            if run.status != "succeeded":
                said = [line for line in "".join(redact.stream(engine.logs(run, follow=False))).splitlines()
                        if line.startswith("chatlike-train: ")]
                reason = said[-1].removeprefix("chatlike-train: ") if said else "its log is above"
                raise ChatlikeError(f"the {plan.kind} of run {plan.run_id} failed (exit {run.exit_code}): {reason}")
            artifacts.publish_folder(final, lambda tmp: _unpack_output(engine, run, tmp),
                                     f"copying the {plan.kind} out", f"`chatlike-runner {plan.kind} {plan.run_id} --force`")
    finally:
        with uninterruptible():
            engine.remove_run(plan.job_id)
    yield JobDone(plan.run_id, plan.kind, final, image.id)


def _unpack_output(engine: Engine, run: Run, folder: Path) -> None:
    unpack(engine.archive(run, c.OUTPUT_DIR), folder)


def evaluate(out_dir: Path, ref: str, *, heldout: Path | None, image: str | None, host: str | None, gpus: str | None,
             env: tuple[str, ...], samples: int, seed: int, force: bool) -> Iterator[Event]:
    """`eval`: the job, then its verdict recorded in the run's manifest."""
    plan = plan_job(c.ROLE_EVAL, out_dir, ref, heldout=heldout, image=image, host=host, gpus=gpus, env=env,
                    options=("--samples", str(samples), "--seed", str(seed)))
    for event in run_job(plan, force):
        if isinstance(event, JobDone):
            report = json.loads((event.path / "report.json").read_text(encoding="utf-8"))
            artifacts.record(plan.run_dir, "evals", {
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "path": f"{plan.kind}/report.json",
                "verdict": report["verdict"], "nll": report["nll"], "heldout": report["heldout"]["sha256"],
                "image_id": event.image_id,
            })
            event = JobDone(event.run_id, event.kind, event.path, event.image_id, report)
        yield event
