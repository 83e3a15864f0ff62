"""Streaming reader for a Telegram Desktop JSON export (result.json), in bounded memory.

ijson's C backend reads, parses and builds the whole document itself, with no Python per parse event. Its
builder attaches each object and array to its parent as soon as it starts, so the document is there as live,
growing containers while it is parsed. Each time the parser asks for the next chunk of the file, the walk
takes the complete messages out of their chat's list and hands them on, with a marker for each new chat.

The parser runs in a child process (`python -m chatlike_runner.prepare.telegram`), so that parsing and the
work on the messages use two cores: a thread of this process feeds it the file, and it sends back each
chat and each chunk's messages marshalled, over a pipe whose few chunks are all that is ever held.
"""

from __future__ import annotations

import hashlib
import marshal
import struct
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from ..core.errors import ChatlikeError

HOW_TO_EXPORT = (
    "in Telegram Desktop use Settings > Advanced > Export Telegram Data (or a chat's ⋮ > Export chat history), "
    "format JSON, and pass the result.json it writes"
)
# The fastest backend ijson found (yajl2_c when its C extension is built).
_BACKEND = ijson.get_backend(ijson.backend_name)
_ROOT = "document"  # the export is parsed wrapped as {"document": ...}, so that its root is reachable while it fills
_SOURCES = ("chats", "left_chats")  # a full-account export's lists of chats, each under "list"
_MORE = object()  # the walk needs more of the file parsed before it can go on
_CHUNK = 1 << 16  # bytes of the file per write to the parser
_FRAME = struct.Struct("<I")  # each item the parser sends: its marshalled size, then it


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


class _Walk:
    """The live document's chats and complete messages, in file order, as items: ("chat", Chat's fields) and
    ("messages", [raw, …]). Runs in the parser's process, each time the parser asks for more of the file."""

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
            yield "chat", (index, _text(fields.get("name")), _text(fields.get("type")), _meta(fields.get("id")),
                           user_id(owner.get("user_id")), " ".join(n for n in names if n) or None)
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
    """The file as ijson's parser reads it (wrapped as {"document": …}); before each chunk, the walk sends on
    what the chunks so far completed."""

    def __init__(self, stream: BinaryIO, walk: _Walk, send: Callable[[tuple[str, Any]], None]) -> None:
        self._stream, self._walk, self._send = stream, walk, send
        self._started = self._finished = False

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
            self._send(item)


def _serve(source: BinaryIO, sink: BinaryIO) -> None:
    """The parser's process: the whole document from `source` through ijson's C builder, the walk's items
    marshalled into `sink` meanwhile, then ("end", None), or ("error", …) for a file that is not JSON."""

    def send(item: tuple[str, Any]) -> None:
        data = marshal.dumps(item)
        sink.write(_FRAME.pack(len(data)) + data)
        sink.flush()

    walk = _Walk()
    feed = _Feed(source, walk, send)
    try:
        for _ in _BACKEND.items(feed, "", map_type=walk.new_map, use_float=True):
            pass
        walk.ended = True
        feed.hand_on()
        send(("end", None))
    except ijson.JSONError as exc:
        send(("error", str(exc)))
    except BrokenPipeError:  # the reader left before the end: nothing to tell
        pass


class _Parser:
    """The parser's process with the thread that feeds it the file; `take` gives its items in order."""

    def __init__(self, stream: BinaryIO) -> None:
        self._process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE)
        self._failed: OSError | None = None
        self._feeder = threading.Thread(target=self._feed, args=(stream,), name="chatlike-export-feed", daemon=True)
        self._feeder.start()

    def _feed(self, stream: BinaryIO) -> None:
        pipe = self._process.stdin
        try:
            while chunk := stream.read(_CHUNK):
                pipe.write(chunk)
        except (BrokenPipeError, ValueError):  # the parser is gone (stopped by `close`, or the file was not JSON),
            pass  # or the reader left and closed the file (Ctrl-C)
        except OSError as exc:  # reading the file: raised to the reader
            self._failed = exc
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def take(self) -> tuple[str, Any]:
        head = self._process.stdout.read(_FRAME.size)
        if len(head) < _FRAME.size:
            self._feeder.join()
            if self._failed is not None:
                raise self._failed
            raise OSError(f"the export's parser stopped (exit code {self._process.wait()})")
        kind, value = marshal.loads(self._process.stdout.read(_FRAME.unpack(head)[0]))
        if kind == "error":
            self._feeder.join()
            if self._failed is not None:
                raise self._failed
            raise ijson.JSONError(value)
        if kind == "end":
            self._feeder.join()
        return kind, value

    def close(self) -> None:
        self._process.kill()
        self._process.wait()
        self._process.stdout.close()
        self._feeder.join()


def chats(stream: BinaryIO) -> Iterator[tuple[Chat, Iterator[Any]]]:
    """Yield each chat with an iterator over its raw messages, in file order: the root object when it is one
    chat, the items of a root list, and the chats of a full-account export's `chats` and `left_chats`.

    Consume (or abandon) the messages before asking for the next chat. A chat whose name, type or id come
    after its messages (Telegram never writes that) is seen without them. Raises ijson.JSONError on bad JSON,
    OSError when the stream cannot be read.
    """
    parser = _Parser(stream)
    reading = _Reading()  # held by this generator and by each chat's messages: the parser runs while one is alive
    stop = weakref.finalize(reading, parser.close)
    ahead: list[tuple[str, Any]] = []

    def take() -> tuple[str, Any]:
        return ahead.pop() if ahead else parser.take()

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
            stop()
            return
        if kind == "chat":
            raw = messages(reading)
            yield Chat(*value), raw
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


if __name__ == "__main__":  # the parser's process (see _Parser)
    import gc
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the reader's to handle: it stops this process
    gc.disable()  # what it builds is handed on and dropped, never in a cycle
    _serve(sys.stdin.buffer, sys.stdout.buffer)
