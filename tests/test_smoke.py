"""The real training image (CPU flavor) driven by the runner: real Axolotl, a tiny model made in the image."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import cpu_precision, runner_cmd, smoke_config, started_run

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.engine


@pytest.fixture
def dataset(workdir):
    """data/train.jsonl as `prepare` writes it from the bundled example."""
    subprocess.run(runner_cmd("prepare", "-o", "prepared"), cwd=workdir, check=True, capture_output=True)
    return workdir / "prepared" / "train.jsonl"


def test_smoke_run_trains_for_real_and_reproduce_matches_its_first_losses(cli, cpu_image, dataset, workdir,
                                                                          leftovers):
    result = cli("start", "--smoke", "--data", str(dataset), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "validating the config and dataset" in result.stdout
    assert "[progress] step 10/10  loss" in result.stdout, result.stdout[-3000:]
    (out,) = (workdir / "outputs").iterdir()
    assert (out / "adapter_model.safetensors").stat().st_size > 0
    assert "'loss'" in (out / "logs" / "train.log").read_text()
    train_manifest = json.loads((out / "train-manifest.json").read_text())
    assert train_manifest["exit_code"] == 0 and train_manifest["precision"]["mixed"] == cpu_precision()
    assert train_manifest["packages"]["axolotl"] == "0.19.0" and train_manifest["packages"]["deepspeed"] == "0.18.9"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["image"]["id"].startswith("sha256:")

    again = cli("reproduce", out.name, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert f"first 5 steps' losses (run {out.name} / this run)" in again.stdout
    assert "the same within 0.01" in again.stdout, again.stdout[-2000:]


def test_resume_continues_from_the_checkpoint(cli, cpu_image, dataset, workdir, leftovers):
    # 40 steps, so that the stop lands mid-run however fast this machine trains (10 once finished first in CI).
    config = smoke_config(workdir, 40)
    run_id = started_run(cli("start", str(config), "--smoke", "--data", str(dataset), "--detach", check=True,
                             timeout=300).stdout)
    deadline = time.monotonic() + 600
    while "3/40 [" not in cli("logs", run_id).stdout:
        assert time.monotonic() < deadline, cli("logs", run_id).stdout[-3000:]
        time.sleep(2)
    cli("stop", run_id, check=True, timeout=300)
    resumed = cli("resume", run_id, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
    log = (workdir / "outputs" / run_id / "logs" / "train.log").read_text()
    assert "checkpoint" in log.lower() and "resum" in log.lower(), log[-3000:]
    assert json.loads((workdir / "outputs" / run_id / "manifest.json").read_text())["status"] == "succeeded"


def test_smoke_from_nothing_writes_the_example_and_builds_the_image(cpu_image, docker_client, tmp_path, leftovers):
    """A clean clone: the smoke config with no data/ beside it, and no image under the name the run asks for."""
    import docker.errors

    tag = "chatlike-test/smoke-from-nothing:cpu"
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client.images.remove(tag)
    clone = tmp_path / "clone"
    (clone / "configs").mkdir(parents=True)
    shutil.copy(ROOT / "configs" / "cpu-smoke.yml", clone / "configs")
    try:
        result = subprocess.run(runner_cmd("start", "--smoke", "configs/cpu-smoke.yml", "--image", tag), cwd=clone,
                                capture_output=True, text=True, timeout=1200, env={**os.environ, "HOME": str(tmp_path)})
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        dataset = clone / "data" / "train.jsonl"
        assert f"no dataset at {dataset}: wrote the bundled example chats there" in result.stdout
        assert f"image {tag} is not on" in result.stdout and "building the cpu flavor now" in result.stdout
        assert docker_client.images.get(tag).labels["org.chatlike.flavor"] == "cpu"
        assert sorted(p.name for p in dataset.parent.iterdir()) == ["heldout.jsonl", "report.json", "train.jsonl"]
        (out,) = (clone / "outputs").iterdir()
        assert (out / "adapter_model.safetensors").stat().st_size > 0
        assert json.loads((out / "manifest.json").read_text())["status"] == "succeeded"
        assert "then: the smoke run passed; train the real recipe on your GPUs" in result.stdout
    finally:
        with contextlib.suppress(docker.errors.DockerException):
            docker_client.images.remove(tag)


def test_a_bad_dataset_line_is_refused_by_file_line_and_field_before_training(cli, cpu_image, dataset, workdir,
                                                                              leftovers):
    """The real image's `chatlike-train validate`: a role that is an object, a line cut short; the runner shows the
    problems as the image said them, with the dataset's path on this machine."""
    lines = dataset.read_text(encoding="utf-8").splitlines()
    bad = json.loads(lines[2])
    bad["messages"][1]["role"] = {"name": "me"}
    lines[2] = json.dumps(bad)
    lines[4] = lines[4][:30]
    (workdir / "bad.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("start", str(ROOT / "configs" / "cpu-smoke.yml"), "--image", cpu_image, "--data", "bad.jsonl",
                 timeout=600)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr
    said = result.stderr.strip().splitlines()
    assert said[0] == (f"chatlike-runner: the config or dataset is not valid: dataset {(workdir / 'bad.jsonl').resolve()}: 2 of "
                       f"{len(lines)} lines cannot be trained on; fix them (or run prepare on your export again):")
    assert said[1] == ("  line 3, messages[1].role: a mapping, expected one of the roles assistant, gpt, human, "
                       "system, tool, user")
    assert said[2].startswith("  line 5, not JSON (") and len(said) == 3
    assert "Traceback" not in result.stdout + result.stderr and "started" not in result.stdout
    assert leftovers() == []
