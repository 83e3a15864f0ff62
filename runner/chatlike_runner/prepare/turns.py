"""Lines become turns (one sender's consecutive messages) and turns become conversations (split at silences).

Both steps run for every kept message of the export, so they take lines in batches and loop over them plainly.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from functools import partial
from operator import itemgetter
from typing import NamedTuple

REORDER_WINDOW = 10_000


class Line(NamedTuple):
    """One kept message, its text final (masked)."""

    ts: int
    sender: str
    name: str
    text: str
    mine: bool


class Turn(NamedTuple):
    """Consecutive messages of one sender, joined by newlines; texts grows while the turn is open."""

    sender: str
    name: str
    mine: bool
    start: int
    texts: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


# Turns are made without NamedTuple's Python-level __new__: there is one for every few messages of the export.
_turn = partial(tuple.__new__, Turn)


class TimeOrder:
    """Sorts lines by time, stably, holding back the last `window` lines: exports are in id order, which is
    nearly time order. A line in order is appended; only a late one pays for an insertion, among the lines
    held back."""

    def __init__(self, window: int = REORDER_WINDOW) -> None:
        self.lines: list[Line] = []
        self.window = window

    def add(self, lines: Iterable[Line]) -> None:
        held = self.lines
        last = held[-1][0] if held else None
        for line in lines:
            ts = line[0]
            if last is None or ts >= last:
                held.append(line)
                last = ts
            else:
                held.insert(bisect_right(held, ts, lo=max(0, len(held) - self.window), key=_ts), line)

    def ready(self) -> list[Line]:
        """The lines no later line can come before any more, taken out."""
        count = len(self.lines) - self.window
        if count <= 0:
            return []
        ready = self.lines[:count]
        del self.lines[:count]
        return ready

    def rest(self) -> list[Line]:
        """All lines held, taken out (at the end of the chat)."""
        rest, self.lines = self.lines, []
        return rest


_ts = itemgetter(0)


class Conversations:
    """Groups time-ordered lines into conversations of turns.

    A line joins the previous turn when the sender is the same and at most `merge` seconds passed since that
    turn's last line (so an album, sent in one second, always stitches). More than `gap` seconds of silence,
    or a line older than the one before it, starts a new conversation.
    """

    def __init__(self, *, merge: int, gap: int) -> None:
        self.merge, self.gap = merge, gap
        self.turns: list[Turn] = []
        self.last = 0  # the time of the last line, which is also the end of the open turn

    def add(self, lines: Iterable[Line]) -> list[list[Turn]]:
        """Take the next lines; returns the conversations they ended."""
        ended: list[list[Turn]] = []
        merge, gap, turns, last = self.merge, self.gap, self.turns, self.last
        turn = turns[-1] if turns else None
        for line in lines:
            ts, sender = line[0], line[1]
            if turn is not None:
                if not 0 <= ts - last <= gap:
                    ended.append(turns)
                    turns = []
                elif turn[0] == sender and ts - last <= merge:
                    turn[4].append(line[3])
                    last = ts
                    continue
            turn = _turn((sender, line[2], line[4], ts, [line[3]]))
            turns.append(turn)
            last = ts
        self.turns, self.last = turns, last
        return ended

    def close(self) -> list[Turn] | None:
        """The last conversation, if any line came."""
        turns, self.turns = self.turns, []
        return turns or None
