"""Conversations become chat samples: user/assistant messages that start with the other side and end with me.

Consecutive turns of one role stay separate messages: the merge window, not the role, decides what is a turn.
"""

from __future__ import annotations

from collections.abc import Callable
from json.encoder import encode_basestring

from .turns import Turn

# A sample as json.dumps({"messages": sample}, ensure_ascii=False) writes it, put together from these pieces.
_OPEN, _CLOSE, _SEPARATOR, _END = '{"messages": [', "]}", ", ", "}"
_ASSISTANT, _USER = '{"role": "assistant", "content": ', '{"role": "user", "content": '
_SYSTEM = '{"role": "system", "content": '


def contents(turns: list[Turn], speaker: Callable[[Turn], str] | None) -> list[str]:
    """Each turn's message content; in a group each other turn starts with its speaker's name."""
    if speaker is None:
        return ["\n".join(turn[4]) for turn in turns]
    return ["\n".join(turn[4]) if turn[2] else f"{speaker(turn)}: " + "\n".join(turn[4]) for turn in turns]


def spans(turns: list[Turn], texts: list[str], max_chars: int) -> list[tuple[int, int]]:
    """Where each sample starts and ends (end excluded). A conversation longer than max_chars is cut before a
    user message once a chunk would pass it; each chunk drops my leading messages and the other side's trailing
    ones, and gives no sample without a reply of mine."""
    if sum(map(len, texts)) <= max_chars:  # the usual case: one chunk
        chunks = [(0, len(turns))]
    else:
        chunks, start, size = [], 0, 0
        for index, turn in enumerate(turns):
            length = len(texts[index])
            if index > start and not turn[2] and size + length > max_chars:
                chunks.append((start, index))
                start, size = index, 0
            size += length
        chunks.append((start, len(turns)))
    found = []
    for start, end in chunks:
        while start < end and turns[start][2]:
            start += 1
        while end > start and not turns[end - 1][2]:
            end -= 1
        if start < end:
            found.append((start, end))
    return found


def encoded(turns: list[Turn], texts: list[str], start: int, end: int, system: str | None) -> str:
    """The sample turns[start:end] as one line of JSON, with the system prompt first when there is one."""
    messages = [(_ASSISTANT if turns[i][2] else _USER) + encode_basestring(texts[i]) + _END for i in range(start, end)]
    if system is not None:
        messages.insert(0, _SYSTEM + encode_basestring(system) + _END)
    return _OPEN + _SEPARATOR.join(messages) + _CLOSE + "\n"
