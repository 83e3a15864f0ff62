"""The commands on runs: start, resume, attach, fetch, logs, stop, rm and ls, each a few of a run's steps
(plan → preflight → launch → the lifecycle: follow → collect) in order.

Commands that take time yield events (events.py) as they go, ending with the Outcome; the others return
their result. cli.py prints both.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from pathlib import Path

from . import artifacts, build, fit, lifecycle, preflight, records, registry, rented, stage
from .collect import collect
from .core import constants as c
from .core.errors import ChatlikeError
from .engine import Engine, Image, Run
from .events import Event, Following, Note, Outcome
from .follow import CtrlC, follow
from .launch import launch
from .plan import RunPlan, owned_by, replan, trial_of
from .records import Ending
from .redact import redactor
from .skytask import Rented


def start(plan: RunPlan, stop_timeout: int = c.STOP_TIMEOUT, expected: dict[str, str] | None = None, *,
          where: Rented | None = None, dry_run: bool = False) -> Iterator[Event]:
    """Check, create, stage and start a run; then follow and collect it unless detached. `expected`: sha256s
    its inputs must have (a reproduced run's). It runs on the rented box `where` (`--on`), else on `plan.host`.

    A missing image is pulled first when named by digest; a CPU trial's (smoke or preview) image is built when missing.
    """
    if where is not None:
        yield from rented.start_on(plan, where, dry_run=dry_run, stop_timeout=stop_timeout, expected=expected)
        return
    yield from lifecycle.run(Container(plan.out_dir, plan=plan, expected=expected), stop_timeout, detach=plan.detach)


def _image_ready(plan: RunPlan, engine: Engine | None = None) -> Generator[Event, None, Engine | None]:
    """The engine (`engine`, else the plan's), with `plan.image` on it when it can be got: pulled when named by
    digest, or built when a CPU trial's (smoke or preview) image is missing (never the CUDA one: big, and it needs the GPU checks
    of `build`). None when the engine is unreachable: preflight says so with the other checks."""
    engine = engine or preflight.engine_check(plan.host).data
    if engine is None or engine.image(plan.image) is not None:
        return engine
    if registry.is_digest(plan.image):
        yield from registry.pull_if_missing(engine, plan.image)
    elif plan.trial and plan.image != c.DEFAULT_IMAGE:
        yield Note(f"image {plan.image} is not on {engine.url}: building the cpu flavor now "
                   f"(about {build.FIRST_BUILD_MINUTES['cpu']} minutes the first time, seconds after)")
        code = build.build("cpu", plan.host, plan.image, None)
        if code != 0:
            raise ChatlikeError(f"building {plan.image} failed (exit {code}); the build's output above says why")
    return engine


class Container:
    """A run's container on a Docker engine, as a lifecycle.Target: planned (`plan`: created, staged and started by
    launch.py; `earlier`: a stopped run's outputs staged back, `expected`: the sha256s its inputs must have) or
    found on the engine (`engine` and `run`: started again, or followed as it runs)."""

    def __init__(self, out_dir: Path, *, plan: RunPlan | None = None, expected: Mapping[str, str] | None = None,
                 earlier: Path | None = None, engine: Engine | None = None, run: Run | None = None) -> None:
        self.out_dir, self.plan, self.expected, self.earlier = out_dir, plan, expected, earlier
        self.engine, self.run = engine, run
        self.run_id = plan.run_id if plan is not None else run.id if run is not None else ""
        self.trial = plan.trial if plan is not None else trial_of(run.flags) if run is not None else ""
        self._configs: dict[str, bytes] | None = None  # the configs as staged by this process
        self._image: Image | None = None  # a planned run's, once preflight found it

    def prepare(self, dry_run: bool) -> Iterator[Event]:
        if self.plan is None:  # found on the engine: checked and staged when it was first started
            return
        engine = yield from _image_ready(self.plan, self.engine)
        self.engine, self._image, gpus = preflight.for_run(self.plan, engine)
        yield from fit.check_here(self.plan, gpus, self._image.id, self.engine)

    def start(self, ctrl_c: CtrlC) -> Iterator[Event]:
        assert self.engine is not None
        if self.plan is None:
            assert self.run is not None
            self.engine.start(self.run)
            yield Note(f"run {self.run_id} resumed on {self.engine.url}")
            return
        assert self._image is not None
        digests: dict[str, str] = {}
        with ctrl_c.cancelling():  # until it has started, Ctrl-C cancels: launch leaves nothing on the engine
            self.run = yield from launch(self.engine, self.plan, self._image, earlier=self.earlier,
                                         expected=self.expected, source=self.plan.reproduces, digests=digests)
        self._configs = stage.staged_configs(self.plan, digests)
        where = f" from {self.earlier}" if self.earlier is not None else ""
        yield Note(f"run {self.run_id} {'resumed' if self.earlier else 'started'} on {self.engine.url}{where}")

    def follow(self, ctrl_c: CtrlC) -> Generator[Event, None, bool]:
        assert self.engine is not None and self.run is not None
        yield Following(self.run.id)
        return (yield from follow(self.engine, self.run, redactor(self.run.flags.get("env", [])), ctrl_c))

    def stop(self, timeout: int) -> Iterator[Event]:
        assert self.engine is not None and self.run is not None
        self.engine.stop(self.run, timeout)
        yield from ()

    def collect(self, complete: bool) -> tuple[Path, Ending]:
        assert self.engine is not None and self.run is not None
        return collect(self.engine, self.run, self.out_dir, self._configs)  # the container says whether it ended

    def close(self, stopped: bool) -> Iterator[Event]:
        if stopped:  # its outputs so far are home as a .partial, from which `resume` starts a new container
            assert self.engine is not None
            self.engine.remove(owned_by(self.run_id))
        yield from ()

    def failed(self, error: Exception) -> Exception:
        return error  # the container stays on the engine, its own error says what broke


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
        yield from lifecycle.run(Container(out_dir, engine=engine, run=run), stop_timeout)
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
    yield from lifecycle.run(Container(out_dir, plan=plan, expected=record.trained_on, earlier=record.folder,
                                       engine=engine), stop_timeout)


def _refuse_if_final(out_dir: Path, run_id: str) -> None:
    if artifacts.is_published(artifacts.destination(out_dir, run_id, True), run_id):
        raise ChatlikeError(f"run {run_id} already ended and was copied to {out_dir / run_id}; start a new run")


def attach(host: str | None, ref: str, out_dir: Path) -> Iterator[Event]:
    """Follow a run again (after --detach or a lost connection) and collect it when it ends."""
    engine = Engine.connect(host)
    with CtrlC() as ctrl_c:
        yield from lifecycle.live(Container(out_dir, engine=engine, run=engine.run(ref)), ctrl_c, c.STOP_TIMEOUT)


def fetch(host: str | None, ref: str, out_dir: Path) -> Outcome:
    """Copy a run's outputs home now, whatever its state."""
    engine = Engine.connect(host)
    run = engine.run(ref)
    path, ending = collect(engine, run, out_dir)
    return lifecycle.outcome(run.id, path, ending, trial_of(run.flags))


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
