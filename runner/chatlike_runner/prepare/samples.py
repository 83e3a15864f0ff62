"""Conversations become chat samples: user/assistant messages that start with the other side and end with me."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .turns import Turn

Sample = list[dict[str, str]]


def _roles(turns: list[Turn], speaker: Callable[[Turn], str] | None) -> Sample:
    """One message per turn, me = assistant; in a group each other turn starts with its speaker's name.

    Consecutive turns of one role stay separate messages: the merge window, not the role, decides what is a turn.
    """
    return [{"role": "assistant", "content": turn.text} if turn.mine else
            {"role": "user", "content": turn.text if speaker is None else f"{speaker(turn)}: {turn.text}"}
            for turn in turns]


def _chunks(messages: Sample, max_chars: int) -> Iterator[Sample]:
    """Cut before a user message once a chunk would pass max_chars, so long conversations fit a context."""
    chunk: Sample = []
    size = 0
    for message in messages:
        if chunk and message["role"] == "user" and size + len(message["content"]) > max_chars:
            yield chunk
            chunk, size = [], 0
        chunk.append(message)
        size += len(message["content"])
    if chunk:
        yield chunk


def _trim(messages: Sample) -> Sample | None:
    """Drop my leading messages and the other side's trailing ones; None when no reply of mine is left."""
    start = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
    end = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "assistant"), None)
    if start is None or end is None or end < start:
        return None
    return messages[start : end + 1]


def samples(turns: list[Turn], *, max_chars: int, speaker: Callable[[Turn], str] | None = None) -> Iterator[Sample]:
    """The samples of one conversation (several when it is longer than max_chars)."""
    for chunk in _chunks(_roles(turns, speaker), max_chars):
        sample = _trim(chunk)
        if sample is not None:
            yield sample
