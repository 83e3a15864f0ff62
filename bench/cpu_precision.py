"""Benchmark a training step of the CPU preview's real small model (SmolLM2-135M-Instruct, LoRA r 8 on every linear
layer, micro-batch 2 of 256 tokens, as configs/cpu-preview.yml trains it) in each precision a CPU could train in:
fp32, bf16 and fp16, each as Axolotl would set it up (the model loaded in that type, the adapter in fp32, autocast
around forward and backward). Prints the median step time of each and its ratio to fp32, measured in this run,
and what this CPU has (AVX512-BF16, AMX) that `bf16: auto` reads (train/precision.py).

    docker run --rm -v "$PWD/bench:/bench:ro" chatlike/train:cpu python /bench/cpu_precision.py [--steps 3]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

MODEL = Path("/opt/models/smollm2-135m-instruct")


def step_times(model_dir: Path, dtype_name: str, steps: int, threads: int) -> list[float]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dtype = getattr(torch, {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype_name])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear"))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (2, 256))
    autocast = (torch.autocast("cpu", dtype=dtype) if dtype_name != "fp32" else contextlib.nullcontext())
    times = []
    for _ in range(steps + 1):  # the first step warms up (allocations, oneDNN's kernel choice): not counted
        started = time.perf_counter()
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - started)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL, help="The model's folder.  [default: the image's]")
    parser.add_argument("--steps", type=int, default=3, help="Timed steps per precision (after one warm-up step).")
    parser.add_argument("--precisions", default="fp32,bf16,fp16", help="Which, comma-separated; fp32 first.")
    args = parser.parse_args()
    import torch

    threads = torch.get_num_threads()
    print(f"CPU: {torch.backends.cpu.get_cpu_capability()}; AVX512-BF16 "
          f"{torch.cpu._is_avx512_bf16_supported()}; AMX {torch.cpu._is_amx_tile_supported()}; {threads} threads")
    medians: dict[str, float] = {}
    for name in args.precisions.split(","):
        times = step_times(args.model, name, args.steps, threads)
        medians[name] = statistics.median(times)
        ratio = f"{medians[name] / medians['fp32']:.2f}x fp32" if "fp32" in medians else ""
        print(f"{name}: median {medians[name]:.2f} s a step over {len(times)} ({', '.join(f'{t:.2f}' for t in times)}) "
              f"{ratio}", flush=True)
    fastest = min(medians, key=medians.get)
    print(f"fastest here: {fastest}")
    sys.exit(0)


if __name__ == "__main__":
    main()
