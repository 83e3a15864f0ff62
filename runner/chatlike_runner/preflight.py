"""Preflight: everything that can be known before a run starts, checked before anything is created.

The checks run most fundamental first (engine, NVIDIA runtime and driver, image, disk, inputs); every
failing one is a line that says what is wrong and what to do, all reported at once. The probes that
run chatlike's own commands in a throwaway container (GPU names, config validation, the image's user)
live here too: they ask the engine through engine.py like any other step.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core import constants as c
from .core.errors import BAD_INPUT, ChatlikeError
from .engine import Engine, Image, NoGpuRuntime
from .parsing import GpuRequest, parse_gpus
from .plan import RunPlan, container_options, device_request
from .redact import redactor
from .train.gpus import older_than

VALIDATE_LINES = 8  # lines of chatlike-train validate's refusal shown

GPU_QUERY = ["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    data: Any = field(default=None, repr=False)


class PreflightFailed(ChatlikeError):
    """One or more checks failed: one line each, exit 2."""

    def __init__(self, failed: Sequence[Check]) -> None:
        super().__init__("\n".join(check.detail for check in failed))
        self.lines = [check.detail for check in failed]

    def show(self, file=None) -> None:
        for line in self.lines:
            ChatlikeError(line).show(file)


def require(checks: Sequence[Check]) -> None:
    """Raise PreflightFailed naming every failed check."""
    failed = [check for check in checks if not check.ok]
    if failed:
        raise PreflightFailed(failed)


def _guard(name: str, work: Callable[[], Check]) -> Check:
    try:
        return work()
    except ChatlikeError as exc:
        return Check(name, False, exc.format_message())


def engine_check(host: str | None) -> Check:
    def work() -> Check:
        engine = Engine.connect(host)
        info = engine.info()
        detail = f"{info['url']}: Docker {info['server_version']} on {info['os']} ({info['arch']})"
        return Check("engine", True, detail, engine)

    return _guard("engine", work)


def gpu_names(engine: Engine, image_id: str, gpus: GpuRequest) -> list[str]:
    """The GPUs a container of the image sees (nvidia-smi lines: index, name, memory, driver)."""
    options = {
        "command": GPU_QUERY,
        "device_requests": [device_request(gpus)],
        "environment": {"NVIDIA_DRIVER_CAPABILITIES": "compute,utility"},
        "labels": {c.LABEL_ROLE: c.ROLE_PROBE},
    }
    status, output = engine.run_once("checking the GPUs", image_id, options)
    if status != 0:
        raise ChatlikeError(f"the GPUs could not be listed inside {image_id[:19]} ({output[:200]}); "
                            "check `nvidia-smi` on the Docker host and the NVIDIA Container Toolkit")
    return [line.strip() for line in output.splitlines() if line.strip()]


def gpu_runtime(engine: Engine, gpus: GpuRequest) -> None:
    """Whether the engine can pass GPUs at all, without the training image: a container of an empty image
    that asks for GPUs fails at start either for want of an NVIDIA runtime (NoGpuRuntime) or, past that
    point, for want of a program to run (the runtime is there)."""
    options = {"command": ["/probe"], "device_requests": [device_request(gpus)], "labels": {c.LABEL_ROLE: c.ROLE_PROBE}}
    with engine.scratch_image() as image_id:
        try:
            engine.run_once("checking the GPUs", image_id, options)
        except NoGpuRuntime:
            raise
        except ChatlikeError as exc:
            if "nvidia-container-cli" in str(exc):  # the runtime is there but cannot reach a GPU or its driver
                raise ChatlikeError(f"{exc}; check `nvidia-smi` on the Docker host") from None


def gpu_check(engine: Engine, image: Image | None, gpus: GpuRequest) -> Check:
    """The GPUs a container of `image` sees, and whether their driver is new enough for its CUDA; without the
    image, whether the engine has an NVIDIA runtime at all."""
    if not gpus.wanted:
        return Check("gpus", True, "none requested (CPU run)", [])

    def work() -> Check:
        if image is None:
            gpu_runtime(engine, gpus)
            return Check("gpus", True, "the NVIDIA runtime is there (the GPUs are listed once the image is)")
        found = gpu_names(engine, image.id, gpus)
        if not found:
            return Check("gpus", False, f"--gpus {gpus}: no GPU is visible on the Docker host; check `nvidia-smi` there")
        old = driver_too_old(found, image.min_driver)
        if old:
            return Check("gpus", False, f"{old}; update the NVIDIA driver on the Docker host")
        return Check("gpus", True, f"{len(found)} found: " + "; ".join(found), found)

    return _guard("gpus", work)


def driver_too_old(gpus: list[str], minimum: str) -> str | None:
    """What is wrong when a GPU's driver (the last field of its nvidia-smi line) is below `minimum`."""
    for line in gpus:
        driver = line.rsplit(",", 1)[-1].strip()
        if older_than(driver, minimum):
            return f"GPU driver {driver} is older than {minimum}, which the image's CUDA build needs"
    return None


def image_check(ref: str, image: Image | None, gpus_ok: bool) -> Check:
    """The training image, already looked up: present, or missing with what to do about it."""
    if image is not None:
        return Check("image", True, f"{ref} ({image.id[7:19]})", image)
    if not gpus_ok:
        return Check("image", False, f"image {ref} is not on the Docker host, and that host cannot run GPU training "
                                     "yet (see above): fix that first, or train on the CPU with "
                                     "`chatlike-runner start --smoke`")
    return Check("image", False, f"image {ref} is not on the Docker host; build it (`chatlike-runner build`, "
                                 f"`--flavor cpu` for {c.CPU_IMAGE}) or pull it (`docker pull {ref}`), or pass --image")


def space_check(out_dir: Path, need: int = c.MIN_FREE_BYTES) -> Check:
    existing = next((p for p in [out_dir, *out_dir.parents] if p.exists()), Path("/"))
    if not os.access(existing, os.W_OK):
        return Check("space", False, f"cannot write to {existing}; pass --out with a folder you can write")
    free = shutil.disk_usage(existing).free
    detail = f"{free / 2**30:.1f} GiB free in {existing}"
    if free < need:
        return Check(
            "space",
            False,
            f"only {free / 2**20:.0f} MiB free in {existing}; a run needs at least {need / 2**30:.0f} GiB "
            "for its adapter and logs: free some space or pass --out on another disk",
        )
    return Check("space", True, detail, free)


def inputs_check(paths: Sequence[Path]) -> Check:
    unreadable = [str(p) for p in paths if not os.access(p, os.R_OK)]
    if unreadable:
        return Check("inputs", False, f"cannot read {', '.join(unreadable)}; check the permissions")
    return Check("inputs", True, ", ".join(p.name for p in paths))


def checks(host: str | None, image_ref: str, gpus: GpuRequest, out_dir: Path, inputs: Sequence[Path] | None = None,
           engine: Engine | None = None) -> list[Check]:
    """Every check, most fundamental first; those that need the engine are left out when it is unreachable."""
    first = engine_check(host) if engine is None else Check("engine", True, engine.url, engine)
    found: list[Check] = [first]
    engine = first.data
    if engine is not None:
        try:
            image = engine.image(image_ref)
        except ChatlikeError as exc:
            found.append(Check("image", False, exc.format_message()))
        else:
            gpus_checked = gpu_check(engine, image, gpus)
            found += [gpus_checked, image_check(image_ref, image, gpus_checked.ok)]
    found.append(space_check(out_dir))
    if inputs is not None:
        found.append(inputs_check(inputs))
    return found


def for_run(plan: RunPlan, engine: Engine | None = None) -> tuple[Engine, Image, list[str]]:
    """Check a run before anything is created; returns the engine, the image and the GPUs it sees (nvidia-smi
    lines). Raises PreflightFailed."""
    found = checks(plan.host, plan.image, plan.gpus, plan.out_dir, [plan.config_path, *(s.host_path for s in plan.data)],
                   engine)
    require(found)
    by_name = {check.name: check.data for check in found}
    return by_name["engine"], by_name["image"], by_name.get("gpus") or []


def planned(make: Callable[[], RunPlan], host: str | None, image_ref: str, gpus: str, out_dir: Path) -> RunPlan:
    """The run's plan from `make`; when it cannot be made, every check that fails without it (engine, NVIDIA
    runtime, image, disk) and then the plan's own reason, in one list: a new machine learns at once all it lacks."""
    try:
        return make()
    except PreflightFailed:
        raise
    except ChatlikeError as exc:
        try:
            request = parse_gpus(gpus)
        except ChatlikeError:
            request = parse_gpus("none")  # the plan's reason names the bad --gpus
        failed = [check for check in checks(host, image_ref, request, out_dir) if not check.ok]
        raise PreflightFailed([*failed, Check("plan", False, exc.format_message())]) from None


def for_gpu_build(host: str | None) -> Engine:
    """Before building the CUDA image: an engine that can pass GPUs to containers, or every reason why not
    and where to go instead."""
    first = engine_check(host)
    found = [first]
    if first.data is not None:
        found.append(gpu_check(first.data, None, GpuRequest(count=-1)))
    if not all(check.ok for check in found):
        found.append(Check("cuda", False, "this Docker host cannot run the CUDA image, so it is not built: `make smoke` "
                                          "(`chatlike-runner start --smoke`) trains on the CPU instead; "
                                          "--no-gpu-check builds it anyway (to push it to a registry)"))
    require(found)
    return first.data


def validate(engine: Engine, plan: RunPlan, image_id: str) -> None:
    """`chatlike-train validate` on the staged config and data, before training starts: what it refused, as it
    said it (the first problems, the paths as on this machine); when it broke (exit 1, a bug), its last line, and
    its whole output kept in OUT/<run-id>.validate.log to report."""
    status, output = engine.run_once("validating the config", image_id, container_options(plan, validate=True))
    if status == 0:
        return
    output = redactor(plan.env_names)(output)  # it had the run's secrets: none may reach the terminal or the log
    said = refusal(output, plan) or f"exit {status}"
    if status == BAD_INPUT:
        raise ChatlikeError(f"the config or dataset is not valid: {said}")
    kept: Path | None = plan.out_dir / f"{plan.run_id}.validate.log"
    try:
        kept.write_text(output + "\n", encoding="utf-8")
    except OSError:
        kept = None
    raise ChatlikeError(f"checking the config and dataset failed (exit {status}): {said}"
                        + (f"; its whole output is in {kept}" if kept else ""), 1)


def refusal(output: str, plan: RunPlan, most: int = VALIDATE_LINES) -> str:
    """What chatlike-train said last (`chatlike-train: …` and the indented lines after it), at most `most` lines,
    with the staged paths written as the user's."""
    lines = [line for line in output.splitlines() if line.strip()]
    first = max((i for i, line in enumerate(lines) if line.startswith("chatlike-train: ")), default=len(lines) - 1)
    said = lines[first:][:most] if lines else []
    if (more := len(lines) - first - most) > 0:
        said.append(f"  … and {more} more line{'s' if more > 1 else ''}")
    text = "\n".join(said).removeprefix("chatlike-train: ")
    for staged in plan.data:
        text = text.replace(staged.container_path, str(staged.host_path))
    return text.replace(f"{c.INPUT_DIR}/{c.CONFIG_NAME}", str(plan.config_path))


def user_ids(engine: Engine, image_id: str) -> tuple[int, int]:
    """The uid and gid of the image's user, whom the runner's containers run as."""
    options = {"command": ["sh", "-c", "id -u; id -g"], "user": c.IMAGE_USER}
    status, output = engine.run_once("reading the image's user", image_id, options)
    numbers = output.split()
    if status != 0 or len(numbers) != 2 or not all(n.isdigit() for n in numbers):
        raise ChatlikeError(f"cannot tell which user {image_id[:19]} runs as (`id` said: {output[:100]!r})")
    return int(numbers[0]), int(numbers[1])


def doctor(host: str | None, image: str, gpus: GpuRequest, out_dir: Path) -> list[Check]:
    """Every check that needs no config, for `chatlike-runner doctor`, with the engine's runtimes."""
    found = checks(host, image, gpus, out_dir)
    engine = found[0].data
    if engine is not None:
        found.insert(1, Check("runtimes", True, ", ".join(engine.info()["runtimes"])))
    return found
