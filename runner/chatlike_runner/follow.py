"""Follow: stream a run's log to the display until the container ends.

`logs(follow=True)` can hang after the container exits (docker-py #3084), so a watcher thread
waits for the exit and closes the stream if it is still open a moment later. The container never
depends on this process: losing the client (closed laptop, dropped ssh) leaves the run going.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator

from docker.models.containers import Container

from .engine import Engine
from .progress import Display, Redactor, lines

LINGER = 3.0  # seconds the log stream may stay open after the container exited


def follow(engine: Engine, container: Container, display: Display, redact: Redactor) -> int:
    """Show the log until the container exits; returns its exit code."""
    stream = engine.logs(container, follow=True)
    exit_code: list[int] = []

    def close_after_exit() -> None:
        with contextlib.suppress(Exception):
            exit_code.append(engine.wait(container))
            time.sleep(LINGER)
            stream.close()

    watcher = threading.Thread(target=close_after_exit, daemon=True)
    watcher.start()
    for line in lines(stream):
        display.show(redact(line))
    return exit_code[0] if exit_code else engine.wait(container)


@contextlib.contextmanager
def uninterruptible(notice: Callable[[], None]) -> Iterator[None]:
    """Let clean-up finish: a further Ctrl-C only prints `notice`."""
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda *_: notice())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
