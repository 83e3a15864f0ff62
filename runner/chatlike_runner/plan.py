"""The run plan: one training run described as plain data, built without touching Docker."""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import yaml

from . import constants as c
from .errors import ChatlikeError

ULIMIT_NAMES = frozenset(
    "core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime sigpending stack".split()
)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
# A dataset path that names a local file; anything else may be a Hugging Face hub id.
_LOCAL_LOOKING = re.compile(r"^(/|\.|~)|\.(jsonl?|parquet|csv|arrow)$")


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


@dataclass(frozen=True)
class StagedPath:
    """A file or folder on the host and where it lands under the input volume."""

    host_path: Path
    name: str  # relative to constants.INPUT_DIR

    @property
    def container_path(self) -> str:
        return f"{c.INPUT_DIR}/{self.name}"


@dataclass(frozen=True)
class RunPlan:
    """Everything the engine needs to start, follow and collect one run."""

    run_id: str
    image: str
    host: str | None
    config_path: Path
    config_text: str  # the config the container reads: the user's, with container paths
    data: tuple[StagedPath, ...]
    out_dir: Path
    gpus: GpuRequest
    shm_size: int | None  # None: share the host's IPC namespace (ipc=host)
    memory: int | None
    ulimits: tuple[Ulimit, ...]
    env_names: tuple[str, ...]  # passed by name; values are read only at launch
    detach: bool
    validate: bool = True  # run `chatlike-train validate` in the image before training

    @property
    def container_name(self) -> str:
        return f"chatlike-{self.run_id}"

    @property
    def input_volume(self) -> str:
        return f"chatlike-{self.run_id}-input"

    @property
    def output_volume(self) -> str:
        return f"chatlike-{self.run_id}-output"

    @property
    def command(self) -> tuple[str, ...]:
        return ("chatlike-train", "run", f"{c.INPUT_DIR}/{c.CONFIG_NAME}")

    @property
    def volumes(self) -> dict[str, str]:
        """Volume name -> mount point in the container."""
        return {
            self.input_volume: c.INPUT_DIR,
            self.output_volume: c.OUTPUT_DIR,
            c.CACHE_VOLUME: c.CACHE_DIR,
        }

    def flags(self) -> dict:
        """The choices that shaped this run, safe to print, label and save (no secret values)."""
        return {
            "image": self.image,
            "host": self.host,
            "config": str(self.config_path),
            "data": [str(s.host_path) for s in self.data],
            "out": str(self.out_dir),
            "gpus": str(self.gpus),
            "ipc": "host" if self.shm_size is None else "private",
            "shm_size": self.shm_size,
            "memory": self.memory,
            "ulimits": [str(u) for u in self.ulimits],
            "env": list(self.env_names),
            "detach": self.detach,
            "validate": self.validate,
            "command": list(self.command),
        }

    def labels(self, role: str = c.ROLE_TRAIN) -> dict[str, str]:
        return {
            c.LABEL_RUN: self.run_id,
            c.LABEL_ROLE: role,
            c.LABEL_PLAN: json.dumps(self.flags(), sort_keys=True),
        }


def new_run_id(now: float | None = None) -> str:
    """A sortable, unique id such as 20261129-023649-3fa2."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}-{secrets.token_hex(2)}"


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


def load_config(path: Path, error: type[ChatlikeError] = ChatlikeError) -> dict:
    """The Axolotl config as a mapping, or one clear `error`."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"config {path} does not exist; pass the path of an Axolotl YAML file") from None
    except IsADirectoryError:
        raise error(f"config {path} is a folder; pass the path of an Axolotl YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"config {path} cannot be read ({exc}); check its permissions and encoding") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise error(f"config {path} is not valid YAML{line}; fix it and try again") from None
    if not isinstance(raw, dict):
        raise error(f"config {path} is not a YAML mapping of Axolotl options")
    return raw


def _exists(path: Path, what: str) -> bool:
    try:
        path.stat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ChatlikeError(f"{what} {path} cannot be read ({exc.strerror}); check its permissions") from None
    return True


def _check_readable(path: Path, what: str) -> None:
    if not _exists(path, what):
        raise ChatlikeError(f"{what} {path} does not exist; fix the path")
    if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
        raise ChatlikeError(f"{what} {path} is not readable; check its permissions")


def render_config(raw: dict, config_dir: Path, data: Path | None) -> tuple[dict, tuple[StagedPath, ...]]:
    """Point the config's local datasets and output at container paths; list what to stage."""
    config = dict(raw)
    staged: list[StagedPath] = []
    names: set[str] = set()

    def stage(host_path: Path) -> str:
        _check_readable(host_path, "dataset")
        name = host_path.name
        if name in names:
            name = f"{len(names)}-{name}"
        names.add(name)
        entry = StagedPath(host_path.resolve(), f"data/{name}")
        staged.append(entry)
        return entry.container_path

    for key in ("datasets", "test_datasets"):
        entries = config.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ChatlikeError(f"config: {key} must be a list of mappings, each with a path")
        config[key] = rendered = []
        for entry in entries:
            entry = dict(entry)
            path = entry.get("path")
            replaced_by_data = key == "datasets" and data is not None
            if not replaced_by_data and isinstance(path, str) and path:
                local = Path(path).expanduser()
                local = local if local.is_absolute() else config_dir / local
                if _exists(local, "dataset"):
                    entry["path"] = stage(local)
                elif _LOCAL_LOOKING.search(path):
                    raise ChatlikeError(
                        f"config: {key} path {path!r} does not exist (read relative to {config_dir}); "
                        "fix it, pass --data PATH, or write one with `chatlike-runner prepare`"
                    )
            rendered.append(entry)

    if data is not None:
        datasets = config.get("datasets") or []
        if len(datasets) != 1:
            raise ChatlikeError(
                f"--data replaces the path of the config's one dataset, but the config lists {len(datasets)}; "
                "set the paths in the config instead"
            )
        datasets[0]["path"] = stage(data)
    config["output_dir"] = c.OUTPUT_DIR
    return config, tuple(staged)


def build_plan(
    config: Path,
    *,
    data: Path | None = None,
    out: Path = Path("outputs"),
    image: str = c.DEFAULT_IMAGE,
    host: str | None = None,
    gpus: str = "none",
    shm_size: str | None = None,
    memory: str | None = None,
    ulimits: Sequence[str] = (),
    env: Sequence[str] = (),
    detach: bool = False,
    validate: bool = True,
    environ: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> RunPlan:
    """Check the flags and the config, and describe the run. Raises ChatlikeError on bad input."""
    environ = os.environ if environ is None else environ
    run_id = run_id or new_run_id()
    if not _RUN_ID.match(run_id):
        raise ChatlikeError(f"run id {run_id!r} must be 3-63 lowercase letters, digits and dashes")
    raw = load_config(config)
    rendered, staged = render_config(raw, config.resolve().parent, data)
    parsed_ulimits = tuple(parse_ulimit(u) for u in ulimits)
    if len({u.name for u in parsed_ulimits}) != len(parsed_ulimits):
        raise ChatlikeError("--ulimit names one limit twice; keep one")
    return RunPlan(
        run_id=run_id,
        image=image,
        host=host or environ.get("DOCKER_HOST") or None,
        config_path=config.resolve(),
        config_text=yaml.safe_dump(rendered, sort_keys=False),
        data=staged,
        out_dir=out.expanduser().resolve(),
        gpus=parse_gpus(gpus),
        shm_size=parse_size(shm_size, "--shm-size") if shm_size else None,
        memory=parse_size(memory, "--memory") if memory else None,
        ulimits=parsed_ulimits,
        env_names=parse_env_names(env, environ),
        detach=detach,
        validate=validate,
    )


def replan(flags: Mapping[str, Any], run_id: str, out: Path, host: str | None = None,
           environ: Mapping[str, str] | None = None) -> RunPlan:
    """The plan of an earlier run, rebuilt from the flags its manifest recorded, to resume it."""
    staged = [Path(p) for p in flags.get("data", [])]
    options = dict(
        out=out,
        image=flags["image"],
        host=host or flags.get("host"),
        gpus=flags.get("gpus", "none"),
        shm_size=str(flags["shm_size"]) if flags.get("shm_size") else None,
        memory=str(flags["memory"]) if flags.get("memory") else None,
        ulimits=flags.get("ulimits", []),
        env=[name for name in flags.get("env", []) if name not in c.SECRET_NAMES],
        validate=False,
        environ=environ,
        run_id=run_id,
    )
    plan = build_plan(Path(flags["config"]), **options)
    if [s.host_path for s in plan.data] != staged and len(staged) == 1:
        plan = build_plan(Path(flags["config"]), data=staged[0], **options)
    return plan
