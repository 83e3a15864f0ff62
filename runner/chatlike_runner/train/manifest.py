"""train-manifest.json: what ran, on what, with which inputs, and how it ended."""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import importlib.util
import json
import platform
import re
import runpy
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from .gpus import Gpus

NAME = "train-manifest.json"
KEY_PACKAGES = (
    "axolotl", "torch", "transformers", "peft", "trl", "accelerate", "datasets",
    "bitsandbytes", "deepspeed", "flash-attn", "wandb", "chatlike-runner",
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def freeze_lines(dists: Iterable[metadata.Distribution]) -> list[str]:
    """`name==version` for every installed distribution, sorted like `pip freeze`."""
    pins = {f"{re.sub(r'[-_.]+', '-', d.metadata['Name']).lower()}=={d.version}" for d in dists if d.metadata["Name"]}
    return sorted(pins)


def torch_build() -> dict:
    """torch's version and CUDA tag, read from torch/version.py without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return {}
    info = runpy.run_path(str(Path(spec.submodule_search_locations[0]) / "version.py"))
    return {"version": info.get("__version__"), "cuda": info.get("cuda"), "git": info.get("git_version")}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def start(config: Path, effective: Path, datasets: list[Path], gpus: Gpus, command: list[str]) -> dict:
    """The manifest as it stands when training starts."""
    freeze = freeze_lines(metadata.distributions())
    installed = dict(line.split("==", 1) for line in freeze)
    return {
        "started": now(),
        "ended": None,
        "exit_code": None,
        "stopped_by": None,
        "command": command,
        "config": {"path": str(config), "sha256": sha256_file(config)},
        "effective_config": {"path": str(effective), "sha256": sha256_file(effective)},
        "datasets": [{"path": str(path), "sha256": sha256_file(path)} for path in datasets],
        "gpus": {"count": gpus.count, "names": list(gpus.names), "driver": gpus.driver},
        "torch": torch_build(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: installed.get(name) for name in KEY_PACKAGES},
        "pip_freeze_sha256": hashlib.sha256("\n".join(freeze).encode()).hexdigest(),
    }


def latest_checkpoint(output_dir: Path) -> str | None:
    """The newest checkpoint-N folder, by step."""
    steps = [(int(p.name.split("-")[1]), p.name) for p in output_dir.glob("checkpoint-*") if p.name[11:].isdigit()]
    return max(steps)[1] if steps else None


def finish(manifest: dict, output_dir: Path, exit_code: int, stopped_by: str | None) -> dict:
    return {
        **manifest,
        "ended": now(),
        "exit_code": exit_code,
        "stopped_by": stopped_by,
        "latest_checkpoint": latest_checkpoint(output_dir),
    }


def write(manifest: dict, output_dir: Path) -> Path:
    path = output_dir / NAME
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path
