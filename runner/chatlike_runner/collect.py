"""Collect: copy a run's output volume, its staged configs, its log and a manifest home to OUT/<run-id> (or
OUT/<run-id>.partial).

The output volume is copied from its folder by the kernel when the engine runs on this machine and the runner
may read it (root), by a short-lived container running as the runner's user when it may not, else it streams home
as a tar unpacked chunk by chunk (core/unpack.py): over ssh:// through the ssh client when it can log in, else through
the engine's API; always into a hidden folder;
artifacts.py writes the manifest last and publishes the folder with one rename.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from . import artifacts
from .core import constants as c
from .core.errors import ChatlikeError
from .core.unpack import copy_tree, listing, unpack
from .engine import Engine, Run
from .plan import copy_options, output_volume
from .records import Ending
from .redact import redactor


def copy_outputs(engine: Engine, run: Run, dest: Path) -> list[dict[str, Any]]:
    """The run's output volume into `dest`. On a local engine at disk speed: from the volume's folder when this
    process may read it (root), else by a short-lived container of the run's image running as this user. Else,
    or when neither could, as the engine's tar stream: on an ssh:// engine first through the ssh client, then, when
    that cannot log in or is cut short, through the engine's API (docker-py's ssh transport). Returns the files,
    with sizes."""
    folder = engine.volume_folder(output_volume(run.id))
    if folder is not None:
        try:
            return copy_tree(Path(folder), dest)
        except PermissionError:  # a file this user may not read (a rootless engine's): the engine reads it
            shutil.rmtree(dest, ignore_errors=True)
    elif engine.local and (files := _copied_by_container(engine, run, dest)) is not None:
        return files
    elif engine.url.startswith("ssh://"):
        try:
            return unpack(engine.archive_by_ssh(run, c.OUTPUT_DIR), dest)
        except ChatlikeError:
            shutil.rmtree(dest, ignore_errors=True)
    return unpack(engine.archive(run, c.OUTPUT_DIR), dest)


def _copied_by_container(engine: Engine, run: Run, dest: Path) -> list[dict[str, Any]] | None:
    """`chatlike-train copy` in a container of the run's image, as this process's uid:gid, into `dest` bound from
    this machine. The files, when what it says it copied is what `dest` holds; else None, `dest` emptied (an
    image without the command, a folder the engine cannot bind, a copy cut short)."""
    dest.mkdir(parents=True, exist_ok=True)
    options = copy_options(run.id, dest.resolve(), os.getuid(), os.getgid())
    try:
        status, output = engine.run_once("copying the outputs home", run.image_id, options)
    except ChatlikeError:
        status, output = -1, ""
    files = listing(dest)
    if status == 0 and output.splitlines()[-1:] == [json.dumps(files)]:
        return files
    shutil.rmtree(dest, ignore_errors=True)
    return None


def ending_of(run: Run) -> Ending:
    """How the run's container ended (or stands), as its manifest records it."""
    return Ending(run.status, run.exit_code, run.oom_killed, run.started_at, run.finished_at)


def collect(engine: Engine, run: Run, out_dir: Path, configs: dict[str, bytes] | None = None) -> tuple[Path, Ending]:
    """Copy the run's outputs home as it stands now; a finished run already copied whole is left as it is.
    `configs`: the staged configs and SHA256SUMS when the caller has them (else read from the input volume).
    Returns where they are, and how the run stood when they were copied."""
    run = engine.refresh(run)
    published = artifacts.destination(out_dir, run.id, True)
    if run.complete and artifacts.is_published(published, run.id):
        return published, ending_of(run)  # a finished run does not change: the copy home is already whole

    def fill(tmp: Path) -> dict[str, Any]:
        files = copy_outputs(engine, run, tmp)
        inputs = tmp / c.RUN_INPUTS  # the configs as staged (not the data): what `reproduce` runs again
        for name in (c.CONFIG_NAME, c.ORIGINAL_CONFIG_NAME, c.INPUT_SUMS):
            if configs is not None:
                inputs.mkdir(parents=True, exist_ok=True)
                (inputs / name).write_bytes(configs[name])
            else:
                unpack(engine.archive(run, f"{c.INPUT_DIR}/{name}"), inputs, strip=0)
        sums = (inputs / c.INPUT_SUMS).read_text(encoding="utf-8", errors="replace")
        log = tmp / artifacts.CONTAINER_LOG
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w", encoding="utf-8") as handle:
            handle.writelines(redactor(run.flags.get("env", [])).stream(engine.logs(run, follow=False)))
        image = {"ref": run.flags.get("image"), "id": run.image_id, "digests": list(run.image_digests)}
        return artifacts.manifest(run_id=run.id, flags=run.flags, ending=ending_of(run), image=image, engine=engine.info(),
                                  inputs=artifacts.parse_sums(sums), files=files, base_model=artifacts.base_model(tmp))

    return artifacts.publish(out_dir, run.id, run.complete, fill), ending_of(run)
