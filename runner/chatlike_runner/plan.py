"""The run plan: one training run described as plain data, built without touching Docker."""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .core import constants as c
from .core.configfile import load_config
from .core.errors import ChatlikeError
from .parsing import GpuRequest, Ulimit, parse_env_names, parse_gpus, parse_size, parse_ulimit

_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
# A dataset path that names a local file; anything else may be a Hugging Face hub id.
_LOCAL_LOOKING = re.compile(r"^(/|\.|~)|\.(jsonl?|parquet|csv|arrow)$")


@dataclass(frozen=True)
class StagedPath:
    """A file or folder on the host and where it lands under the input volume."""

    host_path: Path
    name: str  # relative to constants.INPUT_DIR

    @property
    def container_path(self) -> str:
        return f"{c.INPUT_DIR}/{self.name}"


def output_volume(key: str) -> str:
    """The output volume of a run (or a job) by its id."""
    return f"chatlike-{key}-output"


def owned_by(key: str) -> dict[str, str]:
    """The label on every container and volume of a run (or a job) by its id: what removes them together."""
    return {c.LABEL_RUN: key}


class _Container:
    """The names of a plan's container and volumes, all made from its `key` (a run's id, or a job's)."""

    interactive = False  # the container reads its stdin (chat)

    @property
    def key(self) -> str:
        raise NotImplementedError

    @property
    def container_name(self) -> str:
        return f"chatlike-{self.key}"

    @property
    def input_volume(self) -> str:
        return f"chatlike-{self.key}-input"

    @property
    def output_volume(self) -> str:
        return output_volume(self.key)

    @property
    def volumes(self) -> dict[str, str]:
        """Volume name -> mount point in the container."""
        return {self.input_volume: c.INPUT_DIR, self.output_volume: c.OUTPUT_DIR, c.CACHE_VOLUME: c.CACHE_DIR}

    @property
    def volume_labels(self) -> dict[str, dict[str, str]]:
        """Volume name -> labels, for each volume made when missing: its own two, and the shared model cache."""
        own = owned_by(self.key)
        return {self.input_volume: own, self.output_volume: own, c.CACHE_VOLUME: {c.LABEL_CACHE: "huggingface"}}


@dataclass(frozen=True)
class RunPlan(_Container):
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
    fit_check: bool = True  # refuse a run whose memory estimate exceeds its GPUs' (fit.py)
    trial: str = ""  # a CPU trial of a bundled config: "smoke" (`start --smoke`) or "preview" (`start --preview`)
    reproduces: str | None = None  # the run whose manifest this one runs again (`reproduce`)

    role = c.ROLE_TRAIN

    @property
    def key(self) -> str:
        return self.run_id

    @property
    def command(self) -> tuple[str, ...]:
        return ("chatlike-train", "run", f"{c.INPUT_DIR}/{c.CONFIG_NAME}")

    @property
    def validate_command(self) -> tuple[str, ...]:
        return ("chatlike-train", "validate", f"{c.INPUT_DIR}/{c.CONFIG_NAME}")

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
            "trial": self.trial,
            "reproduces": self.reproduces,
            "command": list(self.command),
        }

    def labels(self, role: str | None = None) -> dict[str, str]:
        return {
            **owned_by(self.run_id),
            c.LABEL_ROLE: role or self.role,
            c.LABEL_PLAN: json.dumps(self.flags(), sort_keys=True),
        }


@dataclass(frozen=True)
class JobPlan(_Container):
    """A job on a finished run (`eval`): a container of the run's image that reads the run's published folder and
    a held-out set, staged into its input volume, and writes a folder of its own, OUT/<run-id>/<kind>/."""

    run_id: str
    kind: str  # the chatlike-train command, and the folder the job's output lands in
    stamp: str  # makes the job's container and volumes its own
    image: str
    host: str | None
    run_dir: Path  # OUT/<run-id>
    heldout: Path | None
    gpus: GpuRequest
    env_names: tuple[str, ...]
    options: tuple[str, ...] = ()  # the command's arguments after the run's folder
    training: tuple[Path, ...] = ()  # eval: the run's training data, as it trained on it
    interactive: bool = False
    shm_size: int | None = None
    memory: int | None = None
    ulimits: tuple[Ulimit, ...] = ()

    @property
    def job_id(self) -> str:
        return f"{self.run_id}-{self.kind}-{self.stamp}"

    @property
    def key(self) -> str:
        return self.job_id

    @property
    def role(self) -> str:
        return self.kind

    @property
    def command(self) -> tuple[str, ...]:
        return ("chatlike-train", self.kind, f"{c.INPUT_DIR}/{c.JOB_RUN_DIR}", *self.options)

    def labels(self, role: str | None = None) -> dict[str, str]:
        """The job's container and volumes carry its own id, so that removing them never touches the run's."""
        return {**owned_by(self.job_id), c.LABEL_ROLE: role or self.role}


def new_run_id(now: float | None = None) -> str:
    """A sortable, unique id such as 20261129-023649-3fa2."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}-{secrets.token_hex(2)}"


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


def local_path(path: str, config_dir: Path) -> Path:
    """A dataset path of the config on this machine: relative ones are read from the config's folder."""
    local = Path(path).expanduser()
    return (local if local.is_absolute() else config_dir / local).resolve()


def staged_path(host_path: Path, names: set[str]) -> StagedPath:
    """Where a dataset lands under the input volume: data/NAME, numbered when NAME is taken (`names` grows)."""
    name = host_path.name
    if name in names:
        name = f"{len(names)}-{name}"
    names.add(name)
    return StagedPath(host_path.resolve(), f"data/{name}")


def render_config(raw: dict, config_dir: Path, data: Path | None) -> tuple[dict, tuple[StagedPath, ...]]:
    """Point the config's local datasets and output at container paths; list what to stage."""
    config = dict(raw)
    staged: list[StagedPath] = []
    names: set[str] = set()

    def stage(host_path: Path) -> str:
        _check_readable(host_path, "dataset")
        entry = staged_path(host_path, names)
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
                local = local_path(path, config_dir)
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
    fit_check: bool = True,
    trial: str = "",
    environ: Mapping[str, str] | None = None,
    run_id: str | None = None,
    staged_as: tuple[str, tuple[StagedPath, ...]] | None = None,
    reproduces: str | None = None,
) -> RunPlan:
    """Check the flags and the config, and describe the run. Raises ChatlikeError on bad input. `staged_as`: the
    config as an earlier run staged it and its datasets (`reproduce`), instead of CONFIG rendered here."""
    environ = os.environ if environ is None else environ
    run_id = run_id or new_run_id()
    if not _RUN_ID.match(run_id):
        raise ChatlikeError(f"run id {run_id!r} must be 3-63 lowercase letters, digits and dashes")
    if staged_as is None:
        rendered, staged = render_config(load_config(config), config.resolve().parent, data)
        config_text = yaml.safe_dump(rendered, sort_keys=False)
    else:
        config_text, staged = staged_as
    parsed_ulimits = tuple(parse_ulimit(u) for u in ulimits)
    if len({u.name for u in parsed_ulimits}) != len(parsed_ulimits):
        raise ChatlikeError("--ulimit names one limit twice; keep one")
    return RunPlan(
        run_id=run_id,
        image=image,
        host=host or environ.get("DOCKER_HOST") or None,
        config_path=config.resolve(),
        config_text=config_text,
        data=staged,
        out_dir=out.expanduser().resolve(),
        gpus=parse_gpus(gpus),
        shm_size=parse_size(shm_size, "--shm-size") if shm_size else None,
        memory=parse_size(memory, "--memory") if memory else None,
        ulimits=parsed_ulimits,
        env_names=parse_env_names(env, environ),
        detach=detach,
        validate=validate,
        fit_check=fit_check,
        trial=trial,
        reproduces=reproduces,
    )


def trial_of(flags: Mapping[str, Any]) -> str:
    """The CPU trial a run's recorded flags say it was ("" for none; manifests before the preview said smoke: true)."""
    return flags.get("trial") or ("smoke" if flags.get("smoke") else "")


def recorded(flags: Mapping[str, Any], out: Path, host: str | None = None,
             environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """build_plan's options as an earlier run's manifest recorded its flags (its image aside), to run it again:
    secrets by name only, validated and estimated no more (it ran)."""
    return dict(
        out=out,
        host=host or flags.get("host"),
        gpus=flags.get("gpus") or "none",
        shm_size=str(flags["shm_size"]) if flags.get("shm_size") else None,
        memory=str(flags["memory"]) if flags.get("memory") else None,
        ulimits=flags.get("ulimits") or [],
        env=[name for name in flags.get("env") or [] if name not in c.SECRET_NAMES],
        validate=False,
        fit_check=False,
        trial=trial_of(flags),
        environ=environ,
    )


def replan(flags: Mapping[str, Any], run_id: str, out: Path, host: str | None = None,
           environ: Mapping[str, str] | None = None) -> RunPlan:
    """The plan of an earlier run, rebuilt from the flags its manifest recorded, to resume it."""
    staged = [Path(p) for p in flags.get("data", [])]
    options = dict(recorded(flags, out, host, environ), image=flags["image"], run_id=run_id)
    if len(staged) != 1:
        return build_plan(Path(flags["config"]), **options)
    try:  # the config's own dataset path, unless the run was given --data (the path the config names may not exist)
        plan = build_plan(Path(flags["config"]), **options)
    except ChatlikeError:
        plan = None
    if plan is None or [s.host_path for s in plan.data] != staged:
        plan = build_plan(Path(flags["config"]), data=staged[0], **options)
    return plan


def device_request(gpus: GpuRequest) -> dict[str, Any]:
    """`--gpus` as the engine's device request (a dict docker-py takes as is)."""
    if gpus.device_ids:
        return {"driver": "", "device_ids": list(gpus.device_ids), "capabilities": [["gpu"]]}
    return {"driver": "", "count": gpus.count, "capabilities": [["gpu"]]}


def copy_options(run_id: str, dest: Path, uid: int, gid: int) -> dict[str, Any]:
    """The short-lived container that copies a run's output volume into `dest`, a folder on the engine's own
    machine, at disk speed (`chatlike-train copy`), as the user uid:gid: the copy home for one who may not read
    the engine's volume folders. The volume is read-only in it, and it has no network."""
    return {
        "command": ["chatlike-train", "copy", "/chatlike/output", "/chatlike/home"],
        "labels": {**owned_by(run_id), c.LABEL_ROLE: c.ROLE_COPY},
        "volumes": {output_volume(run_id): {"bind": "/chatlike/output", "mode": "ro"},
                    str(dest): {"bind": "/chatlike/home", "mode": "rw"}},
        "network_mode": "none",
        "user": f"{uid}:{gid}",
    }


def container_options(plan: RunPlan | JobPlan, validate: bool = False) -> dict[str, Any]:
    """The container a plan asks for, as docker-py's `containers.create` options: the run's (or the job's) own,
    or, with `validate`, the one that checks a run's config and data first (no name, no GPUs).

    Environment values of None are the names passed from the runner's environment: the engine module
    reads them at the last moment, so no secret value is ever part of a plan.
    """
    own = not validate
    return {
        "command": list(plan.command if own else plan.validate_command),
        "name": plan.container_name if own else None,
        "labels": plan.labels(None if own else c.ROLE_VALIDATE),
        "environment": {**c.CONTAINER_ENV, **dict.fromkeys(plan.env_names)},
        "volumes": {name: {"bind": path, "mode": "rw"} for name, path in plan.volumes.items()},
        "device_requests": [device_request(plan.gpus)] if own and plan.gpus.wanted else None,
        "ipc_mode": "host" if plan.shm_size is None else "shareable",
        "shm_size": plan.shm_size,
        "mem_limit": plan.memory,
        "memswap_limit": plan.memory,  # no swap: over the limit means OOM, not a crawl
        "ulimits": [{"name": u.name, "soft": u.soft, "hard": u.hard} for u in plan.ulimits] or None,
        "init": True,  # signals reach the trainer, and a stop is a SIGTERM it can save on
        "stdin_open": own and plan.interactive,
        "user": c.IMAGE_USER,  # never root: the image's user, who owns the folders the volumes start from
        "tty": False,
    }
