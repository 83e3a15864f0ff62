"""Reading a training log: the Trainer's / Axolotl's progress bar and metrics, its loss curve, a byte stream as lines."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


# The Trainer's own bar has no description: "  45%|████▌     | 45/100 [00:12<00:15,  3.60it/s]".
_BAR = re.compile(r"^\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([0-9:]+)<([0-9:]+|\?)")
# Its log dicts: "{'loss': 1.23, 'grad_norm': 0.5, 'learning_rate': 0.0002, 'epoch': 0.5}" (values may be quoted).
METRIC = re.compile(r"['\"](loss|eval_loss|learning_rate|epoch)['\"]\s*:\s*['\"]?([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))")


def progress_bar(line: str) -> bool:
    """Whether a log line is an update of the Trainer's progress bar."""
    return _BAR.match(line) is not None


def loss_curve(log: Path, logging_steps: int = 1) -> list[dict[str, float]]:
    """Loss (and eval loss) against step, from a run's log: the Trainer logs its loss every `logging_steps`
    optimizer steps (a resumed run's log goes on where the stopped one ended). Empty without a log."""
    if not log.is_file():
        return []
    points, logged = [], 0
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        found = dict(METRIC.findall(line))
        if "loss" in found:
            logged += 1
            points.append({"step": logged * logging_steps, "loss": float(found["loss"])})
        if "eval_loss" in found:
            points.append({"step": logged * logging_steps, "eval_loss": float(found["eval_loss"])})
    return points


@dataclass
class TrainingState:
    """What the log has said so far about training."""

    step: int | None = None
    total: int | None = None
    eta: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def update(self, line: str) -> bool:
        """Read one line; True when it was a progress-bar update (not worth printing on its own)."""
        bar = _BAR.match(line)
        if bar:
            step, total = int(bar.group(1)), int(bar.group(2))
            # Evaluation bars look the same; the first bar seen is training's and fixes the total.
            if self.total is None or total == self.total:
                self.step, self.total = step, total
                self.eta = None if bar.group(4) == "?" else bar.group(4)
            return True
        for name, value in METRIC.findall(line):
            self.metrics[name] = float(value)
        return False

    def summary(self, step: bool = True) -> str:
        parts = []
        if step and self.step is not None:
            parts.append(f"step {self.step}/{self.total}")
        for name, label in (("loss", "loss"), ("eval_loss", "eval loss"), ("learning_rate", "lr")):
            if name in self.metrics:
                parts.append(f"{label} {self.metrics[name]:.4g}")
        if self.eta:
            parts.append(f"eta {self.eta}")
        return "  ".join(parts)


def texts(chunks: Iterable[bytes]) -> Iterator[str]:
    """Decode a byte stream as UTF-8, also where a character is split between chunks."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    for chunk in chunks:
        yield decoder.decode(chunk)
    yield decoder.decode(b"", final=True)


def lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Split a byte stream into text lines at \n and at tqdm's \r, across chunk borders."""
    pending = ""
    for text in texts(chunks):
        pending += text
        *complete, pending = re.split(r"\r\n|\r|\n", pending)
        yield from (line for line in complete if line.strip())
    if pending.strip():
        yield pending
