"""CPU trials of a bundled config, from nothing: the smoke run (`start --smoke`: the recipe on a tiny random model)
and the preview (`start --preview`: a real small model on your chats, then eval's verdict on it). Either writes
the bundled example chats where the config reads its dataset when nothing is there yet; runs.start builds the CPU
image when it is missing. `make train` trains the preview where the Docker host has no usable GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from . import build, preflight
from .core.configfile import load_config
from .core.errors import ChatlikeError
from .events import Event, Note, Outcome
from .parsing import parse_gpus
from .plan import local_path
from .prepare.command import EXAMPLE
from .prepare.write import staged

# The preview's eval: replies to this many held-out contexts, tuned and base (the bundled example holds out 16).
PREVIEW_SAMPLES = 20


def example_dataset(config: Path) -> Path | None:
    """Write `prepare`'s dataset of the bundled example export where `config` reads its one dataset, when
    nothing is there yet and it is named train.jsonl (as prepare names it). Returns the path written, or
    None when there was nothing to do."""
    datasets = load_config(config).get("datasets")
    if not isinstance(datasets, list) or len(datasets) != 1 or not isinstance(datasets[0], dict):
        return None
    path = datasets[0].get("path")
    if not isinstance(path, str) or not EXAMPLE.is_file():
        return None
    target = local_path(path, config.resolve().parent)
    if target.name != "train.jsonl" or target.exists():
        return None
    with staged(target.parent, force=False) as workdir:
        write_example(workdir)
    return target


def write_example(folder: Path) -> Path:
    """`prepare`'s dataset of the bundled example export, written into `folder`; returns its train.jsonl."""
    from .prepare.dataset import Options, build  # here: the runner's start-up does not pay for it

    build(EXAMPLE, Options(), folder)
    return folder / "train.jsonl"


def then_eval(events: Iterator[Event], out: Path, host: str | None) -> Iterator[Event]:
    """A preview run's events, and when it trained to its end, its eval's (the verdict) before its outcome."""
    from . import jobs  # here: the runner's start-up does not pay for it

    for event in events:
        if isinstance(event, Outcome) and event.status == "succeeded":
            yield Note(f"run {event.run_id} trained; now its eval: its replies and the base model's to your held-out "
                       "chats, side by side (about a minute on 2 cores)")
            yield from jobs.evaluate(out, event.run_id, heldout=None, image=None, host=host, gpus=None, env=(),
                                     samples=PREVIEW_SAMPLES, seed=0, force=False)
        yield event


def gpus_or_trouble(host: str | None, image: str | None) -> str | None:
    """`make train`'s choice: why the Docker host cannot train on GPUs (`doctor`'s engine and NVIDIA runtime checks),
    or None when it can, once the CUDA image (`image`, else the default) is there: built first when missing. An
    engine that cannot be reached is no reason to train elsewhere: it raises, as every command does."""
    engine = preflight.engine_check(host)
    preflight.require([engine])
    found = preflight.gpu_check(engine.data, None, parse_gpus("all"))
    if not found.ok:
        return found.detail
    if build.needed("cuda", host, image, check_gpus=False, if_missing=True) is None:
        code = build.build("cuda", host, image, None)
        if code != 0:
            raise ChatlikeError(f"building the CUDA image failed (exit {code}); the build's output above says why")
    return None
