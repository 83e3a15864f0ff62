"""Lines become turns (one sender's consecutive messages) and turns become conversations (split at silences)."""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

REORDER_WINDOW = 10_000


class Line(NamedTuple):
    """One kept message, its text final (masked)."""

    ts: int
    sender: str
    name: str
    text: str
    mine: bool


@dataclass
class Turn:
    """Consecutive messages of one sender, joined by newlines."""

    sender: str
    name: str
    mine: bool
    start: int
    end: int
    texts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


def in_time_order(lines: Iterable[Line], window: int = REORDER_WINDOW) -> Iterator[Line]:
    """Sort by time, stably, holding at most `window` lines: exports are in id order, which is nearly time order.

    A line in order is appended; only a late one pays for an insertion.
    """
    buffer: deque[Line] = deque()
    for line in lines:
        if not buffer or line.ts >= buffer[-1].ts:
            buffer.append(line)
        else:
            buffer.insert(bisect_right(buffer, line.ts, key=_ts), line)
        if len(buffer) > window:
            yield buffer.popleft()
    yield from buffer


def _ts(line: Line) -> int:
    return line.ts


def conversations(lines: Iterable[Line], *, merge: int, gap: int) -> Iterator[list[Turn]]:
    """Group time-ordered lines into conversations of turns.

    A line joins the previous turn when the sender is the same and at most `merge` seconds passed since that
    turn's last line (so an album, sent in one second, always stitches). More than `gap` seconds of silence,
    or a line older than the one before it, starts a new conversation.
    """
    conversation: list[Turn] = []
    last = 0
    for line in lines:
        if conversation and not 0 <= line.ts - last <= gap:
            yield conversation
            conversation = []
        turn = conversation[-1] if conversation else None
        if turn is not None and turn.sender == line.sender and line.ts - turn.end <= merge:
            turn.texts.append(line.text)
            turn.end = line.ts
        else:
            conversation.append(Turn(line.sender, line.name, line.mine, line.ts, line.ts, [line.text]))
        last = line.ts
    if conversation:
        yield conversation
