"""Engine: the one module that talks to the Docker engine, local or over ssh://.

Docker's containers become `Run` values here, once, and its images `Image` values, the way docker-py
puts friendly models over its low-level API: no other module imports docker-py or reads labels,
`attrs` or `State`. Each method is one engine conversation; Docker's exceptions become ChatlikeError
at this boundary.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# docker-py loads its ssh:// transport, and paramiko with it, when it is imported: a third of the runner's start-up.
# It is loaded when an ssh:// engine is asked for (`_load_ssh_transport`), not before.
_PARAMIKO_UNLOADED = "paramiko" not in sys.modules
if _PARAMIKO_UNLOADED:
    sys.modules["paramiko"] = None  # type: ignore[assignment]  # `import paramiko` fails; docker-py skips ssh://
try:
    import docker
    import docker.api.client
    import docker.errors
    import docker.transport
    import docker.types.daemon
    import requests.exceptions
    from docker.utils.socket import frames_iter
finally:
    if _PARAMIKO_UNLOADED:
        del sys.modules["paramiko"]

from .core import constants as c
from .core.errors import ChatlikeError
from .parsing import split_tag

CHUNK = 1 << 20
SSH_POOLS = 4
# Tried first for a copy over ssh: with AES instructions (any x86-64 or arm64 server) about a third of the CPU of
# OpenSSH's default chacha20-poly1305; the rest of the default list follows.
SSH_BULK_CIPHERS = "aes128-gcm@openssh.com,aes256-gcm@openssh.com"
GPU_DRIVER_MISSING = "could not select device driver"
NVIDIA_TOOLKIT_FIX = (
    "install the NVIDIA Container Toolkit on the Docker host and run "
    "`sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`, "
    "or pass --gpus none"
)
STOP_EXITS = (137, 143)  # SIGKILL, SIGTERM: stopped from outside (`stop`, Ctrl-C), not ended on its own
SCRATCH_IMAGE = "chatlike/probe:scratch"


class NoGpuRuntime(ChatlikeError):
    """The engine cannot pass GPUs to a container: no NVIDIA runtime or toolkit on its host."""


@dataclass(frozen=True)
class Image:
    """An image present on the engine."""

    ref: str
    id: str
    digests: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def min_driver(self) -> str:
        """The oldest NVIDIA driver the image's CUDA build runs on ("none" or "" when it states none)."""
        return self.labels.get(c.LABEL_MIN_DRIVER, "")


@dataclass(frozen=True)
class Run:
    """A run's container as the engine last reported it: who it is, what it was asked to do, how it stands."""

    id: str
    container_id: str
    flags: Mapping[str, Any]  # the plan's flags, as labelled when the run was created
    status: str  # created, running, succeeded, failed, oom or stopped
    exit_code: int | None  # None while it has not ended
    oom_killed: bool
    started_at: str | None
    finished_at: str | None
    image_id: str
    image_digests: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Ended on its own (succeeded, failed, OOM-killed): its outputs will not change any more."""
        return self.status in c.ENDED


def status_of(state: Mapping[str, Any]) -> str:
    """created, running, succeeded, failed, oom or stopped, from a container's State."""
    if state.get("Running"):
        return "running"
    if state.get("Status") == "created":
        return "created"
    if state.get("OOMKilled"):
        return "oom"
    if state.get("ExitCode") in STOP_EXITS:
        return "stopped"
    return "succeeded" if state.get("ExitCode") == 0 else "failed"


@contextlib.contextmanager
def translated(action: str) -> Iterator[None]:
    """Turn a Docker or transport failure while doing `action` into one clear line."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise ChatlikeError(f"{action}: image not found ({exc.explanation}); build or pull it first") from None
    except docker.errors.NotFound as exc:
        raise ChatlikeError(f"{action}: not found ({exc.explanation})") from None
    except docker.errors.APIError as exc:
        explanation = str(exc.explanation or exc)
        if GPU_DRIVER_MISSING in explanation:
            raise NoGpuRuntime(f"{action}: the Docker host has no NVIDIA runtime; {NVIDIA_TOOLKIT_FIX}") from None
        if "setting rlimit" in explanation:
            raise ChatlikeError(
                f"{action}: the Docker host refused a --ulimit (a memlock above its own limit, often 8 MiB, needs "
                "dockerd with CAP_SYS_RESOURCE); lower or drop that --ulimit"
            ) from None
        raise ChatlikeError(f"{action}: the Docker engine said: {explanation}") from None
    except _transport_errors() as exc:
        raise ChatlikeError(f"{action}: cannot talk to the Docker engine ({_one_line(exc)})") from None


def _load_ssh_transport() -> None:
    """docker-py's ssh:// transport and paramiko, which the import above left out."""
    if not hasattr(docker.api.client, "SSHHTTPAdapter"):
        from docker.transport.sshconn import SSHHTTPAdapter

        docker.transport.SSHHTTPAdapter = docker.api.client.SSHHTTPAdapter = SSHHTTPAdapter


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What talking to the engine raises when the connection fails: paramiko's too once ssh:// is loaded."""
    paramiko = sys.modules.get("paramiko")
    return (docker.errors.DockerException, requests.exceptions.RequestException, OSError,
            *((paramiko.SSHException,) if paramiko else ()))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _ssh_hint(exc: BaseException) -> str:
    text = _one_line(exc)
    if "known_hosts" in text:
        return f"{text}; connect once with `ssh` to accept the host key, then retry"
    return f"{text}; check that `ssh` to it works without a password and that docker runs there"


class Attached:
    """A container's stdin and output over the engine's attach stream: a socket locally, an ssh channel over
    ssh://. Output comes as (stream, bytes) frames, stream 1 for stdout and 2 for stderr."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._raw = getattr(sock, "_sock", sock)

    def send(self, data: bytes) -> None:
        with translated("talking to the container"):
            self._raw.sendall(data)

    def close_input(self) -> None:
        """End of input: the container's stdin reads EOF."""
        with contextlib.suppress(Exception):  # already closed: the container has ended
            self._raw.shutdown(socket.SHUT_WR)

    def frames(self) -> Iterator[tuple[int, bytes]]:
        with translated("reading the container's output"):
            yield from frames_iter(self._sock, tty=False)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._sock.close()


class Engine:
    """A connected Docker engine."""

    def __init__(self, client: docker.DockerClient, url: str) -> None:
        self.client = client
        self.api = client.api
        self.url = url
        self._digests: dict[str, tuple[str, ...]] = {}
        self._images: dict[str, Image] = {}  # found by ref: a command asks once (an image that is missing may come)
        self._info: dict[str, Any] | None = None

    @classmethod
    def connect(cls, host: str | None = None) -> Engine:
        """Connect to `host`, else DOCKER_HOST, else the active docker context."""
        where = host or os.environ.get("DOCKER_HOST") or "the local Docker engine"
        try:
            if where.startswith("ssh://"):
                _load_ssh_transport()
            if host and host.startswith("ssh://"):
                # docker-py opens one ssh channel per endpoint it keeps a pool for; sshd allows 10
                # sessions per connection, so keep few pools and leave room for streams in flight.
                client = docker.DockerClient(base_url=host, use_ssh_client=False, timeout=120, num_pools=SSH_POOLS)
            elif host:  # through from_env, so that DOCKER_TLS_VERIFY and DOCKER_CERT_PATH still apply
                client = docker.from_env(timeout=120, environment={**os.environ, "DOCKER_HOST": host})
            else:
                client = docker.from_env(timeout=120)  # asks the engine its API version: reached, or raises
        except Exception as exc:  # docker-py, requests, paramiko and socket errors all mean: unreachable
            if where.startswith("ssh://"):
                detail = _ssh_hint(exc)
            else:
                detail = (
                    f"{_one_line(exc)}; start it (`sudo systemctl start docker`), "
                    "or point --host / DOCKER_HOST at a running one"
                )
            raise ChatlikeError(f"cannot reach {where}: {detail}") from None
        adapter = getattr(client.api, "_custom_adapter", None)
        socket = getattr(adapter, "socket_path", None)
        return cls(client, host or os.environ.get("DOCKER_HOST") or (f"unix://{socket}" if socket else client.api.base_url))

    @property
    def local(self) -> bool:
        """Whether the engine is reached through a socket on this machine (its bind mounts are this machine's)."""
        return self.url.startswith("unix://")

    def info(self) -> dict[str, Any]:
        """What the manifest records about the engine and its host (asked once per connection)."""
        if self._info is None:
            with translated("reading engine info"):
                self._info = self.client.info()
        info = self._info
        return {
            "url": self.url,
            "server_version": info.get("ServerVersion"),
            "api_version": self.api.api_version,
            "os": info.get("OperatingSystem"),
            "kernel": info.get("KernelVersion"),
            "arch": info.get("Architecture"),
            "name": info.get("Name"),
            "cpus": info.get("NCPU"),
            "memory": info.get("MemTotal"),
            "runtimes": sorted(info.get("Runtimes") or {}),
            "docker_root_dir": info.get("DockerRootDir"),
        }

    def image(self, ref: str) -> Image | None:
        """The image `ref` (a name or an id) on the engine, or None when it is not there."""
        if ref in self._images:
            return self._images[ref]
        with translated(f"reading image {ref}"):
            try:
                attrs = self.api.inspect_image(ref)
            except docker.errors.NotFound:
                return None
        digests = tuple(attrs.get("RepoDigests") or ())
        self._digests[attrs["Id"]] = digests
        found = self._images[ref] = Image(ref, attrs["Id"], digests, dict((attrs.get("Config") or {}).get("Labels") or {}))
        return found

    def tag(self, image: str, target: str) -> None:
        """Give the image `image` (a name or an id) the name `target` (NAME:TAG)."""
        with translated(f"tagging {image} as {target}"):
            self.api.tag(image, *split_tag(target))

    def push(self, image: str, target: str) -> Iterator[str]:
        """Tag `image` as `target` (REGISTRY/NAME:TAG) and push it; yields the registry's progress lines, and
        returns the digest it stored the image under. Credentials are docker's own (`docker login`)."""
        self.tag(image, target)
        repository, tag = split_tag(target)
        with translated(f"pushing {target}"):
            digest = None
            for event in self.api.push(repository, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise ChatlikeError(f"pushing {target}: the registry said: {event['error']}; "
                                        f"`docker login {repository.split('/')[0]}` if it needs credentials")
                digest = (event.get("aux") or {}).get("Digest") or digest
                if event.get("status") and not event.get("progress"):
                    yield " ".join(str(event[key]) for key in ("id", "status") if event.get(key))
        if digest is None:
            raise ChatlikeError(f"pushing {target}: the registry did not say under which digest it stored the image")
        return digest

    def pull(self, ref: str) -> Iterator[str]:
        """Pull `ref` (REGISTRY/NAME@sha256:… or :TAG); yields progress lines."""
        repository, _, digest = ref.partition("@")
        name, tag = (repository, digest) if digest else split_tag(repository)
        with translated(f"pulling {ref}"):
            for event in self.api.pull(name, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise ChatlikeError(f"pulling {ref}: the registry said: {event['error']}; "
                                        f"`docker login {name.split('/')[0]}` if it needs credentials")
                if event.get("status") and not event.get("progress"):
                    yield " ".join(str(event[key]) for key in ("id", "status") if event.get(key))

    def run_once(self, action: str, image: str, options: Mapping[str, Any], files: bytes | None = None) -> tuple[int, str]:
        """Run a throwaway container of `image` with container `options` to its end, `files` (a tar) unpacked at /
        first; returns its exit code and output. It is always removed."""
        container = None
        try:
            with translated(action):
                container = self.client.containers.create(image, entrypoint=[], **_with_values(options))
                if files is not None and not container.put_archive("/", files):
                    raise ChatlikeError(f"{action}: the Docker engine refused the upload")
                container.start()
                status = container.wait()["StatusCode"]
                output = b"".join(self._logs(container.id, follow=False)).decode("utf-8", "replace").strip()
        finally:
            if container is not None:
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)
        return status, output

    @contextlib.contextmanager
    def scratch_image(self) -> Iterator[str]:
        """An empty image (no files at all) for probes that need a container but no program, removed after."""
        empty = io.BytesIO()
        tarfile.open(fileobj=empty, mode="w").close()
        repository, tag = SCRATCH_IMAGE.split(":")
        with translated("making an empty probe image"):
            status = json.loads(self.api.import_image_from_data(empty.getvalue(), repository=repository, tag=tag))
        try:
            yield status["status"]
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                self.api.remove_image(SCRATCH_IMAGE, force=True)

    def create(self, image_id: str, options: Mapping[str, Any], volumes: Mapping[str, Mapping[str, str]]) -> Run:
        """Create the volumes (name → labels; one that exists is kept as it is, labels included, as Docker does) and
        the container, not started. On failure the caller removes what was made (`remove`, by the labels it gave)."""
        with translated("creating the run"):
            for name, labels in volumes.items():
                self.client.volumes.create(name, labels=dict(labels))
            container = self.client.containers.create(image_id, entrypoint=[], **_with_values(options))
        return self._run(container.attrs)

    def _volume_exists(self, name: str) -> bool:
        try:
            self.client.volumes.get(name)
        except docker.errors.NotFound:
            return False
        return True

    def put(self, run: Run, path: str, archive: Iterable[bytes]) -> None:
        """Stream a tar into the container's filesystem (volumes included), chunk by chunk."""
        with translated(f"staging into {path}"):
            if not self.api.put_archive(run.container_id, path, archive):
                raise ChatlikeError(f"staging into {path}: the Docker engine refused the upload")

    def attach(self, run: Run) -> Attached:
        """The run's stdin and output, attached before it starts so that nothing it says is missed."""
        with translated("attaching to the container"):
            params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            return Attached(self.api.attach_socket(run.container_id, params=params))

    def start(self, run: Run) -> None:
        with translated("starting the run"):
            self.api.start(run.container_id)

    def logs(self, run: Run, *, follow: bool) -> Iterator[bytes]:
        """The container's output as it comes (stdout and stderr interleaved), closable."""
        with translated("reading the logs"):
            return self._logs(run.container_id, follow)

    def _logs(self, container_id: str, follow: bool) -> Iterator[bytes]:
        """One request: docker-py's `logs` first inspects the container for a TTY, which no container chatlike
        creates has (plan.py, run_once's callers)."""
        url = self.api._url("/containers/{0}/logs", container_id)
        params = {"stdout": 1, "stderr": 1, "follow": int(follow), "timestamps": 0, "tail": "all"}
        response = self.api._get(url, params=params, stream=True)
        self.api._raise_for_status(response)
        return docker.types.daemon.CancellableStream(self.api._multiplexed_response_stream_helper(response), response)

    def wait(self, run: Run) -> int:
        with translated("waiting for the run"):
            return self.api.wait(run.container_id)["StatusCode"]

    def refresh(self, run: Run) -> Run:
        """The run as the engine reports it now."""
        with translated("reading the run's state"):
            return self._run(self.api.inspect_container(run.container_id))

    def stop(self, run: Run, timeout: int) -> None:
        with translated("stopping the run"):
            self.api.stop(run.container_id, timeout=timeout)

    def volume_folder(self, name: str) -> str | None:
        """Where a volume's files lie on this machine, when the engine runs here and this process may read them
        (root): outputs then copy at disk speed. None otherwise (a remote engine, an ordinary user, a VM's engine)."""
        if not self.local:
            return None
        try:
            mountpoint = self.api.inspect_volume(name).get("Mountpoint") or ""
        except docker.errors.NotFound:
            return None
        return mountpoint if mountpoint and os.access(mountpoint, os.R_OK | os.X_OK) else None

    def archive(self, run: Run, path: str) -> Iterator[bytes]:
        """A tar stream of `path` inside the container, in pieces of up to 1 MiB.

        docker-py's get_archive yields each 32 KiB HTTP chunk the engine sends; reading the same
        response a MiB at a time costs fewer calls downstream (measured: bench/copy_out.py).
        Closing the stream early still reads the response to its end, so the connection (an ssh
        channel on a remote engine, of which sshd allows few) goes back to the pool.
        """
        with translated(f"copying {path} out"):
            url = f"{self.api.base_url}/v{self.api.api_version}/containers/{run.container_id}/archive"
            response = self.api.get(url, params={"path": path}, stream=True, headers={"Accept-Encoding": "identity"})
            if response.status_code == 404:
                raise ChatlikeError(f"copying {path} out: {path} is not in the container")
            response.raise_for_status()
            try:
                while piece := response.raw.read(CHUNK):
                    yield piece
            except GeneratorExit:
                with contextlib.suppress(Exception):
                    while response.raw.read(CHUNK):
                        pass
                raise
            finally:
                response.close()

    def archive_by_ssh(self, run: Run, path: str) -> Iterator[bytes]:
        """The same tar stream as `archive`, on an ssh:// engine, through the ssh client and the docker command on
        the engine's host (`docker cp CONTAINER:PATH -`, as `docker system dial-stdio` needs it there anyway):
        OpenSSH decrypts in its own process, faster than paramiko's channel, and the stream never passes through
        paramiko's buffers (the runner stays under 64 MiB: bench/copy_out.py). It logs in as `ssh` does (your
        ~/.ssh/config, keys and agent) and never asks: raises ChatlikeError with ssh's or docker's last line."""
        target = urllib.parse.urlsplit(self.url)
        ssh = shutil.which("ssh")
        if target.scheme != "ssh" or not target.hostname or ssh is None:
            raise ChatlikeError(f"copying {path} out: no ssh client for {self.url}")
        remote = shlex.join(["docker", "cp", f"{run.container_id}:{path}", "-"])
        argv = [ssh, "-o", "BatchMode=yes", "-o", f"Ciphers=^{SSH_BULK_CIPHERS}",
                *(["-p", str(target.port)] if target.port else []),
                *(["-l", target.username] if target.username else []), "--", target.hostname, remote]
        with tempfile.TemporaryFile() as errors, subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, start_new_session=True,
        ) as ssh_process:  # its own session: a Ctrl-C reaches the runner, which ends it
            try:
                while piece := ssh_process.stdout.read(CHUNK):
                    yield piece
            except BaseException:  # the reader stopped early (an error, a Ctrl-C): so does ssh
                ssh_process.kill()
                raise
            if ssh_process.wait() != 0:
                errors.seek(0)
                said = [line for line in errors.read().decode(errors="replace").splitlines() if line.strip()]
                last = said[-1] if said else f"exit {ssh_process.returncode}"
                raise ChatlikeError(f"copying {path} out over ssh: {last}")

    def container(self, container_id: str) -> Run:
        """Any container, as a Run (benchmarks read containers that no run created)."""
        with translated(f"reading container {container_id}"):
            return self._run(self.api.inspect_container(container_id))

    def _listed(self) -> dict[str, str]:
        """Run id → container id of every training run on this engine, from the engine's listing by label alone
        (nothing inspected)."""
        with translated("listing runs"):
            found = self.api.containers(all=True, filters={"label": f"{c.LABEL_ROLE}={c.ROLE_TRAIN}"})
        return {(item.get("Labels") or {}).get(c.LABEL_RUN, ""): item["Id"] for item in found}

    def runs(self) -> list[Run]:
        """Every training run of chatlike on this engine, newest first."""
        with translated("listing runs"):
            runs = [self._run(self.api.inspect_container(container_id)) for container_id in self._listed().values()]
        return sorted(runs, key=lambda run: run.id, reverse=True)

    def find(self, ref: str) -> Run | None:
        """The run whose id is `ref` or starts with it, or None when there is none (only that one is inspected)."""
        listed = self._listed()
        matches = sorted(run_id for run_id in listed if run_id.startswith(ref))
        if ref in listed or len(matches) == 1:
            return self.container(listed[ref if ref in listed else matches[0]])
        if matches:
            raise ChatlikeError(f"run {ref!r} is ambiguous ({', '.join(reversed(matches))}); give more of the id")
        return None

    def run(self, ref: str) -> Run:
        """The run whose id is `ref` or starts with it."""
        run = self.find(ref)
        if run is None:
            raise ChatlikeError(f"no run {ref!r} on {self.url}; `chatlike-runner ls` lists the runs")
        return run

    def remove(self, labels: Mapping[str, str], volumes: Iterable[str] = ()) -> list[str]:
        """Remove the containers and volumes that carry `labels`, and the `volumes` named; returns what went."""
        removed = []
        selector = {"label": [f"{key}={value}" for key, value in labels.items()]}
        with translated("removing " + ", ".join(labels.values())):
            for container in self.client.containers.list(all=True, filters=selector):
                container.remove(force=True)
                removed.append(f"container {container.name}")
            for volume in self.client.volumes.list(filters=selector):
                volume.remove(force=True)
                removed.append(f"volume {volume.name}")
            for name in volumes:
                if self._volume_exists(name):
                    self.client.volumes.get(name).remove(force=True)
                    removed.append(f"volume {name}")
        return removed

    def _run(self, attrs: Mapping[str, Any]) -> Run:
        """The Run value of a container's inspect data: the only place that reads labels and State."""
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        state = attrs.get("State") or {}
        status = status_of(state)
        image_id = attrs.get("Image", "")
        if image_id not in self._digests:
            try:
                self._digests[image_id] = tuple(self.api.inspect_image(image_id).get("RepoDigests") or ())
            except docker.errors.DockerException:
                self._digests[image_id] = ()  # the image was removed since: the id still names it
        return Run(
            id=labels.get(c.LABEL_RUN, ""),
            container_id=attrs["Id"],
            flags=json.loads(labels.get(c.LABEL_PLAN) or "{}"),
            status=status,
            exit_code=None if status in ("running", "created") else state.get("ExitCode"),
            oom_killed=bool(state.get("OOMKilled")),
            started_at=state.get("StartedAt") if status != "created" else None,
            finished_at=state.get("FinishedAt") if status not in ("running", "created") else None,
            image_id=image_id,
            image_digests=self._digests[image_id],
        )


def _with_values(options: Mapping[str, Any]) -> dict[str, Any]:
    """Container options with the environment filled in: a None value is read from this process's
    environment now, at the last moment (secrets never sit in a plan), and left out when unset."""
    result = dict(options)
    environment = {}
    for name, value in (options.get("environment") or {}).items():
        if value is None:
            value = os.environ.get(name)
        if value is not None:
            environment[name] = value
    result["environment"] = environment
    return result
