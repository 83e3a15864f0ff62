"""The one-shot GPU check: chatlike's production recipe on an 8B-shaped model with random weights, through Axolotl's
own trainer, natively in a Python with the image's stack (no Docker, no download), and a faster variant beside it.

It runs configs/llama-3.1-8b-qlora.yml as is (4-bit, DoRA r=64, embed_tokens and lm_head saved, gradient
checkpointing, sequence 4096 packed, bitsandbytes 8-bit AdamW) for a few steps on a Llama 3.1 8B shape made here
(random bf16 weights, a small locally trained tokenizer), then the variant (Liger's RoPE, RMSNorm, SwiGLU and fused
linear cross-entropy kernels), and prints for each: tokens/s, s/step (the first step left out), peak allocated and
reserved GiB, MFU by estimate.py's FLOP count, and the estimator's memory beside the measured; then the variant's
ratios and the largest difference of its losses at the same steps.

    python bench/gpu.py                   # on a CUDA machine: one GPU, about 6 minutes on an H200
    python bench/gpu.py --shape tiny      # the CPU rehearsal (a test runs it): tiny model, sequence 256; Liger,
                                          # which needs CUDA, is left out of the variant there
Writes OUT/results.json (default: a temporary folder, --out to keep it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "runner"))

from chatlike_runner import estimate as est  # noqa: E402
from chatlike_runner.train.shapes import LLAMA_31_8B  # noqa: E402

RESULTS = "bench-steps.json"
LIGER = {"plugins": ["axolotl.integrations.liger.LigerPlugin"], "liger_rope": True, "liger_rms_norm": True,
         "liger_glu_activation": True, "liger_fused_linear_cross_entropy": True}
WORDS = ("ok see you at nine did you get the tickets yes both of them great thanks the train is late again "
         "call me when you land sure how was the exam not bad I think I passed let's grab dinner friday").split()


class StepClock(TrainerCallback):
    """Each optimizer step's wall time and loss, and the peak CUDA memory, written to output_dir/bench-steps.json."""

    def __init__(self) -> None:
        self.started = 0.0
        self.steps: list[dict] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.steps.append({"step": state.global_step, "seconds": time.perf_counter() - self.started})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and self.steps:
            self.steps[-1]["loss"] = float(logs["loss"])

    def on_train_end(self, args, state, control, **kwargs):
        import torch

        peak = {}
        if torch.cuda.is_available():
            peak = {"allocated": torch.cuda.max_memory_allocated(), "reserved": torch.cuda.max_memory_reserved()}
        if state.is_world_process_zero:
            (Path(args.output_dir) / RESULTS).write_text(json.dumps({"steps": self.steps, "peak": peak}))

    @staticmethod
    def _sync() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


class MeasurePlugin(BasePlugin):
    """Listed in the bench's configs as `gpu.MeasurePlugin` (bench/ on PYTHONPATH)."""

    def add_callbacks_pre_trainer(self, cfg, model):
        return [StepClock()]


def make_dataset(path: Path, tokens: int, sequence_len: int, seed: int = 0) -> None:
    """Chats of 2 turns and up, about `tokens` tokens in all, each at most a third of `sequence_len` by a generous
    count (the small tokenizer makes ~1 token per 2 bytes of these words), so that none is dropped for length."""
    rng = random.Random(seed)
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < tokens:
            target, turns, size = rng.randint(sequence_len // 12, sequence_len // 3), [], 0
            while size < target or len(turns) < 2:
                content = " ".join(rng.choices(WORDS, k=rng.randint(2, 12)))
                turns.append({"role": ("user", "assistant")[len(turns) % 2], "content": content})
                size += len(content) // 2 + 6
            if len(turns) % 2:
                turns.pop()
            out.write(json.dumps({"messages": turns}) + "\n")
            written += size


def config(base: Path, model: Path, data: Path, out: Path, steps: int, sequence_len: int | None, fast: bool,
           cuda: bool) -> dict:
    """The recipe to run: the production config (or, on CPU, the smoke config that runs it there) on the bench's
    model and data, for `steps` steps, without saving, evaluating or wandb; the variant adds Liger where CUDA is."""
    raw = yaml.safe_load(base.read_text())
    for key in ("deepspeed", "wandb_project", "evals_per_epoch", "saves_per_epoch", "save_steps", "eval_steps",
                "auto_resume_from_checkpoints"):
        raw.pop(key, None)
    raw.update(base_model=str(model), datasets=[{**raw["datasets"][0], "path": str(data)}], max_steps=steps,
               val_set_size=0, output_dir=str(out), dataset_prepared_path=str(out / "prepared"), save_strategy="no",
               warmup_steps=1, logging_steps=1, plugins=["gpu.MeasurePlugin"])
    raw.pop("warmup_ratio", None)
    if sequence_len:
        raw["sequence_len"] = sequence_len
    if fast and cuda:
        raw.update({**LIGER, "plugins": ["gpu.MeasurePlugin", *LIGER["plugins"]]})
    return raw


def run(name: str, raw: dict, out: Path) -> dict:
    """Train the config in its own process (as chatlike-train runs it); its steps, peak memory and wall time."""
    shutil.rmtree(out, ignore_errors=True)  # an earlier run's prepared dataset would be reused
    out.mkdir(parents=True)
    path = out / "config.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "bench"), str(REPO / "runner"),
                                                                      os.environ.get("PYTHONPATH")])),
           "AXOLOTL_DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "axolotl.cli.train", str(path)], env=env, capture_output=True, text=True)
    (out / "train.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0 or not (out / RESULTS).is_file():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-25:])
        raise SystemExit(f"bench/gpu.py: the {name} run failed (exit {done.returncode}); its log: {out / 'train.log'}\n{tail}")
    return {**json.loads((out / RESULTS).read_text()), "wall_seconds": time.perf_counter() - started}


def measure(name: str, raw: dict, measured: dict, facts: dict, gpu: est.Gpu | None) -> dict:
    """The figures of one run, with the estimator's beside them."""
    steady = measured["steps"][1:] or measured["steps"]
    seconds = sum(s["seconds"] for s in steady) / len(steady)
    recipe = est.Recipe.of(raw, 1)
    tokens = recipe.micro_batch * recipe.accumulation * recipe.sequence_len
    counted = facts["tokens"]
    flops = est.training_flops(facts["model"], facts["parameters"], tokens,
                               tokens * counted["squares"] / counted["tokens"], recipe.checkpointing)
    figures = {"variant": name, "tokens_per_step": tokens, "seconds_per_step": seconds, "tokens_per_second": tokens / seconds,
               "losses": {str(s["step"]): s.get("loss") for s in measured["steps"]}, "wall_seconds": measured["wall_seconds"],
               "peak_allocated_gib": None, "peak_reserved_gib": None, "mfu": None, "estimate_gib": None}
    if gpu is not None and measured["peak"]:
        figures.update(peak_allocated_gib=measured["peak"]["allocated"] / est.GIB,
                       peak_reserved_gib=measured["peak"]["reserved"] / est.GIB,
                       estimate_gib=est.memory(facts, recipe, gpu, 1).total / est.GIB)
        if gpu.tflops:
            figures["mfu"] = flops / seconds / (gpu.tflops * 1e12)
    return figures


def in_child(code: str, *args: str) -> str:
    """Run `code` in a child Python (with the runner importable) and return what it printed: the bench's own
    process never holds a CUDA context, which would take memory from the runs it measures."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "runner"), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code, *args], env=env, check=True, capture_output=True,
                          text=True).stdout.strip().splitlines()[-1]


def local_gpu() -> est.Gpu | None:
    """The first CUDA GPU with the memory it reports, or None."""
    found = json.loads(in_child("import json, torch; print(json.dumps(torch.cuda.is_available() and "
                                "[torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory]))"))
    return est.gpu(found[0], found[1] / est.GIB) if found else None


def make_model(folder: Path, eight_b: bool, cuda: bool) -> None:
    """The tiny model, or an 8B-shaped one with random bf16 weights (made on the GPU: seconds, not minutes)."""
    shape = {k: v for k, v in LLAMA_31_8B.items() if k not in ("model_type", "architectures", "torch_dtype")}
    in_child("import json, sys; from pathlib import Path; from chatlike_runner.train.tinymodel import make_tiny_model; "
             "print(make_tiny_model(Path(sys.argv[1]), shape=json.loads(sys.argv[2]) or None, device=sys.argv[3]))",
             str(folder), json.dumps(shape if eight_b else {}), "cuda" if cuda else "cpu")


def show(rows: list[dict], gpu: est.Gpu | None) -> None:
    where = f"1x {gpu.name} ({gpu.memory_gib:.1f} GiB, {gpu.tflops} TFLOPS bf16 peak)" if gpu else "CPU (rehearsal)"
    print(f"bench/gpu.py on {where}")
    print(f"{'variant':10} {'tokens/s':>10} {'s/step':>8} {'allocated':>10} {'reserved':>9} {'estimate':>9} {'MFU':>6}")
    for r in rows:
        gib = lambda v: f"{v:.1f} GiB" if v is not None else "n/a"  # noqa: E731
        mfu = f"{r['mfu']:.0%}" if r["mfu"] is not None else "n/a"
        print(f"{r['variant']:10} {r['tokens_per_second']:>10.1f} {r['seconds_per_step']:>8.2f} {gib(r['peak_allocated_gib']):>10} "
              f"{gib(r['peak_reserved_gib']):>9} {gib(r['estimate_gib']):>9} {mfu:>6}")
    if gpu is None:
        print("(on CPU the fast variant is the baseline again, since Liger needs CUDA: this rehearses the script, "
              "not the speed)")
    base, fast = rows
    steps = sorted(set(base["losses"]) & set(fast["losses"]), key=int)
    gaps = [abs(base["losses"][s] - fast["losses"][s]) for s in steps if base["losses"][s] is not None and fast["losses"][s] is not None]
    memory = (f", memory {fast['peak_reserved_gib'] / base['peak_reserved_gib']:.2f}x"
              if base["peak_reserved_gib"] and fast["peak_reserved_gib"] else "")
    print(f"fast / baseline: tokens/s {fast['tokens_per_second'] / base['tokens_per_second']:.2f}x{memory}; "
          f"loss at the same {len(steps)} steps differs by at most {max(gaps, default=float('nan')):.4f}")


def main() -> None:
    gpu = local_gpu()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=("8b", "tiny"), default="8b" if gpu else "tiny")
    parser.add_argument("--steps", type=int, default=None, help="Optimizer steps per variant (default 8 on 8b, 3 tiny).")
    parser.add_argument("--out", type=Path, help="Keep the model, data, logs and results.json here.")
    args = parser.parse_args()
    eight_b = args.shape == "8b"
    steps = args.steps or (8 if eight_b else 3)
    out = args.out or Path(tempfile.mkdtemp(prefix="chatlike-gpu-bench-"))
    out.mkdir(parents=True, exist_ok=True)

    from chatlike_runner.train.shapes import shapes

    model = out / "model"
    if not (model / "config.json").is_file():
        make_model(model, eight_b, gpu is not None)
    base = REPO / "configs" / ("llama-3.1-8b-qlora.yml" if eight_b else "cpu-smoke.yml")
    sequence_len = None if eight_b else 256
    probe = config(base, model, out / "chats.jsonl", out, steps, sequence_len, False, gpu is not None)
    recipe = est.Recipe.of(probe, 1)
    make_dataset(out / "chats.jsonl", int(1.3 * (steps + 1) * recipe.micro_batch * recipe.accumulation * recipe.sequence_len),
                 recipe.sequence_len)
    facts = shapes(probe, out / "chats.jsonl")
    rows = []
    for name, fast in (("baseline", False), ("fast", True)):
        raw = config(base, model, out / "chats.jsonl", out / name, steps, sequence_len, fast, gpu is not None)
        rows.append(measure(name, raw, run(name, raw, out / name), facts, gpu))
    (out / "results.json").write_text(json.dumps({"gpu": gpu.name if gpu else None, "shape": args.shape, "variants": rows},
                                                 indent=2))
    show(rows, gpu)
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
