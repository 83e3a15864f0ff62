"""The commands on runs: start, resume, attach, fetch, logs, stop, rm and ls, each a few of a run's steps
(plan → preflight → launch → the lifecycle: follow → collect) in order.

Commands that take time yield events (events.py) as they go, ending with the Outcome; the others return
their result. cli.py prints both.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import artifacts, build, fit, lifecycle, preflight, records, registry, rented, stage
from . import constants as c
from .collect import collect
from .engine import Engine, Run
from .errors import ChatlikeError
from .events import Event, Following, Note, Outcome
from .follow import CtrlC, follow
from .launch import launch
from .plan import RunPlan, owned_by, replan
from .records import Ending
from .redact import redactor
from .skytask import Rented


def start(plan: RunPlan, stop_timeout: int = c.STOP_TIMEOUT, expected: dict[str, str] | None = None, *,
          where: Rented | None = None, dry_run: bool = False) -> Iterator[Event]:
    """Check, create, stage and start a run; then follow and collect it unless detached. `expected`: sha256s
    its inputs must have (a reproduced run's). On the rented box `where` (`--on`), rented.py does it all.

    A missing image is pulled first when named by digest; a smoke run's CPU image is built when missing.
    """
    if where is not None:
        yield from rented.start_on(plan, where, plan.image, dry_run=dry_run, stop_timeout=stop_timeout,
                                   expected=expected)
        return
    engine = yield from _image_ready(plan)
    engine, image, gpus = preflight.for_run(plan, engine)
    yield from fit.check_here(plan, gpus, image.id, engine)
    digests: dict[str, str] = {}
    run = yield from launch(engine, plan, image, expected=expected, source=plan.reproduces, digests=digests)
    with CtrlC() as ctrl_c:  # from here on a Ctrl-C stops the started run gracefully
        yield Note(f"run {plan.run_id} started on {engine.url}")
        if plan.detach:
            yield Outcome(plan.run_id, 0, "running", smoke=plan.smoke)
            return
        yield from _live(engine, run, plan.out_dir, ctrl_c, stop_timeout, stage.staged_configs(plan, digests))


def _image_ready(plan: RunPlan) -> Generator[Event, None, Engine | None]:
    """The engine, with `plan.image` on it when it can be got: pulled when named by digest, or built when a
    smoke run's CPU image is missing (never the CUDA one: big, and it needs the GPU checks of `build`). None
    when the engine is unreachable: preflight says so with the other checks."""
    engine = preflight.engine_check(plan.host).data
    if engine is None or engine.image(plan.image) is not None:
        return engine
    if registry.is_digest(plan.image):
        yield from registry.pull_if_missing(engine, plan.image)
    elif plan.smoke and plan.image != c.DEFAULT_IMAGE:
        yield Note(f"image {plan.image} is not on {engine.url}: building the cpu flavor now "
                   f"(about {build.FIRST_BUILD_MINUTES['cpu']} minutes the first time, seconds after)")
        code = build.build("cpu", plan.host, plan.image, None)
        if code != 0:
            raise ChatlikeError(f"building {plan.image} failed (exit {code}); the build's output above says why")
    return engine


@dataclass(frozen=True)
class Container:
    """A started run's container on a Docker engine, as a lifecycle.Target. `configs`: the staged configs when this
    process staged them (not read back from the engine)."""

    engine: Engine
    run: Run
    out_dir: Path
    configs: dict[str, bytes] | None = None

    @property
    def run_id(self) -> str:
        return self.run.id

    def follow(self, ctrl_c: CtrlC) -> Generator[Event, None, bool]:
        yield Following(self.run.id)
        return (yield from follow(self.engine, self.run, redactor(self.run.flags.get("env", [])), ctrl_c))

    def stop(self, timeout: int) -> Iterator[Event]:
        self.engine.stop(self.run, timeout)
        yield from ()

    def collect(self, complete: bool) -> tuple[Path, Ending]:
        return collect(self.engine, self.run, self.out_dir, self.configs)  # the container says whether it ended

    def close(self, stopped: bool) -> Iterator[Event]:
        if stopped:  # its outputs so far are home as a .partial, from which `resume` starts a new container
            self.engine.remove(owned_by(self.run.id))
        yield from ()


def _live(engine: Engine, run: Run, out_dir: Path, ctrl_c: CtrlC, stop_timeout: int = c.STOP_TIMEOUT,
          configs: dict[str, bytes] | None = None) -> Iterator[Event]:
    yield from lifecycle.live(Container(engine, run, out_dir, configs), ctrl_c, stop_timeout,
                              bool(run.flags.get("smoke")))


def resume(host: str | None, ref: str, out_dir: Path, stop_timeout: int = c.STOP_TIMEOUT) -> Iterator[Event]:
    """Continue a stopped run from its last checkpoint.

    A run whose container is still on the engine (stopped with `stop`, or killed) is started
    again. A run stopped with Ctrl-C, whose container is gone, is created anew from the flags in
    OUT/<run-id>.partial/manifest.json, with the same config and data (checked by sha256) and the
    partial outputs, checkpoints included, staged back into its output volume. A run on a rented box continues
    on a new cluster of the same provider, its partial outputs uploaded with it.
    """
    copies = records.stopped(out_dir, ref)
    rented_copy = next((record for record in copies if record.rented), None)
    if rented_copy is not None:
        _refuse_if_final(out_dir, rented_copy.run_id)
        yield from rented.resume_on(rented_copy, out_dir, stop_timeout)
        return
    engine = Engine.connect(host)
    run = engine.find(ref)
    if run is not None:
        if run.status == "running":
            raise ChatlikeError(f"run {run.id} is still running; `chatlike-runner attach {run.id}` follows it")
        if run.status == "succeeded":
            raise ChatlikeError(f"run {run.id} has finished: there is nothing to resume; start a new run")
        _refuse_if_final(out_dir, run.id)
        with CtrlC() as ctrl_c:
            engine.start(run)
            yield Note(f"run {run.id} resumed on {engine.url}")
            yield from _live(engine, run, out_dir, ctrl_c, stop_timeout)
        return
    unreadable = [p for p in sorted(out_dir.glob(f"{ref}*.partial")) if records.load(p) is None]
    if not copies and unreadable:
        raise ChatlikeError(f"{unreadable[0] / c.RUN_MANIFEST} is unreadable or not a run's manifest; cannot resume "
                            "from it")
    if len(copies) != 1:
        raise ChatlikeError(
            f"{'no' if not copies else 'several'} stopped run {ref!r} on the engine or in {out_dir}; "
            "`chatlike-runner ls` lists the runs, --out names where their outputs were copied"
        )
    record = copies[0]
    if not record.flags.get("config"):
        raise ChatlikeError(f"{record.folder / c.RUN_MANIFEST} is not a whole manifest of a run; cannot resume from it")
    _refuse_if_final(out_dir, record.run_id)
    plan = replan(record.flags, record.run_id, out_dir, host)
    engine, image, _ = preflight.for_run(plan, engine)
    run = yield from launch(engine, plan, image, earlier=record.folder, expected=record.trained_on)
    with CtrlC() as ctrl_c:
        yield Note(f"run {record.run_id} resumed on {engine.url} from {record.folder}")
        yield from _live(engine, run, out_dir, ctrl_c, stop_timeout)


def _refuse_if_final(out_dir: Path, run_id: str) -> None:
    if artifacts.is_published(artifacts.destination(out_dir, run_id, True), run_id):
        raise ChatlikeError(f"run {run_id} already ended and was copied to {out_dir / run_id}; start a new run")


def attach(host: str | None, ref: str, out_dir: Path) -> Iterator[Event]:
    """Follow a run again (after --detach or a lost connection) and collect it when it ends."""
    engine = Engine.connect(host)
    run = engine.run(ref)
    with CtrlC() as ctrl_c:
        yield from _live(engine, run, out_dir, ctrl_c)


def fetch(host: str | None, ref: str, out_dir: Path) -> Outcome:
    """Copy a run's outputs home now, whatever its state."""
    engine = Engine.connect(host)
    run = engine.run(ref)
    path, ending = collect(engine, run, out_dir)
    return lifecycle.outcome(run.id, path, ending, bool(run.flags.get("smoke")))


def logs(host: str | None, ref: str, follow_: bool) -> Iterator[str]:
    """A run's log as text, secrets redacted."""
    engine = Engine.connect(host)
    run = engine.run(ref)
    return redactor(run.flags.get("env", [])).stream(engine.logs(run, follow=follow_))


def stop(host: str | None, ref: str, timeout: int) -> str:
    """Stop a run gracefully; returns its id."""
    engine = Engine.connect(host)
    run = engine.run(ref)
    engine.stop(run, timeout)
    return run.id


def remove(host: str | None, ref: str, out_dir: Path, *, force: bool, cache: bool) -> list[str]:
    """Remove a run's container and volumes; refuses to lose outputs that were never fetched."""
    engine = Engine.connect(host)
    run = engine.run(ref)
    if run.status == "running" and not force:
        raise ChatlikeError(f"run {run.id} is still running; `chatlike-runner stop {run.id}` first, or pass --force")
    if not force and not artifacts.is_published(artifacts.destination(out_dir, run.id, True), run.id):
        raise ChatlikeError(
            f"run {run.id}'s outputs were never fetched into {out_dir}; "
            f"`chatlike-runner fetch {run.id}` first (or pass --out), or --force to discard them"
        )
    return engine.remove(owned_by(run.id), [c.CACHE_VOLUME] if cache else [])


def listing(host: str | None) -> list[Run]:
    """Every run on the engine, newest first."""
    return Engine.connect(host).runs()
