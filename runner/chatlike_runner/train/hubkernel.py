"""The flash-attention hub kernel the CUDA image fetches at build time, and whether a config may ask for it.

The Dockerfile names the kernel (CHATLIKE_FA2_KERNEL=REPO@REVISION) and where it lies (KERNELS_CACHE). A build that
cannot reach the hub leaves it out, and the CPU flavor never has it: then a config with flash_attention_2 is refused
by `validate`, before a run, instead of failing at the first training step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

KERNEL_ENV = "CHATLIKE_FA2_KERNEL"


def baked(cache: Path, repo: str, revision: str) -> bool:
    """Whether `repo` is in the kernels cache `cache` under `revision` (what an offline `get_kernel` resolves)."""
    return any(cache.glob(f"*--{repo.replace('/', '--')}/refs/{revision}"))


def wants_flash_attention(raw: Mapping) -> bool:
    return raw.get("attn_implementation") == "flash_attention_2" or raw.get("flash_attention") is True


def refusal(raw: Mapping, env: Mapping[str, str] = os.environ) -> str | None:
    """Why this image cannot run the config's attention, or None (also outside the image, which names no kernel)."""
    kernel, cache = env.get(KERNEL_ENV), env.get("KERNELS_CACHE")
    if not (wants_flash_attention(raw) and kernel and cache):
        return None
    repo, _, revision = kernel.rpartition("@")
    if baked(Path(cache), repo, revision):
        return None
    return (f"attn_implementation: flash_attention_2 needs the flash-attention kernel {kernel}, which this image does "
            "not have (the CPU flavor never has it; the CUDA flavor fetches it when its build reaches huggingface.co): "
            "set attn_implementation: sdpa, or build the CUDA image again where the hub is reachable (`make image`)")
