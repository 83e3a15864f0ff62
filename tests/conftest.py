"""Shared fixtures. Docker tests run against the real engine; with CI=true nothing is skipped but GPU tests."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from standin import image as standin
from standin.image import BUSYBOX

HERE = Path(__file__).parent
SSHD = Path("/usr/sbin/sshd")
IN_CI = os.environ.get("CI") == "true"
REPORT: list[str] = []  # lines tests leave for the end of the run (image build times and sizes)


def pytest_terminal_summary(terminalreporter) -> None:
    if REPORT:
        terminalreporter.section("report")
        for line in REPORT:
            terminalreporter.write_line(line)


def cpu_precision() -> str:
    """What `bf16: auto` trains in on this CPU (train/precision.py): bf16 where it has AMX, else fp32; never fp16."""
    return "bf16" if "amx_tile" in Path("/proc/cpuinfo").read_text() else "fp32"


def need(reason: str) -> None:
    """Fail in CI, skip elsewhere: CI must run every test but the GPU ones."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # any failure means: no engine here
        need(f"no Docker engine is reachable ({exc})")
    return client


@pytest.fixture(scope="session")
def standin_image(docker_client) -> str:
    """Test fixture: a tiny image that stands in for the CUDA training image. Returns its tag."""
    if not BUSYBOX.exists():
        need("busybox-static is not installed (apt-get install busybox-static)")
    return standin.ensure(docker_client)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A project folder with a config and a dataset; HOME points inside it, never at the real one."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("HF_TOKEN", "WANDB_API_KEY", "DOCKER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey!"}]}\n'
    )
    (tmp_path / "config.yml").write_text(
        "base_model: tiny\nadapter: qlora\ndatasets:\n  - path: data/train.jsonl\n    type: chat_template\n"
        "output_dir: ./outputs/lora-out\n"
    )
    return tmp_path


def started_run(output: str) -> str:
    """The run id in the runner's `run ID started on HOST` line."""
    match = re.search(r"^run (\S+) started on ", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def runner_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "chatlike_runner", *args]


@pytest.fixture
def cli(workdir):
    """Run chatlike-runner as a separate process, the way a user does."""

    def run(*args: str, env: dict[str, str] | None = None, check: bool = False, timeout: float = 300):
        result = subprocess.run(
            runner_cmd(*args),
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            cwd=workdir,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    return run


@pytest.fixture
def leftovers(docker_client):
    """Names of chatlike containers and volumes created during the test that are still there."""
    before_c = {c.id for c in docker_client.containers.list(all=True)}
    before_v = {v.name for v in docker_client.volumes.list()}

    def now() -> list[str]:
        containers = [
            c.name for c in docker_client.containers.list(all=True, filters={"label": "org.chatlike.role"})
            if c.id not in before_c
        ]
        volumes = [
            v.name for v in docker_client.volumes.list(filters={"label": "org.chatlike.run"}) if v.name not in before_v
        ]
        return sorted(containers + volumes)

    yield now
    for container in docker_client.containers.list(all=True):
        if container.id not in before_c and "org.chatlike.run" in container.labels:
            container.remove(force=True)
    for volume in docker_client.volumes.list(filters={"label": "org.chatlike.run"}):
        if volume.name not in before_v:
            volume.remove(force=True)


@pytest.fixture
def other_user():
    """An ordinary user (not root) in the docker group, made once: (uid, gid, docker's gid)."""
    import pwd

    if os.geteuid() != 0:
        need("acting as another user needs root")
    name = "chatlike-test"
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", name], check=True)
    user = pwd.getpwnam(name)
    return user.pw_uid, user.pw_gid, os.stat("/var/run/docker.sock").st_gid


@pytest.fixture
def shared_tmp():
    """A temporary folder that another user may enter and write in (pytest's own is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="chatlike-shared-"))
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def as_user(user: tuple[int, int, int], *command: str) -> list[str]:
    uid, gid, docker_gid = user
    return [shutil.which("setpriv") or "setpriv", f"--reuid={uid}", f"--regid={gid}", f"--groups={docker_gid}", *command]


def _prerequisites(docker_client) -> None:
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        try:
            docker_client.images.get("chatlike/debian:bookworm-minbase")
        except Exception:
            need("making the base image needs root and debootstrap")


def _build(flavor: str, *options: str, **popen) -> subprocess.Popen:
    """`chatlike-runner build --flavor FLAVOR` of the repository's Dockerfile, on the locally made base."""
    return subprocess.Popen(runner_cmd("build", "--flavor", flavor, *options), text=True, **popen)


def _needs_cuda_image(item) -> bool:
    params = getattr(item, "callspec", None)
    return "cuda_image" in item.fixturenames or (params is not None and params.params.get("image") == "cuda")


CUDA_WANTED = pytest.StashKey[bool]()
CUDA_BUILD: dict[str, tuple[subprocess.Popen, Path]] = {}  # the CUDA flavor's build in the background, and its log


@pytest.hookimpl(trylast=True)  # after -m and -k deselected theirs: a session without them builds no CUDA image
def pytest_collection_modifyitems(config, items) -> None:
    """Tests on the CUDA image run last: its build (several GB of wheels) goes on in the background meanwhile."""
    items.sort(key=_needs_cuda_image)
    config.stash[CUDA_WANTED] = any(_needs_cuda_image(item) for item in items)


def pytest_sessionfinish(session) -> None:
    for build, log in CUDA_BUILD.values():
        if build.poll() is None:
            build.terminate()
            build.wait()
        log.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def cpu_image(docker_client, pytestconfig) -> str:
    """The real training image, CPU flavor, built from the repository's Dockerfile by `chatlike-runner build`. Once
    it (and the base both flavors share) exists, the CUDA flavor's build starts in the background when a test of
    this session needs it."""
    _prerequisites(docker_client)
    build = _build("cpu", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = build.communicate()[0]
    if build.returncode != 0:
        pytest.fail(f"the cpu image did not build:\n{output[-6000:]}")
    if pytestconfig.stash.get(CUDA_WANTED, False):
        _cuda_build()
    return "chatlike/train:cpu"


def _cuda_build() -> tuple[subprocess.Popen, Path]:
    """The CUDA flavor's build (--no-gpu-check: no GPU here), started once, its output in a log file."""
    if "cuda" not in CUDA_BUILD:
        log = Path(tempfile.mkstemp(prefix="chatlike-cuda-build-", suffix=".log")[1])
        with log.open("w") as out:
            CUDA_BUILD["cuda"] = (_build("cuda", "--no-gpu-check", stdout=out, stderr=subprocess.STDOUT), log)
    return CUDA_BUILD["cuda"]


@pytest.fixture(scope="session")
def cuda_image(cpu_image) -> str:
    """The real training image, CUDA flavor (torch's CUDA 13.0 wheels, several GB), built here without a GPU
    (--no-gpu-check) on the same local base, by the build cpu_image started."""
    started = time.monotonic()
    build, log = _cuda_build()
    if build.wait() != 0:
        pytest.fail(f"the cuda image did not build:\n{log.read_text()[-6000:]}")
    waited = time.monotonic() - started
    REPORT.append(f"CUDA image: its build in the background kept the tests on it waiting {waited:.0f} s")
    return "chatlike/train:latest"


def smoke_config(folder: Path, steps: int) -> Path:
    """The CPU smoke config with `steps` steps, in `folder` (long enough for a stop to land mid-run)."""
    config = folder / f"smoke-{steps}.yml"
    config.write_text((HERE.parent / "configs" / "cpu-smoke.yml").read_text().replace("max_steps: 10", f"max_steps: {steps}"))
    return config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ssh_host(workdir, docker_client, monkeypatch):
    """An sshd on 127.0.0.1 that lets the test's own key in; yields its ssh:// URL, its known_hosts line and the
    test's ~/.ssh. The ssh client (OpenSSH's, which reads the passwd home's ~/.ssh, never $HOME) is put on PATH
    behind a fixture script that points it at the test's ~/.ssh instead, logs its arguments and exit status to
    ~/.ssh/client-calls, and refuses to log in while ~/.ssh/refuse exists."""
    if os.geteuid() != 0:
        need("the loopback sshd needs root")
    if not SSHD.exists() or not shutil.which("ssh-keygen") or not shutil.which("ssh"):
        need("openssh-server and its client are not installed (apt-get install openssh-server openssh-client)")
    etc = workdir / "sshd"
    etc.mkdir()
    ssh_dir = Path(os.environ["HOME"]) / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", etc / "host_key"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ssh_dir / "id_ed25519"], check=True)
    shutil.copy(ssh_dir / "id_ed25519.pub", etc / "authorized_keys")
    port = _free_port()
    (etc / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {etc / 'host_key'}\nAuthorizedKeysFile {etc / 'authorized_keys'}\n"
        f"PidFile {etc / 'sshd.pid'}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
        "StrictModes no\nSetEnv PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", etc / "sshd_config"], stderr=subprocess.PIPE, text=True)
    for _ in range(50):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    client = workdir / "ssh-client"
    client.mkdir()
    (client / "ssh").write_text(
        f'#!/bin/sh\necho "$*" >> "$HOME/.ssh/client-calls"\n'
        'if [ -e "$HOME/.ssh/refuse" ]; then echo "root@127.0.0.1: Permission denied (publickey)." >&2; exit 255; fi\n'
        f'{shutil.which("ssh")} -F none -o IdentitiesOnly=yes -o UserKnownHostsFile="$HOME/.ssh/known_hosts" '
        '-i "$HOME/.ssh/id_ed25519" "$@"\ncode=$?\necho "exit $code" >> "$HOME/.ssh/client-calls"\nexit $code\n'
    )
    (client / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{client}:{os.environ['PATH']}")
    host_key = (etc / "host_key.pub").read_text().split()
    yield f"ssh://root@127.0.0.1:{port}", f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n", ssh_dir
    sshd.terminate()
    sshd.wait(timeout=10)


@pytest.fixture(scope="session")
def registry_host(tmp_path_factory, docker_client):
    """A real registry (Debian's docker-registry) on loopback, no credentials; yields its host:port."""
    binary = Path("/usr/bin/docker-registry")
    if not binary.exists():
        need("docker-registry is not installed (apt-get install docker-registry)")
    folder = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = folder / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    server = subprocess.Popen([binary, "serve", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield f"localhost:{port}"
    server.terminate()
    server.wait(timeout=10)
