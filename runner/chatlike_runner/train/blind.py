"""The blind test, judged by the one person who knows: for held-out contexts, your real reply and the tuned
model's in random order: which did you write? Optionally a second round: tuned against base, which sounds
more like you? Contexts are drawn with a fresh seed, and a context judged in an earlier test of the run is
never shown again (nor one context in both rounds).

Questions go out as JSON events ({"question": …}); answers come back one line each: 1, 2 or s (skip).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

ROUNDS = {"you": ("real", "tuned", "Which one did you write?"),
          "base": ("tuned", "base", "Which one sounds more like you?")}
CONTEXT_SHOWN = 6  # the last messages of the conversation so far


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def questions(pairs: Sequence[dict], judged: set[str], count: int, versus_base: bool, seed: int) -> list[dict]:
    """Up to `count` questions a round, each on a context never judged before (nor shown twice now), in an order
    drawn with `seed`. A pair whose two replies read the same is not asked: there is nothing to tell apart."""
    rng = random.Random(seed)
    fresh = list({p["id"]: p for p in pairs if p["id"] not in judged}.values())  # one pair per context
    rng.shuffle(fresh)
    asked: list[dict] = []
    for name in ["you"] + (["base"] if versus_base else []):
        first, second, _ = ROUNDS[name]
        used = {q["id"] for q in asked}
        chosen = [p for p in fresh if p["id"] not in used and not _same(p[first], p[second])][:count]
        for pair in chosen:
            order = [first, second]
            rng.shuffle(order)
            asked.append({"round": name, "id": pair["id"], "order": order, "context": pair["context"],
                          "replies": [pair[who] for who in order]})
    return asked


def ask(asked: list[dict], answers: Iterator[str], emit: Callable[[dict], None]) -> list[dict]:
    """Each question out, its answer in; stops early when the answers end. Returns the answered questions with
    who was chosen ("skip" for a skip)."""
    answered = []
    for number, question in enumerate(asked, 1):
        rounds = [q for q in asked if q["round"] == question["round"]]
        emit({"question": {"round": question["round"], "number": rounds.index(question) + 1, "of": len(rounds),
                           "ask": ROUNDS[question["round"]][2], "context": question["context"][-CONTEXT_SHOWN:],
                           "replies": question["replies"]}})
        answer = next(answers, None)
        if answer is None:
            break
        answer = answer.strip().lower()
        chose = question["order"][int(answer) - 1] if answer in ("1", "2") else "skip"
        answered.append({key: question[key] for key in ("round", "id", "order", "replies")} | {
            "answer": answer if chose != "skip" else "s", "chose": chose})
    return answered


def exact(hits: int, trials: int) -> dict[str, Any]:
    """The share of hits, its exact (Clopper–Pearson) 95% interval and the two-sided exact binomial p-value
    against a coin's 50%."""
    from scipy.stats import binomtest

    if trials == 0:
        return {"hits": 0, "trials": 0, "share": None, "ci95": None, "p_value": None}
    test = binomtest(hits, trials, 0.5)
    interval = test.proportion_ci(confidence_level=0.95, method="exact")
    return {"hits": hits, "trials": trials, "share": hits / trials, "ci95": [float(interval.low), float(interval.high)],
            "p_value": float(test.pvalue)}


def result(asked: list[dict], answered: list[dict], seed: int, judged_before: int,
           replies_seed: int | None = None) -> dict[str, Any]:
    """The test as blind.json holds it: each round's score, every answer, and what makes it repeatable (the
    draw's seed, and the seed the replies were sampled with)."""
    rounds = {}
    for name in dict.fromkeys(q["round"] for q in asked):
        mine = [a for a in answered if a["round"] == name]
        judged = [a for a in mine if a["chose"] != "skip"]
        # Round "you": the model passes when you take its reply for yours. Round "base": tuned is preferred.
        rounds[name] = {"asked": sum(q["round"] == name for q in asked), "answered": len(mine),
                        "skipped": len(mine) - len(judged), **exact(sum(a["chose"] == "tuned" for a in judged),
                                                                   len(judged))}
    return {"seed": seed, "replies_seed": replies_seed, "rounds": rounds, "answers": answered, "judged": [a["id"] for a in answered],
            "complete": len(answered) == len(asked), "not_shown_again": judged_before}
