"""Streaming reader for a Telegram Desktop JSON export (result.json), in bounded memory.

The parse events are walked in Python only to find the chats; each chat's messages are built one at a
time by ijson's items (C backend when available), so no chat is ever held whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from ..errors import ChatlikeError

HOW_TO_EXPORT = (
    "in Telegram Desktop use Settings > Advanced > Export Telegram Data (or a chat's ⋮ > Export chat history), "
    "format JSON, and pass the result.json it writes"
)
# Where a chat object may sit: a bare single-chat export, a list of chats, or a full-account export.
_CHAT_PREFIXES = frozenset({"", "item", "chats.list.item", "left_chats.list.item"})
_META_KEYS = frozenset({"name", "type", "id"})
# The fastest backend ijson found (yajl2_c when its C extension is built); its builder takes events pushed in.
_BACKEND = ijson.get_backend(ijson.backend_name)


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


def _messages(events: Iterator[tuple], prefix: str) -> Iterator[Any]:
    """Build the items of the array that just started at prefix, one at a time, stopping at its end."""
    built = ijson.sendable_list()
    builder = _BACKEND.items_basecoro(built, prefix + ".item")
    for event in events:
        if event[1] == "end_array" and event[0] == prefix:
            return
        builder.send(event)
        if built:
            yield from built
            del built[:]


def chats(stream: BinaryIO) -> Iterator[tuple[Chat, Iterator[Any]]]:
    """Yield each chat with an iterator over its raw messages, in file order.

    Consume (or abandon) the messages before asking for the next chat. A chat whose name, type or id
    come after its messages (Telegram never writes that) is seen without them. Raises ijson.JSONError
    on bad JSON.
    """
    owner: dict[str, Any] = {}
    meta: dict[str, dict[str, Any]] = {}
    index = 0
    events = ijson.parse(stream)
    for prefix, event, value in events:
        if event == "start_map" and prefix in _CHAT_PREFIXES:
            meta[prefix] = {}
        elif prefix.startswith("personal_information.") and event in ("number", "string"):
            owner[prefix.partition(".")[2]] = value
        elif event == "start_array" and prefix.endswith("messages"):
            chat_prefix = prefix[: -len("messages")].rstrip(".")
            if chat_prefix not in _CHAT_PREFIXES:
                continue
            info = meta.get(chat_prefix, {})
            names = [_text(owner.get("first_name")), _text(owner.get("last_name"))]
            chat = Chat(
                index=index,
                name=_text(info.get("name")),
                type=_text(info.get("type")),
                id=info.get("id"),
                owner_id=user_id(owner.get("user_id")),
                owner_name=" ".join(n for n in names if n) or None,
            )
            index += 1
            messages = _messages(events, prefix)
            yield chat, messages
            for _ in messages:  # build what the caller left unread, to move past it
                pass
        elif event in ("string", "number", "null") and prefix.rpartition(".")[2] in _META_KEYS:
            chat_prefix, _, key = prefix.rpartition(".")
            if chat_prefix in meta:
                meta[chat_prefix][key] = value
