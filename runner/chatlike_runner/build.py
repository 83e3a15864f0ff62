"""Build: the training image from this checkout's Dockerfile.

Building goes through the Docker CLI, not the SDK: the Dockerfile needs BuildKit (`RUN --mount`,
`--secret` for a proxy's CA bundle), which docker-py does not speak. The CPU flavor also makes
its Debian base locally with debootstrap (docker/build-cpu.sh), since no registry is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from . import constants as c
from . import preflight
from .errors import ChatlikeError

REPO = c.CONFIGS.parent
# What a first build takes here (2 cores; the CPU flavor's base included), for the line that announces one.
FIRST_BUILD_MINUTES = {"cpu": 5, "cuda": 30}


def needed(flavor: str, host: str | None, tag: str | None, *, check_gpus: bool, if_missing: bool) -> str | None:
    """Checks before a build, the GPUs first for the CUDA flavor (raises PreflightFailed on a host that cannot
    run it); returns why no build is needed, or None to build."""
    engine = preflight.for_gpu_build(host) if flavor == "cuda" and check_gpus else None
    if not if_missing:
        return None
    tag = tag or (c.CPU_IMAGE if flavor == "cpu" else c.DEFAULT_IMAGE)
    engine = engine or preflight.engine_check(host).data
    if engine is not None and engine.image(tag) is not None:
        return f"image {tag} is already on {engine.url}; not building it again"
    return None


def command(flavor: str, tag: str | None, ca_bundle: Path | None) -> list[str]:
    """The build command for `flavor`, run from the repository root."""
    if not (REPO / "Dockerfile").is_file():
        raise ChatlikeError("building needs a checkout of chatlike (its Dockerfile); run it from a clone")
    if flavor == "cpu":
        return ["bash", str(REPO / "docker" / "build-cpu.sh")]
    docker = next((cli for cli in (shutil.which("docker"), "/usr/bin/docker") if cli and _has_buildkit(cli)), None)
    if docker is None:
        raise ChatlikeError("no docker CLI with BuildKit (`docker build --secret`) here; install docker-buildx")
    secret = ["--secret", f"id=ca,src={ca_bundle}"] if ca_bundle else []
    return [docker, "build", "--tag", tag or c.DEFAULT_IMAGE, *secret, str(REPO)]


def _has_buildkit(docker: str) -> bool:
    try:
        usage = subprocess.run([docker, "build", "--help"], capture_output=True, text=True, check=False,
                               env={**os.environ, "DOCKER_BUILDKIT": "1"}).stdout
    except OSError:
        return False
    return "--secret" in usage


def build(flavor: str, host: str | None, tag: str | None, ca_bundle: Path | None) -> int:
    """Run the build with its output on this terminal; returns the build's exit code."""
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    if host:
        env["DOCKER_HOST"] = host
    if flavor == "cpu":
        env["IMAGE"] = tag or c.CPU_IMAGE
        if ca_bundle:
            env["CA_BUNDLE"] = str(ca_bundle)
    return subprocess.run(command(flavor, tag, ca_bundle), cwd=REPO, env=env, check=False).returncode
