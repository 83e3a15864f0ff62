"""A run's life: create, stage, launch, follow, collect, exit; and the commands on existing runs.

Functions here return results (paths, exit codes, rows); the CLI prints them.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from docker.models.containers import Container
from rich.console import Console

from . import artifacts, preflight, stage
from . import constants as c
from .engine import Engine
from .errors import ChatlikeError
from .follow import follow, uninterruptible
from .plan import RunPlan, replan
from .progress import Display, Redactor
from .unpack import unpack

OOM_EXIT = 137
INTERRUPTED_EXIT = 130


@dataclass
class Outcome:
    """How a run ended, from the runner's point of view."""

    run_id: str
    exit_code: int
    status: str
    path: Path | None = None


def redactor(flags: dict[str, Any]) -> Redactor:
    """Hides the values of the secrets the run was given by name."""
    names = set(c.SECRET_NAMES) | {n for n in flags.get("env", []) if c.SECRET_NAME.search(n)}
    return Redactor(os.environ[name] for name in names if os.environ.get(name))


def start(plan: RunPlan, console: Console, stop_timeout: int = c.STOP_TIMEOUT) -> Outcome:
    """Check, create, stage and start a run; then follow and collect it unless detached."""
    engine, image = preflight.for_run(plan)
    container = _launch(engine, plan, image, console)
    console.print(f"run {plan.run_id} started on {engine.url}", highlight=False)
    if plan.detach:
        return Outcome(plan.run_id, 0, "running")
    return follow_and_collect(engine, container, plan.out_dir, console, stop_timeout)


def _launch(
    engine: Engine, plan: RunPlan, image: dict[str, Any], console: Console, earlier: Path | None = None,
    expected: dict[str, str] | None = None,
) -> Container:
    """Create the run, stage its inputs (and `earlier` outputs), validate, start; on any failure remove it all."""
    container = engine.create(plan, image["id"])
    try:
        digests: dict[str, str] = {}
        engine.put(container, c.INPUT_DIR, stage.input_archive(plan, digests))
        changed = sorted(name for name, digest in (expected or {}).items() if digests.get(name) != digest)
        if changed:
            raise ChatlikeError(
                f"{', '.join(changed)} changed since run {plan.run_id} started; a resumed run needs the same "
                "config and data: restore them or start a new run"
            )
        if earlier is not None:
            skip = frozenset({artifacts.MANIFEST, artifacts.CONTAINER_LOG})
            engine.put(container, c.OUTPUT_DIR, stage.output_archive(earlier, engine.user_ids(image["id"]), skip))
        if plan.validate:
            console.print("validating the config and dataset…", highlight=False)
            engine.validate(plan, image["id"])
        engine.start(container)
    except BaseException:
        with uninterruptible():
            engine.remove_run(plan.run_id)
        raise
    return container


def resume(host: str | None, ref: str, out_dir: Path, console: Console, stop_timeout: int = c.STOP_TIMEOUT) -> Outcome:
    """Continue a stopped run from its last checkpoint.

    A run whose container is still on the engine (stopped with `stop`, or killed) is started
    again. A run stopped with Ctrl-C, whose container is gone, is created anew from the flags in
    OUT/<run-id>.partial/manifest.json, with the same config and data (checked by sha256) and the
    partial outputs, checkpoints included, staged back into its output volume.
    """
    engine = Engine.connect(host)
    container = engine.find(ref)
    if container is not None:
        run_id = container.labels[c.LABEL_RUN]
        status = artifacts.status_of(engine.state(container))
        if status == "running":
            raise ChatlikeError(f"run {run_id} is still running; `chatlike-runner attach {run_id}` follows it")
        if status == "succeeded":
            raise ChatlikeError(f"run {run_id} has finished: there is nothing to resume; start a new run")
        _refuse_if_final(out_dir, run_id)
        engine.start(container)
        console.print(f"run {run_id} resumed on {engine.url}", highlight=False)
        return follow_and_collect(engine, container, out_dir, console, stop_timeout)
    partial = _partial(out_dir, ref)
    try:
        record = json.loads((partial / artifacts.MANIFEST).read_text(encoding="utf-8"))
        run_id, flags = record["run_id"], record["flags"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ChatlikeError(f"{partial / artifacts.MANIFEST} is unreadable or not a run's manifest; cannot resume from it") from None
    _refuse_if_final(out_dir, run_id)
    plan = replan(flags, run_id, out_dir, host)
    engine, image = preflight.for_run(plan)
    expected = {**record.get("dataset_sha256", {}), c.ORIGINAL_CONFIG_NAME: record.get("config_sha256")}
    container = _launch(engine, plan, image, console, earlier=partial, expected=expected)
    console.print(f"run {run_id} resumed on {engine.url} from {partial}", highlight=False)
    return follow_and_collect(engine, container, out_dir, console, stop_timeout)


def _refuse_if_final(out_dir: Path, run_id: str) -> None:
    if artifacts.is_published(artifacts.destination(out_dir, run_id, True), run_id):
        raise ChatlikeError(f"run {run_id} already ended and was copied to {out_dir / run_id}; start a new run")


def _partial(out_dir: Path, ref: str) -> Path:
    matches = sorted(p for p in out_dir.glob(f"{ref}*.partial") if (p / artifacts.MANIFEST).is_file())
    if len(matches) != 1:
        found = "no" if not matches else "several"
        raise ChatlikeError(
            f"{found} stopped run {ref!r} on the engine or in {out_dir}; `chatlike-runner ls` lists the runs, "
            "--out names where their outputs were copied"
        )
    return matches[0]


def follow_and_collect(
    engine: Engine, container: Container, out_dir: Path, console: Console, stop_timeout: int = c.STOP_TIMEOUT
) -> Outcome:
    """Follow a run to its end and copy its outputs home; Ctrl-C stops it cleanly first."""
    run_id = container.labels[c.LABEL_RUN]
    flags = json.loads(container.labels.get(c.LABEL_PLAN, "{}"))
    notice = "still cleaning up: the run is being stopped and its outputs saved"
    with Display(console, run_id) as display:
        interrupted = follow(engine, container, display, redactor(flags), notice)
    if interrupted:
        return _interrupt(engine, container, out_dir, console, stop_timeout)
    path = collect(engine, container, out_dir)
    return _outcome(run_id, engine.state(container), path)


def _interrupt(engine: Engine, container: Container, out_dir: Path, console: Console, timeout: int) -> Outcome:
    """Stop the run, save what it wrote, remove it (Ctrl-C stays harmless meanwhile, see follow)."""
    run_id = container.labels[c.LABEL_RUN]
    console.print(f"stopping run {run_id} (up to {timeout}s for it to save)...", style="yellow")
    engine.stop(container, timeout)
    path = collect(engine, container, out_dir)
    engine.remove_run(run_id)
    return Outcome(run_id, INTERRUPTED_EXIT, "stopped", path)


def _outcome(run_id: str, state: dict[str, Any], path: Path) -> Outcome:
    status = artifacts.status_of(state)
    code = state.get("ExitCode", 1)
    if status == "oom":
        code = code or OOM_EXIT
    return Outcome(run_id, code, status, path)


def collect(engine: Engine, container: Container, out_dir: Path) -> Path:
    """Copy the output volume, the log and a manifest to OUT/<run-id> (or OUT/<run-id>.partial)."""
    run_id = container.labels[c.LABEL_RUN]
    flags = json.loads(container.labels.get(c.LABEL_PLAN, "{}"))
    state = engine.state(container)
    status = artifacts.status_of(state)
    complete = status not in ("running", "stopped")
    published = artifacts.destination(out_dir, run_id, True)
    if complete and artifacts.is_published(published, run_id):
        return published  # a finished run does not change: the copy home is already whole

    def fill(tmp: Path) -> dict[str, Any]:
        files = unpack(engine.archive(container, c.OUTPUT_DIR), tmp)
        with tempfile.TemporaryDirectory(dir=tmp.parent) as inputs:
            unpack(engine.archive(container, f"{c.INPUT_DIR}/{c.INPUT_SUMS}"), Path(inputs), strip=0)
            sums = (Path(inputs) / c.INPUT_SUMS).read_text(encoding="utf-8", errors="replace")
        log = tmp / artifacts.CONTAINER_LOG
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w", encoding="utf-8") as handle:
            handle.writelines(redactor(flags).stream(engine.logs(container, follow=False)))
        try:
            image = engine.image(container.attrs["Image"])
            image["ref"] = flags.get("image")
        except ChatlikeError:
            image = {"ref": flags.get("image"), "id": container.attrs["Image"]}
        return artifacts.manifest(
            run_id=run_id,
            state=state,
            status=status,
            flags=flags,
            image=image,
            engine=engine.info(),
            inputs=artifacts.parse_sums(sums),
            files=files,
        )

    return artifacts.publish(out_dir, run_id, complete, fill)


def attach(host: str | None, ref: str, out_dir: Path, console: Console) -> Outcome:
    """Follow a run again (after --detach or a lost connection) and collect it when it ends."""
    engine = Engine.connect(host)
    container = engine.run(ref)
    return follow_and_collect(engine, container, out_dir, console)


def fetch(host: str | None, ref: str, out_dir: Path) -> Outcome:
    """Copy a run's outputs home now, whatever its state."""
    engine = Engine.connect(host)
    container = engine.run(ref)
    path = collect(engine, container, out_dir)
    return _outcome(container.labels[c.LABEL_RUN], engine.state(container), path)


def logs(host: str | None, ref: str, follow_: bool) -> Iterator[str]:
    """A run's log as text, secrets redacted."""
    engine = Engine.connect(host)
    container = engine.run(ref)
    flags = json.loads(container.labels.get(c.LABEL_PLAN, "{}"))
    return redactor(flags).stream(engine.logs(container, follow=follow_))


def stop(host: str | None, ref: str, timeout: int) -> str:
    engine = Engine.connect(host)
    container = engine.run(ref)
    engine.stop(container, timeout)
    return container.labels[c.LABEL_RUN]


def remove(host: str | None, ref: str, out_dir: Path, *, force: bool, cache: bool) -> list[str]:
    """Remove a run's container and volumes; refuses to lose outputs that were never fetched."""
    engine = Engine.connect(host)
    container = engine.run(ref)
    run_id = container.labels[c.LABEL_RUN]
    state = engine.state(container)
    if state.get("Running") and not force:
        raise ChatlikeError(f"run {run_id} is still running; `chatlike-runner stop {run_id}` first, or pass --force")
    if not force and not artifacts.is_published(artifacts.destination(out_dir, run_id, True), run_id):
        raise ChatlikeError(
            f"run {run_id}'s outputs were never fetched into {out_dir}; "
            f"`chatlike-runner fetch {run_id}` first (or pass --out), or --force to discard them"
        )
    return engine.remove_run(run_id, cache=cache)


def table(host: str | None) -> list[dict[str, Any]]:
    """One row per run on the engine."""
    engine = Engine.connect(host)
    rows = []
    for container in engine.runs():
        state = container.attrs["State"]
        flags = json.loads(container.labels.get(c.LABEL_PLAN, "{}"))
        rows.append(
            {
                "run": container.labels[c.LABEL_RUN],
                "status": artifacts.status_of(state) if state.get("Status") != "created" else "created",
                "exit": None if state.get("Running") else state.get("ExitCode"),
                "gpus": flags.get("gpus", ""),
                "image": flags.get("image", ""),
                "started": (state.get("StartedAt") or "")[:19].replace("T", " "),
            }
        )
    return rows
