"""Test fixture: `chatlike-runner` with SkyPilot's provisioning stood in for by a container on a Docker engine.

SkyPilot ships no local stand-in for Runpod or Lambda, and nothing here may rent a GPU. So this program runs the
real CLI with the few calls of skypilot.py that need a provider replaced; everything else is the real thing:
- the task is still written and checked by SkyPilot itself, offline, against the catalog fixture;
- `launch` runs the task as SkyPilot runs it on a Runpod pod: a container of the task's image, started as root
  with the run script as its command (entrypoint replaced), the file mounts uploaded, envs and secrets set;
  the engine is STANDIN_DOCKER_HOST (the loopback sshd engine of the tests);
- `fetch` copies the outputs home with the production rsync over real ssh, from the output volume's folder,
  through the loopback sshd (STANDIN_SSH_PORT, as root);
- `stop` sends SIGTERM to the process in the pid file, as `ssh CLUSTER kill` does; `down` removes container and
  volume. Every call is appended to STANDIN_CALLS (JSON lines) for the test to read.
A digest the engine does not have is looked up as a local image id (sha256:HEX): the test names the CPU image
by its id instead of pushing 5 GB to a registry.

Usage: python tests/skypilot_standin.py ARGS… (the arguments of chatlike-runner).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
import time
from pathlib import Path

import docker

from chatlike_runner import cli, skypilot
from chatlike_runner import constants as c

LABELS = {c.LABEL_RUN: "skypilot-standin", c.LABEL_ROLE: "skypilot-standin"}


def _client() -> docker.DockerClient:
    return docker.DockerClient(base_url=os.environ["STANDIN_DOCKER_HOST"], use_ssh_client=False)


def _called(name: str, **details) -> None:
    with open(os.environ["STANDIN_CALLS"], "a", encoding="utf-8") as calls:
        calls.write(json.dumps({"call": name, **details}) + "\n")


def _tar(folder: Path, name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(folder, arcname=name)
    return buffer.getvalue()


def _image(client: docker.DockerClient, ref: str) -> str:
    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return client.images.get("sha256:" + ref.split("@sha256:")[1]).id


def launch(config, secrets):
    client = _client()
    cluster = config["name"]
    image = _image(client, config["resources"]["image_id"].removeprefix("docker:"))
    volume = client.volumes.create(f"{cluster}-output", labels=LABELS)
    container = client.containers.create(
        image, entrypoint=["/bin/bash", "-c"], command=[config["run"]], name=cluster, user="root", init=True,
        environment={**config["envs"], **secrets}, labels=LABELS,
        volumes={volume.name: {"bind": c.OUTPUT_DIR, "mode": "rw"}},
    )
    for target, source in config["file_mounts"].items():
        parent, name = target.rsplit("/", 1)
        container.put_archive(parent or "/", _tar(Path(source), name))
    container.start()
    _called("launch", cluster=cluster, secrets=sorted(secrets), resources=config["resources"])
    yield from ()
    return 1


def logs(cluster, job_id):
    container = _client().containers.get(cluster)
    stream = container.logs(stream=True, follow=True)

    def close_after_exit() -> None:  # a followed log can stay open after the container ended (docker-py #3084)
        container.wait()
        time.sleep(3)
        stream.close()

    threading.Thread(target=close_after_exit, daemon=True).start()
    pending = b""
    for chunk in stream:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line.decode("utf-8", "replace") + "\n" for line in complete)
    if pending:
        yield pending.decode("utf-8", "replace")


def placement(cluster):
    return None  # as when SkyPilot cannot say: the runner keeps the estimate of its offline check


def stop(cluster):
    _called("stop", cluster=cluster)
    _client().containers.get(cluster).exec_run(["sh", "-c", f'kill -TERM "$(cat {skypilot.PID_FILE})"'], user="root")


def cancel(cluster, job_id):
    _called("cancel", cluster=cluster)
    _client().containers.get(cluster).kill()


def fetch(cluster, remote, local):
    folder = _client().volumes.get(f"{cluster}-output").attrs["Mountpoint"]
    port, ssh_dir = os.environ["STANDIN_SSH_PORT"], Path(os.environ["HOME"]) / ".ssh"  # ssh itself ignores $HOME
    skypilot.rsync("root@127.0.0.1", folder, local, ssh_command=f"ssh -p {port} -o BatchMode=yes "
                   f"-o UserKnownHostsFile={ssh_dir / 'known_hosts'} -i {ssh_dir / 'id_ed25519'}")
    _called("fetch", cluster=cluster, remote=remote)


def down(cluster):
    _called("down", cluster=cluster)
    client = _client()
    client.containers.get(cluster).remove(force=True)
    client.volumes.get(f"{cluster}-output").remove(force=True)


if __name__ == "__main__":
    for replaced in (launch, logs, placement, stop, cancel, fetch, down):
        setattr(skypilot, replaced.__name__, replaced)
    cli.main()
