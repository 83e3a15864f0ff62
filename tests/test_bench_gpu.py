"""bench/gpu.py, the one-shot GPU check, rehearsed on the CPU as its docstring says: the same script with the tiny
shape, both variants trained through Axolotl's own trainer in the training venv, its figures written and printed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import need

REPO = Path(__file__).resolve().parents[1]
TRAIN_PYTHON = Path(os.environ.get("CHATLIKE_TRAIN_PYTHON", REPO / ".venv-train" / "bin" / "python"))


def test_the_gpu_check_rehearses_on_the_cpu(tmp_path):
    if not TRAIN_PYTHON.exists():
        need(f"the training venv {TRAIN_PYTHON} is missing (make train-venv)")
    env = {**os.environ, "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([str(TRAIN_PYTHON), str(REPO / "bench" / "gpu.py"), "--shape", "tiny", "--steps", "3",
                           "--out", str(tmp_path / "bench")], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert results["gpu"] is None and results["shape"] == "tiny"
    base, fast = results["variants"]
    assert (base["variant"], fast["variant"]) == ("baseline", "fast")
    for run in (base, fast):
        assert run["tokens_per_step"] == 2 * 1 * 256  # the smoke recipe: micro-batch 2, accumulation 1, sequence 256
        assert run["seconds_per_step"] > 0 and run["tokens_per_second"] == pytest.approx(512 / run["seconds_per_step"])
        assert sorted(run["losses"], key=int) == ["1", "2", "3"] and all(v > 0 for v in run["losses"].values())
        config = (tmp_path / "bench" / run["variant"] / "config.yml").read_text()
        assert "peft_use_dora: true" in config and "load_in_4bit: true" in config and "optimizer: adamw_bnb_8bit" in config
    # The same data, seed and recipe (no Liger on CPU): the same losses, up to the CPU's arithmetic.
    assert max(abs(base["losses"][s] - fast["losses"][s]) for s in base["losses"]) < 0.01
    printed = done.stdout
    assert "bench/gpu.py on CPU (rehearsal)" in printed and "tokens/s" in printed and "s/step" in printed
    assert "fast / baseline: tokens/s " in printed and "loss at the same 3 steps differs by at most" in printed
