"""Streaming: messages come out while the file is still being read; the whole file is never loaded."""

from __future__ import annotations

import io
import json

from prepare_fixtures.exports import MIN, chat, exchange, full, prepare, write

from chatlike_runner.prepare.telegram import chats


class CountingFile(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


def _big_export() -> bytes:
    messages = [m for i in range(20_000) for m in exchange(i * 2 * MIN)]  # ~9 MB: the parser reads ahead a few chunks
    return json.dumps(full(chat(messages), chat(messages[:10], chat_id=3003))).encode()


def test_messages_are_yielded_before_the_file_is_read_through():
    data = _big_export()
    source = CountingFile(data)
    (first_chat, messages), = [next(chats(source))]
    assert first_chat.type == "personal_chat" and first_chat.owner_id == "user1001"
    assert next(messages)["text"] == "are you coming?"
    assert source.consumed < len(data) / 10


def test_unread_messages_are_skipped_and_the_next_chat_follows():
    found = [(chat.id, chat.index) for chat, _ in chats(CountingFile(_big_export()))]
    assert found == [(2002, 0), (3003, 1)]


def test_prepare_never_loads_the_whole_document(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("json.load/loads used on the export")

    path = write(tmp_path, full(chat(exchange(0))))
    monkeypatch.setattr(json, "load", refuse)
    monkeypatch.setattr(json, "loads", refuse)
    result = prepare(path, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
