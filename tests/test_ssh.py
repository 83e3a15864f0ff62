"""The same run against a remote engine over ssh://, through an sshd on loopback that the test starts."""

from __future__ import annotations

import json
import re

import pytest

from conftest import started_run

pytestmark = pytest.mark.engine


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
    calls = (ssh_dir / "client-calls").read_text()
    assert re.search(r"docker cp [0-9a-f]{64}:/chatlike/output -\nexit 0\n", calls), calls  # by the ssh client

    detached = cli("start", "config.yml", "--image", standin_image, "--host", url, "--detach", check=True)
    run_id = started_run(detached.stdout)
    listing = cli("ls", "--host", url, check=True).stdout
    assert run_id in listing
    fetched = cli("attach", run_id, "--host", url)
    assert fetched.returncode == 0, fetched.stderr
    assert (workdir / "outputs" / run_id / "manifest.json").exists()
    for run in (workdir / "outputs").iterdir():
        cli("rm", run.name, "--host", url, check=True)
    assert leftovers() == []


def test_outputs_still_come_home_when_the_ssh_client_cannot_log_in(cli, ssh_host, standin_image, workdir, leftovers):
    """The ssh client may not log in where docker-py's transport does (other keys, another known_hosts): the
    outputs then come through the engine's API, whole."""
    url, known_host, ssh_dir = ssh_host
    (ssh_dir / "known_hosts").write_text(known_host)
    (ssh_dir / "refuse").touch()
    result = cli("start", "config.yml", "--image", standin_image, "--host", url, "--env", "STANDIN_ADAPTER_KB",
                 env={"STANDIN_ADAPTER_KB": "2048"})
    assert result.returncode == 0, result.stdout + result.stderr
    (out,) = (workdir / "outputs").iterdir()
    assert (out / "adapter_model.safetensors").stat().st_size == 2048 * 1024
    assert "docker cp" in (ssh_dir / "client-calls").read_text()  # it was tried first
    assert not list((workdir / "outputs").glob(".*")), "no hidden folder is left"
    cli("rm", out.name, "--host", url, check=True)
    assert leftovers() == []
