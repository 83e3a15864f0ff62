"""Benchmark: copy a >= 1 GiB output volume home with the runner's code and with `docker cp`.

The copies read the same volume on the same engine in the same run, alternating, best of three each: the
runner as this user (root: from the volume's folder), the runner as an ordinary member of the docker group
(a short-lived container of the CPU training image; needs root to switch user, and chatlike/train:cpu), and
`docker cp`. Prints each throughput, the ratios to `docker cp` (target >= 3x on a local engine) and to the
engine's raw archive stream (target >= 0.9x over ssh://), and the runner's peak RSS (target <= 64 MiB), measured
in a fresh process that does only the copy. Over ssh:// the raw stream is read both ways the runner can: through
the ssh client (`docker cp … -` on the engine's host) and through the engine's API (docker-py's paramiko
transport).

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
CPU_IMAGE = "chatlike/train:cpu"
NOBODY = 65534
# Runs in a child process so that its peak RSS is the copy's alone.
RUNNER_COPY = """
import resource, sys, time
from pathlib import Path
from chatlike_runner.collect import copy_outputs
from chatlike_runner.engine import Engine
engine = Engine.connect(sys.argv[3] or None)
run = engine.container(sys.argv[1])
start = time.perf_counter()
if sys.argv[4] == "copy":
    copy_outputs(engine, run, Path(sys.argv[2]))
else:  # the archive read and dropped: the most any copy through that way can reach
    for _ in (engine.archive_by_ssh if sys.argv[4] == "raw-ssh" else engine.archive)(run, "/chatlike/output"):
        pass
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


def as_run(client: docker.DockerClient, image: str, volume: str) -> docker.models.containers.Container:
    """A stopped container of `image` that stands for the run whose output volume is `volume`."""
    return client.containers.create(image, ["true"], entrypoint=[], labels={"org.chatlike.run": BENCH_RUN},
                                    volumes={volume: {"bind": "/chatlike/output", "mode": "rw"}})


def runner_copy(container_id: str, dest: Path, host: str, user: list[str] | None = None,
                mode: str = "copy") -> tuple[float, int]:
    """The runner's copy_outputs (or, `mode` raw or raw-ssh, the bare archive stream) in a fresh process; `user`:
    setpriv's options to run it as another user. Returns seconds and its peak RSS."""
    switch = ["setpriv", *user] if user else []
    output = subprocess.run(
        [*switch, sys.executable, "-c", RUNNER_COPY, container_id, str(dest), host, mode], check=True,
        capture_output=True, text=True,
    ).stdout.split()
    return float(output[0]), int(output[1]) * 1024


def docker_cp(container_id: str, dest: Path, host: str) -> float:
    env = {**os.environ, "DOCKER_HOST": host} if host else None
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
    ordinary = None
    if os.geteuid() == 0 and not args.host and client.images.list(CPU_IMAGE):
        docker_gid = os.stat("/var/run/docker.sock").st_gid
        ordinary = (as_run(client, CPU_IMAGE, volume), [f"--reuid={NOBODY}", f"--regid={NOBODY}", f"--groups={docker_gid}"])
    size = args.gib * 2**30
    times: dict[str, list[float]] = {"runner": [], "user": [], "cp": [], "raw": [], "raw-ssh": []}
    peak = 0
    try:
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(dir=".") as tmp:
                os.sync()  # start each copy with no dirty pages left by the one before
                seconds, rss = runner_copy(container.id, Path(tmp), args.host)
                times["runner"].append(seconds)
                peak = max(peak, rss)
            if ordinary is not None:
                with tempfile.TemporaryDirectory(dir=".") as tmp:
                    os.chown(tmp, NOBODY, NOBODY)
                    os.sync()
                    seconds, rss = runner_copy(ordinary[0].id, Path(tmp) / "home", "", ordinary[1])
                    times["user"].append(seconds)
                    peak = max(peak, rss)
            with tempfile.TemporaryDirectory(dir=".") as tmp:
                os.sync()
                times["cp"].append(docker_cp(container.id, Path(tmp) / "out", args.host))
            times["raw"].append(runner_copy(container.id, Path("."), args.host, mode="raw")[0])
            if args.host.startswith("ssh://"):
                times["raw-ssh"].append(runner_copy(container.id, Path("."), args.host, mode="raw-ssh")[0])
    finally:
        for made in (container, ordinary[0] if ordinary else None):
            if made is not None:
                made.remove(force=True)
        client.volumes.get(volume).remove(force=True)
    cp = min(times["cp"])
    raws = {way: min(times[key]) for key, way in (("raw", "engine's API"), ("raw-ssh", "ssh client")) if times[key]}
    print(f"volume: {size / 2**30:.1f} GiB (1 large file + 64 x 1 MiB), best of {args.rounds}")
    print(f"docker cp:       {size / cp / 2**20:7.1f} MiB/s  ({cp:.2f} s)")
    for way, raw in raws.items():
        print(f"the engine's archive through the {way}, read and dropped: {size / raw / 2**20:7.1f} MiB/s  ({raw:.2f} s)")
    for key, label in (("runner", f"chatlike-runner as uid {os.geteuid()}"), ("user", "chatlike-runner as uid "
                       f"{NOBODY} (a container of {CPU_IMAGE})")):
        if times[key]:
            best = min(times[key])
            print(f"{label}: {size / best / 2**20:7.1f} MiB/s  ({best:.2f} s), ratio to docker cp: {cp / best:.2f}x  "
                  f"(target >= 3x on a local engine), to the archive stream "
                  + ", ".join(f"through the {way}: {raw / best:.2f}x" for way, raw in raws.items())
                  + "  (target >= 0.9x over ssh://)")
    if ordinary is None and not args.host:
        print(f"as an ordinary user: not measured (needs root to switch user, and {CPU_IMAGE}: make image-cpu)")
    print(f"runner peak RSS: {peak / 2**20:.1f} MiB  (target <= 64 MiB)")


if __name__ == "__main__":
    main()
