"""Docker-facing details that need no engine: device requests, the driver check, the build command."""

from __future__ import annotations

import pytest

from chatlike_runner import build
from chatlike_runner.engine import _device_request
from chatlike_runner.plan import parse_gpus
from chatlike_runner.preflight import driver_too_old


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [("all", {"Count": -1}), ("2", {"Count": 2}), ("0,1", {"DeviceIDs": ["0", "1"]})],
)
def test_gpu_requests_become_docker_device_requests(gpus, expected):
    request = _device_request(parse_gpus(gpus))
    assert request["Capabilities"] == [["gpu"]] and request["Driver"] == ""
    assert {key: request[key] for key in expected} == expected


def test_the_cuda_build_command(tmp_path):
    ca = tmp_path / "ca.pem"
    command = build.command("cuda", "me/train:1", ca)
    assert command[1:4] == ["build", "--tag", "me/train:1"]
    assert command[4:6] == ["--secret", f"id=ca,src={ca}"] and command[-1] == str(build.REPO)
    assert build.command("cpu", None, None)[-1].endswith("docker/build-cpu.sh")


def test_an_old_gpu_driver_is_named():
    gpus = ["0, NVIDIA GeForce RTX 3090, 24576 MiB, 550.54.14", "1, NVIDIA GeForce RTX 3090, 24576 MiB, 550.54.14"]
    assert driver_too_old(gpus, "580") == "GPU driver 550.54.14 is older than 580, which the image's CUDA build needs"
    assert driver_too_old(["0, NVIDIA H200, 143771 MiB, 580.65.06"], "580") is None
    assert driver_too_old(gpus, "none") is None  # the CPU flavor states no minimum
