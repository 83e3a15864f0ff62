"""The smoke run from nothing: the bundled example chats when the smoke config's dataset is not there yet.

(The CPU image it runs in is built by runs.start when missing.)
"""

from __future__ import annotations

from pathlib import Path

from .core.configfile import load_config
from .plan import local_path
from .prepare.command import EXAMPLE
from .prepare.write import staged


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
