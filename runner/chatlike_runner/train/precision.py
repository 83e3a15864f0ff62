"""The precision a run trains in where no GPU is visible.

Axolotl reads `bf16: auto` as "bf16 where a GPU has it, else fp16", which on a CPU means fp16 mixed precision with
the model loaded in float16: fp16 has no fast CPU kernels. bench/cpu_precision.py measured a training step of the
preview's real small model (LoRA r 8, 2 × 256 tokens) on an AVX2 CPU: fp32 3.65 s, bf16 99 s (27×, no native bf16
there); on an AVX512-BF16 CPU fp16 took about 60 s against fp32's 4 s (docs/benchmarks.md). So on a CPU `bf16:
auto` means fp32, or bf16 where the CPU multiplies bf16 matrices in hardware (AMX), never fp16. A config that asks
for bf16 itself gets it on a CPU too (transformers refuses bf16 without a GPU unless told the run is on the CPU:
plugin.py tells it).
"""

from __future__ import annotations

from collections.abc import Mapping


def native_bf16() -> bool:
    """Whether this CPU has AMX tiles, where oneDNN multiplies bf16 matrices in hardware."""
    import torch

    return bool(torch.cpu._is_amx_tile_supported())


def on_cpu(config: Mapping, native: bool) -> dict:
    """The precision keys of `config` for a run without a GPU: `bf16: auto` resolved to bf16 where the CPU has it
    (`native`: native_bf16()), else fp32 (a config that sets fp16 itself keeps it, as Axolotl reads it)."""
    if config.get("bf16") != "auto":
        return {}
    if config.get("fp16"):
        return {"bf16": False}
    return {"bf16": native, "fp16": False}
