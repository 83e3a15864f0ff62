"""SkyPilot: the one module that talks to it. Check a task offline against SkyPilot's own schema and catalog,
launch it, follow its log, stop its training, copy its outputs home over ssh, tear the cluster down.

SkyPilot is an optional extra (`pip install 'chatlike-runner[cloud]'`, ~560 MB): imported only here, and only
when a run goes to a rented box. runs.py takes this module as the `cloud` a rented run talks to.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import ChatlikeError
from .events import Note

INSTALL = "pip install 'chatlike-runner[cloud]'"
PID_FILE = "/tmp/chatlike-train.pid"  # written by `chatlike-train run` (train/cli.py)
SHORT = 240  # characters of a SkyPilot error kept on the one line


def _sky() -> Any:
    try:
        import sky
    except ImportError:
        raise ChatlikeError(f"rented boxes are reached through SkyPilot, which is not installed: {INSTALL}") from None
    return sky


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """SkyPilot prints spinners and hints while it optimizes; a check prints one line of ours instead."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"


def task(config: Mapping[str, Any]) -> Any:
    """SkyPilot's own Task of the config, or one line saying what SkyPilot refused."""
    sky = _sky()
    try:
        with _quiet():
            return sky.Task.from_yaml_config(dict(config))
    except Exception as exc:  # SkyPilot raises ValueError, jsonschema's errors and its own
        raise ChatlikeError(f"SkyPilot refused the task: {_first_line(exc)}") from None


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
    clouds = {"runpod": sky.clouds.RunPod(), "lambda": sky.clouds.Lambda()}
    dag = sky.Dag()
    dag.add(checked)
    try:
        # Only the provider asked for is considered, as if its credentials were set up: the check is the catalog's.
        with _quiet(), mock.patch.object(sky_check, "get_cached_enabled_clouds_or_refresh",
                                         return_value=[clouds[provider]]):
            optimizer.Optimizer.optimize(dag, quiet=True)
    except exceptions.ResourcesUnavailableError:
        offered = ", ".join(sorted(_accelerators(provider))) or "none in SkyPilot's catalog"
        raise ChatlikeError(f"--gpu {gpu}:{count}: {provider} has no such machine in SkyPilot's catalog"
                            f"{' with spot pricing' if resources.get('use_spot') else ''}; its GPUs: {offered}") from None
    except Exception as exc:
        raise ChatlikeError(f"SkyPilot could not place the task: {_first_line(exc)}") from None
    return describe(checked.best_resources, int(config.get("num_nodes", 1)))


def _accelerators(provider: str) -> list[str]:
    sky = _sky()
    try:
        with _quiet():
            return list(sky.catalog.list_accelerators(gpus_only=True, clouds=provider))
    except Exception:
        return []


def describe(resources: Any, nodes: int) -> dict[str, Any]:
    """Provider, region, machine, GPUs and the hourly price of all nodes, from SkyPilot's resources."""
    gpu, count = next(iter((resources.accelerators or {"none": 0}).items()))
    try:
        price = round(resources.get_cost(3600) * nodes, 2)
    except Exception:  # no price in the catalog for this machine
        price = None
    return {
        "provider": str(resources.cloud).lower(), "region": resources.region, "zone": resources.zone,
        "instance_type": resources.instance_type, "gpu": f"{gpu}:{count}", "nodes": nodes,
        "spot": bool(resources.use_spot), "hourly_price_usd": price,
    }


def launch(config: Mapping[str, Any], secrets: Mapping[str, str]) -> Generator[Note, None, int]:
    """Provision the cluster, upload the file mounts, start the run; SkyPilot prints its progress. Returns the job."""
    sky = _sky()
    # The values fill the task's secrets in memory only: they go to SkyPilot's API server, never to a file of ours.
    launched = task({**config, "secrets": dict(secrets)})
    yield Note(f"launching {config['name']} through SkyPilot (provisioning takes minutes; billing starts now)")
    try:
        job_id, _ = sky.stream_and_get(sky.launch(launched, cluster_name=config["name"]))
    except Exception as exc:
        raise ChatlikeError(f"SkyPilot could not launch {config['name']}: {_first_line(exc)}") from None
    return int(job_id)


def logs(cluster: str, job_id: int) -> Iterator[str]:
    """The run's output as it comes, line by line, until the job ends."""
    sky = _sky()
    for line in sky.tail_logs(cluster, job_id, follow=True, preload_content=False):
        if line is not None:
            yield line


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


def stop(cluster: str) -> None:
    """SIGTERM to `chatlike-train run` on the head node: it saves a checkpoint after this step and ends."""
    ssh(cluster, f"kill -TERM \"$(cat {PID_FILE})\"")


def cancel(cluster: str, job_id: int) -> None:
    """End the job without waiting for a checkpoint (a stop that did not end in time)."""
    sky = _sky()
    with contextlib.suppress(Exception):
        sky.get(sky.cancel(cluster, job_ids=[job_id]))


def fetch(cluster: str, remote: str, local: Path) -> None:
    """Copy the folder `remote` of the cluster's head node into `local`."""
    rsync(cluster, remote, local)


def down(cluster: str) -> None:
    """Tear the cluster down: billing stops, and whatever is on its disks is gone."""
    sky = _sky()
    try:
        sky.stream_and_get(sky.down(cluster))
    except Exception as exc:
        raise ChatlikeError(f"tearing down {cluster} failed ({_first_line(exc)}): it may still cost money; "
                            f"`sky down {cluster}` tears it down, `sky status` lists what is up") from None


def _tail(output: str) -> str:
    """The end of a tool's error output, on one line."""
    return " ".join(output.split())[-SHORT:]


def ssh(host: str, command: str) -> None:
    """Run `command` on `host` (an ssh host name, such as the ones SkyPilot writes for its clusters)."""
    done = subprocess.run(["ssh", "-o", "BatchMode=yes", host, command], capture_output=True, text=True)
    if done.returncode != 0:
        raise ChatlikeError(f"ssh {host} failed (exit {done.returncode}): {_tail(done.stderr)}")


def rsync(host: str, remote: str, local: Path, ssh_command: str = "ssh -o BatchMode=yes") -> None:
    """Mirror `host:remote/` into `local` with rsync over ssh (only what changed travels; resumable)."""
    if shutil.which("rsync") is None:
        raise ChatlikeError("copying outputs home from a rented box needs rsync: install it (apt-get install rsync)")
    local.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        # Regular files and folders only, as from an engine's archive: a link the box wrote is never copied home.
        ["rsync", "--archive", "--partial", "--no-owner", "--no-group", "--no-links", "--no-devices", "--no-specials",
         "--rsh", ssh_command,
         f"{host}:{remote.rstrip('/')}/", f"{local}/"],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise ChatlikeError(f"copying {host}:{remote} home failed (rsync exit {done.returncode}): "
                            f"{_tail(done.stderr)}")
