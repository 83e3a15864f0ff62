"""Engine: the one module that talks to the Docker engine, local or over ssh://.

Each method is one engine conversation; Docker's exceptions become ChatlikeError here, at the
boundary, so no other module needs to know docker-py.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

import docker
import docker.errors
import paramiko
import requests.exceptions
from docker.models.containers import Container
from docker.types import DeviceRequest, Ulimit

from . import constants as c
from .errors import ChatlikeError
from .plan import GpuRequest, RunPlan

CHUNK = 1 << 20
SSH_POOLS = 4
GPU_DRIVER_MISSING = "could not select device driver"
NVIDIA_TOOLKIT_FIX = (
    "install the NVIDIA Container Toolkit on the Docker host and run "
    "`sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`, "
    "or pass --gpus none"
)


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
        explanation = exc.explanation or str(exc)
        if GPU_DRIVER_MISSING in str(explanation):
            raise ChatlikeError(f"{action}: the Docker host has no NVIDIA runtime; {NVIDIA_TOOLKIT_FIX}") from None
        if "setting rlimit" in str(explanation):
            raise ChatlikeError(
                f"{action}: the Docker host refused a --ulimit (a memlock above its own limit, often 8 MiB, needs "
                "dockerd with CAP_SYS_RESOURCE); lower or drop that --ulimit"
            ) from None
        raise ChatlikeError(f"{action}: the Docker engine said: {explanation}") from None
    except (docker.errors.DockerException, requests.exceptions.RequestException, paramiko.SSHException, OSError) as exc:
        raise ChatlikeError(f"{action}: cannot talk to the Docker engine ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _ssh_hint(exc: BaseException) -> str:
    text = _one_line(exc)
    if "known_hosts" in text:
        return f"{text}; connect once with `ssh` to accept the host key, then retry"
    return f"{text}; check that `ssh` to it works without a password and that docker runs there"


class Engine:
    """A connected Docker engine."""

    def __init__(self, client: docker.DockerClient, url: str) -> None:
        self.client = client
        self.api = client.api
        self.url = url

    @classmethod
    def connect(cls, host: str | None = None) -> Engine:
        """Connect to `host`, else DOCKER_HOST, else the active docker context."""
        where = host or os.environ.get("DOCKER_HOST") or "the local Docker engine"
        try:
            if host and host.startswith("ssh://"):
                # docker-py opens one ssh channel per endpoint it keeps a pool for; sshd allows 10
                # sessions per connection, so keep few pools and leave room for streams in flight.
                client = docker.DockerClient(base_url=host, use_ssh_client=False, timeout=120, num_pools=SSH_POOLS)
            elif host:  # through from_env, so that DOCKER_TLS_VERIFY and DOCKER_CERT_PATH still apply
                client = docker.from_env(timeout=120, environment={**os.environ, "DOCKER_HOST": host})
            else:
                client = docker.from_env(timeout=120)
            client.ping()
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

    def info(self) -> dict[str, Any]:
        """What the manifest records about the engine and its host."""
        with translated("reading engine info"):
            info = self.client.info()
            version = self.client.version()
        return {
            "url": self.url,
            "server_version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "os": info.get("OperatingSystem"),
            "kernel": info.get("KernelVersion"),
            "arch": info.get("Architecture"),
            "name": info.get("Name"),
            "cpus": info.get("NCPU"),
            "memory": info.get("MemTotal"),
            "runtimes": sorted(info.get("Runtimes") or {}),
            "docker_root_dir": info.get("DockerRootDir"),
        }

    def image(self, ref: str) -> dict[str, Any]:
        """Id, digests and labels of an image present on the engine."""
        try:
            image = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            raise ChatlikeError(
                f"image {ref} is not on the Docker host; build it (`chatlike-runner build`, `--flavor cpu` for {c.CPU_IMAGE}) "
                f"or pull it (`docker pull {ref}`), or pass --image"
            ) from None
        except docker.errors.APIError as exc:
            raise ChatlikeError(f"image {ref}: {exc.explanation}") from None
        return {
            "ref": ref,
            "id": image.id,
            "digests": image.attrs.get("RepoDigests") or [],
            "labels": image.labels,
        }

    def run_once(self, action: str, image: str, command: list[str], **options: Any) -> tuple[int, str]:
        """Run a throwaway container to its end; returns its exit code and output. Always removed."""
        container = None
        try:
            with translated(action):
                container = self.client.containers.create(image, command=command, entrypoint=[], **options)
                container.start()
                status = container.wait()["StatusCode"]
                output = container.logs().decode("utf-8", "replace").strip()
        finally:
            if container is not None:
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)
        return status, output

    def gpu_names(self, image: str, gpus: GpuRequest) -> list[str]:
        """Start a throwaway container with the GPU request and list the GPUs it sees."""
        status, output = self.run_once(
            "checking the GPUs",
            image,
            ["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader"],
            device_requests=[_device_request(gpus)],
            environment={"NVIDIA_DRIVER_CAPABILITIES": "compute,utility"},
            labels={c.LABEL_ROLE: c.ROLE_PROBE},
        )
        if status != 0:
            raise ChatlikeError(f"the GPUs could not be listed inside {image} ({output[:200]}); {NVIDIA_TOOLKIT_FIX}")
        return [line.strip() for line in output.splitlines() if line.strip()]

    def validate(self, plan: RunPlan, image_id: str) -> None:
        """`chatlike-train validate` on the staged config and data, before training starts."""
        status, output = self.run_once(
            "validating the config",
            image_id,
            ["chatlike-train", "validate", f"{c.INPUT_DIR}/{c.CONFIG_NAME}"],
            environment={**c.CONTAINER_ENV, **_values(plan.env_names)},
            volumes={name: {"bind": path, "mode": "rw"} for name, path in plan.volumes.items()},
            labels={c.LABEL_RUN: plan.run_id, c.LABEL_ROLE: c.ROLE_VALIDATE},
        )
        if status != 0:
            lines = [line for line in output.splitlines() if line.strip()]
            reason = lines[-1].removeprefix("chatlike-train: ") if lines else f"exit {status}"
            raise ChatlikeError(f"the config or dataset is not valid: {reason}")

    def create(self, plan: RunPlan, image_id: str) -> Container:
        """Create the run's volumes and its container (not started). Removes both on failure."""
        try:
            with translated("creating the run"):
                for name in (plan.input_volume, plan.output_volume):
                    self.client.volumes.create(name, labels={c.LABEL_RUN: plan.run_id})
                if not self._volume_exists(c.CACHE_VOLUME):
                    self.client.volumes.create(c.CACHE_VOLUME, labels={c.LABEL_CACHE: "huggingface"})
                return self.client.containers.create(
                    image_id,
                    command=list(plan.command),
                    name=plan.container_name,
                    labels=plan.labels(),
                    environment={**c.CONTAINER_ENV, **_values(plan.env_names)},
                    volumes={name: {"bind": path, "mode": "rw"} for name, path in plan.volumes.items()},
                    device_requests=[_device_request(plan.gpus)] if plan.gpus.wanted else None,
                    ipc_mode="host" if plan.shm_size is None else "shareable",
                    shm_size=plan.shm_size,
                    mem_limit=plan.memory,
                    memswap_limit=plan.memory,  # no swap: over the limit means OOM, not a crawl
                    ulimits=[Ulimit(name=u.name, soft=u.soft, hard=u.hard) for u in plan.ulimits] or None,
                    init=True,
                    stdin_open=False,
                    tty=False,
                )
        except BaseException:
            self.remove_run(plan.run_id)
            raise

    def _volume_exists(self, name: str) -> bool:
        try:
            self.client.volumes.get(name)
        except docker.errors.NotFound:
            return False
        return True

    def put(self, container: Container, path: str, archive: Iterable[bytes]) -> None:
        """Stream a tar into the container's filesystem (volumes included), chunk by chunk."""
        with translated(f"staging into {path}"):
            if not self.api.put_archive(container.id, path, archive):
                raise ChatlikeError(f"staging into {path}: the Docker engine refused the upload")

    def start(self, container: Container) -> None:
        with translated("starting the run"):
            container.start()

    def logs(self, container: Container, *, follow: bool, tail: str | int = "all") -> Iterator[bytes]:
        """The container's output as it comes (stdout and stderr interleaved)."""
        with translated("reading the logs"):
            return self.api.logs(container.id, stream=True, follow=follow, tail=tail)

    def wait(self, container: Container) -> int:
        with translated("waiting for the run"):
            return container.wait()["StatusCode"]

    def state(self, container: Container) -> dict[str, Any]:
        with translated("reading the run's state"):
            container.reload()
        return container.attrs["State"]

    def stop(self, container: Container, timeout: int) -> None:
        with translated("stopping the run"):
            container.stop(timeout=timeout)

    def archive(self, container: Container, path: str) -> Iterator[bytes]:
        """A tar stream of `path` inside the container, in pieces of up to 1 MiB.

        docker-py's get_archive yields each 32 KiB HTTP chunk the engine sends; reading the same
        response a MiB at a time costs fewer calls downstream (measured: bench/copy_out.py).
        Closing the stream early still reads the response to its end, so the connection (an ssh
        channel on a remote engine, of which sshd allows few) goes back to the pool.
        """
        with translated(f"copying {path} out"):
            url = f"{self.api.base_url}/v{self.api.api_version}/containers/{container.id}/archive"
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

    def runs(self) -> list[Container]:
        """Every training container of chatlike on this engine, newest first."""
        with translated("listing runs"):
            containers = self.client.containers.list(all=True, filters={"label": f"{c.LABEL_ROLE}={c.ROLE_TRAIN}"})
        return sorted(containers, key=lambda ct: ct.labels.get(c.LABEL_RUN, ""), reverse=True)

    def find(self, ref: str) -> Container | None:
        """The run whose id is `ref` or starts with it, or None when there is none."""
        matches = [ct for ct in self.runs() if ct.labels.get(c.LABEL_RUN, "").startswith(ref)]
        exact = [ct for ct in matches if ct.labels[c.LABEL_RUN] == ref]
        if exact or len(matches) == 1:
            return (exact or matches)[0]
        if matches:
            ids = ", ".join(ct.labels[c.LABEL_RUN] for ct in matches)
            raise ChatlikeError(f"run {ref!r} is ambiguous ({ids}); give more of the id")
        return None

    def run(self, ref: str) -> Container:
        """The run whose id is `ref` or starts with it."""
        container = self.find(ref)
        if container is None:
            raise ChatlikeError(f"no run {ref!r} on {self.url}; `chatlike-runner ls` lists the runs")
        return container

    def user_ids(self, image: str) -> tuple[int, int]:
        """The uid and gid that the image's processes run as."""
        status, output = self.run_once("reading the image's user", image, ["sh", "-c", "id -u; id -g"])
        numbers = output.split()
        if status != 0 or len(numbers) != 2 or not all(n.isdigit() for n in numbers):
            raise ChatlikeError(f"cannot tell which user {image} runs as (`id` said: {output[:100]!r})")
        return int(numbers[0]), int(numbers[1])

    def remove_run(self, run_id: str, *, cache: bool = False) -> list[str]:
        """Remove a run's container and volumes (and the model cache if asked); returns what went."""
        removed = []
        with translated(f"removing run {run_id}"):
            for container in self.client.containers.list(all=True, filters={"label": f"{c.LABEL_RUN}={run_id}"}):
                container.remove(force=True)
                removed.append(f"container {container.name}")
            for volume in self.client.volumes.list(filters={"label": f"{c.LABEL_RUN}={run_id}"}):
                volume.remove(force=True)
                removed.append(f"volume {volume.name}")
            if cache and self._volume_exists(c.CACHE_VOLUME):
                self.client.volumes.get(c.CACHE_VOLUME).remove(force=True)
                removed.append(f"volume {c.CACHE_VOLUME}")
        return removed


def _device_request(gpus: GpuRequest) -> DeviceRequest:
    if gpus.device_ids:
        return DeviceRequest(device_ids=list(gpus.device_ids), capabilities=[["gpu"]])
    return DeviceRequest(count=gpus.count, capabilities=[["gpu"]])


def _values(names: Iterable[str]) -> dict[str, str]:
    """Secret and --env values, read from the environment at the last moment."""
    return {name: os.environ[name] for name in names if name in os.environ}
