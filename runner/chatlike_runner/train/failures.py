"""The failures people hit with a chat clone, measured on the replies to held-out contexts: replies that never
end, replies that repeat themselves, replies in another script than yours, lengths unlike yours, and replies
that recite a training reply of yours word for word (a leak: these are private chats)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

VERBATIM_WORDS = 8  # this many words in a row, verbatim, from a training reply of yours: memorized
SCRIPTS = {"latin": r"[A-Za-z\u00C0-\u024F]", "cyrillic": r"[\u0400-\u04FF]", "greek": r"[\u0370-\u03FF]",
           "arabic": r"[\u0600-\u06FF]", "hebrew": r"[\u0590-\u05FF]", "devanagari": r"[\u0900-\u097F]",
           "cjk": r"[\u3040-\u30FF\u4E00-\u9FFF\uAC00-\uD7AF]"}


def words(text: str) -> list[str]:
    """The words of `text`, lowercased (punctuation and emoji dropped)."""
    return re.findall(r"\w+", text.lower())


def ngrams(items: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(items[i:i + n]) for i in range(len(items) - n + 1)]


def distinct_2(texts: Sequence[str]) -> float | None:
    """Distinct word pairs over all word pairs of the replies: low means the same phrases again and again."""
    pairs = [pair for text in texts for pair in ngrams(words(text), 2)]
    return len(set(pairs)) / len(pairs) if pairs else None


def repeats_itself(text: str) -> bool:
    """Whether a word 4-gram occurs twice in one reply (a loop)."""
    return any(count > 1 for count in Counter(ngrams(words(text), 4)).values())


def script(text: str) -> str | None:
    """The script most of the letters of `text` are in (None: no letters)."""
    found = Counter(next((name for name, pattern in SCRIPTS.items() if re.match(pattern, ch)), "other")
                    for ch in text if ch.isalpha())
    return found.most_common(1)[0][0] if found else None


def length_distance(yours: Sequence[str], theirs: Sequence[str]) -> float | None:
    """The two-sample Kolmogorov–Smirnov statistic between the reply lengths, in characters: the largest gap
    between the two cumulative distributions (0: alike, 1: no overlap)."""
    from scipy.stats import ks_2samp

    if not yours or not theirs:
        return None
    return float(ks_2samp([len(t) for t in yours], [len(t) for t in theirs]).statistic)


class Verbatim:
    """Every run of VERBATIM_WORDS words of your training replies, to find them in other text."""

    def __init__(self, training_replies: Sequence[str]) -> None:
        self.replies = list(training_replies)
        self.index: dict[tuple[str, ...], int] = {}
        for number, reply in enumerate(self.replies):
            for gram in ngrams(words(reply), VERBATIM_WORDS):
                self.index.setdefault(gram, number)

    def find(self, text: str) -> dict[str, Any] | None:
        """The longest run of `text`'s words found verbatim in one training reply, when it is VERBATIM_WORDS or
        more, and that reply; else None."""
        tokens, best = words(text), None
        for start in range(len(tokens) - VERBATIM_WORDS + 1):
            number = self.index.get(tuple(tokens[start:start + VERBATIM_WORDS]))
            if number is None:
                continue
            source, end = words(self.replies[number]), start + VERBATIM_WORDS
            while end < len(tokens) and _contains(source, tokens[start:end + 1]):
                end += 1
            if best is None or end - start > best["words"]:
                best = {"words": end - start, "span": " ".join(tokens[start:end]), "training_reply": self.replies[number]}
        return best


def _contains(haystack: list[str], needle: list[str]) -> bool:
    return any(haystack[i:i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def memorized(verbatim: Verbatim, pairs: Sequence[dict], who: str) -> list[dict[str, Any]]:
    """The replies of `who` (tuned, base or real) in `pairs` that repeat a training reply of yours verbatim."""
    found = []
    for number, pair in enumerate(pairs):
        match = verbatim.find(pair[who])
        if match:
            found.append({"pair": number, "reply": pair[who], **match})
    return found


def failures(pairs: Sequence[dict], training_replies: Sequence[str] | None) -> dict[str, Any]:
    """Per model (tuned, base): the share of replies cut at the token limit, distinct-2, the share that repeat a
    4-gram, the share in another script than your reply to the same context, the length distance to yours,
    and (with the training replies) the replies that recite one. Yours are measured alike, for reference."""
    real = [p["real"] for p in pairs]
    result: dict[str, Any] = {}
    verbatim = Verbatim(training_replies) if training_replies is not None else None
    for who in ("real", "tuned", "base"):
        texts = [p[who] for p in pairs]
        scripted = [(script(p["real"]), script(p[who])) for p in pairs]
        compared = [(a, b) for a, b in scripted if a and b]
        entry: dict[str, Any] = {
            "replies": len(texts),
            "distinct_2": distinct_2(texts),
            "repeats_itself": sum(map(repeats_itself, texts)) / len(texts) if texts else None,
        }
        if who != "real":
            cut = [not p[f"{who}_ended"] for p in pairs]
            entry.update(never_ends=sum(cut) / len(cut) if cut else None,
                         other_script=sum(a != b for a, b in compared) / len(compared) if compared else None,
                         length_distance=length_distance(real, texts))
        if verbatim is not None:
            entry["memorized"] = memorized(verbatim, pairs, who)
        result[who] = entry
    result["memorization_checked"] = verbatim is not None
    result["training_replies"] = len(training_replies) if training_replies is not None else None
    return result
