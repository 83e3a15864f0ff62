"""Stage: the config and dataset as one streamed tar for the input volume, hashed on the way.

A remote engine cannot see host paths, so everything travels through `put_archive`. The tar is
produced chunk by chunk (a single large bytes object over ssh is quadratic, and memory must stay
bounded), and each file's sha256 is computed from the very bytes that are sent.
"""

from __future__ import annotations

import hashlib
import tarfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from .core import constants as c
from .core.errors import ChatlikeError
from .plan import JobPlan, RunPlan

CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE


def _header(
    name: str, *, size: int = 0, directory: bool = False, mtime: float | None = None, owner: tuple[int, int] = (0, 0)
) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.uid, info.gid = owner
    info.size = size
    info.mtime = int(time.time() if mtime is None else mtime)
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def _file(name: str, path: Path, digests: dict[str, str], owner: tuple[int, int] = (0, 0)) -> Iterator[bytes]:
    stat = path.stat()
    yield _header(name, size=stat.st_size, mtime=stat.st_mtime, owner=owner)
    digest, sent = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(min(CHUNK, stat.st_size - sent)):
            digest.update(chunk)
            sent += len(chunk)
            yield chunk
    if sent != stat.st_size:
        raise ChatlikeError(f"{path} changed while it was being staged; let whatever writes it finish, then retry")
    yield _padding(sent)
    digests[name] = digest.hexdigest()


def _tree(
    name: str, path: Path, digests: dict[str, str], owner: tuple[int, int] = (0, 0), skip: frozenset[str] = frozenset()
) -> Iterator[bytes]:
    if not path.is_dir():
        yield from _file(name, path, digests, owner)
        return
    if name != ".":
        yield _header(name, directory=True, owner=owner)
    for child in sorted(path.iterdir()):
        child_name = child.name if name == "." else f"{name}/{child.name}"
        if child_name not in skip:
            yield from _tree(child_name, child, digests, owner, skip)


def sums_text(digests: dict[str, str]) -> bytes:
    """SHA256SUMS of what was staged: `sha256  name` lines in name order."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(digests.items())).encode("utf-8")


def staged_configs(plan: RunPlan, digests: dict[str, str]) -> dict[str, bytes] | None:
    """The configs and SHA256SUMS a run was staged with, rebuilt here rather than read back from the engine; None
    when the original config changed on disk since (then the engine's copy is the one to keep)."""
    original = plan.config_path.read_bytes() if plan.config_path.is_file() else b""
    if hashlib.sha256(original).hexdigest() != digests.get(c.ORIGINAL_CONFIG_NAME):
        return None
    return {c.CONFIG_NAME: plan.config_text.encode("utf-8"), c.ORIGINAL_CONFIG_NAME: original,
            c.INPUT_SUMS: sums_text(digests)}


def _sums(digests: dict[str, str]) -> Iterator[bytes]:
    """SHA256SUMS of what was staged, then the archive's end."""
    sums = sums_text(digests)
    yield _header(c.INPUT_SUMS, size=len(sums))
    yield sums + _padding(len(sums))
    yield b"\0" * (2 * BLOCK)


def input_archive(plan: RunPlan, digests: dict[str, str]) -> Iterator[bytes]:
    """The input volume's content: config.yml, the original config, the data and SHA256SUMS.

    `digests` receives name -> sha256 for every file once its bytes have been streamed.
    """
    config = plan.config_text.encode("utf-8")
    yield _header(c.CONFIG_NAME, size=len(config))
    yield config + _padding(len(config))
    digests[c.CONFIG_NAME] = hashlib.sha256(config).hexdigest()
    yield from _file(c.ORIGINAL_CONFIG_NAME, plan.config_path, digests)
    if plan.data:
        yield _header("data", directory=True)
    for entry in plan.data:
        yield from _tree(entry.name, entry.host_path, digests)
    yield from _sums(digests)


def job_archive(plan: JobPlan, digests: dict[str, str]) -> Iterator[bytes]:
    """A job's input volume: the run's published folder without its checkpoints and earlier jobs' folders
    (the adapter, configs, tokenizer, logs and manifest are what a job reads), the held-out set, and for eval
    the run's training data."""
    yield _header(c.JOB_RUN_DIR, directory=True)
    for child in sorted(plan.run_dir.iterdir()):
        if not (child.name.startswith((".", "checkpoint-")) or child.name in (*c.JOB_KINDS, c.RUN_INPUTS)):
            yield from _tree(f"{c.JOB_RUN_DIR}/{child.name}", child, digests)
    if plan.heldout is not None or plan.training:
        yield _header(c.JOB_HELDOUT.split("/")[0], directory=True)
    if plan.heldout is not None:
        yield from _file(c.JOB_HELDOUT, plan.heldout, digests)
    if plan.training:
        yield _header(c.JOB_TRAINING, directory=True)
        for number, path in enumerate(plan.training):
            yield from _tree(f"{c.JOB_TRAINING}/{number}-{path.name}", path, digests)
    yield from _sums(digests)



def output_archive(folder: Path, owner: tuple[int, int], skip: frozenset[str]) -> Iterator[bytes]:
    """A run's earlier outputs (checkpoints, logs) back into a fresh output volume, owned by the
    image's user so that the resumed trainer can write next to them; `skip` names files to leave out."""
    yield from _tree(".", folder, {}, owner, skip)
    yield b"\0" * (2 * BLOCK)


def check_unchanged(plan: RunPlan, digests: Mapping[str, str], expected: Mapping[str, str] | None,
                    source: str | None) -> None:
    """Refuse inputs whose sha256 differs from what run `source` trained on (a resumed or reproduced run)."""
    changed = sorted(name for name, digest in (expected or {}).items() if digests.get(name) != digest)
    if changed:
        raise ChatlikeError(
            f"{', '.join(changed)} changed since run {source or plan.run_id} trained on it; "
            f"{'reproducing' if plan.reproduces else 'resuming'} it needs the same config and data: "
            "restore them or start a new run"
        )
