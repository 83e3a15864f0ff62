"""Where does the preview stop improving? Trains configs/cpu-preview.yml on the bundled example (or --data) in the CPU
image through `chatlike-runner start`, at its peak learning rate held constant, with the held-out set as the
evaluation set every --every steps, and prints held-out NLL per token against step: the curve that sets the preview's
max_steps (the first step after which --patience more steps gain less than --gain per token).

    .venv/bin/python bench/preview_curve.py [--steps 80] [--every 5] [--data data/train.jsonl]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "runner"))

from chatlike_runner.core.trainlog import loss_curve  # noqa: E402
from chatlike_runner.trial import write_example  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--every", type=int, default=5, help="Steps between evaluations of the held-out set.")
    parser.add_argument("--data", type=Path, help="train.jsonl with heldout.jsonl beside it.  [default: the example]")
    parser.add_argument("--gain", type=float, default=0.05, help="NLL per token that counts as still improving.")
    parser.add_argument("--patience", type=int, default=10, help="Steps over which the gain is measured.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / "data").mkdir()
        data = args.data.resolve() if args.data else write_example(project / "data")
        config = yaml.safe_load((REPO / "configs" / "cpu-preview.yml").read_text())
        heldout = {**config["datasets"][0], "path": str(data.parent / "heldout.jsonl"), "split": "train"}
        config.update(max_steps=args.steps, lr_scheduler="constant", save_steps=10_000, eval_steps=args.every,
                      test_datasets=[heldout], eval_sample_packing=False, eval_batch_size=4)
        (project / "curve.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        done = subprocess.run([sys.executable, "-m", "chatlike_runner", "start", "curve.yml", "--data", str(data),
                               "--image", "chatlike/train:cpu", "--out", str(project / "out")], cwd=project,
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"the run failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        run_id = re.search(r"^run (\S+) started on ", done.stdout, re.MULTILINE).group(1)
        points = [p for p in loss_curve(project / "out" / run_id / "logs" / "train.log") if "eval_loss" in p]
        subprocess.run([sys.executable, "-m", "chatlike_runner", "rm", run_id], cwd=project, capture_output=True)
    print(f"held-out NLL per token, learning rate {config['learning_rate']} constant, on {data}:")
    for point in points:
        print(f"  step {point['step']:4d}: {point['eval_loss']:.3f}")
    by_step = {p["step"]: p["eval_loss"] for p in points}
    flat = next((step for step, nll in by_step.items()
                 if step + args.patience in by_step and nll - by_step[step + args.patience] < args.gain), None)
    print(f"stops improving (less than {args.gain} in the next {args.patience} steps) at step {flat}")


if __name__ == "__main__":
    main()
