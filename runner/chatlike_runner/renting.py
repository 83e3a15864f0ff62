"""Runs on rented boxes (`start --on`, and `resume` of such a run): stage → write and check the SkyPilot task →
launch → follow → collect → tear down, into the same OUT/<run-id>/ layout and manifest as a run on an engine.

The run's launch folder, OUT/<run-id>.sky/, holds the task (task.yaml) and what it uploads: the staged inputs
and, when resuming, the earlier outputs. `--dry-run` leaves it for inspection; a launch removes it at the end.
`cloud` is the module that talks to SkyPilot (skypilot.py); the tests hand in a stand-in of it instead.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from . import artifacts, rented, skypilot, stage
from . import constants as c
from .engine import Run
from .errors import ChatlikeError
from .events import Event, Following, Log, Note, Outcome, TaskReady
from .follow import CtrlC, Tail
from .launch import check_unchanged
from .plan import RunPlan, replan
from .progress import redactor
from .rented import Rented
from .unpack import unpack

TASK = "task.yaml"
LOG = "container.log"
EARLIER_SKIPPED = (artifacts.MANIFEST, artifacts.CONTAINER_LOG, c.RUN_INPUTS)


class _TaskDumper(yaml.SafeDumper):
    """YAML as people write SkyPilot tasks: the run script as a literal block."""


_TaskDumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None))


def launch_folder(out_dir: Path, run_id: str) -> Path:
    return out_dir / f"{run_id}.sky"


def summary(placement: dict[str, Any]) -> str:
    """`runpod, 2x RTX3090 (2x_RTX3090_SECURE) in CA, $1.00/h`."""
    gpu, _, count = placement["gpu"].partition(":")
    nodes = f"{placement['nodes']} nodes of " if placement.get("nodes", 1) > 1 else ""
    price = placement.get("hourly_price_usd")
    return (f"{placement['provider']}, {nodes}{count}x {gpu} ({placement['instance_type']}) in {placement['region']}"
            f"{' (spot)' if placement.get('spot') else ''}, " + (f"${price:.2f}/h" if price is not None else "price unknown"))


def start_on(plan: RunPlan, where: Rented, image: str, *, dry_run: bool = False, stop_timeout: int = c.STOP_TIMEOUT,
             expected: dict[str, str] | None = None, earlier: Path | None = None,
             cloud: ModuleType = skypilot) -> Iterator[Event]:
    """Write and check the run's SkyPilot task; unless `dry_run`, launch it, follow it, bring its outputs home
    and tear the cluster down (unless `where.keep`). `earlier`: a stopped run's outputs to continue from."""
    folder = launch_folder(plan.out_dir, plan.run_id)
    shutil.rmtree(folder, ignore_errors=True)  # what an interrupted launch of this run left
    kept = False
    try:
        config, estimate = _task(plan, where, image, folder, expected, earlier, cloud)
        text = yaml.dump(config, Dumper=_TaskDumper, sort_keys=False)
        (folder / TASK).write_text(text, encoding="utf-8")
        kept = dry_run  # a dry run leaves the task and its uploads to look at
        yield TaskReady(plan.run_id, folder / TASK, text, estimate, summary(estimate), dry_run)
        if not dry_run:
            yield from _run(plan, where, image, config, folder, estimate, stop_timeout, cloud)
    finally:
        if not kept:
            shutil.rmtree(folder, ignore_errors=True)


def _task(plan: RunPlan, where: Rented, image: str, folder: Path, expected: dict[str, str] | None,
          earlier: Path | None, cloud: ModuleType) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stage the inputs (and earlier outputs) into the launch folder; the task, checked offline, and its placement."""
    digests: dict[str, str] = {}
    unpack(stage.input_archive(plan, digests), folder / "input", strip=0)
    check_unchanged(plan, digests, expected, plan.reproduces)
    outputs = _copy_earlier(earlier, folder / "output") if earlier is not None else None
    config = rented.task_config(plan, where, image, folder / "input", outputs)
    return config, cloud.validate(config)


def _copy_earlier(partial: Path, dest: Path) -> Path:
    """A stopped run's outputs, checkpoints included, as the new cluster's output folder (hard links: no copy)."""
    for path in sorted(partial.rglob("*")):
        relative = path.relative_to(partial).as_posix()
        if relative in EARLIER_SKIPPED or relative.split("/")[0] in EARLIER_SKIPPED:
            continue
        target = dest / relative
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def _run(plan: RunPlan, where: Rented, image: str, config: dict[str, Any], folder: Path, estimate: dict[str, Any],
         stop_timeout: int, cloud: ModuleType) -> Iterator[Event]:
    cluster = config["name"]
    secrets = {name: os.environ[name] for name in plan.env_names if os.environ.get(name)}
    with CtrlC() as ctrl_c:
        try:
            job = yield from cloud.launch(config, secrets)
        except BaseException:
            _down_after_failure(cloud, cluster)
            raise
        placement = cloud.placement(cluster) or estimate
        yield Note(f"run {plan.run_id} started on {summary(placement)} (cluster {cluster})")
        try:
            interrupted = yield from _follow(plan, cloud, cluster, job, folder / LOG, ctrl_c, stop_timeout)
            path, run = collect(plan, where, image, placement, folder, not interrupted,
                                lambda tmp: cloud.fetch(cluster, c.OUTPUT_DIR, tmp))
        except ChatlikeError as exc:
            raise ChatlikeError(f"{exc}. Cluster {cluster} is left up so that nothing is lost (it costs money while "
                                f"up): copy /chatlike/output home with `rsync -a {cluster}:{c.OUTPUT_DIR}/ DEST`, "
                                f"then `sky down {cluster}`") from None
        if where.keep:
            yield Note(f"cluster {cluster} is still up (--keep) and billing "
                       f"{'$%.2f/h' % placement['hourly_price_usd'] if placement.get('hourly_price_usd') else 'by the hour'}"
                       f": `ssh {cluster}` reaches it, `sky down {cluster}` ends it", warning=True)
        else:
            yield Note(f"tearing down {cluster}…")
            cloud.down(cluster)
    yield Outcome(plan.run_id, run.exit_code if run.exit_code is not None else 1, run.status, path)


def _down_after_failure(cloud: ModuleType, cluster: str) -> None:
    try:
        cloud.down(cluster)
    except Exception:  # the launch's own error is the one to report; down's failure names `sky down`
        pass


def _follow(plan: RunPlan, cloud: ModuleType, cluster: str, job: int, log_path: Path, ctrl_c: CtrlC,
            stop_timeout: int) -> Generator[Event, None, bool]:
    """The run's log until it ends (False) or Ctrl-C stops it gracefully (True). Every line is kept for the log."""
    redact = redactor(plan.env_names)
    tail = Tail(cloud.logs(cluster, job))
    yield Following(plan.run_id)
    with log_path.open("a", encoding="utf-8") as log:

        def shown(lines: Iterator[str]) -> Iterator[Log]:
            for line in map(redact, lines):
                log.write(line + "\n")
                yield Log(line)

        yield from shown(tail.lines(ctrl_c.pressed))
        if tail.ended:
            return False
        yield Note(f"stopping run {plan.run_id} (up to {stop_timeout}s for it to save)...", warning=True)
        try:
            cloud.stop(cluster)
        except ChatlikeError:  # training had not started (no pid yet): nothing to save
            cloud.cancel(cluster, job)
        yield from shown(tail.lines(timeout=stop_timeout))
        if not tail.ended:
            cloud.cancel(cluster, job)
    return True


def collect(plan: RunPlan, where: Rented, image: str, placement: dict[str, Any], folder: Path, complete: bool,
            fetch: Callable[[Path], None]) -> tuple[Path, Run]:
    """Bring the run's outputs home (`fetch(tmp)` copies the cluster's output folder into tmp) with its staged
    configs, the followed log and the manifest; published as OUT/<run-id> (or .partial when stopped)."""
    ended: list[Run] = []

    def fill(tmp: Path) -> dict[str, Any]:
        fetch(tmp)
        files = [{"path": p.relative_to(tmp).as_posix(), "size": p.stat().st_size}
                 for p in sorted(tmp.rglob("*")) if p.is_file()]
        inputs = tmp / c.RUN_INPUTS
        inputs.mkdir()
        for name in (c.CONFIG_NAME, c.ORIGINAL_CONFIG_NAME, c.INPUT_SUMS):
            shutil.copy2(folder / "input" / name, inputs / name)
        (tmp / artifacts.CONTAINER_LOG).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / LOG, tmp / artifacts.CONTAINER_LOG)
        run = _ended(plan, where, image, tmp, complete)
        ended.append(run)
        sums = artifacts.parse_sums((inputs / c.INPUT_SUMS).read_text(encoding="utf-8"))
        return artifacts.manifest(run=run, image={"ref": image, "id": None, "digests": [image]},
                                  engine={"skypilot_cluster": run.container_id}, inputs=sums, files=files,
                                  rented=placement)

    path = artifacts.publish(plan.out_dir, plan.run_id, complete, fill)
    return path, ended[0]


def _ended(plan: RunPlan, where: Rented, image: str, outputs: Path, complete: bool) -> Run:
    """How the run ended, from the train-manifest.json chatlike-train wrote on the box (none: it never trained)."""
    try:
        train = json.loads((outputs / "train-manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        train = {}
    code = train.get("exit_code")
    if not complete:
        status, code = "stopped", c.INTERRUPTED_EXIT
    else:
        status, code = ("succeeded", 0) if code == 0 else ("failed", code or 1)
    return Run(id=plan.run_id, container_id=rented.cluster_name(plan.run_id),
               flags={**plan.flags(), "on": where.flags()}, status=status, exit_code=code, oom_killed=False,
               started_at=train.get("started"), finished_at=train.get("ended"), image_id=image, image_digests=(image,))


def resume_on(partial: Path, record: dict[str, Any], out_dir: Path, stop_timeout: int,
              cloud: ModuleType = skypilot) -> Iterator[Event]:
    """Continue a rented run stopped by Ctrl-C on a new cluster, from its checkpoints in OUT/<run-id>.partial."""
    try:
        flags = record["flags"]
        where, image = rented.from_flags(flags["on"]), flags["image"]
        plan = replan(flags, record["run_id"], out_dir)
    except (KeyError, TypeError, ValueError):
        raise ChatlikeError(f"{partial / artifacts.MANIFEST} is not a whole manifest of a run on a rented box; "
                            "cannot resume from it") from None
    expected = {**record.get("dataset_sha256", {}), c.ORIGINAL_CONFIG_NAME: record.get("config_sha256")}
    yield Note(f"resuming run {plan.run_id} on a new {where.provider} cluster from {partial}")
    yield from start_on(plan, where, image, stop_timeout=stop_timeout, expected=expected, earlier=partial,
                        cloud=cloud)
