"""Reproduce: run a finished run again from what it recorded — the same image (by registry digest, else by id),
its config as it was staged (OUT/<run-id>/inputs/), and the same data, checked by sha256 — then set the first
steps' losses of both runs side by side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import records, registry, runs, skytask
from .core import constants as c
from .core.errors import ChatlikeError
from .core.trainlog import loss_curve
from .events import Event, Note, Outcome
from .plan import RunPlan, build_plan, recorded, staged_path
from .skytask import Rented

FIRST_STEPS = 5
LOSS_TOLERANCE = 0.01  # CPU training here is not bit-for-bit deterministic: two runs drift by ~1e-3 by step 5


def source(out_dir: Path, ref: str) -> records.Record:
    """The finished run to reproduce: its id (or the start of it) in OUT, or the path of its manifest."""
    given = Path(ref)
    record = records.load(given.parent if given.name == c.RUN_MANIFEST else given) or records.finished(
        out_dir, ref, "give a run id or the path of a run's manifest.json")
    if not (record.folder / c.RUN_INPUTS / c.CONFIG_NAME).is_file():
        raise ChatlikeError(f"{record.folder} has no {c.RUN_INPUTS}/{c.CONFIG_NAME} (runs copied home before this "
                            "version of chatlike-runner do not keep their staged config); start it again with its "
                            "config instead")
    return record


def image_of(manifest: dict[str, Any], image: str | None) -> str:
    """The image the run ran: a registry digest it was pushed under, else its id on the engine."""
    recorded = manifest.get("image") or {}
    return image or next(iter(recorded.get("digests") or []), None) or recorded["id"]


def plan_again(folder: Path, manifest: dict[str, Any], out_dir: Path, host: str | None, image: str | None) -> RunPlan:
    """A new run of the recorded one: its original config staged as it was, its datasets where they were, its image
    and flags, through build_plan's checks. Not estimated again: the run has run (or was started past the check)."""
    flags = manifest.get("flags") or {}
    original = folder / c.RUN_INPUTS / c.ORIGINAL_CONFIG_NAME
    if hashlib.sha256(original.read_bytes()).hexdigest() != manifest.get("config_sha256"):
        raise ChatlikeError(f"{original} is not the config run {manifest['run_id']} staged (its sha256 differs)")
    names: set[str] = set()
    data = []
    for path in map(Path, flags.get("data") or []):
        if not path.is_file():
            raise ChatlikeError(f"dataset {path} of run {manifest['run_id']} is not there any more; restore it")
        data.append(staged_path(path, names))
    config_text = (folder / c.RUN_INPUTS / c.CONFIG_NAME).read_text(encoding="utf-8")
    return build_plan(original, image=image_of(manifest, image), staged_as=(config_text, tuple(data)),
                      reproduces=manifest["run_id"], **recorded(flags, out_dir, host))


def first_losses(folder: Path | None) -> list[float]:
    if folder is None:
        return []
    return [p["loss"] for p in loss_curve(folder / "logs" / "train.log") if "loss" in p][:FIRST_STEPS]


def rented_image(manifest: dict[str, Any], image: str | None) -> str:
    """The run's image by registry digest, for a rented box: given, recorded, or the last push of the same image."""
    recorded = image_of(manifest, image)
    if registry.is_digest(recorded):
        return skytask.launch_image(recorded, None)
    pushed = registry.last_pushed()
    if pushed and pushed.get("image_id") == recorded:
        return skytask.launch_image(None, pushed)
    raise ChatlikeError(f"run {manifest['run_id']}'s image {recorded[:19]} was never pushed, and a rented box can only "
                        f"pull from a registry: `chatlike-runner push REGISTRY/NAME:TAG --image {recorded}`, then "
                        "reproduce again")


def reproduce(host: str | None, ref: str, out_dir: Path, image: str | None, stop_timeout: int = c.STOP_TIMEOUT,
              where: Rented | None = None, dry_run: bool = False) -> Iterator[Event]:
    """The run again (here, on `host`, or on the rented box `where`), its inputs checked against the original's;
    then its first losses beside the original's."""
    record = source(out_dir, ref)
    folder, manifest = record.folder, record.data
    if where is not None:
        image = rented_image(manifest, image)
    plan = plan_again(folder, manifest, out_dir, host, image)
    expected = record.trained_on
    yield Note(f"reproducing run {manifest['run_id']} as run {plan.run_id}: image {plan.image}, its staged config, "
               "its data checked by sha256")
    for event in runs.start(plan, stop_timeout, expected, where=where, dry_run=dry_run):
        if isinstance(event, Outcome) and event.status == "succeeded":
            yield compared(first_losses(folder), first_losses(event.path), manifest["run_id"])
        yield event


def compared(before: list[float], again: list[float], run_id: str) -> Note:
    """The first steps' losses of both runs, and whether they agree within LOSS_TOLERANCE."""
    shown = "; ".join(f"{a:.4f} / {b:.4f}" for a, b in zip(before, again, strict=False))
    if not before or len(before) != len(again):
        return Note(f"first losses (run {run_id} / this run): {shown or 'none logged'}: not comparable", warning=True)
    worst = max(abs(a - b) for a, b in zip(before, again, strict=True))
    same = worst <= LOSS_TOLERANCE
    return Note(f"first {len(before)} steps' losses (run {run_id} / this run): {shown}: "
                f"{'the same' if same else 'different'} within {LOSS_TOLERANCE} (largest difference {worst:.2g})",
                warning=not same)
