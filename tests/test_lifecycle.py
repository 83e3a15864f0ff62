"""A run's life (lifecycle.run and .live), on a fake target: what is asked of the place it runs, in which order,
when it ends on its own, when Ctrl-C comes at each phase (preparing, starting, following, cleaning up), when it is
OOM-killed, lost or broken. Real SIGINTs, no Docker: the Docker target and the rented one are tested against the real
engine and SkyPilot (test_runs, test_rented)."""

from __future__ import annotations

import os
import signal
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from chatlike_runner.core import constants as c
from chatlike_runner.core.errors import ChatlikeError
from chatlike_runner.events import Event, Log, Note, Outcome
from chatlike_runner.follow import CLEANING_UP, CtrlC
from chatlike_runner.lifecycle import live, run
from chatlike_runner.records import Ending


def ctrl_c() -> None:
    """Ctrl-C, as the terminal sends it."""
    os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(autouse=True)
def python_s_own_ctrl_c():
    """Ctrl-C as Python handles it by default (KeyboardInterrupt), also where the tests run in the background of a
    shell, which starts them with SIGINT ignored."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


class FakeTarget:
    """A run somewhere that records what is asked of it; `press` names the phases in which Ctrl-C is pressed."""

    run_id = "r1"
    trial = ""

    def __init__(self, ending: Ending = Ending("succeeded", 0), press: tuple[str, ...] = (),
                 lost: str | None = None, cancels: bool = False, broken: Exception | None = None) -> None:
        self.ending, self.press, self.lost, self.cancels, self.broken = ending, press, lost, cancels, broken
        self.asked: list[str] = []

    def _phase(self, name: str) -> None:
        self.asked.append(name)
        if name.split("(")[0] in self.press:
            ctrl_c()

    def prepare(self, dry_run: bool) -> Iterator[Event]:
        self._phase(f"prepare({dry_run})")
        yield Note("staged")

    def start(self, ctrl: CtrlC) -> Iterator[Event]:
        """A container's start is cancelled by Ctrl-C, and removes what it made; a rented launch is not."""
        if not self.cancels:
            self._phase("start")
            yield Note("started")
            return
        try:
            with ctrl.cancelling():
                self._phase("start")
                yield Note("started")
        except BaseException:
            self.asked.append("removed")
            raise

    def failed(self, error: Exception) -> Exception:
        self.asked.append(f"failed({type(error).__name__})")
        return ChatlikeError(f"{error}; the box was torn down")

    def follow(self, ctrl: CtrlC) -> Generator[Event, None, bool]:
        self._phase("follow")
        if self.lost:
            raise ChatlikeError(self.lost)
        if self.broken:
            raise self.broken
        for step in range(3):
            if ctrl.pressed.is_set():
                return True
            yield Log(f"step {step}")
        return ctrl.pressed.is_set()

    def stop(self, timeout: int) -> Iterator[Event]:
        self._phase(f"stop({timeout})")
        yield Log("saving")

    def collect(self, complete: bool) -> tuple[Path, Ending]:
        self._phase(f"collect({complete})")
        return Path("out") / (self.run_id if complete else f"{self.run_id}.partial"), self.ending

    def close(self, stopped: bool) -> Iterator[Event]:
        self._phase(f"close({stopped})")
        yield from ()


def lived(target: FakeTarget, pressed_before: bool = False) -> list[Event]:
    with CtrlC() as ctrl:
        if pressed_before:
            ctrl_c()
        return list(live(target, ctrl, stop_timeout=7))


def test_a_run_that_ends_on_its_own_is_collected_whole_then_closed():
    target = FakeTarget()
    events = lived(target)
    assert target.asked == ["follow", "collect(True)", "close(False)"]
    assert [e.text for e in events if isinstance(e, Log)] == ["step 0", "step 1", "step 2"]
    assert events[-1] == Outcome("r1", 0, "succeeded", Path("out/r1"), "")


def test_ctrl_c_while_following_stops_the_run_gracefully_and_brings_a_partial_home():
    target = FakeTarget(Ending("stopped", 143), press=("follow",))
    events = lived(target)
    assert target.asked == ["follow", "stop(7)", "collect(False)", "close(True)"]
    assert Note("stopping run r1 (up to 7s for it to save)...", warning=True) in events
    assert events[-1] == Outcome("r1", c.INTERRUPTED_EXIT, "stopped", Path("out/r1.partial"), "")


def test_ctrl_c_between_the_start_and_following_is_not_lost():
    target = FakeTarget(Ending("stopped", 143))
    events = lived(target, pressed_before=True)
    assert target.asked == ["follow", "stop(7)", "collect(False)", "close(True)"]
    assert not [e for e in events if isinstance(e, Log) and e.text.startswith("step")]


@pytest.mark.parametrize("phase", ["stop", "collect", "close"])
def test_a_second_ctrl_c_during_the_clean_up_does_not_cut_it_short(phase, capfd):
    target = FakeTarget(Ending("stopped", 143), press=("follow", phase))
    events = lived(target)
    assert target.asked == ["follow", "stop(7)", "collect(False)", "close(True)"]
    assert events[-1].status == "stopped"
    assert CLEANING_UP in capfd.readouterr().err


@pytest.mark.parametrize("phase", ["collect", "close"])
def test_ctrl_c_after_the_run_ended_on_its_own_changes_nothing(phase):
    target = FakeTarget(press=(phase,))
    events = lived(target)
    assert target.asked == ["follow", "collect(True)", "close(False)"]
    assert events[-1] == Outcome("r1", 0, "succeeded", Path("out/r1"), "")


@pytest.mark.parametrize(("ending", "code"), [(Ending("oom", None, oom_killed=True), 137), (Ending("oom", 137), 137),
                                              (Ending("failed", 3), 3)])
def test_a_run_that_failed_or_was_oom_killed_has_a_non_zero_outcome(ending, code):
    events = lived(FakeTarget(ending))
    assert (events[-1].exit_code, events[-1].status) == (code, ending.status)


def test_a_run_that_cannot_be_followed_is_neither_collected_nor_closed_by_the_lifecycle():
    """The target's own line (what became of the box, what came home) is the one the person reads."""
    target = FakeTarget(lost="run r1 lost its box while it trained")
    with pytest.raises(ChatlikeError, match="lost its box"):
        lived(target)
    assert target.asked == ["follow"]


def test_ctrl_c_is_given_back_after_the_run():
    before = signal.getsignal(signal.SIGINT)
    lived(FakeTarget())
    assert signal.getsignal(signal.SIGINT) is before


def ran(target: FakeTarget, **options: bool) -> list[Event]:
    return list(run(target, 7, **options))


def test_a_run_is_prepared_started_then_lived():
    target = FakeTarget()
    events = ran(target)
    assert target.asked == ["prepare(False)", "start", "follow", "collect(True)", "close(False)"]
    assert events[:2] == [Note("staged"), Note("started")]
    assert events[-1] == Outcome("r1", 0, "succeeded", Path("out/r1"), "")


def test_a_dry_run_is_prepared_and_nothing_is_started():
    target = FakeTarget()
    assert ran(target, dry_run=True) == [Note("staged")]
    assert target.asked == ["prepare(True)"]


def test_a_detached_run_is_started_and_left_running():
    target = FakeTarget()
    events = ran(target, detach=True)
    assert target.asked == ["prepare(False)", "start"]
    assert events[-1] == Outcome("r1", 0, "running", trial="")


def test_ctrl_c_while_preparing_interrupts_before_anything_is_started():
    target = FakeTarget(press=("prepare",))
    with pytest.raises(KeyboardInterrupt):
        ran(target)
    assert target.asked == ["prepare(False)"]


def test_ctrl_c_during_a_start_that_cancels_removes_what_it_made_and_follows_nothing():
    """A container's: launch removes its container and volumes when interrupted."""
    target = FakeTarget(press=("start",), cancels=True)
    with pytest.raises(KeyboardInterrupt):
        ran(target)
    assert target.asked == ["prepare(False)", "start", "removed"]


def test_ctrl_c_during_a_start_that_cannot_be_cut_short_stops_the_run_once_started():
    """A rented box's: SkyPilot's server would go on provisioning, so the launch ends, then the run is stopped."""
    target = FakeTarget(Ending("stopped", 143), press=("start",))
    events = ran(target)
    assert target.asked == ["prepare(False)", "start", "follow", "stop(7)", "collect(False)", "close(True)"]
    assert events[-1].status == "stopped"


def test_a_run_that_broke_after_the_start_raises_the_targets_own_line():
    target = FakeTarget(broken=RuntimeError("connection reset"))
    with pytest.raises(ChatlikeError, match="connection reset; the box was torn down"):
        ran(target)
    assert target.asked == ["prepare(False)", "start", "follow", "failed(RuntimeError)"]


def test_a_chatlike_error_after_the_start_is_not_rephrased():
    target = FakeTarget(lost="run r1 lost its box while it trained")
    with pytest.raises(ChatlikeError, match="^run r1 lost its box while it trained$"):
        ran(target)
    assert target.asked == ["prepare(False)", "start", "follow"]


@pytest.mark.parametrize("options", [{}, {"detach": True}, {"dry_run": True}])
def test_ctrl_c_is_given_back_after_a_run_however_it_ends(options):
    before = signal.getsignal(signal.SIGINT)
    ran(FakeTarget(), **options)
    with pytest.raises(KeyboardInterrupt):
        ran(FakeTarget(press=("start",), cancels=True))
    assert signal.getsignal(signal.SIGINT) is before
