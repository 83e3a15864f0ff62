"""Rented boxes: a run on a Runpod pod or Lambda VMs through SkyPilot, described as plain data.

The SkyPilot task is built here without importing SkyPilot: the training image by registry digest (a rented box
cannot see your engine's images, and a tag could move), the run's staged inputs with their SHA256SUMS as a file
mount, secrets by name only (their values reach SkyPilot at launch, never a file), and the run command, which
checks the host's driver, puts the inputs in place and checks them, and starts `chatlike-train run` as root (the
image drops to its unprivileged user itself). skypilot.py validates and launches it.

Uploads land under /tmp/: SkyPilot rsyncs a file mount aimed there (or under ~/) straight to its target, while
any other target is rsynced under ~/.sky/file_mounts/ and linked into place, which fails on a folder the image
already has (/chatlike/input) and would point into root's home (mode 700), out of the training user's reach.
The run script moves them into place as root.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import constants as c
from .core.errors import ChatlikeError
from .parsing import parse_gpu_type
from .plan import RunPlan

PROVIDERS = ("runpod", "lambda")
DEFAULT_GPU = {"runpod": "RTX3090:2", "lambda": "A6000:2"}  # the seed's 2x 24 GB; Lambda has no RTX 3090
DEFAULT_DISK_GB = 200  # the image (~15 GB), the 8B base in the model cache (~16 GB), checkpoints
UPLOAD = "/tmp/chatlike-upload"  # where the task's file mounts land on the box (see above)
# Absolute: ssh sessions and SkyPilot's run script do not always get the image's PATH.
TRAIN = "/opt/venv/bin/chatlike-train"
WORKDIR = "/chatlike/work"
MAIN_PORT = 29500  # accelerate's rendezvous port on the head node of a multi-node run


@dataclass(frozen=True)
class Rented:
    """Where a run is rented: provider, GPU type and count per node, nodes, spot, disk, and whether to keep it."""

    provider: str
    gpu: str
    gpu_count: int
    nodes: int = 1
    spot: bool = False
    disk_gb: int | None = DEFAULT_DISK_GB  # None: the provider's own (Lambda's VMs come with a fixed disk)
    keep: bool = False

    def flags(self) -> dict[str, Any]:
        return {"provider": self.provider, "gpu": f"{self.gpu}:{self.gpu_count}", "nodes": self.nodes,
                "spot": self.spot, "disk_gb": self.disk_gb, "keep": self.keep}


def cluster_name(run_id: str) -> str:
    return f"chatlike-{run_id}"


def rented(provider: str, gpu: str | None = None, *, nodes: int = 1, spot: bool = False,
           disk_gb: int | None = None, keep: bool = False) -> Rented:
    """Check the choices that no provider could honour, before anything is launched. `disk_gb`: None for the
    provider's default."""
    if provider not in PROVIDERS:
        raise ChatlikeError(f"--on {provider!r}: chatlike-runner rents from {' or '.join(PROVIDERS)}")
    gpu_type, gpu_count = parse_gpu_type(gpu or DEFAULT_GPU[provider])
    if nodes < 1:
        raise ChatlikeError("--nodes must be 1 or more")
    if nodes > 1 and provider == "runpod":
        raise ChatlikeError("--nodes: Runpod pods cannot be joined into one run through SkyPilot; "
                            "use --on lambda for several nodes, or more GPUs on one pod (--gpu H100:8)")
    if spot and provider == "lambda":
        raise ChatlikeError("--spot: Lambda has no spot instances; drop --spot, or rent spot GPUs with --on runpod")
    if disk_gb is not None and provider == "lambda":
        raise ChatlikeError("--disk: a Lambda VM comes with the disk of its instance type, which SkyPilot cannot "
                            "resize; drop --disk")
    if disk_gb is not None and disk_gb < 50:
        raise ChatlikeError("--disk must be at least 50 (GB): the image and an 8B base model alone take ~30 GB")
    if provider == "runpod" and disk_gb is None:
        disk_gb = DEFAULT_DISK_GB
    return Rented(provider, gpu_type, gpu_count, nodes, spot, disk_gb, keep)


def from_flags(flags: dict[str, Any]) -> Rented:
    """The rented box a run's manifest recorded (`flags.on`), to resume or reproduce it there again."""
    disk = flags.get("disk_gb")
    return rented(flags["provider"], flags["gpu"], nodes=int(flags.get("nodes", 1)), spot=bool(flags.get("spot")),
                  disk_gb=int(disk) if disk is not None and flags["provider"] != "lambda" else None,
                  keep=bool(flags.get("keep")))


def launch_image(image: str | None, last_pushed: dict[str, Any] | None) -> str:
    """The image a rented box runs, always by digest: `--image` when it names one, else the last `push`'s."""
    if image is not None:
        if "@sha256:" not in image or "/" not in image.split("@")[0]:
            raise ChatlikeError(f"--image {image}: a rented box pulls the image from a registry by digest, such as "
                                "ghcr.io/you/chatlike-train@sha256:…; `chatlike-runner push REF` pushes yours and "
                                "prints it")
        return image
    if not last_pushed or "@sha256:" not in str(last_pushed.get("ref")):
        raise ChatlikeError("no image pushed yet: a rented box cannot see your engine's images. Run "
                            "`chatlike-runner push ghcr.io/you/chatlike-train:v1` (any registry the box can reach) "
                            "first, or pass --image REF@sha256:…")
    return str(last_pushed["ref"])


def run_script(rented: Rented, resumed: bool = False) -> str:
    """What the box runs, as root: the driver first (the image states its minimum), then the uploaded inputs (and
    a stopped run's outputs, `resumed`) moved into place and checked against their SHA256SUMS, then training."""
    refuse_inputs = shlex.quote(f"{c.REFUSED}the inputs that reached the box differ from the ones staged at home "
                                f"({c.INPUT_SUMS}); nothing was trained: start the run again")
    lines = ["set -eu", f"{TRAIN} check-driver",
             f"rm -rf {c.INPUT_DIR} && mv {UPLOAD}/input {c.INPUT_DIR} && chmod -R a+rX {c.INPUT_DIR}",
             f"(cd {c.INPUT_DIR} && sha256sum --check --quiet {c.INPUT_SUMS}) || {{ echo {refuse_inputs}; exit 2; }}"]
    if resumed:  # chatlike-train run gives them to the training user
        lines.append(f"find {UPLOAD}/output -mindepth 1 -maxdepth 1 -exec mv -t {c.OUTPUT_DIR} {{}} +")
    lines.append(f"cd {WORKDIR}")  # the image's working folder, the training user's: relative paths of the config land here
    command = [TRAIN, "run", f"{c.INPUT_DIR}/{c.CONFIG_NAME}"]
    if rented.nodes > 1:
        lines.append('MAIN_ADDRESS="$(printf "%s\\n" "$SKYPILOT_NODE_IPS" | head -n 1)"')
        lines.append(f"exec {shlex.join(command)} --nodes \"$SKYPILOT_NUM_NODES\" --node-rank \"$SKYPILOT_NODE_RANK\" "
                     f"--main-address \"$MAIN_ADDRESS\" --main-port {MAIN_PORT}")
    else:
        lines.append(f"exec {shlex.join(command)}")
    return "\n".join(lines) + "\n"


def task_config(plan: RunPlan, rented: Rented, image: str, inputs: Path, outputs: Path | None = None) -> dict[str, Any]:
    """The SkyPilot task of a run: `inputs` is the staged input folder (config, data, SHA256SUMS) to upload;
    `outputs`, a stopped run's earlier outputs (checkpoints) to upload where training continues from them."""
    mounts = {f"{UPLOAD}/input": str(inputs)}
    if outputs is not None:
        mounts[f"{UPLOAD}/output"] = str(outputs)
    resources: dict[str, Any] = {
        "infra": rented.provider,
        "accelerators": {rented.gpu: rented.gpu_count},
        "image_id": f"docker:{image}",
        "use_spot": rented.spot,
    }
    if rented.disk_gb is not None:
        resources["disk_size"] = rented.disk_gb
    return {
        "name": cluster_name(plan.run_id),
        "resources": resources,
        "num_nodes": rented.nodes,
        "file_mounts": mounts,
        "envs": {**c.TRAINING_ENV, "CHATLIKE_RUN_ID": plan.run_id},
        # Names only: SkyPilot takes the values at launch (from this process's environment) and sets them on the box.
        "secrets": dict.fromkeys(plan.env_names),
        "run": run_script(rented, resumed=outputs is not None),
    }
