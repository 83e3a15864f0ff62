"""chatlike's Axolotl plugin, listed in every run's `plugins:` by chatlike-train: it adds a checkpoint-and-stop
on SIGTERM (stop.py) and records, from inside the trainer, what only the trainer knows (the precision that
`bf16: auto` picked, the package versions it imported) in train-manifest.json."""

from __future__ import annotations

from pathlib import Path

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

from . import manifest
from .stop import StopOnSignalCallback


def precision(args) -> str:
    """The Trainer's mixed precision: bf16, fp16, or fp32 when neither is on."""
    return "bf16" if getattr(args, "bf16", False) else "fp16" if getattr(args, "fp16", False) else "fp32"


class RuntimeCallback(TrainerCallback):
    """At the start of training, the main process writes the runtime facts into the manifest."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        dtype = getattr(model, "dtype", None)
        manifest.record_runtime(Path(args.output_dir), {
            "packages": manifest.imported_versions(),
            "precision": {
                "mixed": precision(args),
                "tf32": getattr(args, "tf32", None),
                "model_dtype": str(dtype).removeprefix("torch.") if dtype is not None else None,
            },
        })


class ChatlikePlugin(BasePlugin):
    def add_callbacks_pre_trainer(self, cfg, model):
        return [StopOnSignalCallback(), RuntimeCallback()]

    def get_training_args(self, cfg):
        """bf16 without a GPU: transformers trains it only when told the run is on the CPU (see precision.py)."""
        import torch

        return {"use_cpu": True} if cfg.bf16 and not torch.cuda.is_available() else None
