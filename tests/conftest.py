"""Shared fixtures. Docker tests run against the real engine; with CI=true nothing is skipped but GPU tests."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

HERE = Path(__file__).parent
IN_CI = os.environ.get("CI") == "true"
STANDIN_SCRIPT = HERE / "standin" / "chatlike-train"
BUSYBOX = Path("/bin/busybox")
STANDIN_UID = 1000


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


def _standin_rootfs() -> bytes:
    """A busybox root filesystem with the stand-in entrypoint, as an uncompressed tar."""
    if not BUSYBOX.exists():
        need("busybox-static is not installed (apt-get install busybox-static)")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(name: str, *, data: bytes | None = None, mode: int = 0o644, uid: int = 0, link: str | None = None):
            info = tarfile.TarInfo(name)
            info.uid = info.gid = uid
            info.mode = mode
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

        for folder in ("bin", "etc", "tmp", "usr", "usr/local", "usr/local/bin", "chatlike"):
            add(folder, mode=0o1777 if folder == "tmp" else 0o755)
        for folder in ("chatlike/input", "chatlike/output", "chatlike/cache"):
            add(folder, mode=0o755, uid=STANDIN_UID)
        add("bin/busybox", data=BUSYBOX.read_bytes(), mode=0o755)
        for applet in applets:
            if applet != "busybox":
                add(f"bin/{applet}", link="busybox")
        add("etc/passwd", data=f"root:x:0:0::/root:/bin/sh\ntrainer:x:{STANDIN_UID}:{STANDIN_UID}::/tmp:/bin/sh\n".encode())
        add("etc/group", data=f"root:x:0:\ntrainer:x:{STANDIN_UID}:\n".encode())
        add("usr/local/bin/chatlike-train", data=STANDIN_SCRIPT.read_bytes(), mode=0o755)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def standin_image(docker_client) -> str:
    """Test fixture: a tiny image that stands in for the CUDA training image. Returns its tag."""
    rootfs = _standin_rootfs()
    tag = hashlib.sha256(rootfs).hexdigest()[:12]
    ref = f"chatlike-test/standin:{tag}"
    try:
        docker_client.images.get(ref)
    except Exception:
        docker_client.api.import_image_from_data(
            rootfs,
            repository="chatlike-test/standin",
            tag=tag,
            changes=[f"USER {STANDIN_UID}:{STANDIN_UID}", "ENV PATH=/usr/local/bin:/bin", 'CMD ["chatlike-train"]'],
        )
    return ref


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
            c.name for c in docker_client.containers.list(all=True) if c.id not in before_c and c.name.startswith("chatlike")
        ]
        probes = [c.name for c in docker_client.containers.list(all=True, filters={"label": "org.chatlike.role"}) if c.id not in before_c]
        volumes = [
            v.name
            for v in docker_client.volumes.list()
            if v.name not in before_v and v.name.startswith("chatlike-") and v.name != "chatlike-hf-cache"
        ]
        return sorted(set(containers + probes + volumes))

    yield now
    for container in docker_client.containers.list(all=True):
        if container.id not in before_c and "org.chatlike.run" in container.labels:
            container.remove(force=True)
    for volume in docker_client.volumes.list(filters={"label": "org.chatlike.run"}):
        if volume.name not in before_v:
            volume.remove(force=True)
