"""Follow: stream a run's log, line by line, until the container ends or the user presses Ctrl-C.

`logs(follow=True)` can hang after the container exits (docker-py #3084), so a watcher thread
waits for the exit and closes the stream if it is still open a moment later. The container never
depends on this process: losing the client (closed laptop, dropped ssh) leaves the run going.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

from .core.trainlog import lines
from .engine import Engine, Run
from .events import Log
from .redact import Redactor

LINGER = 3.0  # seconds the log stream may stay open after the container exited
CLEANING_UP = "still cleaning up: the run is being stopped and its outputs saved"


class CtrlC:
    """Ctrl-C as a request, from the moment a run or job is started until its clean-up is done: the first press
    is noted (and closes the log stream being followed, if any); later ones write `notice` to stderr and do
    nothing else, so the clean-up that follows cannot be cut short. Within `cancelling()` it cancels instead."""

    def __init__(self, notice: str = CLEANING_UP) -> None:
        self.notice = notice
        self.pressed = threading.Event()
        self.stream: Any = None
        self._cancels = False

    def __enter__(self) -> CtrlC:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    @contextlib.contextmanager
    def cancelling(self) -> Iterator[None]:
        """Within it a Ctrl-C cancels what is under way (KeyboardInterrupt), as before anything was started: for a
        start that removes what it made when interrupted."""
        self._cancels = True
        try:
            yield
        finally:
            self._cancels = False

    def _handle(self, *_: object) -> None:
        if self._cancels:
            raise KeyboardInterrupt
        if self.pressed.is_set():
            os.write(2, f"\n{self.notice}\n".encode())  # in a signal handler: no buffered print
            return
        self.pressed.set()
        with contextlib.suppress(Exception):
            if self.stream is not None:
                self.stream.close()


def follow(engine: Engine, run: Run, redact: Redactor, ctrl_c: CtrlC) -> Generator[Log, None, bool]:
    """Yield the log's lines until the container exits (returns False) or Ctrl-C is pressed (True; the caller
    stops the run)."""
    stream = ctrl_c.stream = engine.logs(run, follow=True)

    def close_after_exit() -> None:
        with contextlib.suppress(Exception):
            engine.wait(run)
            time.sleep(LINGER)
            stream.close()

    threading.Thread(target=close_after_exit, daemon=True).start()
    if not ctrl_c.pressed.is_set():
        with contextlib.suppress(OSError, ValueError):  # the stream closed under us by Ctrl-C
            for line in lines(stream):
                yield Log(redact(line))
    ctrl_c.stream = None
    return ctrl_c.pressed.is_set()


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """Let a clean-up finish: Ctrl-C is ignored meanwhile."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Tail:
    """A log read on a thread of its own, so that Ctrl-C and a deadline are noticed while no line comes (a
    rented box's log arrives through SkyPilot, which cannot be interrupted mid-read)."""

    def __init__(self, source: Iterator[str]) -> None:
        self.ended = False
        self._queue: queue.Queue[str | BaseException | None] = queue.Queue()
        threading.Thread(target=self._read, args=(source,), daemon=True).start()

    def _read(self, source: Iterator[str]) -> None:
        try:
            for text in source:
                self._queue.put(text)
        except BaseException as exc:  # handed to the reader: a dropped connection ends the follow, loudly
            self._queue.put(exc)
        self._queue.put(None)

    def lines(self, stop: threading.Event | None = None, timeout: float | None = None) -> Iterator[str]:
        """The log's lines until it ends, `stop` is set, or `timeout` seconds pass."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ended and not (stop is not None and stop.is_set()):
            if deadline is not None and time.monotonic() > deadline:
                return
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is None:
                self.ended = True
            elif isinstance(item, BaseException):
                self.ended = True
                raise item
            else:
                yield from (part for part in item.splitlines() if part.strip())
