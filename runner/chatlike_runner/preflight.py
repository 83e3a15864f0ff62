"""Preflight: everything that can be known before a run starts, checked before anything is created.

Each check says what it found and, when it fails, what to do. `start` stops at the first failure;
`doctor` shows them all as a table.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import constants as c
from .engine import Engine
from .errors import ChatlikeError
from .plan import GpuRequest, RunPlan


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    data: Any = field(default=None, repr=False)

    def require(self) -> Any:
        """The check's data, or the check's message as a ChatlikeError."""
        if not self.ok:
            raise ChatlikeError(self.detail)
        return self.data


def _guard(name: str, work: Any) -> Check:
    try:
        return work()
    except ChatlikeError as exc:
        return Check(name, False, exc.format_message())


def engine_check(host: str | None) -> Check:
    def work() -> Check:
        engine = Engine.connect(host)
        info = engine.info()
        detail = f"{info['url']}: Docker {info['server_version']} on {info['os']} ({info['arch']})"
        return Check("engine", True, detail, engine)

    return _guard("engine", work)


def image_check(engine: Engine, ref: str) -> Check:
    def work() -> Check:
        image = engine.image(ref)
        return Check("image", True, f"{ref} ({image['id'][7:19]})", image)

    return _guard("image", work)


def gpu_check(engine: Engine, image: dict[str, Any], gpus: GpuRequest) -> Check:
    """The GPUs a container of `image` sees, and whether their driver is new enough for its CUDA."""
    if not gpus.wanted:
        return Check("gpus", True, "none requested (CPU run)", [])

    def work() -> Check:
        found = engine.gpu_names(image["id"], gpus)
        if not found:
            return Check("gpus", False, f"--gpus {gpus}: no GPU is visible on the Docker host; check `nvidia-smi` there")
        old = driver_too_old(found, (image.get("labels") or {}).get(c.LABEL_MIN_DRIVER, ""))
        if old:
            return Check("gpus", False, f"{old}; update the NVIDIA driver on the Docker host")
        return Check("gpus", True, f"{len(found)} found: " + "; ".join(found), found)

    return _guard("gpus", work)


def driver_too_old(gpus: list[str], minimum: str) -> str | None:
    """What is wrong when a GPU's driver (the last field of its nvidia-smi line) is below `minimum`."""
    if not minimum.isdigit():
        return None
    for line in gpus:
        driver = line.rsplit(",", 1)[-1].strip()
        major = driver.split(".")[0]
        if major.isdigit() and int(major) < int(minimum):
            return f"GPU driver {driver} is older than {minimum}, which the image's CUDA build needs"
    return None


def space_check(out_dir: Path, need: int = c.MIN_FREE_BYTES) -> Check:
    existing = next((p for p in [out_dir, *out_dir.parents] if p.exists()), Path("/"))
    if not os.access(existing, os.W_OK):
        return Check("space", False, f"cannot write to {existing}; pass --out with a folder you can write")
    free = shutil.disk_usage(existing).free
    detail = f"{free / 2**30:.1f} GiB free in {existing}"
    if free < need:
        return Check(
            "space",
            False,
            f"only {free / 2**20:.0f} MiB free in {existing}; a run needs at least {need / 2**30:.0f} GiB "
            "for its adapter and logs: free some space or pass --out on another disk",
        )
    return Check("space", True, detail, free)


def inputs_check(plan: RunPlan) -> Check:
    paths = [plan.config_path, *(s.host_path for s in plan.data)]
    unreadable = [str(p) for p in paths if not os.access(p, os.R_OK)]
    if unreadable:
        return Check("inputs", False, f"cannot read {', '.join(unreadable)}; check the permissions")
    names = ", ".join(p.name for p in paths)
    return Check("inputs", True, names)


def for_run(plan: RunPlan) -> tuple[Engine, dict[str, Any]]:
    """Check a run before anything is created; returns the engine and the image. Raises on failure."""
    inputs_check(plan).require()
    space_check(plan.out_dir).require()
    engine = engine_check(plan.host).require()
    image = image_check(engine, plan.image).require()
    gpu_check(engine, image, plan.gpus).require()
    return engine, image


def doctor(host: str | None, image: str, gpus: GpuRequest, out_dir: Path) -> list[Check]:
    """Every check that needs no config, for `chatlike-runner doctor`."""
    checks = [engine_check(host)]
    engine = checks[0].data
    if engine is not None:
        checks.append(image_check(engine, image))
        runtimes = engine.info()["runtimes"]
        checks.append(Check("runtimes", True, ", ".join(runtimes)))
        if checks[1].ok:
            checks.append(gpu_check(engine, checks[1].data, gpus))
    checks.append(space_check(out_dir))
    return checks
