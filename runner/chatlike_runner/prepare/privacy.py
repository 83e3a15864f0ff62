"""Privacy: mask emails, phone numbers, bank cards and @mentions; give contacts stable pseudonyms.

Telegram already marks most of these as entities; patterns catch the rest in plain text.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable

MASKS = {"email": "[email]", "phone": "[phone]", "card": "[card]", "mention": "[mention]"}
_ENTITY_KINDS = {"email": "email", "phone": "phone", "bank_card": "card", "mention": "mention",
                 "mention_name": "mention"}
# One pass over the text; at a given position the first alternative wins, so emails go before mentions.
_PII = re.compile(
    r"(?P<email>[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"
    r"|(?P<card>(?<![\d+])\d(?:[ -]?\d){12,18}(?!\d))"
    r"|(?P<phone>(?<![\w+])(?:\+\d[\d ().-]{6,}\d|\(?\d[\d ().-]{7,}\d)(?!\w))"
    r"|(?P<mention>(?<![\w@.])@[A-Za-z]\w{3,31})"
)
# Every alternative above needs a digit or an @: most messages have neither, and skip the full pattern.
CANDIDATE = re.compile(r"[\d@]")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")

PSEUDONYMS = (
    "Alex", "Blair", "Casey", "Dana", "Eden", "Finley", "Gray", "Harper", "Indigo", "Jordan", "Kai", "Lane",
    "Morgan", "Noel", "Oakley", "Parker", "Quinn", "Reese", "Sage", "Taylor", "Umber", "Vale", "Wren", "Yael",
    "Zion", "Arden", "Briar", "Cody", "Drew", "Ellis", "Frankie", "Gale", "Hollis", "Jamie", "Kendall", "Logan",
    "Marlow", "Nico", "Onyx", "Peyton", "Remy", "Rowan", "Skyler", "Tatum", "Toby", "Val", "Winter", "Jules",
)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _is_phone(text: str) -> bool:
    digits = sum(c.isdigit() for c in text)
    return 7 <= digits <= 15 and not _DATE.fullmatch(text)


def _kind(match: re.Match[str]) -> str | None:
    """What the match is, after the checks a pattern cannot make (Luhn for cards, digit count for phones)."""
    kind, text = match.lastgroup, match.group()
    if kind == "card" and not _luhn("".join(c for c in text if c.isdigit())):
        kind = "phone"
    if kind == "phone" and not _is_phone(text):
        return None
    return kind


def mask_plain(text: str, counts: Counter[str]) -> str:
    """Replace what looks like an email, bank card, phone number or @mention in free text."""

    if not CANDIDATE.search(text):
        return text

    def replace(match: re.Match[str]) -> str:
        kind = _kind(match)
        if kind is None:
            return match.group()
        counts[kind] += 1
        return MASKS[kind]

    return _PII.sub(replace, text)


def mask(pieces: Iterable[tuple[str, str]], counts: Counter[str]) -> str:
    """The message text with marked entities replaced by their mask and the rest scanned with patterns."""
    out = []
    for kind, text in pieces:
        masked_as = _ENTITY_KINDS.get(kind)
        if masked_as is not None:
            counts[masked_as] += 1
            out.append(MASKS[masked_as])
        else:
            out.append(mask_plain(text, counts))
    return "".join(out)


class Pseudonyms:
    """Stable pseudonyms for contacts: the same export gives every contact the same name on every run.

    A contact's real name, and each of its words of 3 letters or more, is replaced wherever it is written.
    """

    def __init__(self) -> None:
        self._by_key: dict[str, str] = {}
        self._taken: set[str] = set()
        self._words: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None

    def of(self, key: str, real_name: str | None) -> str:
        """The pseudonym for key (a from_id), picked by a hash of it and unique within this export."""
        if key not in self._by_key:
            start = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
            step = 0
            while (name := self._candidate(start, step)) in self._taken:
                step += 1
            self._by_key[key] = name
            self._taken.add(name)
        pseudonym = self._by_key[key]
        for word in self._name_words(real_name or "") - self._words.keys():
            self._words[word] = pseudonym
            self._pattern = None
        return pseudonym

    def scrub(self, text: str, counts: Counter[str]) -> str:
        """Replace the real names of the contacts seen so far."""
        if not self._words:
            return text
        if self._pattern is None:
            words = sorted(self._words, key=lambda w: (-len(w), w))
            self._pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)")

        def replace(match: re.Match[str]) -> str:
            counts["name"] += 1
            return self._words[match.group()]

        return self._pattern.sub(replace, text)

    @staticmethod
    def _candidate(start: int, step: int) -> str:
        base = PSEUDONYMS[(start + step) % len(PSEUDONYMS)]
        return base if step < len(PSEUDONYMS) else f"{base} {step // len(PSEUDONYMS) + 1}"

    @staticmethod
    def _name_words(name: str) -> set[str]:
        words = {w for w in name.split() if len(w) >= 3}
        if name.strip():
            words.add(name.strip())
        return words
