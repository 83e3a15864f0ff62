"""The GPUs this process may use, found without importing torch."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpus:
    """Visible GPUs: how many, their names, and the host driver (empty without nvidia-smi)."""

    count: int
    names: tuple[str, ...] = ()
    driver: str | None = None


def count_from_env(env: Mapping[str, str]) -> int | None:
    """GPUs that CUDA_VISIBLE_DEVICES allows, or None when it is unset (then every GPU is visible)."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    ids = [part.strip() for part in value.split(",") if part.strip()]
    # CUDA stops at the first invalid id; "-1" is the usual way to hide every GPU.
    visible = 0
    for gpu_id in ids:
        if gpu_id.startswith("-"):
            break
        visible += 1
    return visible


def parse_smi(text: str) -> tuple[tuple[str, ...], str | None]:
    """Names and driver version from `nvidia-smi --query-gpu=name,driver_version --format=csv,noheader`."""
    rows = [[cell.strip() for cell in line.split(",")] for line in text.splitlines() if line.strip()]
    names = tuple(row[0] for row in rows)
    return names, (rows[0][1] if rows and len(rows[0]) > 1 else None)


def _query_smi() -> str:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ""
    try:
        done = subprocess.run(
            [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def older_than(driver: str, minimum: str) -> bool:
    """Whether an NVIDIA driver (580.65.06) is older than `minimum`, a major version as the image's
    org.chatlike.min-driver label states it (anything else, such as the CPU flavor's "none", states none)."""
    major = driver.split(".")[0]
    return minimum.isdigit() and major.isdigit() and int(major) < int(minimum)


def visible_gpus(env: Mapping[str, str] | None = None) -> Gpus:
    """Count the GPUs nvidia-smi lists, limited by CUDA_VISIBLE_DEVICES."""
    env = os.environ if env is None else env
    names, driver = parse_smi(_query_smi())
    allowed = count_from_env(env)
    count = len(names) if allowed is None else min(allowed, len(names))
    return Gpus(count, names[:count], driver)
