"""chatlike-train eval: is the tuned model you? Held-out loss of base and tuned, replies to held-out contexts side
by side, authorship (`authorship`), the failures people hit (`failures`) and style.

One model load: the tuned model scores and replies; the same model with its adapter switched off is the base.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..core.trainlog import loss_curve
from .authorship import ROUNDS as BOOTSTRAP
from .authorship import YOU, authorship, messages_by
from .errors import TrainError
from .failures import SCRIPTS, failures
from .tuned import Tuned, tokenized

_EMOJI = r"[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0F]"
_SCRIPTS = {name: SCRIPTS[name] for name in ("latin", "cyrillic")}
# Replies generated together, in one left-padded batch per model: a small model's step on a CPU costs little more for
# 16 sequences than for one (the preview's 16 held-out contexts, tuned and base, 2 cores: 100 s one by one, 45 s so).
BATCH = 16


def _now(number: int, total: int) -> bool:
    """Whether to report progress at `number` of `total`: about every 5%, and at the end."""
    return number == total or number % max(1, total // 20) == 0


def read_heldout(path: Path) -> list[dict]:
    """The held-out conversations, one JSON object per line (TrainError when there are none)."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows = [json.loads(line) for line in lines]
    except (OSError, ValueError) as exc:
        raise TrainError(f"held-out file {path} cannot be read ({exc}); write it with `chatlike-runner prepare`") from None
    if not rows:
        raise TrainError(f"held-out file {path} is empty: nothing to evaluate on; prepare with --heldout-share above 0")
    return rows


def token_nll(model: Any, ids: Sequence[int], labels: Sequence[int], device: str) -> list[float]:
    """Negative log-likelihood of each labelled token (labels != -100) given the tokens before it."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([list(ids)], device=device)).logits[0, :-1].float()
        targets = torch.tensor(list(labels[1:]), device=device)
        mask = targets != -100
        picked = torch.log_softmax(logits[mask], dim=-1).gather(1, targets[mask].unsqueeze(1)).squeeze(1)
    return (-picked).tolist()


def replies(labels: Sequence[int]) -> list[tuple[int, int]]:
    """(start, end) positions in the shifted labels of each labelled span: one per reply of yours."""
    spans, start = [], None
    for position, label in enumerate(labels[1:]):
        if label != -100 and start is None:
            start = position
        elif label == -100 and start is not None:
            spans.append((start, position))
            start = None
    if start is not None:
        spans.append((start, len(labels) - 1))
    return spans


def score(tuned: Tuned, samples: list[tuple[list[int], list[int]]], say: Callable[[str], None]) -> list[dict]:
    """Per conversation and per reply: tokens and summed NLL, tuned and base."""
    scored = []
    for number, (ids, labels) in enumerate(samples, 1):
        tuned_nll = token_nll(tuned.model, ids, labels, tuned.device)
        with tuned.model.disable_adapter():
            base_nll = token_nll(tuned.model, ids, labels, tuned.device)
        offset, per_reply = 0, []
        for start, end in replies(labels):
            count = end - start
            per_reply.append({"tokens": count, "tuned_nll": sum(tuned_nll[offset:offset + count]),
                              "base_nll": sum(base_nll[offset:offset + count])})
            offset += count
        scored.append({"tokens": len(tuned_nll), "tuned_nll": sum(tuned_nll), "base_nll": sum(base_nll),
                       "replies": per_reply})
        if _now(number, len(samples)):
            say(f"scoring {number}/{len(samples)} held-out conversations")
    return scored


def bootstrap(scored: list[dict], seed: int, rounds: int = BOOTSTRAP) -> dict[str, Any]:
    """Mean per-token NLL of tuned and base, their difference, and 95% intervals by resampling conversations."""
    import numpy as np

    tokens = np.array([s["tokens"] for s in scored], dtype=float)
    tuned = np.array([s["tuned_nll"] for s in scored])
    base = np.array([s["base_nll"] for s in scored])
    picks = np.random.default_rng(seed).integers(0, len(scored), size=(rounds, len(scored)))
    counts = tokens[picks].sum(axis=1)
    draws = {"tuned": tuned[picks].sum(axis=1) / counts, "base": base[picks].sum(axis=1) / counts}
    draws["improvement"] = draws["base"] - draws["tuned"]
    means = {"tuned": tuned.sum() / tokens.sum(), "base": base.sum() / tokens.sum()}
    means["improvement"] = means["base"] - means["tuned"]
    result = {}
    for name, mean in means.items():
        low, high = np.percentile(draws[name], [2.5, 97.5])
        result[name] = {"nll": float(mean), "ci95": [float(low), float(high)]}
        if name != "improvement":
            result[name]["perplexity"] = math.exp(float(mean))
    return result


def generate(tuned: Tuned, contexts: Sequence[list[dict[str, str]]], seed: int, max_new_tokens: int,
             temperature: float = 0.7) -> list[tuple[str, bool]]:
    """The model's replies (as it is: adapter on or off) to `contexts`, sampled in one batch (left-padded) with a
    fixed seed, and whether each ended by itself (an end-of-turn token) rather than at `max_new_tokens`."""
    import torch

    prompts = [tuned.prompt(messages) for messages in contexts]
    width = max(map(len, prompts))
    pad = tuned.tokenizer.pad_token_id if tuned.tokenizer.pad_token_id is not None else tuned.stop_ids[0]
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=tuned.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=tuned.device)
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = tuned.model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature,
                                   top_p=0.9, max_new_tokens=max_new_tokens, eos_token_id=tuned.stop_ids,
                                   pad_token_id=pad)
    replies = []
    for row in out[:, width:].tolist():
        end = next((i for i, token in enumerate(row) if token in tuned.stop_ids), None)
        new = row if end is None else row[:end]
        replies.append((tuned.tokenizer.decode(new, skip_special_tokens=True).strip(), end is not None))
    return replies


def contexts(rows: list[dict]) -> list[dict]:
    """One per held-out conversation with a reply of yours after something else: the conversation before your
    last reply, and that reply, with the context's id (the same context has the same id in every eval)."""
    found = []
    for row in rows:
        messages = row.get("messages") or []
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        if last:
            context, real = messages[:last], messages[last]["content"]
            digest = hashlib.sha256(json.dumps(context, sort_keys=True).encode()).hexdigest()[:16]
            found.append({"id": digest, "context": context, "real": real})
    return found


def side_by_side(tuned: Tuned, items: list[dict], seed: int, max_new_tokens: int,
                 say: Callable[[str], None]) -> list[dict]:
    """For each held-out context: your real reply, and the tuned and the base model's replies to the same
    context (and whether each ended by itself), BATCH contexts at a time, each batch with the same seed for both."""
    pairs = []
    for start in range(0, len(items), BATCH):
        batch = items[start:start + BATCH]
        contexts = [item["context"] for item in batch]
        tuned_replies = generate(tuned, contexts, seed + start, max_new_tokens)
        with tuned.model.disable_adapter():
            base_replies = generate(tuned, contexts, seed + start, max_new_tokens)
        for item, (reply, reply_ended), (base, base_ended) in zip(batch, tuned_replies, base_replies):
            pairs.append({**item, "tuned": reply, "base": base, "tuned_ended": reply_ended, "base_ended": base_ended})
        say(f"replying {len(pairs)}/{len(items)} to held-out contexts, tuned and base")
    return pairs


def read_training(folder: Path | None) -> list[dict] | None:
    """The run's training conversations (every *.jsonl and *.json file of JSON lines under `folder`), or None when
    there is no folder."""
    if folder is None or not folder.is_dir():
        return None
    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".jsonl", ".json") and p.is_file()):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # validate refused such lines before training: none was trained on
            if isinstance(row, dict):
                rows.append(row)
    return rows


def style(texts: Sequence[str]) -> dict[str, float | None]:
    """Reply length, emoji and question rates, and the share of letters in each script."""
    if not texts:
        return {"replies": 0, "chars_mean": None, "chars_median": None, "emoji_rate": None, "question_rate": None}
    letters = [ch for text in texts for ch in text if ch.isalpha()]
    shares = {name: (sum(1 for ch in letters if re.match(pattern, ch)) / len(letters) if letters else 0.0)
              for name, pattern in _SCRIPTS.items()}
    return {
        "replies": len(texts),
        "chars_mean": statistics.fmean(len(t) for t in texts),
        "chars_median": statistics.median(len(t) for t in texts),
        "emoji_rate": sum(1 for t in texts if re.search(_EMOJI, t)) / len(texts),
        "question_rate": sum(1 for t in texts if "?" in t) / len(texts),
        **{f"script_{name}": share for name, share in shares.items()},
        "script_other": 1.0 - sum(shares.values()) if letters else 0.0,
    }


def evaluate(tuned: Tuned, run_dir: Path, heldout: Path, *, training: Path | None, samples: int, seed: int,
             max_new_tokens: int, say: Callable[[str], None], replies_wanted: int = 0) -> dict[str, Any]:
    """The whole report, as report.json holds it (without its verdict: `report.verdict` writes it). Replies to
    `samples` held-out contexts, or `replies_wanted` when more (a blind test's pairs)."""
    rows = read_heldout(heldout)
    kept, too_long = tokenized(tuned.cfg, tuned.tokenizer, rows)
    if not kept:
        raise TrainError(f"no held-out conversation of {heldout} fits sequence_len {tuned.cfg.sequence_len} "
                         "with a reply of yours in it: nothing to score")
    scored = score(tuned, kept, say)
    nll = bootstrap(scored, seed)
    pairs = side_by_side(tuned, contexts(rows)[:max(samples, replies_wanted)], seed, max_new_tokens, say)
    train_rows = read_training(training)
    yours = None if train_rows is None else [text for texts in messages_by(train_rows, YOU) for text in texts]
    replies = {name: [p[name] for p in pairs] for name in ("tuned", "base")}
    return {
        "heldout": {"path": str(heldout), "sha256": hashlib.sha256(heldout.read_bytes()).hexdigest(),
                    "conversations": len(rows), "scored": len(kept), "too_long": too_long,
                    "replies": sum(len(s["replies"]) for s in scored), "tokens": sum(s["tokens"] for s in scored)},
        "nll": nll,
        "conversations": scored,
        "side_by_side": pairs,
        "authorship": authorship(train_rows, rows, replies, seed) if train_rows is not None else None,
        "failures": failures(pairs, yours),
        "style": {name: style([p[name] for p in pairs]) for name in ("real", "tuned", "base")},
        "training_curve": loss_curve(run_dir / "logs" / "train.log", int(tuned.cfg.logging_steps or 1)),
        "settings": {"samples": len(pairs), "seed": seed, "max_new_tokens": max_new_tokens, "temperature": 0.7,
                     "top_p": 0.9, "bootstrap": BOOTSTRAP, "device": tuned.device, "base_model": tuned.cfg.base_model,
                     "load_in_4bit": bool(tuned.cfg.load_in_4bit and tuned.device == "cuda"),
                     "training_conversations": None if train_rows is None else len(train_rows)},
    }
