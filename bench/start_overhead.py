"""Benchmark what `chatlike-runner start` adds to running a container: a trivial run (the tests' stand-in image,
one step, a tiny input) through the runner against `docker run --rm` of the same container doing the same work,
alternating, medians of --pairs; staging the inputs (put_archive) is measured apart. Target: the runner at most
1.5x `docker run` plus staging. Then one run under cProfile says where the runner's time goes: imports, the
engine's round trips, the rest. The runner's modules are compiled to bytecode first, as pip does when it installs
a package (an editable install under PYTHONDONTWRITEBYTECODE=1 would compile them from source at every start).

    .venv/bin/python bench/start_overhead.py [--pairs 5]
"""

from __future__ import annotations

import argparse
import compileall
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from standin import image as standin  # noqa: E402  (the tests' stand-in image, built on demand)

from chatlike_runner import stage  # noqa: E402
from chatlike_runner.plan import build_plan  # noqa: E402

CONFIG = "base_model: tiny\nadapter: qlora\ndatasets:\n  - path: data/train.jsonl\n    type: chat_template\n"
DATA = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey!"}]}\n'
# The container's own work in both cases: one stand-in step over a config at the path the runner stages it to.
SAME_WORK = ("mkdir -p /chatlike/input && echo x > /chatlike/input/config.yml && : > /chatlike/input/SHA256SUMS "
             "&& chatlike-train run /chatlike/input/config.yml")


def _timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    return seconds


def _staging(client: docker.DockerClient, image: str, project: Path) -> float:
    """put_archive of the run's inputs into a created container, alone."""
    plan = build_plan(project / "config.yml", image=image, out=project / "out")
    container = client.containers.create(image, ["true"])
    try:
        started = time.perf_counter()
        container.put_archive("/", stage.input_archive(plan, {}))
        return time.perf_counter() - started
    finally:
        container.remove(force=True)


def _where(project: Path, image: str) -> str:
    """One run under cProfile: imports, engine round trips (count and time), container start, the rest."""
    profile = project / "start.prof"
    _timed([sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "chatlike_runner", "start", "config.yml",
            "--image", image, "--no-validate", "--out", str(project / "out")], project)
    stats = pstats.Stats(str(profile)).stats

    def cumulative(file_part: str, name: str) -> tuple[int, float]:
        found = [(v[1], v[3]) for k, v in stats.items() if k[2] == name and file_part in k[0]]
        return (sum(n for n, _ in found), max((t for _, t in found), default=0.0))

    total = max(v[3] for v in stats.values())
    imports = cumulative("importlib._bootstrap", "_find_and_load")[1]
    calls, engine = cumulative("requests/sessions.py", "send")
    started = cumulative("docker/api/container.py", "start")[1]
    return (f"where the runner's time goes (one profiled run, {total:.2f} s): imports {imports:.2f} s; "
            f"{calls} engine round trips {engine:.2f} s, of which starting the container {started:.2f} s; "
            f"the rest {total - imports - engine:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    client = docker.from_env()
    image = standin.ensure(client)
    compileall.compile_dir(REPO / "runner" / "chatlike_runner", quiet=1)
    with tempfile.TemporaryDirectory(prefix="chatlike-bench-") as temp:
        project = Path(temp)
        (project / "data").mkdir()
        (project / "data" / "train.jsonl").write_text(DATA)
        (project / "config.yml").write_text(CONFIG)
        runner = [sys.executable, "-m", "chatlike_runner", "start", "config.yml", "--image", image, "--no-validate",
                  "--out", str(project / "out"), "--env", "STANDIN_STEPS"]
        plain = ["docker", "run", "--rm", "-e", "STANDIN_STEPS=1", "--entrypoint", "sh", image, "-c", SAME_WORK]
        os.environ["STANDIN_STEPS"] = "1"  # passed by name (--env), as a secret would be
        _timed(runner, project), _timed(plain, project)  # warm both once
        runs, dockers = [], []
        for _ in range(args.pairs):
            runs.append(_timed(runner, project))
            dockers.append(_timed(plain, project))
        staging = statistics.median(_staging(client, image, project) for _ in range(args.pairs))
        where = _where(project, image)
        for run in (project / "out").iterdir():  # the runs' containers and volumes
            subprocess.run([sys.executable, "-m", "chatlike_runner", "rm", run.name, "--out", str(project / "out")],
                           capture_output=True)
    start_s, docker_s = statistics.median(runs), statistics.median(dockers)
    print(f"chatlike-runner start: {start_s:.2f} s (median of {args.pairs}); docker run --rm: {docker_s:.2f} s; "
          f"staging alone: {staging * 1000:.0f} ms")
    print(f"ratio: {start_s / (docker_s + staging):.2f}x docker run plus staging (target <= 1.5)")
    print(where)


if __name__ == "__main__":
    main()
