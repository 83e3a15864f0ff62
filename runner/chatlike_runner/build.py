"""Build: the training image from this checkout's Dockerfile, and the export image (llama.cpp added to it).

Building goes through the Docker CLI, not the SDK: the Dockerfiles need BuildKit (`RUN --mount`,
`--secret` for a proxy's CA bundle), which docker-py does not speak. docker/build.sh makes the one Debian
base of both flavors locally with debootstrap, since no registry is needed, then builds the flavor.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import preflight
from .core import constants as c
from .core.errors import ChatlikeError

REPO = c.CONFIGS.parent
# What a first build takes on 2 cores (the Debian base included), for the line that announces one, as measured on a
# fresh clone with an empty engine: the CPU flavor's base 24 s and image 168 s (plus the torch wheel's download where
# no copy is at hand); the CUDA flavor's most of it downloading its wheels, 4 to 30 minutes as the network goes.
FIRST_BUILD_MINUTES = {"cpu": 4, "cuda": 30}
# llama.cpp's build, which only `export` needs (docker/export.Dockerfile): 240 s, measured the same way.
EXPORT_BUILD_MINUTES = 4


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


def command(flavor: str) -> list[str]:
    """The build command for `flavor`, run from the repository root."""
    if not (REPO / "Dockerfile").is_file():
        raise ChatlikeError("building needs a checkout of chatlike (its Dockerfile); run it from a clone")
    return ["bash", str(REPO / "docker" / "build.sh"), flavor]


def build(flavor: str, host: str | None, tag: str | None, ca_bundle: Path | None, **more: str) -> int:
    """Run the build with its output on this terminal; returns the build's exit code. `more`: variables for build.sh."""
    env = {**os.environ, **more, "DOCKER_BUILDKIT": "1",
           "IMAGE": tag or (c.CPU_IMAGE if flavor == "cpu" else c.DEFAULT_IMAGE)}
    if host:
        env["DOCKER_HOST"] = host
    if ca_bundle:
        env["CA_BUNDLE"] = str(ca_bundle)
    return subprocess.run(command(flavor), cwd=REPO, env=env, check=False).returncode


def export_tag(image_id: str) -> str:
    """The export image of the training image `image_id`."""
    return f"{c.EXPORT_IMAGE}:{image_id.removeprefix('sha256:')[:12]}"


def build_export(run_image: str, image_id: str, host: str | None) -> int:
    """Build export_tag(image_id): llama.cpp on the training image named `run_image`; returns the exit code."""
    return build("export", host, export_tag(image_id), None, RUN_IMAGE=run_image, RUN_IMAGE_ID=image_id)
