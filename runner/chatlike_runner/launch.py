"""Launch: create the run's volumes and container, stage its inputs, validate them, start it.

Whatever fails on the way, the run's container and volumes are removed before the error goes on:
a run either starts whole or leaves nothing on the engine.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from pathlib import Path

from . import artifacts, preflight, stage
from .core import constants as c
from .engine import Engine, Image, Run
from .events import Note
from .follow import uninterruptible
from .plan import RunPlan, container_options, owned_by


def launch(
    engine: Engine, plan: RunPlan, image: Image, earlier: Path | None = None, expected: Mapping[str, str] | None = None,
    source: str | None = None, digests: dict[str, str] | None = None,
) -> Generator[Note, None, Run]:
    """Create, stage (and `earlier` outputs back), validate, start. `expected` are the sha256s the inputs must
    have: those run `source` trained on (a resumed or reproduced run); `digests` receives those staged.
    Returns the started run."""
    digests = {} if digests is None else digests
    try:
        run = engine.create(image.id, container_options(plan), plan.volume_labels)
        engine.put(run, c.INPUT_DIR, stage.input_archive(plan, digests))
        stage.check_unchanged(plan, digests, expected, source)
        if earlier is not None:
            skip = frozenset({artifacts.MANIFEST, artifacts.CONTAINER_LOG, c.RUN_INPUTS})
            owner = preflight.user_ids(engine, image.id)
            engine.put(run, c.OUTPUT_DIR, stage.output_archive(earlier, owner, skip))
        if plan.validate:
            yield Note("validating the config and dataset…")
            preflight.validate(engine, plan, image.id)
        engine.start(run)
    except BaseException:
        with uninterruptible():
            engine.remove(owned_by(plan.run_id))
        raise
    return run
