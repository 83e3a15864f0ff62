"""Held-out split by time, never at random: the newest conversations are kept for evaluation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

DAY = 86_400


def heldout_flags(chats: Sequence[int], conversations: Sequence[int], starts: Sequence[int], *,
                  share: float, days: float | None) -> Iterator[bool]:
    """For each sample, in order, whether it is held out.

    With days, a sample is held out when its conversation started in the last `days` days of the export (counted
    back from the newest conversation). Otherwise the newest `share` percent of each chat's conversations are
    held out (rounded half up, so a chat with 5 conversations gives 1 at 10%). Samples cut from one conversation
    stay together.
    """
    if days is not None:
        cutoff = max(starts, default=0) - days * DAY
        yield from (start >= cutoff for start in starts)
        return
    totals = Counter()
    for chat, conversation in zip(chats, conversations):
        totals[chat] = max(totals[chat], conversation + 1)
    for chat, conversation in zip(chats, conversations):
        held = int(totals[chat] * share / 100 + 0.5)
        yield conversation >= totals[chat] - held
