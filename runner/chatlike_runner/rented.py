"""Runs on rented boxes (`start --on`, and `resume` of such a run): stage → write and check the SkyPilot task →
launch → follow → collect → tear down, into the same OUT/<run-id>/ layout and manifest as a run on an engine.

The run's launch folder, OUT/<run-id>.sky/, holds the task (task.yaml) and what it uploads: the staged inputs
and, when resuming, the earlier outputs. `--dry-run` leaves it for inspection; a launch removes it at the end.
After the launch, every failure is one line that says what became of the cluster: torn down when nothing more can
come home from it, else left up with the commands that copy its outputs and tear it down.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from . import artifacts, fit, lifecycle, skypilot, skytask, stage
from .core import constants as c
from .core.errors import ChatlikeError
from .core.trainlog import progress_bar
from .core.unpack import unpack
from .events import Event, Following, Log, Note, TaskReady
from .follow import CtrlC, Tail
from .plan import RunPlan, replan
from .records import Ending, Record
from .redact import redactor
from .skytask import Rented

TASK = "task.yaml"
LOG = "container.log"
EARLIER_SKIPPED = (artifacts.MANIFEST, artifacts.CONTAINER_LOG, c.RUN_INPUTS)
ACTIVE = ("INIT", "PENDING", "SETTING_UP", "RUNNING")  # SkyPilot's job states before the job ends
RECONNECTS = 5  # log streams a run may lose and follow again before the box counts as lost
RECONNECT_WAIT = 2.0  # seconds between them


class _TaskDumper(yaml.SafeDumper):
    """YAML as people write SkyPilot tasks: the run script as a literal block."""


_TaskDumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None))


def launch_folder(out_dir: Path, run_id: str) -> Path:
    return out_dir / f"{run_id}.sky"


def _price(value: float | None) -> str:
    return f"${value:.2f}/h" if value is not None else "price unknown"


def summary(placement: dict[str, Any]) -> str:
    """`runpod, 2x RTX3090 (2x_RTX3090_SECURE) in CA, $1.00/h`; for spot, `… (spot), $0.80/h bid (on-demand
    $1.00/h)`."""
    gpu, _, count = placement["gpu"].partition(":")
    nodes = f"{placement['nodes']} nodes of " if placement.get("nodes", 1) > 1 else ""
    where = f"{placement['provider']}, {nodes}{count}x {gpu} ({placement['instance_type']}) in {placement['region']}"
    if placement.get("spot"):
        return (f"{where} (spot), {_price(placement.get('hourly_price_usd'))} bid "
                f"(on-demand {_price(placement.get('on_demand_hourly_price_usd'))})")
    return f"{where}, {_price(placement.get('hourly_price_usd'))}"


def start_on(plan: RunPlan, where: Rented, *, dry_run: bool = False, stop_timeout: int = c.STOP_TIMEOUT,
             expected: Mapping[str, str] | None = None, earlier: Path | None = None) -> Iterator[Event]:
    """Write and check the run's SkyPilot task; unless `dry_run`, launch it, follow it, bring its outputs home
    and tear the cluster down (unless `where.keep`). `earlier`: a stopped run's outputs to continue from."""
    box = Box(plan, where, expected, earlier)
    try:
        yield from lifecycle.run(box, stop_timeout, dry_run=dry_run)
    finally:
        if not box.kept:
            shutil.rmtree(box.folder, ignore_errors=True)


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


def _outputs(cluster: str) -> Callable[[Path], None]:
    """What copies the cluster's output folder into a folder at home."""
    return lambda tmp: skypilot.fetch(cluster, c.OUTPUT_DIR, tmp)


def _snapshot(plan: RunPlan, where: Rented, placement: dict[str, Any], folder: Path) -> Callable[[], Path]:
    """What brings the run's outputs so far home as OUT/<run-id>.partial (resumable), and says where."""
    return lambda: collect(plan, where, placement, folder, False, _outputs(skytask.cluster_name(plan.run_id)))[0]


def _failed(plan: RunPlan, cluster: str, what: str, job: int | None = None,
            snapshot: Callable[[], Path] | None = None) -> ChatlikeError:
    """The one line after a failure on a launched cluster. While the box answers, its outputs so far come home
    (`snapshot`, as OUT/<run-id>.partial) and, unless its job is known to have ended, the cluster stays up for what
    is still to come, the line giving the copy and the tear-down commands. When it does not answer (pre-empted,
    ended by its provider, unreachable), nothing can come home: it is torn down so that it stops billing."""
    if skypilot.answers(cluster):
        kept, fetched = "", None
        if snapshot is not None:
            try:
                fetched = snapshot()
                kept = f"; its outputs so far are in {fetched}"
            except ChatlikeError as exc:
                kept = f"; copying its outputs home failed too ({exc.format_message()})"
        status = skypilot.job_status(cluster, job) if fetched is not None and job is not None else None
        if status is not None and status not in ACTIVE:  # nothing more will come: what came home is all of it
            return ChatlikeError(f"{what}{kept}. Its job had ended ({status}): "
                                 + _torn_down(cluster, f"cluster {cluster} was torn down"), 1)
        copy = shlex.join(skypilot.rsync_command(cluster, c.OUTPUT_DIR, plan.out_dir / f"{plan.run_id}.copied"))
        return ChatlikeError(f"{what}{kept}. Cluster {cluster} is left up so that nothing is lost (it bills while "
                             f"up): copy its outputs home with `{copy}`, then `sky down {cluster}`", 1)
    return ChatlikeError(f"{what}; the box no longer answers (pre-empted, or ended by its provider), so nothing came "
                         "home and its disk, checkpoints included, is gone. "
                         + _torn_down(cluster, f"Cluster {cluster} was torn down; start the run again"), 1)


def _torn_down(cluster: str, done: str) -> str:
    """Tear the cluster down: `done` when it went, else why not and how to."""
    try:
        skypilot.down(cluster)
    except ChatlikeError as exc:
        return exc.format_message()
    return done


def _down_after_failure(cluster: str) -> None:
    try:
        skypilot.down(cluster)
    except Exception:  # the launch's own error is the one to report; down's failure names `sky down`
        pass


class Box:
    """A run's cluster on a rented box, as a lifecycle.Target: its inputs (and `earlier` outputs) staged into its
    launch folder with the SkyPilot task, checked offline; launched through SkyPilot; its job's log followed (again
    when the stream breaks); Ctrl-C as `chatlike-train`'s graceful stop on the box; the outputs copied home over
    SkyPilot's ssh alias; then the cluster torn down (or kept, --keep). The caller removes the launch folder at the
    end unless `kept` (a dry run's, to look at)."""

    def __init__(self, plan: RunPlan, where: Rented, expected: Mapping[str, str] | None = None,
                 earlier: Path | None = None) -> None:
        self.plan, self.where, self.expected, self.earlier = plan, where, expected, earlier
        self.run_id, self.trial = plan.run_id, plan.trial
        self.cluster = skytask.cluster_name(plan.run_id)
        self.folder = launch_folder(plan.out_dir, plan.run_id)
        self.kept = False
        self.job: int | None = None
        self._config: dict[str, Any] = {}
        self.placement: dict[str, Any] = {}
        self._redact = redactor(plan.env_names)
        self._seen = 0  # the job's own lines read so far: a stream followed again skips them
        self._refused: str | None = None
        self._finished: str | None = None
        self._tail: Tail | None = None
        self._job_log = skypilot.JobLog()

    def prepare(self, dry_run: bool) -> Iterator[Event]:
        """Stage the inputs (and earlier outputs) into the launch folder, write the task, check it and the fit."""
        shutil.rmtree(self.folder, ignore_errors=True)  # what an interrupted launch of this run left
        digests: dict[str, str] = {}
        unpack(stage.input_archive(self.plan, digests), self.folder / "input", strip=0)
        stage.check_unchanged(self.plan, digests, self.expected, self.plan.reproduces)
        outputs = _copy_earlier(self.earlier, self.folder / "output") if self.earlier is not None else None
        self._config = skytask.task_config(self.plan, self.where, self.plan.image, self.folder / "input", outputs)
        self.placement = skypilot.validate(self._config)
        yield from fit.check_rented(self.plan, self.where, self.plan.image)
        text = yaml.dump(self._config, Dumper=_TaskDumper, sort_keys=False)
        (self.folder / TASK).write_text(text, encoding="utf-8")
        self.kept = dry_run  # a dry run leaves the task and its uploads to look at
        yield TaskReady(self.run_id, self.folder / TASK, text, self.placement, summary(self.placement), dry_run)
        if self.where.spot:
            yield Note("--spot: Runpod may take the pod back at any time; a pre-emption ends the run and its disk "
                       "goes with it, checkpoints included: nothing comes home but what Ctrl-C brought (a .partial)",
                       warning=True)

    def start(self, ctrl_c: CtrlC) -> Iterator[Event]:
        """Launch through SkyPilot. A Ctrl-C meanwhile does not cut it short (SkyPilot's API server would go on
        provisioning without us): the run is stopped gracefully once started. A failed launch is torn down."""
        remote = skypilot.remote_api_server()
        if remote is not None:
            raise ChatlikeError(f"SkyPilot's API server is {remote}, not a local one: it writes no ssh alias for "
                                f"{self.cluster} on this machine, so neither Ctrl-C nor the copy home could reach the "
                                "box. Launch with a local API server (`sky api logout`; `sky api start` starts one)")
        secrets = {name: os.environ[name] for name in self.plan.env_names if os.environ.get(name)}
        try:
            self.job = yield from skypilot.launch(self._config, secrets)
        except BaseException:
            _down_after_failure(self.cluster)
            raise
        self.placement = skypilot.placement(self.cluster) or self.placement
        yield Note(f"run {self.run_id} started on {summary(self.placement)} (cluster {self.cluster})")

    def failed(self, error: Exception) -> Exception:
        """Whatever broke, the one line says what became of the cluster."""
        return _failed(self.plan, self.cluster, f"{type(error).__name__}: {skypilot.first_line(error)}", self.job,
                       _snapshot(self.plan, self.where, self.placement, self.folder))

    def follow(self, ctrl_c: CtrlC) -> Generator[Event, None, bool]:
        """The run's log until its job ends, Ctrl-C is pressed, or the box stops answering. Every line is kept for
        the log. A stream lost while the job runs is followed again from where it was (SkyPilot replays a job's log
        from its start: the lines already read are skipped)."""
        yield Following(self.run_id)
        streams = 0
        while True:
            streams += 1
            self._tail, self._job_log, broke = Tail(skypilot.logs(self.cluster, self.job)), skypilot.JobLog(), ""
            try:
                yield from self._shown(self._seen, stop=ctrl_c.pressed)
            except Exception as exc:  # the stream broke: how the job stands decides what comes next
                broke = f" ({skypilot.first_line(exc)})"
            if ctrl_c.pressed.is_set():
                return True
            if self._refused is not None:
                yield Note(f"tearing down {self.cluster}…")
                skypilot.down(self.cluster)
                raise ChatlikeError(f"{self._refused.removeprefix(c.REFUSED)} (cluster {self.cluster} torn down; "
                                    "nothing was trained)")
            if self._finished is not None:
                return False
            status = skypilot.job_status(self.cluster, self.job)
            if status is not None and status not in ACTIVE:
                return False
            lost = None
            if status is None and not skypilot.answers(self.cluster):
                lost = f"run {self.run_id} lost its box while it trained{broke}"
            elif streams > RECONNECTS:
                lost = f"the log stream of run {self.run_id} broke {streams} times{broke}"
            if lost is not None:
                raise _failed(self.plan, self.cluster, lost, self.job,
                              _snapshot(self.plan, self.where, self.placement, self.folder))
            yield Note(f"the log stream from {self.cluster} was lost{broke}; the run goes on: following it again",
                       warning=True)
            time.sleep(RECONNECT_WAIT)
            yield Following(self.run_id)

    def stop(self, timeout: int) -> Iterator[Event]:
        """chatlike-train's graceful stop on the box (the job cancelled when training had not started, or when it
        did not end in time); what the box says meanwhile is shown and kept."""
        try:
            skypilot.stop(self.cluster)
        except ChatlikeError:  # training had not started (no pid yet): nothing to save
            skypilot.cancel(self.cluster, self.job)
        yield Following(self.run_id)
        with contextlib.suppress(Exception):  # what the box says while it saves; its end is read from the outputs
            yield from self._shown(0, timeout=timeout)
        if self._tail is not None and not self._tail.ended:
            skypilot.cancel(self.cluster, self.job)

    def collect(self, complete: bool) -> tuple[Path, Ending]:
        try:
            return collect(self.plan, self.where, self.placement, self.folder, complete, _outputs(self.cluster))
        except ChatlikeError as exc:
            raise _failed(self.plan, self.cluster, exc.format_message()) from None

    def close(self, stopped: bool) -> Iterator[Event]:
        if self.where.keep:
            yield Note(f"cluster {self.cluster} is still up (--keep) and billing "
                       f"{_price(self.placement.get('hourly_price_usd'))}: `ssh {self.cluster}` reaches it, "
                       f"`sky down {self.cluster}` ends it", warning=True)
        else:
            yield Note(f"tearing down {self.cluster}…")
            skypilot.down(self.cluster)

    def _shown(self, skip: int, **until: Any) -> Iterator[Log]:
        """The job's lines from the current stream, each kept in the run's log (secrets redacted); shown but for
        other nodes' progress bars. SkyPilot's own lines are not shown; how the job finished is kept."""
        assert self._tail is not None
        with (self.folder / LOG).open("a", encoding="utf-8") as log:
            for raw in self._tail.lines(**until):
                line = self._job_log.read(self._redact(raw))
                if line.rank is None:  # SkyPilot's own: only how the job finished goes into the run's log
                    if line.finished:
                        self._finished = line.finished
                        log.write(line.text + "\n")
                    continue
                if skip:
                    skip -= 1
                    continue
                self._seen += 1
                if not line.text.strip():
                    continue
                log.write(line.text + "\n")
                if line.text.startswith(c.REFUSED):
                    self._refused = line.text
                if line.rank == 0 or not progress_bar(line.text):
                    yield Log(line.text if line.rank == 0 else f"[node {line.rank}] {line.text}")


def collect(plan: RunPlan, where: Rented, placement: dict[str, Any], folder: Path, complete: bool,
            fetch: Callable[[Path], None]) -> tuple[Path, Ending]:
    """Bring the run's outputs home (`fetch(tmp)` copies the cluster's output folder into tmp) with its staged
    configs, the followed log and the manifest; published as OUT/<run-id> (or .partial when stopped)."""
    endings: list[Ending] = []

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
        ending = _ending(tmp, complete)
        endings.append(ending)
        sums = artifacts.parse_sums((inputs / c.INPUT_SUMS).read_text(encoding="utf-8"))
        return artifacts.manifest(run_id=plan.run_id, flags={**plan.flags(), "on": where.flags()}, ending=ending,
                                  image={"ref": plan.image, "id": None, "digests": [plan.image]},
                                  engine={"skypilot_cluster": skytask.cluster_name(plan.run_id)}, inputs=sums,
                                  files=files, rented=placement, base_model=artifacts.base_model(tmp))

    path = artifacts.publish(plan.out_dir, plan.run_id, complete, fill)
    return path, endings[0]


def _ending(outputs: Path, complete: bool) -> Ending:
    """How the run ended, from the train-manifest.json chatlike-train wrote on the box (none: it never trained)."""
    try:
        train = json.loads((outputs / c.TRAIN_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        train = {}
    code = train.get("exit_code")
    if not complete:
        status, code = "stopped", c.INTERRUPTED_EXIT
    else:
        status, code = ("succeeded", 0) if code == 0 else ("failed", code or 1)
    return Ending(status, code, started_at=train.get("started"), finished_at=train.get("ended"))


def resume_on(record: Record, out_dir: Path, stop_timeout: int) -> Iterator[Event]:
    """Continue a rented run stopped by Ctrl-C on a new cluster, from its checkpoints in OUT/<run-id>.partial."""
    try:
        flags = record.flags
        where = skytask.from_flags(flags["on"])
        plan = replan(flags, record.run_id, out_dir)
    except (KeyError, TypeError, ValueError):
        raise ChatlikeError(f"{record.folder / c.RUN_MANIFEST} is not a whole manifest of a run on a rented box; "
                            "cannot resume from it") from None
    yield Note(f"resuming run {plan.run_id} on a new {where.provider} cluster from {record.folder}")
    yield from start_on(plan, where, stop_timeout=stop_timeout, expected=record.trained_on, earlier=record.folder)
