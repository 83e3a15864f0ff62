"""SkyPilot: the one module that talks to it. Check a task offline against SkyPilot's own schema and catalog,
launch it, follow its log, ask how its job stands, stop its training, copy its outputs home over ssh, tear the
cluster down.

SkyPilot is an optional extra (`pip install 'chatlike-runner[cloud]'`, ~560 MB): imported only here, and only
when a run goes to a rented box (rented.py).
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core.errors import ChatlikeError
from .events import Note

INSTALL = "pip install 'chatlike-runner[cloud]'"
PID_FILE = "/tmp/chatlike-train.pid"  # written by `chatlike-train run` (train/entrypoint.py)
SHORT = 240  # characters of a SkyPilot error kept on the one line
ANSWER_TIMEOUT = 15  # seconds the box gets to answer ssh before it counts as gone
CATALOG = "https://github.com/skypilot-org/skypilot-catalog"
# What a job's log looks like through `sky.tail_logs` (SkyPilot 0.14.1 on Runpod, read off its own output): each
# line the run writes comes behind a Ray task prefix in ANSI colour, `(TASK, pid=N) ` on one node, `(head, rank=0,
# pid=N) ` or `(worker1, rank=1, pid=N) ` on several, except the pieces after a carriage return (tqdm's bars), which
# come plain, one per line, after their prefixed start; SkyPilot's own lines come styled and without a prefix, the
# last of them `✓ Job finished (status: X).`
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TASK = re.compile(r"^\((?:[^()]*?, rank=(\d+)|[^(),]*), pid=\d+\) ?")
_FINISHED = re.compile(r"Job finished \(status: ([A-Z_]+)\)")
_TREE = " ├└─│✓⚙︎"


@dataclass(frozen=True)
class LogLine:
    """A line of a job's log as SkyPilot streams it: the run's own output (`rank`: its node, 0 on one node), or a
    line of SkyPilot's (`rank` None), which may say how the job `finished`."""

    text: str
    rank: int | None = None
    finished: str | None = None


class JobLog:
    """Reads the lines of one job's log stream in order, their colours and prefixes taken off."""

    def __init__(self) -> None:
        self.rank = 0  # the node of the last prefixed line: the plain pieces after it are its own

    def read(self, raw: str) -> LogLine:
        plain = _ANSI.sub("", raw).rstrip("\r\n")
        task = _TASK.match(plain)
        if task:
            self.rank = int(task.group(1) or 0)
            return LogLine(plain[task.end():], self.rank)
        if raw.startswith("\x1b"):
            finished = _FINISHED.search(plain)
            return LogLine(plain.strip(_TREE), None, finished.group(1) if finished else None)
        return LogLine(plain, self.rank)


def _sky() -> Any:
    try:
        import sky
    except ImportError:
        raise ChatlikeError(f"rented boxes are reached through SkyPilot, which is not installed: {INSTALL}") from None
    return sky


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """SkyPilot prints spinners, hints and its logger's lines while it works; a check prints one line of ours."""
    from sky import sky_logging

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), sky_logging.silent():
        yield


def first_line(exc: BaseException) -> str:
    """An error's message on one short line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"


def task(config: Mapping[str, Any]) -> Any:
    """SkyPilot's own Task of the config, or one line saying what SkyPilot refused."""
    sky = _sky()
    try:
        with _quiet():
            return sky.Task.from_yaml_config(dict(config))
    except Exception as exc:  # SkyPilot raises ValueError, jsonschema's errors and its own
        raise ChatlikeError(f"SkyPilot refused the task: {first_line(exc)}") from None


def _catalog(provider: str) -> None:
    """SkyPilot's catalog of the provider's machines and prices on disk: SkyPilot downloads what is missing
    (once) when it first places a task; where it cannot, one line says what is missing and how to get it."""
    from sky.catalog import common

    for name in ("common/accelerators.csv", f"{provider}/vms.csv"):
        path = Path(common.get_catalog_path(name))
        if path.is_file():
            continue
        try:
            with _quiet():
                common.read_catalog(name).columns  # noqa: B018 (reading it is what downloads it)
        except Exception as exc:
            raise ChatlikeError(f"SkyPilot's catalog of {provider} machines and prices is not on this machine ({path}) "
                                f"and could not be downloaded ({first_line(exc)[:80]}): run the command again where "
                                f"the internet is reachable (SkyPilot fetches it once, from {CATALOG}), or copy "
                                f"catalogs/v8 of that repository to {path.parents[1]}") from None


def validate(config: Mapping[str, Any]) -> dict[str, Any]:
    """Load the task and choose its resources as `sky launch` would, from SkyPilot's catalog alone (no
    credentials, no network once the catalog is on disk). Returns where it would run and at what price."""
    from unittest import mock  # here, not at the top: every runner command imports this module

    sky = _sky()
    from sky import check as sky_check
    from sky import exceptions, optimizer

    checked = task(config)
    resources = config["resources"]
    provider, (gpu, count) = resources["infra"], next(iter(resources["accelerators"].items()))
    _catalog(provider)
    clouds = {"runpod": sky.clouds.RunPod(), "lambda": sky.clouds.Lambda()}
    dag = sky.Dag()
    dag.add(checked)
    try:
        # Only the provider asked for is considered, as if its credentials were set up: the check is the catalog's.
        # SkyPilot has no setting for "these clouds, unchecked": its enabled clouds come from `sky check`, cached
        # in the user's own ~/.sky state database. Writing them there would change that user's SkyPilot for every
        # later `sky` command (a dry run must leave nothing behind), so the one function that reads them is
        # patched for the length of this call instead.
        with _quiet(), mock.patch.object(sky_check, "get_cached_enabled_clouds_or_refresh",
                                         return_value=[clouds[provider]]):
            optimizer.Optimizer.optimize(dag, quiet=True)
    except exceptions.ResourcesUnavailableError:
        offered = ", ".join(sorted(_accelerators(provider))) or "none in SkyPilot's catalog"
        raise ChatlikeError(f"--gpu {gpu}:{count}: {provider} has no such machine in SkyPilot's catalog"
                            f"{' with spot pricing' if resources.get('use_spot') else ''}; its GPUs: {offered}") from None
    except Exception as exc:
        raise ChatlikeError(f"SkyPilot could not place the task: {first_line(exc)}") from None
    return describe(checked.best_resources, int(config.get("num_nodes", 1)))


def _accelerators(provider: str) -> list[str]:
    try:
        return list(_offers(provider))
    except ChatlikeError:
        return []


def offer(provider: str, gpu: str, count: int, spot: bool = False) -> dict[str, Any]:
    """The cheapest machine of the provider with `count` GPUs of type `gpu` in SkyPilot's catalog: its hourly price
    (spot where asked), region and the memory of one GPU in GiB (the Runpod catalog writes GB where it means MiB,
    so a figure under 1 is read as GB/1024)."""
    _sky()
    _catalog(provider)
    found = [info for name, infos in _offers(provider).items() if name.lower() == gpu.lower() for info in infos
             if int(info.accelerator_count) == count]
    if not found:
        offered = ", ".join(sorted(_accelerators(provider))) or "none in SkyPilot's catalog"
        raise ChatlikeError(f"--gpu {gpu}:{count}: {provider} has no such machine in SkyPilot's catalog; its GPUs: "
                            f"{offered}")
    price = (lambda info: info.spot_price) if spot else (lambda info: info.price)
    priced = [info for info in found if price(info) == price(info)] or found  # NaN: no price of that kind
    best = min(priced, key=price)
    memory = float(best.device_memory or 0)
    return {"provider": provider, "instance_type": best.instance_type, "region": best.region,
            "hourly_price_usd": None if price(best) != price(best) else round(float(price(best)), 2),
            "gpu_memory_gib": memory * 1024 if 0 < memory < 1 else memory or None, "spot": spot}


def _offers(provider: str) -> dict[str, list[Any]]:
    sky = _sky()
    try:
        with _quiet():
            return dict(sky.catalog.list_accelerators(gpus_only=True, clouds=provider))
    except Exception as exc:
        raise ChatlikeError(f"SkyPilot's catalog of {provider} could not be read: {first_line(exc)}") from None


def _hourly(resources: Any, nodes: int) -> float | None:
    try:
        return round(resources.get_cost(3600) * nodes, 2)
    except Exception:  # no price in the catalog for this machine
        return None


def describe(resources: Any, nodes: int) -> dict[str, Any]:
    """Provider, region, machine, GPUs and the hourly price of all nodes, from SkyPilot's resources; for spot, the
    on-demand price beside it (SkyPilot bids the catalog's spot price per GPU)."""
    gpu, count = next(iter((resources.accelerators or {"none": 0}).items()))
    placed = {
        "provider": str(resources.cloud).lower(), "region": resources.region, "zone": resources.zone,
        "instance_type": resources.instance_type, "gpu": f"{gpu}:{count}", "nodes": nodes,
        "spot": bool(resources.use_spot), "hourly_price_usd": _hourly(resources, nodes),
    }
    if resources.use_spot:
        placed["on_demand_hourly_price_usd"] = _hourly(resources.copy(use_spot=False), nodes)
    return placed


def remote_api_server() -> str | None:
    """The URL of SkyPilot's API server when it is not a local one (`sky api login`): such a server writes no ssh
    alias for its clusters on this machine. None for a local server (started on the first call, as `sky` does)."""
    _sky()
    from sky.server import common as server_common

    if server_common.is_api_server_local():
        return None
    return server_common.redact_url_password(server_common.get_server_url())  # a URL may carry a password


def launch(config: Mapping[str, Any], secrets: Mapping[str, str]) -> Generator[Note, None, int]:
    """Provision the cluster, upload the file mounts, start the run; SkyPilot prints its progress. Returns the job."""
    sky = _sky()
    # The values fill the task's secrets in memory; SkyPilot's API server records the request (see the README).
    launched = task({**config, "secrets": dict(secrets)})
    yield Note(f"launching {config['name']} through SkyPilot (provisioning takes minutes; billing starts now)")
    try:
        job_id, _ = sky.stream_and_get(sky.launch(launched, cluster_name=config["name"]))
    except Exception as exc:
        raise ChatlikeError(f"SkyPilot could not launch {config['name']}: {first_line(exc)}") from None
    return int(job_id)


def logs(cluster: str, job_id: int) -> Iterator[str]:
    """The job's log from its start, line by line as SkyPilot streams it, until the job ends or the stream does."""
    sky = _sky()
    for line in sky.tail_logs(cluster, job_id, follow=True, preload_content=False):
        if line is not None:
            yield line


def job_status(cluster: str, job_id: int) -> str | None:
    """How the job stands (RUNNING, SUCCEEDED, FAILED, CANCELLED…), as the cluster says; None if it cannot say."""
    sky = _sky()
    try:
        with _quiet():
            status = sky.get(sky.job_status(cluster, [job_id])).get(job_id)
    except Exception:
        return None
    return None if status is None else str(status.value)


def placement(cluster: str) -> dict[str, Any] | None:
    """Where the cluster really runs, as SkyPilot recorded it at launch (None if it cannot say)."""
    sky = _sky()
    try:
        with _quiet():
            records = sky.get(sky.status([cluster]))
        handle = records[0]["handle"] if isinstance(records[0], dict) else records[0].handle
        return describe(handle.launched_resources, int(handle.launched_nodes))
    except Exception:
        return None


def answers(cluster: str) -> bool:
    """Whether the cluster's head node still answers ssh (through SkyPilot's alias for it)."""
    try:
        done = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={ANSWER_TIMEOUT}", cluster, "true"],
                              capture_output=True, timeout=ANSWER_TIMEOUT * 2)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def stop(cluster: str) -> None:
    """SIGTERM to `chatlike-train run` on the head node: it saves a checkpoint after this step and ends."""
    ssh(cluster, f"kill -TERM \"$(cat {PID_FILE})\"")


def cancel(cluster: str, job_id: int) -> None:
    """End the job without waiting for a checkpoint (a stop that did not end in time)."""
    sky = _sky()
    with contextlib.suppress(Exception), _quiet():
        sky.get(sky.cancel(cluster, job_ids=[job_id]))


def fetch(cluster: str, remote: str, local: Path) -> None:
    """Copy the folder `remote` of the cluster's head node into `local`."""
    rsync(cluster, remote, local)


def down(cluster: str) -> None:
    """Tear the cluster down: billing stops, and whatever is on its disks is gone. A cluster SkyPilot no longer
    knows (its provider ended it) is down already."""
    sky = _sky()
    from sky import exceptions

    try:
        with _quiet():
            sky.stream_and_get(sky.down(cluster))
    except exceptions.ClusterDoesNotExist:
        return
    except Exception as exc:
        raise ChatlikeError(f"tearing down {cluster} failed ({first_line(exc)}): it may still cost money; "
                            f"`sky down {cluster}` tears it down, `sky status` lists what is up") from None


def _tail(output: str) -> str:
    """The end of a tool's error output, on one line."""
    return " ".join(output.split())[-SHORT:]


def ssh(host: str, command: str) -> None:
    """Run `command` on `host` (an ssh host name, such as the ones SkyPilot writes for its clusters)."""
    done = subprocess.run(["ssh", "-o", "BatchMode=yes", host, command], capture_output=True, text=True)
    if done.returncode != 0:
        raise ChatlikeError(f"ssh {host} failed (exit {done.returncode}): {_tail(done.stderr)}")


def rsync_command(host: str, remote: str, local: Path, ssh_command: str = "ssh -o BatchMode=yes") -> list[str]:
    """rsync of `host:remote/` into `local`: regular files and folders only, as from an engine's archive (a link
    the box wrote is never copied home); only what changed travels, and an interrupted copy resumes."""
    return ["rsync", "--archive", "--partial", "--no-owner", "--no-group", "--no-links", "--no-devices",
            "--no-specials", "--rsh", ssh_command, f"{host}:{remote.rstrip('/')}/", f"{local}/"]


def rsync(host: str, remote: str, local: Path, ssh_command: str = "ssh -o BatchMode=yes") -> None:
    """Mirror `host:remote/` into `local` with rsync over ssh."""
    if shutil.which("rsync") is None:
        raise ChatlikeError("copying outputs home from a rented box needs rsync: install it (apt-get install rsync)")
    local.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(rsync_command(host, remote, local, ssh_command), capture_output=True, text=True)
    if done.returncode != 0:
        raise ChatlikeError(f"copying {host}:{remote} home failed (rsync exit {done.returncode}): "
                            f"{_tail(done.stderr)}")
