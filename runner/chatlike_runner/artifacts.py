"""Artifacts: a run's folder at home, its manifest, and the one rename that publishes it.

collect.py fills a hidden folder next to the destination; only when everything is there, manifest
last, is the folder renamed to its final name. A run that has not ended on its own (a
snapshot of a running run, or one stopped by Ctrl-C) lands in `<run-id>.partial`, never under the
name of a finished run.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import __version__
from . import records
from .core import constants as c
from .core.errors import ChatlikeError
from .files import hidden_folder

MANIFEST = c.RUN_MANIFEST
CONTAINER_LOG = "logs/container.log"


def parse_sums(text: str) -> dict[str, str]:
    """`sha256  name` lines -> {name: sha256}."""
    sums = {}
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        if name:
            sums[name] = digest
    return sums


def manifest(
    *,
    run_id: str,
    flags: Mapping[str, Any],
    ending: records.Ending,
    image: dict[str, Any],
    engine: dict[str, Any],
    inputs: dict[str, str],
    files: list[dict[str, Any]],
    rented: dict[str, Any] | None = None,
    base_model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's record: what ran, on what (`rented`: the provider, region, machine and hourly price of a rented
    box), from which base model (`base_model`: base_model() of its outputs), with which inputs, and how it ended. No
    secret values."""
    return {
        **({"rented": rented} if rented else {}),
        "run_id": run_id,
        "status": ending.status,
        "complete": ending.complete,
        "exit_code": ending.exit_code,
        "oom_killed": ending.oom_killed,
        "started_at": ending.started_at,
        "finished_at": ending.finished_at,
        "collected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "image": image,
        "base_model": base_model,
        "config_sha256": inputs.get(c.ORIGINAL_CONFIG_NAME),
        "rendered_config_sha256": inputs.get(c.CONFIG_NAME),
        "dataset_sha256": {name: digest for name, digest in inputs.items() if name.startswith("data/")},
        "flags": dict(flags),
        "engine": engine,
        "runner": {"version": __version__, "python": platform.python_version(), "platform": sys.platform},
        "files": files,
    }


def base_model(outputs: Path) -> dict[str, Any] | None:
    """The base model a run trained, as its train-manifest.json names it (with where chatlike's own small model came
    from); None where training never started."""
    try:
        return json.loads((outputs / c.TRAIN_MANIFEST).read_text(encoding="utf-8")).get("base_model")
    except (OSError, ValueError, AttributeError):
        return None


def destination(out_dir: Path, run_id: str, complete: bool) -> Path:
    return out_dir / (run_id if complete else f"{run_id}.partial")


def is_published(path: Path, run_id: str) -> bool:
    """Whether `path` holds the finished copy of `run_id` (its manifest says so)."""
    record = records.load(path)
    return record is not None and record.published_as(run_id)


def publish(
    out_dir: Path,
    run_id: str,
    complete: bool,
    fill: Callable[[Path], dict[str, Any]],
    retry: str | None = None,
) -> Path:
    """Build the run's folder in a hidden temporary folder with `fill`, then rename it into place.

    `fill(tmp)` writes the artifacts and returns the manifest. A finished run's folder is never
    replaced; a `.partial` snapshot is replaced by a newer one, and removed once the finished run
    is published. `retry`: what tries again after a failure (default: `chatlike-runner fetch RUN`).
    """
    final = destination(out_dir, run_id, complete)
    if complete and final.exists():
        raise ChatlikeError(f"{final} already exists and is not run {run_id}'s copy; move it away, or pass --out")

    def fill_with_manifest(tmp: Path) -> None:
        record = fill(tmp)
        (tmp / MANIFEST).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    publish_folder(final, fill_with_manifest, f"copying run {run_id} out", retry or f"`chatlike-runner fetch {run_id}`")
    if complete:
        shutil.rmtree(destination(out_dir, run_id, False), ignore_errors=True)
    return final


def publish_folder(final: Path, fill: Callable[[Path], None], action: str, retry: str) -> None:
    """Fill a hidden folder next to `final`, then rename it to `final` in one step (a folder already there is
    replaced whole). On failure nothing is published; `retry` names the command that tries again."""
    tmp = hidden_folder(final.parent, final.name, ".incoming", "--out")
    try:
        fill(tmp)
        _give_to_invoking_user(tmp)
        os.chmod(tmp, 0o755)
        old = None
        if final.exists():
            old = hidden_folder(final.parent, final.name, ".old", "--out")
            os.rename(final, old / "snapshot")
        os.rename(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise ChatlikeError(f"no space left in {final.parent} while {action}; nothing was published. "
                                f"Free some space and run {retry}") from None
        raise ChatlikeError(f"{action} to {final.parent} failed ({exc}); nothing was published") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def record(run_dir: Path, key: str, entry: dict[str, Any]) -> None:
    """Append `entry` to the list `key` of a published run's manifest (written whole, then renamed)."""
    path = run_dir / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest[key] = [*manifest.get(key, []), entry]
    temp = path.with_name(f".{MANIFEST}.{os.getpid()}")
    temp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _give_to_invoking_user(temp)
    os.replace(temp, path)


def _give_to_invoking_user(root: Path) -> None:
    """Under sudo, hand the files to the user who ran sudo rather than to root."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if not uid or not gid or not hasattr(os, "geteuid") or os.geteuid() != 0:  # no geteuid on Windows
        return
    for path in [root, *root.rglob("*")]:
        os.lchown(path, int(uid), int(gid))
