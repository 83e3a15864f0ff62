"""Read an Axolotl config and derive the one a run actually uses (a pure function of config, GPUs, the CPU and env)."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from ..core.configfile import load_config
from . import precision
from .errors import TrainError

# Added to every run's plugins: a checkpoint on SIGTERM, and the runtime facts in the manifest (see plugin.py).
PLUGIN = "chatlike_runner.train.plugin.ChatlikePlugin"
# Where the image keeps the repository's configs/ (DeepSpeed JSONs named relative to it are found there).
BUNDLED_CONFIGS = Path(os.environ.get("CHATLIKE_CONFIGS", "/opt/chatlike/configs"))
DATASET_KEYS = ("datasets", "test_datasets")
EFFECTIVE_NAME = "train-config.yml"


def load(path: Path) -> dict:
    """The YAML mapping in path, or a TrainError that says what is wrong with the file."""
    return load_config(path, TrainError)


def find_file(name: str, roots: Sequence[Path]) -> Path | None:
    """An absolute name if it exists, else the first root that holds the relative name."""
    candidate = Path(name).expanduser()
    if candidate.is_absolute():
        return candidate if candidate.exists() else None
    return next((root / candidate for root in roots if (root / candidate).exists()), None)


def output_dir(raw: Mapping) -> Path:
    """Where Axolotl writes: output_dir, relative to the working directory like Axolotl reads it."""
    return Path(raw.get("output_dir") or "./model-out").expanduser().absolute()


def dataset_paths(raw: Mapping, config_dir: Path) -> list[Path]:
    """The local dataset files the config names (relative names are read from the config's folder first)."""
    found = []
    for key in DATASET_KEYS:
        for entry in raw.get(key) or []:
            path = entry.get("path") if isinstance(entry, Mapping) else None
            local = find_file(path, [config_dir, Path.cwd()]) if isinstance(path, str) else None
            if local is not None and local.is_file():
                found.append(local.resolve())
    return found


def effective(raw: Mapping, config_dir: Path, gpu_count: int, env: Mapping[str, str], native_bf16: bool = False) -> dict:
    """The config a run trains with: local paths made absolute, DeepSpeed only with >1 GPU, `bf16: auto` resolved on a
    CPU (`native_bf16`: this CPU's, see precision.py), the stop plugin, wandb mode."""
    config = copy.deepcopy(dict(raw))
    if gpu_count == 0:
        config.update(precision.on_cpu(config, native_bf16))
    # The image's configs/ folder answers a name relative to it (deepspeed/zero2.json) and one relative to the
    # repository root, as the bundled configs write it (configs/deepspeed/zero2.json).
    roots = [config_dir, Path.cwd(), BUNDLED_CONFIGS, BUNDLED_CONFIGS.parent]
    for key in DATASET_KEYS:
        for entry in config.get(key) or []:
            path = entry.get("path") if isinstance(entry, dict) else None
            local = find_file(path, roots[:2]) if isinstance(path, str) else None
            if local is not None:
                entry["path"] = str(local.resolve())
    config["output_dir"] = str(output_dir(config))
    deepspeed = config.pop("deepspeed", None)
    if deepspeed and gpu_count > 1:
        found = find_file(str(deepspeed), roots)
        if found is None:
            searched = ", ".join(str(root) for root in roots)
            raise TrainError(f"deepspeed config {deepspeed} not found (looked in {searched}); fix the deepspeed: path")
        config["deepspeed"] = str(found.absolute())
    plugins = list(config.get("plugins") or [])
    config["plugins"] = plugins if PLUGIN in plugins else [*plugins, PLUGIN]
    if config.get("wandb_project") and not config.get("wandb_mode"):
        config["wandb_mode"] = "online" if env.get("WANDB_API_KEY") else "offline"
    return config


def dump(config: Mapping) -> str:
    """YAML text in the config's own key order."""
    return yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
