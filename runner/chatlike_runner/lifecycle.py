"""A run's life, wherever it runs: prepared (checked, its inputs staged), started, followed until it ends or Ctrl-C
stops it gracefully, its outputs brought home and published (OUT/<run-id>, or OUT/<run-id>.partial when stopped),
what is left of it where it ran closed, then its outcome. A `Target` is where it runs: a container on a Docker engine
(runs.py) or a cluster on a rented box (rented.py); `run` and `live` are the one order of those steps for both.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Protocol

from .core import constants as c
from .core.errors import ChatlikeError
from .events import Event, Note, Outcome
from .follow import CtrlC
from .records import Ending

OOM_EXIT = 137


class Target(Protocol):
    """A run where it runs."""

    run_id: str
    trial: str

    def prepare(self, dry_run: bool) -> Iterator[Event]:
        """Check it and stage its inputs, before anything is started or paid for; a dry run ends here."""

    def start(self, ctrl_c: CtrlC) -> Iterator[Event]:
        """Start it. A failure leaves nothing behind. A Ctrl-C meanwhile either cancels the start (within
        `ctrl_c.cancelling()`) or is noted, and the run is stopped gracefully once started."""

    def follow(self, ctrl_c: CtrlC) -> Generator[Event, None, bool]:
        """Its log, as events, until it ends (False) or Ctrl-C is pressed (True). Raises, in one line, when it
        cannot be followed to an end (the box was lost, chatlike-train refused the run)."""

    def stop(self, timeout: int) -> Iterator[Event]:
        """Stop it gracefully: `timeout` seconds to save, then killed."""

    def collect(self, complete: bool) -> tuple[Path, Ending]:
        """Its outputs home, published (complete: as the finished run; else as a .partial); and how it ended."""

    def close(self, stopped: bool) -> Iterator[Event]:
        """What is left of it where it ran, once its outputs are home: kept, removed or torn down."""

    def failed(self, error: Exception) -> Exception:
        """The error to raise when its life broke after the start: one that says what became of it."""


def run(target: Target, stop_timeout: int, *, detach: bool = False, dry_run: bool = False) -> Iterator[Event]:
    """Prepare → start → live; a dry run stops after preparing, a detached one once started."""
    yield from target.prepare(dry_run)
    if dry_run:
        return
    with CtrlC() as ctrl_c:  # from the start on, Ctrl-C is the run's: a graceful stop, unless the start cancels
        yield from target.start(ctrl_c)
        if detach:
            yield Outcome(target.run_id, 0, "running", trial=target.trial)
            return
        try:
            yield from live(target, ctrl_c, stop_timeout)
        except ChatlikeError:
            raise
        except Exception as exc:
            failure = target.failed(exc)
            if failure is exc:
                raise
            raise failure from None


def live(target: Target, ctrl_c: CtrlC, stop_timeout: int) -> Iterator[Event]:
    """Follow → (stop, on Ctrl-C) → collect → close → the outcome. `ctrl_c` is installed by the caller from the
    moment the run started, so that a Ctrl-C before following is not lost."""
    stopped = yield from target.follow(ctrl_c)
    if stopped:
        yield Note(f"stopping run {target.run_id} (up to {stop_timeout}s for it to save)...", warning=True)
        yield from target.stop(stop_timeout)
    path, ending = target.collect(not stopped)
    yield from target.close(stopped)
    yield outcome(target.run_id, path, ending, target.trial, stopped)


def outcome(run_id: str, path: Path, ending: Ending, trial: str = "", stopped: bool = False) -> Outcome:
    """The outcome of a run whose outputs are in `path`: a stopped run's is Ctrl-C's exit, an OOM-killed one's 137."""
    if stopped:
        return Outcome(run_id, c.INTERRUPTED_EXIT, "stopped", path, trial)
    code = ending.exit_code or 0
    if ending.status == "oom":
        code = code or OOM_EXIT
    return Outcome(run_id, code, ending.status, path, trial)
