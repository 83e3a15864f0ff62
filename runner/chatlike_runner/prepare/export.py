"""Streaming reader for a Telegram Desktop JSON export (result.json), in bounded memory.

ijson's C backend reads, parses and builds the whole document itself, with no Python per parse event. Its
builder attaches each object and array to its parent as soon as it starts, so the document is there as live,
growing containers while it is parsed. Each time the parser asks for the next chunk of the file, the walk
(on the parser's thread) takes the complete messages out of their chat's list and queues them, with a marker
for each new chat; `chats` hands them on from the queue. Only a few chunks' worth of messages are ever held.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from ..errors import ChatlikeError

HOW_TO_EXPORT = (
    "in Telegram Desktop use Settings > Advanced > Export Telegram Data (or a chat's ⋮ > Export chat history), "
    "format JSON, and pass the result.json it writes"
)
# The fastest backend ijson found (yajl2_c when its C extension is built).
_BACKEND = ijson.get_backend(ijson.backend_name)
_ROOT = "document"  # the export is parsed wrapped as {"document": ...}, so that its root is reachable while it fills
_SOURCES = ("chats", "left_chats")  # a full-account export's lists of chats, each under "list"
_MORE = object()  # the walk needs more of the file parsed before it can go on
_QUEUED = 4  # chats and message batches (a chunk of the file each, at most) parsed ahead of the reader


@dataclass(frozen=True)
class Chat:
    """One chat as the export describes it; owner_id is the account's from_id when the export says it."""

    index: int
    name: str | None
    type: str | None
    id: Any
    owner_id: str | None
    owner_name: str | None


class HashingReader:
    """A binary file wrapper that hashes what is read, so the report can name the export it came from."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self.sha256.update(chunk)
        return chunk


def resolve(path: Path) -> Path:
    """The result.json to read: PATH itself, or PATH/result.json when PATH is the export folder."""
    if path.is_dir() and (path / "result.json").is_file():
        return path / "result.json"
    if not path.exists():
        raise ChatlikeError(f"{path} does not exist; {HOW_TO_EXPORT}")
    if not path.is_file():
        raise ChatlikeError(f"{path} is not a file and holds no result.json; {HOW_TO_EXPORT}")
    return path


def user_id(value: Any) -> str | None:
    """A from_id as the current exports write it ("user123"); old exports wrote the bare number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return f"user{value}"
    if isinstance(value, str) and value:
        return value
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class _Stopped(Exception):
    """The reader left before the end of the file: the parser's thread stops at its next read."""


class _Walk:
    """The live document's chats and complete messages, in file order, as queue items: ("chat", Chat) and
    ("messages", [raw, …]). Runs on the parser's thread, each time the parser asks for more of the file."""

    def __init__(self) -> None:
        self.wrapper: list[dict[str, Any]] = []
        self.ended = False
        self._steps = self._walk()

    def new_map(self) -> dict[str, Any]:
        """ijson's map type: a dict, the first one being the wrapper whose "document" is the export."""
        made: dict[str, Any] = {}
        if not self.wrapper:
            self.wrapper.append(made)
        return made

    def advance(self) -> Iterator[tuple[str, Any]]:
        """What can be handed on now."""
        for step in self._steps:
            if step is _MORE:
                return
            yield step

    def _walk(self) -> Iterator[Any]:
        while not (self.wrapper and _ROOT in self.wrapper[0]):
            if self.ended:
                return
            yield _MORE
        document = self.wrapper[0][_ROOT]
        index = 0
        owner: dict[str, Any] = {}
        for step in self._chats(document, owner):
            if step is _MORE:
                yield _MORE
                continue
            chat, done = step
            found = yield from self._chat(chat, done)
            if found is None:
                continue
            fields, raw, ended = found
            names = [_text(owner.get("first_name")), _text(owner.get("last_name"))]
            yield "chat", Chat(index=index, name=_text(fields.get("name")), type=_text(fields.get("type")),
                               id=_meta(fields.get("id")), owner_id=user_id(owner.get("user_id")),
                               owner_name=" ".join(n for n in names if n) or None)
            index += 1
            yield from self._items(raw, ended)

    def _chats(self, document: Any, owner: dict[str, Any]) -> Iterator[Any]:
        """(chat object, whether it has ended) for each chat as it starts, with _MORE while waiting; `owner`
        fills from personal_information when that precedes the chats."""
        if isinstance(document, list):
            yield from self._listed(document, lambda: False)
            return
        if not isinstance(document, dict):
            return
        position = 0
        while True:
            keys = list(document)
            if position >= len(keys):
                if self.ended:
                    return
                yield _MORE
                continue
            key = keys[position]
            ended = (lambda k: lambda: _after(document, k))(key)
            if key == "messages":
                yield document, ended
            elif key in _SOURCES:
                holder = yield from self._value(document, key, ended)
                if isinstance(holder, dict):
                    chat_list = yield from self._value(holder, "list", ended)
                    if isinstance(chat_list, list):
                        yield from self._listed(chat_list, lambda: ended() or _after(holder, "list"))
            elif key == "personal_information":
                while not (self.ended or ended()):
                    yield _MORE
                if isinstance(document[key], dict):
                    owner.update(document[key])
            position += 1

    def _value(self, container: dict[str, Any], key: str, ended: Callable[[], bool]) -> Iterator[Any]:
        """container[key] once it has started (None when the container ends without it)."""
        while key not in container:
            if self.ended or ended():
                return None
            yield _MORE
        return container[key]

    def _listed(self, chat_list: list[Any], done: Callable[[], bool]) -> Iterator[Any]:
        """The chats of a growing list, each as soon as it starts; a chat is dropped from the list once read."""
        position = 0
        while True:
            if position < len(chat_list):
                yield chat_list[position], (lambda p: lambda: done() or len(chat_list) > p + 1)(position)
                chat_list[position] = None  # read: its messages are gone already, let the rest go too
                position += 1
            elif self.ended or done():
                return
            else:
                yield _MORE

    def _chat(self, chat: Any, done: Callable[[], bool]) -> Iterator[Any]:
        """Wait until the chat's messages start; then its fields before them, the growing messages list and
        whether that list has ended. None for a chat without messages."""
        while not (isinstance(chat, dict) and isinstance(chat.get("messages"), list)):
            if self.ended or done() or not isinstance(chat, dict):
                return None
            yield _MORE
        fields = {}
        for key in chat:  # insertion order is file order: only what precedes the messages counts
            if key == "messages":
                break
            fields[key] = chat[key]
        return fields, chat["messages"], lambda: done() or _after(chat, "messages")

    def _items(self, items: list[Any], done: Callable[[], bool]) -> Iterator[Any]:
        """The complete items of a growing list in batches, taken out of the list (every item but the last is
        complete before the list ends)."""
        while True:
            ended = self.ended or done()
            ready = len(items) if ended else len(items) - 1
            if ready > 0:
                batch = items[:ready]
                del items[:ready]
                yield "messages", batch
            elif ended:
                return
            else:
                yield _MORE


class _Feed:
    """The file as ijson's parser reads it (wrapped as {"document": …}); before each chunk, the walk queues
    what the chunks so far completed."""

    def __init__(self, stream: BinaryIO, walk: _Walk, out: queue.Queue, reader: Callable[[], Any]) -> None:
        self._stream, self._walk, self._out = stream, walk, out
        self._started = self._finished = False
        self._reader = reader  # a weak reference to what reads the queue: gone, the parser stops

    def read(self, size: int) -> bytes:
        if size == 0:  # ijson asks for nothing first, to see whether the file gives bytes or text
            return b""
        if not self._started:
            self._started = True
            return b'{"' + _ROOT.encode() + b'":'
        self.hand_on()
        chunk = self._stream.read(size)
        if chunk or self._finished:
            return chunk
        self._finished = True
        return b"}"

    def hand_on(self) -> None:
        for item in self._walk.advance():
            self.put(item)

    def put(self, item: tuple[str, Any]) -> None:
        """Queue an item; raises _Stopped when nobody is left to read it."""
        while True:
            if self._reader() is None:
                raise _Stopped
            try:
                self._out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


def _parse(walk: _Walk, feed: _Feed, out: queue.Queue) -> None:
    """The parser's thread: the whole document through ijson's C builder; the walk hands chats on meanwhile."""
    try:
        for _ in _BACKEND.items(feed, "", map_type=walk.new_map):
            pass
        walk.ended = True
        feed.hand_on()
        feed.put(("end", None))
    except _Stopped:
        pass
    except BaseException as exc:  # handed to the reader, who raises it (ijson.JSONError, OSError)
        with contextlib.suppress(_Stopped):
            feed.put(("error", exc))


def chats(stream: BinaryIO) -> Iterator[tuple[Chat, Iterator[Any]]]:
    """Yield each chat with an iterator over its raw messages, in file order: the root object when it is one
    chat, the items of a root list, and the chats of a full-account export's `chats` and `left_chats`.

    Consume (or abandon) the messages before asking for the next chat. A chat whose name, type or id come
    after its messages (Telegram never writes that) is seen without them. Raises ijson.JSONError on bad JSON.
    """
    out: queue.Queue = queue.Queue(maxsize=_QUEUED)
    reading = _Reading()  # held by this generator and by each chat's messages: the parser runs while one is alive
    walk = _Walk()
    feed = _Feed(stream, walk, out, weakref.ref(reading))
    threading.Thread(target=_parse, args=(walk, feed, out), name="chatlike-export-parser", daemon=True).start()
    ahead: list[tuple[str, Any]] = []

    def take() -> tuple[str, Any]:
        item = ahead.pop() if ahead else out.get()
        if item[0] == "error":
            raise item[1]
        return item

    def messages(alive: _Reading) -> Iterator[Any]:
        while True:
            item = take()
            if item[0] != "messages":
                ahead.append(item)
                return
            yield from item[1]

    while True:
        kind, value = take()
        if kind == "end":
            return
        if kind == "chat":
            raw = messages(reading)
            yield value, raw
            raw.close()
            while (item := take())[0] == "messages":  # what the caller left unread
                pass
            ahead.append(item)


class _Reading:
    """A token of an open reader (see chats)."""


def _after(container: dict[str, Any], key: str) -> bool:
    """Whether a key follows `key` in the object: `key`'s value is then complete."""
    return next(reversed(container)) != key


def _meta(value: Any) -> Any:
    """A chat's id when it is a string, a number or null (true, false, objects and arrays are no id)."""
    return None if isinstance(value, (bool, dict, list)) else value
