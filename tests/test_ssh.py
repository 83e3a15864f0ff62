"""The same run against a remote engine over ssh://, through an sshd on loopback that the test starts."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import need, started_run

pytestmark = pytest.mark.engine
SSHD = Path("/usr/sbin/sshd")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ssh_host(workdir, docker_client):
    """An sshd on 127.0.0.1 that lets the test's own key in; yields its ssh:// URL."""
    if os.geteuid() != 0:
        need("the loopback sshd needs root")
    if not SSHD.exists() or not shutil.which("ssh-keygen"):
        need("openssh-server is not installed (apt-get install openssh-server)")
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
    host_key = (etc / "host_key.pub").read_text().split()
    yield f"ssh://root@127.0.0.1:{port}", f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n", ssh_dir
    sshd.terminate()
    sshd.wait(timeout=10)


def test_unknown_host_key_is_one_clear_line(cli, ssh_host, standin_image, leftovers):
    url, _, _ = ssh_host
    result = cli("start", "config.yml", "--image", standin_image, "--host", url)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "known_hosts" in result.stderr, result.stderr
    assert leftovers() == []


def test_a_whole_run_over_ssh(cli, ssh_host, standin_image, workdir, docker_client, leftovers):
    url, known_host, ssh_dir = ssh_host
    (ssh_dir / "known_hosts").write_text(known_host)
    big = workdir / "data" / "train.jsonl"
    with big.open("a") as handle:  # a few MiB, so staging really streams
        for i in range(40_000):
            handle.write(json.dumps({"messages": [{"role": "user", "content": f"hello {i}"}]}) + "\n")
    result = cli("start", "config.yml", "--image", standin_image, "--host", url, "--env", "STANDIN_ADAPTER_KB",
                 env={"STANDIN_ADAPTER_KB": "4096"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"started on {url}" in result.stdout
    (out,) = (workdir / "outputs").iterdir()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine"]["url"] == url and manifest["flags"]["host"] == url
    import hashlib

    assert manifest["dataset_sha256"]["data/train.jsonl"] == hashlib.sha256(big.read_bytes()).hexdigest()
    assert (out / "adapter_model.safetensors").stat().st_size == 4096 * 1024

    detached = cli("start", "config.yml", "--image", standin_image, "--host", url, "--detach", check=True)
    run_id = started_run(detached.stdout)
    listing = cli("ls", "--host", url, check=True).stdout
    assert run_id in listing
    fetched = cli("attach", run_id, "--host", url)
    assert fetched.returncode == 0, fetched.stderr
    assert (workdir / "outputs" / run_id / "manifest.json").exists()
