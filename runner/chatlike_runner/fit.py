"""Fit: a run's estimate against the GPUs it will get, before anything is created or rented, and the whole estimate
`chatlike-runner estimate` prints.

The exact shapes and token counts come from `chatlike-train shapes` (train/shapes.py), which needs the training
stack: it runs in this Python when Axolotl imports here (`pip install 'chatlike-runner[estimate]'`, or inside the
image), else in a throwaway container of the training image on the Docker engine, with the model cache mounted.
estimate.py does the arithmetic.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import estimate as est
from .core import constants as c
from .core.configfile import load_config
from .core.errors import ChatlikeError
from .engine import Engine
from .events import Note
from .plan import RunPlan
from .skytask import Rented

INSTALL = "pip install 'chatlike-runner[estimate]'"
INSIDE = "/tmp/chatlike-estimate"  # where the config and dataset go in the throwaway container


def measure(config: Path, data: Path | None = None, image: str | None = None, host: str | None = None,
            engine: Engine | None = None) -> dict[str, Any]:
    """`chatlike-train shapes` of the config (and the dataset's tokens): here, or in the training image (`image`
    when the engine has it, else either flavor: both carry the same chatlike-train)."""
    if importlib.util.find_spec("axolotl") is not None:
        from .train import config as cfg
        from .train.shapes import shapes
        from .train.validate import quiet

        with quiet():
            return shapes(cfg.load(config), data)
    return _in_image(config, data, image, host, engine)


def _in_image(config: Path, data: Path | None, image: str | None, host: str | None,
              engine: Engine | None) -> dict[str, Any]:
    try:
        engine = engine or Engine.connect(host)
    except ChatlikeError as exc:
        raise ChatlikeError(f"counting the model's parameters needs the training stack: {INSTALL} here, or a Docker "
                            f"engine with the training image ({exc.format_message()})") from None
    ref = next((ref for ref in ([image] if image else []) + [c.DEFAULT_IMAGE, c.CPU_IMAGE] if engine.image(ref)), None)
    if ref is None:
        raise ChatlikeError(f"counting the model's parameters needs the training stack: {INSTALL} here, or the "
                            f"training image on {engine.url} (`chatlike-runner build`)")
    command = ["chatlike-train", "shapes", f"{INSIDE}/config.yml"] + (["--data", f"{INSIDE}/data.jsonl"] if data else [])
    options = {
        "command": command,
        # By name, read at the last moment: a gated model's config.json needs the token; offline stays offline.
        "environment": {**c.CONTAINER_ENV, "HF_TOKEN": None, "HF_HUB_OFFLINE": None},
        "volumes": {c.CACHE_VOLUME: {"bind": c.CACHE_DIR, "mode": "rw"}},
        "labels": {c.LABEL_ROLE: c.ROLE_PROBE},
        "user": c.IMAGE_USER,
    }
    status, output = engine.run_once("counting the model's parameters", ref, options, _archive(config, data))
    start = output.find("{\n")
    if status != 0 or start < 0:
        lines = [line for line in output.splitlines() if line.strip()]
        reason = lines[-1].removeprefix("chatlike-train: ") if lines else f"exit {status}"
        raise ChatlikeError(f"counting the model's parameters in {ref} failed: {reason}")
    return json.JSONDecoder().raw_decode(output[start:])[0]


def _archive(config: Path, data: Path | None) -> bytes:
    """The config and dataset as a tar for the container, readable by its user."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, path in (("config.yml", config), ("data.jsonl", data)):
            if path is None:
                continue
            try:
                content = path.read_bytes()
            except OSError as exc:
                raise ChatlikeError(f"cannot read {path} ({exc.strerror}); check the path") from None
            info = tarfile.TarInfo(f"{INSIDE.lstrip('/')}/{name}")
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@dataclass(frozen=True)
class Estimate:
    """The whole estimate of a config on `count` GPUs of one type."""

    facts: dict[str, Any]
    recipe: est.Recipe
    memory: est.Memory
    fixes: list[str]
    work: est.Work | None
    hours: tuple[float, float] | None
    offer: dict[str, Any] | None = None
    data_note: str | None = None  # where the counted dataset came from, when it is not the run's

    @property
    def cost(self) -> tuple[float, float] | None:
        price = (self.offer or {}).get("hourly_price_usd")
        return None if price is None or self.hours is None else (self.hours[0] * price, self.hours[1] * price)

    def as_json(self) -> dict[str, Any]:
        m = self.memory
        return {
            "model": self.facts["model"], "parameters": self.facts["parameters"],
            "gpu": {"type": m.gpu.name, "count": m.count, "memory_gib": m.gpu.memory_gib, "peak_tflops": m.gpu.tflops,
                    "source": m.gpu.source},
            "memory": {"items": [{"name": i.name, "gib": round(i.bytes / est.GIB, 3), "formula": i.formula,
                                  "phase": i.phase} for i in m.items],
                       "total_gib": round(m.total / est.GIB, 2), "fits": m.fits, "fixes": self.fixes,
                       "zero_stage": self.recipe.zero},
            "work": None if self.work is None else {**vars(self.work), "dataset_note": self.data_note},
            "hours": self.hours, "mfu": self.memory.gpu.mfu, "offer": self.offer, "cost_usd": self.cost,
        }


def estimate(facts: dict[str, Any], raw: dict[str, Any], config_dir: Path, gpu: est.Gpu, count: int,
             offer: dict[str, Any] | None = None) -> Estimate:
    recipe = est.Recipe.of(raw, count, config_dir)
    memory = est.memory(facts, recipe, gpu, count)
    work = est.work(facts, recipe, count)
    hours = est.hours(work.flops, gpu, count) if work else None
    return Estimate(facts, recipe, memory, [] if memory.fits else est.fixes(facts, recipe, gpu, count), work, hours,
                    offer)


def local_gpu(lines: list[str]) -> tuple[est.Gpu, int]:
    """The GPU type and count a container sees, from nvidia-smi lines (index, name, memory in MiB, driver)."""
    fields = [line.split(",") for line in lines]
    memory = min(float(f[2].strip().split()[0]) for f in fields) / 1024
    return est.gpu(fields[0][1].strip(), memory), len(lines)


def refusal(found: Estimate) -> str:
    """The one line that refuses a run that does not fit."""
    m = found.memory
    biggest = ", ".join(f"{item.name} {item.bytes / est.GIB:.1f} GiB" for item in m.biggest())
    fix = f"it would fit with {found.fixes[0]}" if found.fixes else "no single change fits it: rent larger GPUs"
    return (f"the run does not fit: about {m.total / est.GIB:.1f} GiB per GPU (over it even without the allocator's "
            f"margin) against {m.count}x {m.gpu.name}'s "
            f"{round(m.gpu.memory_gib, 1):g} GiB (biggest: {biggest}); {fix}; `chatlike-runner estimate` shows every term, "
            "--no-fit-check starts anyway")


def check(plan: RunPlan, gpu: est.Gpu, count: int, image: str | None, engine: Engine | None = None) -> Iterator[Note]:
    """Refuse (exit 2) a run whose estimate exceeds its GPUs' memory; a note when it fits, or when it could not
    be estimated (the run goes on)."""
    if not plan.fit_check:
        return
    raw = load_config(plan.config_path)
    try:
        facts = measure(plan.config_path, None, image, plan.host, engine)
    except ChatlikeError as exc:
        yield Note(f"the memory estimate was skipped: {exc.format_message()}", warning=True)
        return
    found = estimate(facts, raw, plan.config_path.parent, gpu, count)
    m = found.memory
    if m.over:
        raise ChatlikeError(refusal(found))
    said = f"estimated {m.total / est.GIB:.1f} GiB per GPU against {count}x {gpu.name}'s {round(gpu.memory_gib, 1):g} GiB"
    if m.fits:
        yield Note(f"{said}: it fits")
    else:
        yield Note(f"{said}: tight, within the allocator's margin; if it runs out of memory, "
                   f"{found.fixes[0] if found.fixes else 'rent larger GPUs'}", warning=True)


def check_here(plan: RunPlan, gpus: list[str], image_id: str, engine: Engine) -> Iterator[Note]:
    """The fit check of a run on this engine's GPUs (none requested: nothing to fit)."""
    if not gpus:
        return
    try:
        gpu, count = local_gpu(gpus)
    except (ValueError, IndexError):  # a driver that reports no memory ("[N/A]")
        yield Note(f"the memory estimate was skipped: nvidia-smi gave no memory for the GPUs ({gpus[0]})", warning=True)
        return
    yield from check(plan, gpu, count, image_id, engine)


def check_rented(plan: RunPlan, where: Rented, image: str) -> Iterator[Note]:
    """The fit check of a run on a rented box: its GPU type with the memory SkyPilot's catalog gives it."""
    if not plan.fit_check:
        return
    from . import skypilot

    memory = skypilot.offer(where.provider, where.gpu, where.gpu_count, where.spot).get("gpu_memory_gib")
    try:
        gpu = est.gpu(where.gpu, memory)
    except KeyError:
        yield Note(f"the memory estimate was skipped: neither chatlike nor SkyPilot's catalog knows the memory of "
                   f"a {where.gpu}", warning=True)
        return
    yield from check(plan, gpu, where.gpu_count * where.nodes, image)


def for_command(config: Path, data: Path | None, gpu: str | None, on: str | None, spot: bool, image: str | None,
                host: str | None) -> Estimate:
    """`chatlike-runner estimate`: the config on the GPUs named (`--gpu`), else the provider's default (`--on`),
    else the Docker engine's own; priced at SkyPilot's catalog price with `--on`."""
    from .parsing import GpuRequest, parse_gpu_type
    from .skytask import DEFAULT_GPU
    from .train.config import dataset_paths

    raw = load_config(config)
    note = None
    if data is None:
        data = next(iter(dataset_paths(raw, config.resolve().parent)), None)
    if data is None:
        from .trial import write_example

        data = write_example(Path(tempfile.mkdtemp(prefix="chatlike-estimate-")))
        note = ("the config's dataset is not there yet: the work below is the bundled example export's (as `prepare` "
                "makes it); pass --data for yours")
    engine = None
    offer = None
    if gpu is None and on is None:
        from .preflight import engine_check, gpu_check

        engine = engine_check(host).data
        image_found = engine.image(image or c.DEFAULT_IMAGE) if engine is not None else None
        seen = gpu_check(engine, image_found, GpuRequest(count=-1)).data if image_found is not None else None
        if not seen:
            raise ChatlikeError("no --gpu given and no GPU seen through the Docker engine's training image: name "
                                "the GPUs to estimate for, such as --gpu RTX3090:2 or --gpu H100:1")
        found_gpu, count = local_gpu(seen)
    else:
        name, count = parse_gpu_type(gpu or DEFAULT_GPU[str(on)])
        memory = None
        if on is not None:
            from . import skypilot

            offer = skypilot.offer(on, name, count, spot)
            memory = offer["gpu_memory_gib"]
        try:
            found_gpu = est.gpu(name, memory)
        except KeyError:
            known = ", ".join(g.name for g in est.GPUS.values())
            raise ChatlikeError(f"--gpu {name}: chatlike knows the memory of {known}; for another type, add --on "
                                "runpod|lambda to read it from SkyPilot's catalog") from None
    try:
        facts = measure(config, data, image, host, engine)
    finally:
        if note:
            shutil.rmtree(data.parent, ignore_errors=True)
    return replace(estimate(facts, raw, config.resolve().parent, found_gpu, count, offer), data_note=note)
