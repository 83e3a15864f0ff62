"""A run's record: its manifest.json in OUT, read once, and the copies of a run that OUT holds (the finished
one, OUT/<run-id>/; a stopped one, OUT/<run-id>.partial/), found by the run's id or the start of it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import constants as c
from .core.errors import ChatlikeError


@dataclass(frozen=True)
class Ending:
    """How a run ended (or stands, for a stopped one), as its manifest records it: read from its container on an
    engine, or from what chatlike-train wrote on a rented box."""

    status: str  # succeeded, failed, oom or stopped
    exit_code: int | None
    oom_killed: bool = False
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def complete(self) -> bool:
        """Ended on its own: its outputs will not change any more."""
        return self.status in c.ENDED


@dataclass(frozen=True)
class Record:
    """A copy of a run in OUT and what its manifest says."""

    folder: Path
    data: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.data["run_id"]

    @property
    def flags(self) -> dict[str, Any]:
        flags = self.data.get("flags")
        return flags if isinstance(flags, dict) else {}

    @property
    def rented(self) -> bool:
        """Whether it ran on a rented box (`start --on`)."""
        return bool(self.flags.get("on"))

    def published_as(self, run_id: str) -> bool:
        """Whether this is the finished copy of `run_id` (the manifest says it is complete, and names that run)."""
        return self.run_id == run_id and self.data.get("complete") is True

    @property
    def trained_on(self) -> dict[str, str]:
        """The sha256 of every input the run staged (its datasets and its config as written), by staged name: what a
        resumed or reproduced run must stage again, unchanged."""
        return {**self.data.get("dataset_sha256", {}), c.ORIGINAL_CONFIG_NAME: self.data.get("config_sha256")}


def load(folder: Path) -> Record | None:
    """The record in `folder`, or None when it holds no readable manifest of a run."""
    try:
        data = json.loads((folder / c.RUN_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Record(folder, data) if isinstance(data, dict) and isinstance(data.get("run_id"), str) else None


def finished(out_dir: Path, ref: str, hint: str) -> Record:
    """The one finished copy of run `ref` in OUT (its manifest says it is complete and names the folder's run);
    `hint` says what to do when there is none or several."""
    found = [record for path in sorted(out_dir.glob(f"{ref}*")) if path.is_dir() and not path.name.endswith(".partial")
             and (record := load(path)) is not None and record.published_as(path.name)]
    if len(found) != 1:
        raise ChatlikeError(f"{'no' if not found else 'several'} finished run {ref!r} in {out_dir}; {hint}")
    return found[0]


def stopped(out_dir: Path, ref: str) -> list[Record]:
    """Every stopped copy of run `ref` in OUT (OUT/<run-id>.partial/ with a readable manifest)."""
    return [record for path in sorted(out_dir.glob(f"{ref}*.partial")) if (record := load(path)) is not None]
