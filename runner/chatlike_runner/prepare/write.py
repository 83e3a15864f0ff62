"""Output: written to a temp folder next to the target, then moved into place; nothing half-written."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import ChatlikeError
from ..files import hidden_folder

DATASET_FILES = ("train.jsonl", "heldout.jsonl", "report.json")


def check_target(out: Path, force: bool) -> None:
    """Refuse a target that is not a folder, or one that already holds a dataset (unless force)."""
    if out.exists() and not out.is_dir():
        raise ChatlikeError(f"{out} is a file; pass -o with a folder for the dataset")
    present = [name for name in DATASET_FILES if (out / name).exists()]
    if present and not force:
        raise ChatlikeError(f"{out} already holds a dataset ({', '.join(present)}); pass --force to replace it "
                            "or -o with another folder")


@contextmanager
def staged(out: Path, force: bool) -> Iterator[Path]:
    """A temp folder next to out; on success its dataset files replace those in out, on failure it is removed."""
    check_target(out, force)
    temp = hidden_folder(out.absolute().parent, out.absolute().name, ".partial", "-o")
    try:
        yield temp
        check_target(out, force)
        _publish(temp, out)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _publish(temp: Path, out: Path) -> None:
    try:
        if not out.exists():
            os.rename(temp, out)
            return
        for name in DATASET_FILES:
            os.replace(temp / name, out / name)
    except OSError as exc:
        raise ChatlikeError(f"cannot write the dataset into {out} ({exc.strerror}); pass -o with a writable folder") \
            from None
