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


def test_validate_s_refusal_is_shown_as_it_said_it_with_the_user_s_paths(tmp_path):
    """The first lines of chatlike-train's refusal (not only the last line of its output), the staged dataset and
    config named as the files they came from; at most a few lines, the rest counted."""
    from chatlike_runner.plan import build_plan
    from chatlike_runner.preflight import refusal

    (tmp_path / "my chats.jsonl").write_text("{}\n")
    (tmp_path / "config.yml").write_text("base_model: m\ndatasets:\n  - path: x.jsonl\n    type: chat_template\n")
    plan = build_plan(tmp_path / "config.yml", data=tmp_path / "my chats.jsonl", image="i", environ={})
    staged = plan.data[0].container_path
    output = "\n".join([
        "some library's warning",
        f"chatlike-train: dataset {staged}: 2 of 9 lines cannot be trained on; fix them (or run prepare on your "
        "export again):",
        "  line 3, messages[1].role: a mapping, expected one of the roles assistant, user",
        "  line 5, not JSON (Expecting value at column 1)",
    ])
    assert refusal(output, plan).splitlines() == [
        f"dataset {tmp_path / 'my chats.jsonl'}: 2 of 9 lines cannot be trained on; fix them (or run prepare on your "
        "export again):",
        "  line 3, messages[1].role: a mapping, expected one of the roles assistant, user",
        "  line 5, not JSON (Expecting value at column 1)",
    ]
    assert refusal(output, plan, most=2).splitlines()[-1] == "  … and 1 more line"
    assert refusal("chatlike-train: config /chatlike/input/config.yml is not valid YAML", plan) == (
        f"config {tmp_path / 'config.yml'} is not valid YAML")
