"""train-manifest.json: what ran, on what, with which inputs, and how it ended."""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import importlib.util
import json
import os
import platform
import re
import runpy
import shutil
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path

from ..core import constants as c
from .gpus import Gpus
from .smallmodel import source

NAME = c.TRAIN_MANIFEST
# What a checkpoint holds only to resume training from it (the rest is the model's output).
CHECKPOINT_ONLY = frozenset({"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
                             "training_args.bin", "tokens_state.json"})
# Written by the trainer process (plugin.py): package versions as it imported them, the precision it trains in
# (which `bf16: auto` decides only there), and the step a stop signal ended training at (stop.py).
RUNTIME_KEYS = ("packages", "precision", "stopped_at_step")
# Distribution -> the module it provides, for the packages whose versions the manifest names.
KEY_PACKAGES = {
    "axolotl": "axolotl", "torch": "torch", "transformers": "transformers", "peft": "peft", "trl": "trl",
    "accelerate": "accelerate", "datasets": "datasets", "bitsandbytes": "bitsandbytes", "deepspeed": "deepspeed",
    "flash-attn": "flash_attn", "wandb": "wandb", "chatlike-runner": "chatlike_runner",
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _normal(name: str) -> str:
    """A distribution name as pip writes it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def freeze_lines(dists: Iterable[metadata.Distribution]) -> list[str]:
    """`name==version` for every installed distribution, sorted like `pip freeze`."""
    pins = {f"{_normal(d.metadata['Name'])}=={d.version}" for d in dists if d.metadata["Name"]}
    return sorted(pins)


def _module_origin(name: str) -> Path | None:
    """Where `name` is loaded from in this process, or would be if imported now (found without importing)."""
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None)
    if origin is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        origin = spec.origin if spec else None
    return Path(origin) if origin else None


def imported_version(dist_name: str, module_name: str) -> str | None:
    """The version of distribution `dist_name` as this process imports its module `module_name`: the copy
    installed in the folder the module comes from, not the first copy found on the path (a venv over the
    system's site-packages, or PYTHONPATH over an installed copy, hold two). Other distributions may add
    files under the same folder (plugins), so the one named wins, else the one that owns the module's
    own file. A module with no distribution beside it (a source checkout, an editable install) gives
    its own __version__ if loaded."""
    origin = _module_origin(module_name)
    if origin is None:
        return None
    top = origin.parent if origin.name == "__init__.py" else origin
    here = list(metadata.distributions(path=[str(top.parent)]))
    own = origin.relative_to(top.parent).parts
    named = [dist for dist in here if _normal(dist.metadata["Name"] or "") == _normal(dist_name)]
    owners = [dist for dist in here if any(file.parts == own for file in dist.files or ())]
    if named or owners:
        return (named or owners)[0].version
    return getattr(sys.modules.get(module_name), "__version__", None)


def imported_versions() -> dict[str, str | None]:
    return {dist: imported_version(dist, module) for dist, module in KEY_PACKAGES.items()}


def torch_build() -> dict:
    """torch's version and CUDA tag, read from torch/version.py without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return {}
    info = runpy.run_path(str(Path(spec.submodule_search_locations[0]) / "version.py"))
    return {"version": info.get("__version__"), "cuda": info.get("cuda"), "git": info.get("git_version")}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def start(config: Path, effective: Path, datasets: list[Path], gpus: Gpus, command: list[str],
          base_model: str | None = None) -> dict:
    """The manifest as it stands when training starts; `base_model` as the config names it, with where its weights
    came from when chatlike made its folder (the preview's small model: package, version, sha256)."""
    freeze = freeze_lines(metadata.distributions())
    return {
        "started": now(),
        "ended": None,
        "exit_code": None,
        "stopped_by": None,
        "command": command,
        "config": {"path": str(config), "sha256": sha256_file(config)},
        "effective_config": {"path": str(effective), "sha256": sha256_file(effective)},
        "datasets": [{"path": str(path), "sha256": sha256_file(path)} for path in datasets],
        "base_model": {"name": base_model, "source": source(base_model) if base_model else None},
        "gpus": {"count": gpus.count, "names": list(gpus.names), "driver": gpus.driver},
        "torch": torch_build(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "user": {"uid": os.getuid(), "gid": os.getgid()},
        "packages": imported_versions(),
        "pip_freeze_sha256": hashlib.sha256("\n".join(freeze).encode()).hexdigest(),
    }


def latest_checkpoint(output_dir: Path) -> str | None:
    """The newest checkpoint-N folder, by step."""
    steps = [(int(p.name.split("-")[1]), p.name) for p in output_dir.glob("checkpoint-*") if p.name[11:].isdigit()]
    return max(steps)[1] if steps else None


def finish(manifest: dict, output_dir: Path, exit_code: int, stopped_by: str | None) -> dict:
    """The manifest at the end, with what the trainer recorded in it meanwhile (see record_runtime)."""
    return {
        **manifest,
        "stopped_at_step": None,
        **{key: value for key, value in read(output_dir).items() if key in RUNTIME_KEYS},
        "ended": now(),
        "exit_code": exit_code,
        "stopped_by": stopped_by,
        "latest_checkpoint": latest_checkpoint(output_dir),
    }


def read(output_dir: Path) -> dict:
    try:
        return json.loads((output_dir / NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write(manifest: Mapping, output_dir: Path) -> Path:
    """Write the manifest whole or not at all (a reader never sees half of it)."""
    path = output_dir / NAME
    temp = path.with_name(f".{NAME}.{os.getpid()}")
    temp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(temp, path)
    return path


def record_runtime(output_dir: Path, runtime: Mapping) -> None:
    """What the trainer itself reports as it runs (some of RUNTIME_KEYS), into the manifest."""
    write({**read(output_dir), **{key: runtime[key] for key in RUNTIME_KEYS if key in runtime}}, output_dir)


def restore_final(output_dir: Path, checkpoint: Path) -> list[str]:
    """The model files of the last checkpoint (adapter, tokenizer, template) copied into output_dir where a
    stopped final save left them missing; returns their names."""
    restored = []
    for path in sorted(checkpoint.iterdir()):
        if path.is_file() and path.name not in CHECKPOINT_ONLY and not (output_dir / path.name).exists():
            shutil.copy2(path, output_dir / path.name)
            restored.append(path.name)
    return restored


def finished_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint when it is at the run's last step (training has nothing left to do), else None."""
    name = latest_checkpoint(output_dir)
    try:
        state = json.loads((output_dir / str(name) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    done = 0 < int(state.get("max_steps") or 0) <= int(state.get("global_step") or 0)
    return output_dir / str(name) if done else None
