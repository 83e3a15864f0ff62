"""Mutated configs and dataset lines never crash `chatlike-train validate`: each ends valid or refused in words
(exit 0 or 2), never another exception, never only a Python exception's name, a bad line named by its number.
bench/fuzz_validate.py does it in-process in the CPU image's own Python (real Axolotl, the image's tiny model);
`make fuzz` runs it longer."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
CASES = 400

pytestmark = pytest.mark.engine


def test_hundreds_of_mutated_configs_and_dataset_lines_are_each_valid_or_refused_in_words(cpu_image):
    done = subprocess.run([sys.executable, str(REPO / "bench" / "fuzz_validate.py"), "--in-image", cpu_image,
                           "--cases", str(CASES), "--seed", "20261205", "--examples", "40"],
                          capture_output=True, text=True, timeout=600)
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
