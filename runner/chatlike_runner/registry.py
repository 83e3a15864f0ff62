"""Registry: push the training image for rented boxes (which cannot see your engine's images), remember the
digest it was stored under, and pull an image named by digest when an engine lacks it.

Launches on rented boxes name the image by digest, never by a tag that could move: the digest of the last
`push` is recorded in the user's state folder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .core.errors import ChatlikeError
from .engine import Engine
from .events import Event, Following, Log, Note, Pushed
from .parsing import split_tag

T = TypeVar("T")

STATE = "pushed.json"


def state_file() -> Path:
    """$XDG_STATE_HOME/chatlike/pushed.json (~/.local/state by default)."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "chatlike" / STATE


def is_digest(ref: str) -> bool:
    return "@sha256:" in ref


def last_pushed() -> dict[str, Any] | None:
    """What the last `push` recorded (its `ref` is REGISTRY/NAME@sha256:…), or None."""
    try:
        return json.loads(state_file().read_text(encoding="utf-8"))["last"]
    except (OSError, ValueError, KeyError):
        return None


def _record(entry: dict[str, Any]) -> None:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        earlier = json.loads(path.read_text(encoding="utf-8")).get("pushes", [])
    except (OSError, ValueError):
        earlier = []
    temp = path.with_name(f".{STATE}.{os.getpid()}")
    temp.write_text(json.dumps({"last": entry, "pushes": [*earlier, entry]}, indent=2) + "\n", encoding="utf-8")
    os.replace(temp, path)


def push(host: str | None, image: str, target: str) -> Iterator[Event]:
    """Tag and push `image` as `target`; record and announce the digest it is now known by."""
    if is_digest(target) or "/" not in target:
        raise ChatlikeError(f"push {target!r}: name the registry and repository, such as "
                            "ghcr.io/you/chatlike-train:v1 or localhost:5000/chatlike/train:latest")
    engine = Engine.connect(host)
    found = engine.image(image)
    if found is None:
        raise ChatlikeError(f"image {image} is not on {engine.url}; build it first (`chatlike-runner build`), "
                            "or name another with --image")
    yield Note(f"pushing {image} ({found.id[7:19]}) as {target}")
    yield Following(target)
    digest = yield from logged(engine.push(image, target))
    ref = f"{split_tag(target)[0]}@{digest}"
    _record({"ref": ref, "tag": target, "image": image, "image_id": found.id,
             "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    yield Pushed(ref, found.id)


def pull_if_missing(engine: Engine, ref: str) -> Iterator[Event]:
    """Pull an image named by digest that the engine lacks (a tag is never pulled implicitly: it could move)."""
    if is_digest(ref) and engine.image(ref) is None:
        yield Note(f"image {ref} is not on {engine.url}: pulling it")
        yield Following(ref)
        yield from logged(engine.pull(ref))


def logged(lines: Generator[str, None, T]) -> Generator[Log, None, T]:
    """Progress lines as Log events; returns what the lines' generator returns."""
    while True:
        try:
            line = next(lines)
        except StopIteration as done:
            return done.value
        yield Log(line)
