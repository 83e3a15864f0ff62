"""Is it your writing? A stylometric classifier trained on the training split only: your replies against the
other people's messages in the same chats, as character 1–4-grams (case and punctuation kept: they are style)
and word 1–2-grams, weighted by TF-IDF, separated by a logistic regression (scikit-learn; nothing downloaded).

It then scores text it never saw: your held-out replies (the ceiling: how well it recognises you), the other
people's held-out messages (how often it takes them for you), and the tuned and base models' replies to the
same held-out contexts. Each score is the share attributed to you, with a 95% bootstrap interval over
conversations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

YOU, THEM = "assistant", "user"
MIN_TRAINING = 50  # fewer messages of yours (or of theirs) to learn from: a small export, said so
MIN_HELDOUT = 10  # fewer held-out replies of yours: the ceiling is too rough to lean on
ROUNDS = 1000  # bootstrap resamples, here and for eval's held-out loss


def messages_by(rows: Sequence[dict], role: str) -> list[list[str]]:
    """Per conversation, the text of each message of `role` (you: assistant; the others: user)."""
    found = []
    for row in rows:
        messages = row.get("messages") if isinstance(row, dict) else None
        found.append([m["content"] for m in messages or [] if isinstance(m, dict) and m.get("role") == role
                      and isinstance(m.get("content"), str) and m["content"].strip()])
    return found


def train(rows: Sequence[dict], seed: int) -> Any:
    """The classifier (a scikit-learn pipeline; predict gives 1 for you), fit on the training conversations."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    yours = [text for texts in messages_by(rows, YOU) for text in texts]
    theirs = [text for texts in messages_by(rows, THEM) for text in texts]
    features = FeatureUnion([
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), lowercase=False, sublinear_tf=True,
                                  min_df=2, max_features=200_000)),
        ("words", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b",
                                  sublinear_tf=True, min_df=2, max_features=100_000)),
    ])
    model = make_pipeline(features, LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed))
    return model.fit(yours + theirs, [1] * len(yours) + [0] * len(theirs))


def share(groups: Sequence[Sequence[int]], seed: int) -> dict[str, Any]:
    """The share of 1s over all groups (conversations), with a 95% interval by resampling the groups."""
    import numpy as np

    groups = [g for g in groups if len(g)]
    if not groups:
        return {"share": None, "ci95": None, "texts": 0, "conversations": 0}
    hits = np.array([sum(g) for g in groups], dtype=float)
    sizes = np.array([len(g) for g in groups], dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(groups), size=(ROUNDS, len(groups)))
    low, high = np.percentile(hits[picks].sum(axis=1) / sizes[picks].sum(axis=1), [2.5, 97.5])
    return {"share": float(hits.sum() / sizes.sum()), "ci95": [float(low), float(high)], "texts": int(sizes.sum()),
            "conversations": len(groups)}


def attributed(model: Any, groups: Sequence[Sequence[str]], seed: int) -> dict[str, Any]:
    """How much of each group's text the classifier attributes to you (`share`)."""
    flat = [text for group in groups for text in group]
    predicted = iter(model.predict(flat).tolist() if flat else [])
    return share([[next(predicted) for _ in group] for group in groups], seed)


def authorship(train_rows: Sequence[dict], heldout_rows: Sequence[dict], replies: dict[str, list[str]],
               seed: int) -> dict[str, Any]:
    """The classifier's scores: your held-out replies, the others' held-out messages, and each model's replies
    (one per held-out context in `replies`), with what they are worth (`caveats`)."""
    training = {"yours": sum(map(len, messages_by(train_rows, YOU))),
                "theirs": sum(map(len, messages_by(train_rows, THEM)))}
    too_few = {"training": training, "scores": {}, "recognises_you": False,
               "caveats": ["the training split holds too few messages of yours or of the others to learn from: "
                           "no authorship score"]}
    if min(training.values()) < 2:
        return too_few
    try:
        model = train(train_rows, seed)
    except ValueError:  # scikit-learn: no n-gram occurs twice, nothing to learn from
        return too_few
    scores = {"yours": attributed(model, messages_by(heldout_rows, YOU), seed),
              "theirs": attributed(model, messages_by(heldout_rows, THEM), seed)}
    scores.update({name: attributed(model, [[text] for text in texts], seed) for name, texts in replies.items()})
    yours, theirs = scores["yours"], scores["theirs"]
    recognises = bool(yours["ci95"] and theirs["ci95"] and yours["ci95"][0] > theirs["ci95"][1])
    caveats = []
    if min(training.values()) < MIN_TRAINING:
        caveats.append(f"a small export: {training['yours']} messages of yours and {training['theirs']} of the others "
                       f"to learn from (under {MIN_TRAINING}); the scores move a lot with a few messages")
    if yours["texts"] < MIN_HELDOUT:
        caveats.append(f"only {yours['texts']} held-out replies of yours: the ceiling is rough")
    if not recognises:
        caveats.append("the classifier does not tell your held-out replies from the others' (their intervals "
                       "overlap): the models' scores below say nothing about whether they sound like you")
    return {"training": training, "scores": scores, "recognises_you": recognises, "caveats": caveats}
