"""Follow: stream a run's log, line by line, until the container ends or the user presses Ctrl-C.

`logs(follow=True)` can hang after the container exits (docker-py #3084), so a watcher thread
waits for the exit and closes the stream if it is still open a moment later. The container never
depends on this process: losing the client (closed laptop, dropped ssh) leaves the run going.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Generator, Iterator

from .engine import Engine, Run
from .events import Log
from .progress import Redactor, lines

LINGER = 3.0  # seconds the log stream may stay open after the container exited


def follow(engine: Engine, run: Run, redact: Redactor, notice: str) -> Generator[Log, None, bool]:
    """Yield the log's lines until the container exits (returns False) or Ctrl-C is pressed (True).

    Ctrl-C only ends the following; the caller stops the run. From then on a further Ctrl-C
    writes `notice` to stderr and does nothing else, so the clean-up that follows cannot be cut short.
    """
    stream = engine.logs(run, follow=True)
    interrupted = threading.Event()

    def on_ctrl_c(*_: object) -> None:
        if interrupted.is_set():
            os.write(2, f"\n{notice}\n".encode())  # in a signal handler: no buffered print
            return
        interrupted.set()
        with contextlib.suppress(Exception):
            stream.close()

    def close_after_exit() -> None:
        with contextlib.suppress(Exception):
            engine.wait(run)
            time.sleep(LINGER)
            stream.close()

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    threading.Thread(target=close_after_exit, daemon=True).start()
    try:
        with contextlib.suppress(OSError, ValueError):  # the stream closed under us by Ctrl-C
            for line in lines(stream):
                yield Log(redact(line))
    finally:
        if not interrupted.is_set():
            signal.signal(signal.SIGINT, previous)
    return interrupted.is_set()


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """Let a clean-up finish: Ctrl-C is ignored meanwhile."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
