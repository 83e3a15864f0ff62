"""Benchmark: copy a >= 1 GiB output volume home with the runner's code and with `docker cp`.

Both copies read the same container on the same engine in the same run, alternating, best of
three each. Prints the throughput of each, the ratio (runner / docker cp; target >= 1.2) and the
runner's peak RSS (target <= 64 MiB), measured in a fresh process that does only the copy.

    .venv/bin/python bench/copy_out.py [--gib 1] [--host URL]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from standin import image as standin  # noqa: E402  (the test fixture image: busybox)

BENCH_RUN = "bench-copy-out"
# Runs in a child process so that its peak RSS is the copy's alone.
RUNNER_COPY = """
import resource, sys, time
from pathlib import Path
from chatlike_runner.collect import copy_outputs
from chatlike_runner.engine import Engine
engine = Engine.connect(sys.argv[3] or None)
run = engine.container(sys.argv[1])
start = time.perf_counter()
copy_outputs(engine, run, Path(sys.argv[2]))
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def fill_volume(client: docker.DockerClient, image: str, gib: int) -> tuple[docker.models.containers.Container, str]:
    """A stopped container whose output volume holds one large file and many small ones."""
    volume = client.volumes.create(f"chatlike-{BENCH_RUN}-output")  # named as a run's output volume
    script = (
        f"dd if=/dev/urandom of=/chatlike/output/adapter_model.safetensors bs=1M count={gib * 1024 - 64} 2>/dev/null;"
        "mkdir -p /chatlike/output/checkpoint; for i in $(seq 64); do "
        "dd if=/dev/urandom of=/chatlike/output/checkpoint/shard-$i bs=1M count=1 2>/dev/null; done"
    )
    container = client.containers.run(
        image, ["sh", "-c", script], entrypoint=[], user="0", detach=True, labels={"org.chatlike.run": BENCH_RUN},
        volumes={volume.name: {"bind": "/chatlike/output", "mode": "rw"}},
    )
    container.wait()
    os.sync()
    return container, volume.name


def runner_copy(container_id: str, dest: Path, host: str) -> tuple[float, int]:
    output = subprocess.run(
        [sys.executable, "-c", RUNNER_COPY, container_id, str(dest), host], check=True, capture_output=True, text=True
    ).stdout.split()
    return float(output[0]), int(output[1]) * 1024


def docker_cp(container_id: str, dest: Path, host: str) -> float:
    env = {"DOCKER_HOST": host} if host else None
    start = time.perf_counter()
    subprocess.run(["docker", "cp", f"{container_id}:/chatlike/output", str(dest)], check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=int, default=1)
    parser.add_argument("--host", default="")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = docker.DockerClient(base_url=args.host) if args.host else docker.from_env()
    container, volume = fill_volume(client, standin.ensure(client), args.gib)
    size = args.gib * 2**30
    runner_times, cp_times, peak = [], [], 0
    try:
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(dir=".") as tmp:
                os.sync()  # start each copy with no dirty pages left by the one before
                seconds, rss = runner_copy(container.id, Path(tmp), args.host)
                runner_times.append(seconds)
                peak = max(peak, rss)
            with tempfile.TemporaryDirectory(dir=".") as tmp:
                os.sync()
                cp_times.append(docker_cp(container.id, Path(tmp) / "out", args.host))
    finally:
        container.remove(force=True)
        client.volumes.get(volume).remove(force=True)
    runner, cp = min(runner_times), min(cp_times)
    print(f"volume: {size / 2**30:.1f} GiB (1 large file + 64 x 1 MiB), best of {args.rounds}")
    print(f"chatlike-runner: {size / runner / 2**20:7.1f} MiB/s  ({runner:.2f} s)")
    print(f"docker cp:       {size / cp / 2**20:7.1f} MiB/s  ({cp:.2f} s)")
    print(f"ratio runner/docker cp: {cp / runner:.2f}x  (target >= 3x on a local engine, the archive stream elsewhere)")
    print(f"runner peak RSS: {peak / 2**20:.1f} MiB  (target <= 64 MiB)")


if __name__ == "__main__":
    main()
