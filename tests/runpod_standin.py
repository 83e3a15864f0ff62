"""Test fixture: Runpod's GraphQL API, answered on loopback by containers on the Docker engine.

SkyPilot reaches Runpod only through the `runpod` SDK, which posts GraphQL to $RUNPOD_API_BASE_URL/graphql.
Pointed here, every other part of SkyPilot runs as it does against Runpod: its provisioner asks for a pod with
its own start command, waits for its ssh port, logs in, installs and starts its runtime, syncs the file mounts,
runs the job, tails its log and terminates the pod. This server answers the few queries that the SDK and SkyPilot
send, the way Runpod's API does, and makes each pod what a Runpod pod is: a container of the requested image,
started as root with the requested `dockerArgs` as its command (a pod replaces the image's command), its port 22
published, here on 127.0.0.1.

What a real pod has that a container here lacks is stood in for:
- the GPUs: an `nvidia-smi` (the NVIDIA runtime puts the host's in a pod) that lists `gpuCount` GPUs of the
  requested type with the host driver `driver` (a test sets it);
- the image pull: a digest that no registry here holds is looked up as a local image id (`…@sha256:<image id>`),
  so that a test need not push a 5 GB image;
- SkyPilot's runtime downloads that cannot leave this machine: `uv` (astral.sh) is the PyPI wheel's binary,
  mounted at ~/.local/bin/uv, and the runtime's Python (uv fetches CPython 3.10 from GitHub) is the image's own
  3.11, in a venv made at ~/skypilot-runtime before SkyPilot logs in. Everything SkyPilot then installs comes
  from the package index for real, through a uv cache shared by the pods (`cache`).
`calls` lists the GPU type lookups and the pods created and ended, for the test to read; `preempt(cluster)` ends a
cluster's pods as Runpod ends a spot pod.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker

LABEL = "org.chatlike.role"
ROLE = "runpod-standin"
GPU_MEMORY_GB = {"NVIDIA GeForce RTX 3090": 24, "NVIDIA A100 80GB PCIe": 80, "NVIDIA H100 PCIe": 80}
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
POD_CA = "/etc/ssl/certs/host-ca.crt"
_FIELD = re.compile(r'(\w+): ("(?:[^"\\]|\\.)*"|[\w.]+)')


def _fields(query: str) -> dict[str, Any]:
    """The input fields of a mutation as the runpod SDK writes them (`key: "string"` or `key: bare`), the first of
    each name (the fields it asks back are bare names without a value)."""
    values: dict[str, Any] = {}
    for key, raw in _FIELD.findall(query):
        values.setdefault(key, raw[1:-1] if raw.startswith('"') else
                          {"true": True, "false": False, "null": None}.get(raw, raw))
    return values


@dataclass
class Pod:
    id: str
    name: str
    gpu_type: str
    gpu_count: int
    cost_per_hr: float
    container: Any = None
    status: str = "RUNNING"


@dataclass
class Runpod:
    """The stand-in's state: pods by id, the host driver its GPUs report, and every call made."""

    client: docker.DockerClient
    nvidia_smi: Path
    uv: Path
    cache: Path
    driver: str = "580.95.05"
    pub_key: str = ""
    pods: dict[str, Pod] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # The API.

    def answer(self, query: str) -> dict[str, Any]:
        with self.lock:
            if "podFindAndDeployOnDemand" in query or "podRentInterruptable" in query:
                operation = "podFindAndDeployOnDemand" if "podFindAndDeployOnDemand" in query else "podRentInterruptable"
                return {"data": {operation: self._create(_fields(query), spot=operation == "podRentInterruptable")}}
            if "podTerminate" in query:
                pod_id = re.search(r'podId: "([^"]+)"', query).group(1)
                self._terminate(pod_id)
                return {"data": {"podTerminate": None}}
            if "gpuTypes" in query:
                gpu = re.search(r'id: "([^"]+)"', query).group(1)
                self.calls.append({"call": "gpuTypes", "id": gpu})
                return {"data": {"gpuTypes": [{"id": gpu, "displayName": gpu, "memoryInGb": GPU_MEMORY_GB.get(gpu, 24),
                                               "maxGpuCount": 8, "secureCloud": True, "communityCloud": True}]}}
            if "updateUserSettings" in query:
                self.pub_key = re.search(r'pubKey: "([^"]*)"', query).group(1).replace("\\n", "\n")
                return {"data": {"updateUserSettings": {"id": "standin", "pubKey": self.pub_key}}}
            if "pubKey" in query:
                return {"data": {"myself": {"id": "standin", "pubKey": self.pub_key, "networkVolumes": []}}}
            if "podTemplates" in query:
                return {"data": {"myself": {"podTemplates": []}}}
            if "pods" in query:
                return {"data": {"myself": {"pods": [self._listed(pod) for pod in self.pods.values()]}}}
            if "deleteTemplate" in query:
                return {"data": {"deleteTemplate": None}}
        return {"errors": [{"message": f"runpod stand-in: no answer for {' '.join(query.split())[:200]}"}]}

    def _create(self, fields: dict[str, Any], spot: bool) -> dict[str, Any]:
        pod = Pod(id=uuid.uuid4().hex[:14], name=fields["name"], gpu_type=fields.get("gpuTypeId", ""),
                  gpu_count=int(fields.get("gpuCount", 1)), cost_per_hr=0.5 * int(fields.get("gpuCount", 1)))
        self.calls.append({"call": "create", "spot": spot, "id": pod.id, **fields})
        image = self._image(fields["imageName"])
        # This machine's CA bundle for uv in the pod: PyPI may be reached through a TLS-intercepting proxy here.
        ca = {"SSL_CERT_FILE": POD_CA} if HOST_CA.exists() else {}
        pod.container = self.client.containers.run(
            image, command=shlex.split(fields.get("dockerArgs") or ""), entrypoint=[], user="root",
            name=f"runpod-{pod.id}", detach=True, labels={LABEL: ROLE, "org.chatlike.pod": pod.name},
            ports={"22/tcp": ("127.0.0.1", None)},
            environment={"RUNPOD_POD_ID": pod.id, "PUBLIC_KEY": self.pub_key, "RUNPOD_GPU_COUNT": str(pod.gpu_count),
                         "STANDIN_GPU": pod.gpu_type, "STANDIN_DRIVER": self.driver, **ca},
            volumes={str(self.nvidia_smi): {"bind": "/usr/bin/nvidia-smi", "mode": "ro"},
                     str(self.uv): {"bind": "/root/.local/bin/uv", "mode": "ro"},
                     str(self.cache): {"bind": "/root/.cache/uv", "mode": "rw"},
                     **({str(HOST_CA): {"bind": POD_CA, "mode": "ro"}} if ca else {})},
        )
        # The runtime's venv, on the image's Python (uv cannot download CPython 3.10 from here).
        made = pod.container.exec_run(["/root/.local/bin/uv", "venv", "--seed", "--quiet", "/root/skypilot-runtime",
                                       "--python", "/usr/bin/python3"], user="root")
        if made.exit_code != 0:
            raise RuntimeError(f"runpod stand-in: the runtime venv failed: {made.output.decode()[-500:]}")
        self.pods[pod.id] = pod
        return {"id": pod.id, "imageName": fields["imageName"], "env": [], "machineId": "standin",
                "machine": {"podHostId": pod.id}}

    def _image(self, ref: str) -> str:
        try:
            return self.client.images.get(ref).id
        except docker.errors.ImageNotFound:
            return self.client.images.get("sha256:" + ref.split("@sha256:")[1]).id

    def _listed(self, pod: Pod) -> dict[str, Any]:
        ports = []
        pod.container.reload()
        if pod.status == "RUNNING" and pod.container.status == "running":
            public = pod.container.ports.get("22/tcp") or []
            private = pod.container.attrs["NetworkSettings"]["IPAddress"]
            if public:
                ports = [{"ip": "127.0.0.1", "isIpPublic": True, "privatePort": 22,
                          "publicPort": int(public[0]["HostPort"]), "type": "tcp"},
                         {"ip": private, "isIpPublic": False, "privatePort": 22, "publicPort": 22, "type": "tcp"}]
        return {"id": pod.id, "name": pod.name, "desiredStatus": pod.status, "costPerHr": pod.cost_per_hr,
                "gpuCount": pod.gpu_count, "vcpuCount": 2, "memoryInGb": 8, "imageName": "",
                "containerRegistryAuthId": None, "runtime": {"ports": ports} if ports else None,
                "machine": {"gpuDisplayName": pod.gpu_type}}

    def _terminate(self, pod_id: str) -> None:
        self.calls.append({"call": "terminate", "id": pod_id})
        pod = self.pods.pop(pod_id, None)
        if pod is not None:
            pod.container.remove(force=True)

    # For the tests.

    def preempt(self, cluster: str) -> None:
        """End the cluster's pods as Runpod ends a spot pod: it and its disk are gone. (SkyPilot names a cluster's
        pods `<cluster>-<hash>-head`.)"""
        with self.lock:
            for pod_id, pod in list(self.pods.items()):
                if pod.name.startswith(f"{cluster}-"):
                    self.calls.append({"call": "preempted", "id": pod_id})
                    pod.container.remove(force=True)
                    del self.pods[pod_id]

    def container(self, cluster: str):
        """The head pod's container of a cluster."""
        return next(pod.container for pod in self.pods.values()
                    if pod.name.startswith(f"{cluster}-") and pod.name.endswith("-head"))

    def remove_all(self) -> None:
        for container in self.client.containers.list(all=True, filters={"label": f"{LABEL}={ROLE}"}):
            container.remove(force=True)
        self.pods.clear()


def serve(runpod: Runpod) -> ThreadingHTTPServer:
    """Answer the API on 127.0.0.1 (a free port) from a thread; RUNPOD_API_BASE_URL is http://127.0.0.1:PORT."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            try:
                answer = runpod.answer(body["query"])
            except Exception as exc:  # a broken stand-in must show, not hang SkyPilot's retries
                answer = {"errors": [{"message": f"runpod stand-in failed: {exc}"}]}
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


NVIDIA_SMI = """#!/bin/sh
# Test fixture: the host's nvidia-smi as the NVIDIA runtime puts it in a pod: RUNPOD_GPU_COUNT GPUs of the
# requested type (STANDIN_GPU) on driver STANDIN_DRIVER. Answers the queries chatlike and SkyPilot make.
case "$*" in
  *--query-gpu=*)
    fields=$(printf '%s\\n' "$@" | sed -n 's/^--query-gpu=//p')
    i=0
    while [ "$i" -lt "${RUNPOD_GPU_COUNT:-1}" ]; do
      line=""
      for f in $(echo "$fields" | tr ',' ' '); do
        case "$f" in
          name) v="$STANDIN_GPU" ;;
          driver_version) v="$STANDIN_DRIVER" ;;
          index) v="$i" ;;
          memory.total) v="24576 MiB" ;;
          *) v="[N/A]" ;;
        esac
        line="${line:+$line, }$v"
      done
      echo "$line"
      i=$((i + 1))
    done ;;
  *) echo "NVIDIA-SMI $STANDIN_DRIVER    Driver Version: $STANDIN_DRIVER" ;;
esac
"""


def write_nvidia_smi(folder: Path) -> Path:
    path = folder / "nvidia-smi"
    path.write_text(NVIDIA_SMI)
    path.chmod(0o755)
    return path
