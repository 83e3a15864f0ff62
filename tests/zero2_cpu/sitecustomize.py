"""Test fixture, standing in for two GPUs: what two CPU ranks need to run chatlike's multi-GPU path (accelerate, one
process per rank, DeepSpeed ZeRO-2 with DS_ACCELERATOR=cpu over gloo) unchanged, loaded into every process of the
run from PYTHONPATH. Two changes, each applied when its module is first imported (that transformers trains bf16 on
the CPU only when told `use_cpu` is chatlike's own plugin's business, as on any CPU run asking for bf16):
- Axolotl places the model on the accelerator numbered by the rank (`device_map: {"": LOCAL_RANK}`), which
  transformers refuses without one: here it stays on the CPU;
- gloo's all_gather_into_tensor writes into views of its output split per rank, which autograd refuses when
  DeepSpeed gathers the updated partitions with gradients enabled: here it gathers without them (NCCL has a
  native kernel and never splits).
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys


def _axolotl_config(module):
    normalize = module.normalize_config

    def on_cpu(cfg):
        normalize(cfg)
        cfg.device_map = {"": "cpu"}
    module.normalize_config = on_cpu


def _deepspeed_utils(module):
    import torch

    gather = module.all_gather_into_tensor_dp_groups

    def without_grad(*args, **kwargs):
        with torch.no_grad():
            return gather(*args, **kwargs)
    module.all_gather_into_tensor_dp_groups = without_grad


PATCHES = {"axolotl.utils.config": _axolotl_config, "deepspeed.runtime.utils": _deepspeed_utils}


class _Wrap(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            PATCHES[name](module)
        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Wrap())
