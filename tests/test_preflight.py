"""Preflight and build details that need no engine: the driver check, the build command."""

from __future__ import annotations

from chatlike_runner import build
from chatlike_runner.preflight import Check, PreflightFailed, driver_too_old


def test_both_flavors_build_through_one_script():
    for flavor in ("cuda", "cpu"):
        assert build.command(flavor) == ["bash", str(build.REPO / "docker" / "build.sh"), flavor]


def test_an_old_gpu_driver_is_named():
    gpus = ["0, NVIDIA GeForce RTX 3090, 24576 MiB, 550.54.14", "1, NVIDIA GeForce RTX 3090, 24576 MiB, 550.54.14"]
    assert driver_too_old(gpus, "580") == "GPU driver 550.54.14 is older than 580, which the image's CUDA build needs"
    assert driver_too_old(["0, NVIDIA H200, 143771 MiB, 580.65.06"], "580") is None
    assert driver_too_old(gpus, "none") is None  # the CPU flavor states no minimum


def test_every_failed_check_is_one_line_of_its_own(capsys):
    failed = PreflightFailed([Check("engine", False, "cannot reach it"), Check("space", False, "disk full")])
    failed.show()
    assert capsys.readouterr().err.splitlines() == ["chatlike-runner: cannot reach it", "chatlike-runner: disk full"]
    assert failed.exit_code == 2
