"""Flag values of `start`, parsed and checked: GPUs, sizes, ulimits and the names of passed variables."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .core import constants as c
from .core.errors import ChatlikeError

ULIMIT_NAMES = frozenset(
    "core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime sigpending stack".split()
)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GPU_TYPE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*)(?::([1-9][0-9]?))?$")


@dataclass(frozen=True)
class GpuRequest:
    """Which GPUs a run gets: count -1 means all of them; device_ids picks some."""

    count: int = 0
    device_ids: tuple[str, ...] = ()

    @property
    def wanted(self) -> bool:
        return self.count != 0 or bool(self.device_ids)

    def __str__(self) -> str:
        if self.device_ids:
            return ",".join(self.device_ids)
        return {0: "none", -1: "all"}.get(self.count, str(self.count))


@dataclass(frozen=True)
class Ulimit:
    name: str
    soft: int
    hard: int

    def __str__(self) -> str:
        return f"{self.name}={self.soft}:{self.hard}"


def parse_gpus(value: str) -> GpuRequest:
    """`all`, a count `N`, device ids `0,1` or `device=1`, or `none`."""
    text = value.strip().lower()
    if text in ("", "none", "0"):
        return GpuRequest()
    if text == "all":
        return GpuRequest(count=-1)
    if text.startswith("device="):
        text = text[len("device=") :]
    elif text.isdigit():
        return GpuRequest(count=int(text))
    ids = tuple(part.strip() for part in text.split(",") if part.strip())
    if not ids or not all(re.fullmatch(r"[0-9]+|gpu-[0-9a-f-]+|mig-[0-9a-z/-]+", i) for i in ids):
        raise ChatlikeError(f"--gpus {value!r} is not understood; use all, a count such as 2, ids such as 0,1, or none")
    return GpuRequest(device_ids=ids)


def parse_size(value: str, option: str) -> int:
    """`16g`, `512m`, `1024` (bytes) -> bytes."""
    match = _SIZE.match(value)
    if not match:
        raise ChatlikeError(f"{option} {value!r} is not a size; use a number with k, m, g or t, such as 16g")
    number, unit = match.groups()
    size = int(float(number) * 1024 ** " kmgt".index(unit.lower() or " "))
    if size <= 0:
        raise ChatlikeError(f"{option} {value!r} must be more than zero")
    return size


def parse_ulimit(value: str) -> Ulimit:
    """`NAME=SOFT[:HARD]`, where a limit is a number, -1 or `unlimited`."""
    name, sep, limits = value.partition("=")
    name = name.strip().lower()
    if not sep or name not in ULIMIT_NAMES:
        raise ChatlikeError(
            f"--ulimit {value!r} is not NAME=SOFT[:HARD] with a NAME among {', '.join(sorted(ULIMIT_NAMES))}"
        )
    soft_text, _, hard_text = limits.partition(":")

    def number(text: str) -> int:
        text = text.strip().lower()
        if text in ("-1", "unlimited"):
            return -1
        if not text.isdigit():
            raise ChatlikeError(f"--ulimit {value!r}: {text!r} is not a number, -1 or unlimited")
        return int(text)

    soft = number(soft_text)
    hard = number(hard_text) if hard_text else soft
    if hard != -1 and (soft == -1 or soft > hard):
        raise ChatlikeError(f"--ulimit {value!r}: the soft limit must not exceed the hard one")
    return Ulimit(name, soft, hard)


def parse_env_names(names: Sequence[str], environ: Mapping[str, str]) -> tuple[str, ...]:
    """The variables passed to the container: the known secrets that are set, plus --env NAMEs."""
    chosen = [name for name in c.SECRET_NAMES if environ.get(name)]
    for name in names:
        if "=" in name:
            key = name.partition("=")[0]
            raise ChatlikeError(
                f"--env takes a NAME, not NAME=VALUE (values on a command line leak into shell history); "
                f"run `export {key}=...` and pass --env {key}"
            )
        if not _ENV_NAME.match(name):
            raise ChatlikeError(f"--env {name!r} is not a variable name")
        if name not in environ:
            raise ChatlikeError(f"--env {name}: {name} is not set in this shell; export it first")
        chosen.append(name)
    return tuple(dict.fromkeys(chosen))


def split_tag(ref: str) -> tuple[str, str]:
    """An image reference REGISTRY:PORT/NAME:TAG as (REGISTRY:PORT/NAME, TAG); no tag means latest."""
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        return ref, "latest"
    return name, tag


def parse_gpu_type(text: str) -> tuple[str, int]:
    """`--gpu TYPE[:COUNT]` (RTX3090:2, H100): the GPU type and how many."""
    match = _GPU_TYPE.match(text)
    if not match:
        raise ChatlikeError(f"--gpu {text!r}: give a GPU type and a count, such as RTX3090:2 or H100:8")
    return match.group(1), int(match.group(2) or 1)
