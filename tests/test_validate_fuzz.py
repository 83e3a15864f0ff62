"""Mutated configs and dataset lines never crash `chatlike-train validate`: each ends valid or refused in words
(exit 0 or 2), never another exception, never only a Python exception's name, a bad line named by its number.
bench/fuzz_validate.py does it in-process in the training venv (real Axolotl, a tiny local model); `make fuzz`
runs it longer."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
TRAIN_PYTHON = Path(os.environ.get("CHATLIKE_TRAIN_PYTHON", REPO / ".venv-train" / "bin" / "python"))
CASES = 400


def test_hundreds_of_mutated_configs_and_dataset_lines_are_each_valid_or_refused_in_words(tmp_path):
    if not TRAIN_PYTHON.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the training venv {TRAIN_PYTHON} is missing (make train-venv)")
        pytest.skip(f"no training venv at {TRAIN_PYTHON} (make train-venv)")
    done = subprocess.run([str(TRAIN_PYTHON), str(REPO / "bench" / "fuzz_validate.py"), "--cases", str(CASES),
                           "--seed", "20261205", "--examples", "40"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HOME": str(tmp_path / "hf"), "TMPDIR": str(tmp_path)})
    summary = re.search(r"fuzz_validate: seed 20261205: (\d+) cases in \d+ s: (\d+) valid, (\d+) refused in words, "
                        r"(\d+) failures", done.stdout)
    assert summary, done.stdout[-3000:] + done.stderr[-3000:]
    cases, valid, refused, failures = map(int, summary.groups())
    assert failures == 0 and done.returncode == 0, done.stdout[-3000:]
    assert cases == CASES and valid + refused == cases
    assert valid > CASES // 10 and refused > CASES // 2, "the mutations should give both outcomes, mostly refusals"
    shown = [line.removeprefix("refused: ") for line in done.stdout.splitlines() if line.startswith("refused: ")]
    assert any(re.search(r"^dataset .*train\.jsonl: \d+ of 4 lines cannot be trained on", said) for said in shown)
    assert any("config does not pass Axolotl's schema: " in said for said in shown)
