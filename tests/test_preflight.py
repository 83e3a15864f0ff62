"""Preflight and build details that need no engine: the driver check, the build command."""

from __future__ import annotations

import os

import pytest

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


@pytest.fixture
def engine_saying():
    """Stand-in for the engine's one-off container (Engine.run_once), which here only has to say something: what
    the runner does with validate's words is under test, not Docker (test_smoke runs the real image's validate)."""

    class Saying:
        def __init__(self, status: int, output: str) -> None:
            self.said = status, output

        def run_once(self, action: str, image: str, options: dict) -> tuple[int, str]:
            assert "HF_TOKEN" in options["environment"] and options["environment"]["HF_TOKEN"] is None
            return self.said

    return Saying


@pytest.mark.parametrize("status", [2, 1])
def test_validate_s_words_reach_neither_terminal_nor_log_with_a_secret_in_them(tmp_path, monkeypatch,
                                                                                 engine_saying, status):
    from chatlike_runner.core.errors import ChatlikeError
    from chatlike_runner.plan import build_plan
    from chatlike_runner.preflight import validate

    monkeypatch.setenv("HF_TOKEN", "hf_secretvalue123")
    (tmp_path / "train.jsonl").write_text("{}\n")
    (tmp_path / "config.yml").write_text("base_model: m\ndatasets:\n  - path: train.jsonl\n    type: chat_template\n")
    plan = build_plan(tmp_path / "config.yml", image="i", env=["HF_TOKEN"], out=tmp_path / "out",
                      environ=dict(os.environ))
    plan.out_dir.mkdir()
    said = "Traceback …\nchatlike-train: base_model: cannot load the tokenizer of m (401 for token hf_secretvalue123)"
    with pytest.raises(ChatlikeError) as refused:
        validate(engine_saying(status, said), plan, "image-id")
    message = refused.value.format_message()
    assert "hf_secretvalue123" not in message and "token ***" in message
    assert refused.value.exit_code == (2 if status == 2 else 1)
    kept = list(plan.out_dir.iterdir())
    assert [p.name for p in kept] == ([] if status == 2 else [f"{plan.run_id}.validate.log"])
    assert all("hf_secretvalue123" not in p.read_text() and "token ***" in p.read_text() for p in kept)
