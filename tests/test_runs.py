"""A run's whole life against the real Docker engine, with the stand-in training image."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import as_user, need, runner_cmd, started_run

from chatlike_runner.core.errors import ChatlikeError

pytestmark = pytest.mark.engine


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_dir(out: Path) -> Path:
    (found,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    return found


def volume_sha256(docker_client, image: str, volume: str, path: str) -> str:
    output = docker_client.containers.run(
        image, ["sha256sum", f"/v/{path}"], volumes={volume: {"bind": "/v", "mode": "ro"}}, remove=True, entrypoint=[]
    )
    return output.decode().split()[0]


def test_happy_path(cli, workdir, standin_image, docker_client, leftovers):
    result = cli("start", "config.yml", "--image", standin_image, "--env", "STANDIN_STEPS", env={"STANDIN_STEPS": "4"})
    assert result.returncode == 0, result.stderr
    assert "[progress] step 4/4  loss 0.75" in result.stdout
    out = run_dir(workdir / "outputs")
    run_id = out.name
    assert "succeeded (exit 0)" in result.stdout and str(out) in result.stdout
    assert f"next: `chatlike-runner eval {run_id}` says whether it is you" in result.stdout
    for name in ("adapter_model.safetensors", "adapter_config.json", "logs/train.log", "logs/container.log", "manifest.json"):
        assert (out / name).is_file(), name
    # The copy is byte-identical to what the container wrote.
    assert sha256(out / "adapter_model.safetensors") == volume_sha256(
        docker_client, standin_image, f"chatlike-{run_id}-output", "adapter_model.safetensors"
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_id"] == run_id
    assert (manifest["status"], manifest["complete"], manifest["exit_code"], manifest["oom_killed"]) == (
        "succeeded", True, 0, False
    )
    assert manifest["image"]["id"] == docker_client.images.get(standin_image).id
    assert manifest["config_sha256"] == sha256(workdir / "config.yml")
    assert manifest["dataset_sha256"] == {"data/train.jsonl": sha256(workdir / "data" / "train.jsonl")}
    assert manifest["flags"]["gpus"] == "none" and manifest["engine"]["server_version"]
    assert manifest["started_at"] and manifest["finished_at"]
    assert {"path": "adapter_model.safetensors", "size": 64 * 1024} in manifest["files"]
    raw = (out / "logs" / "container.log").read_text()
    assert "4/4 [00:04<00:00" in raw and "{'loss': 0.7500" in raw, "the raw log keeps the trainer's own lines"
    # No probe or stray containers; the run's own container and volumes stay until `rm`.
    assert leftovers() == sorted([f"chatlike-{run_id}", f"chatlike-{run_id}-input", f"chatlike-{run_id}-output"])
    # Nothing half-written lies next to it.
    assert [p.name for p in (workdir / "outputs").iterdir()] == [run_id]


def test_exit_code_is_passed_on(cli, standin_image, workdir, leftovers):
    result = cli("start", "config.yml", "--image", standin_image, "--env", "STANDIN_EXIT", env={"STANDIN_EXIT": "3"})
    assert result.returncode == 3
    assert f"Its log: {run_dir(workdir / 'outputs') / 'logs' / 'container.log'}" in result.stdout
    manifest = json.loads((run_dir(workdir / "outputs") / "manifest.json").read_text())
    assert (manifest["status"], manifest["exit_code"]) == ("failed", 3)


def test_oom_is_named(cli, standin_image, workdir, leftovers):
    result = cli(
        "start", "config.yml", "--image", standin_image, "--memory", "48m", "--env", "STANDIN_ALLOC_MB",
        env={"STANDIN_ALLOC_MB": "256"},
    )
    assert result.returncode == 137, result.stdout + result.stderr
    assert "out of memory" in result.stdout
    manifest = json.loads((run_dir(workdir / "outputs") / "manifest.json").read_text())
    assert manifest["oom_killed"] is True and manifest["status"] == "oom"


def test_secrets_never_reach_logs_manifest_or_argv(cli, standin_image, workdir, docker_client, leftovers):
    secret = "hf_TopSecretValue42"
    result = cli(
        "start", "config.yml", "--image", standin_image, "--env", "STANDIN_SAY",
        env={"HF_TOKEN": secret, "STANDIN_SAY": f"my token is {secret}"},
    )
    assert result.returncode == 0, result.stderr
    out = run_dir(workdir / "outputs")
    assert "my token is ***" in result.stdout
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in result.stdout + result.stderr
    container = docker_client.containers.get(f"chatlike-{out.name}")
    assert secret not in json.dumps(container.attrs["Args"]) + json.dumps(container.labels)
    # It did reach the container, by name.
    assert f"HF_TOKEN={secret}" in container.attrs["Config"]["Env"]


def test_gpus_without_nvidia_runtime(cli, standin_image, docker_client, leftovers):
    if "nvidia" in docker_client.info().get("Runtimes", {}):
        pytest.skip("this engine has the NVIDIA runtime")
    result = cli("start", "config.yml", "--image", standin_image, "--gpus", "all")
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "NVIDIA Container Toolkit" in result.stderr and "Traceback" not in result.stderr
    assert leftovers() == []


def test_preflight_lists_every_failure_at_once(cli, docker_client, leftovers):
    """No NVIDIA runtime and no image: both said, most fundamental first, before anything is created."""
    if "nvidia" in docker_client.info().get("Runtimes", {}):
        pytest.skip("this engine has the NVIDIA runtime")
    images = {image.id for image in docker_client.images.list()}
    result = cli("start", "config.yml", "--image", "chatlike-test/absent:1", "--gpus", "all")
    assert result.returncode == 2 and result.stdout == "", result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("chatlike-runner: ") and "no NVIDIA runtime" in lines[0] and "NVIDIA Container Toolkit" in lines[0]
    assert "image chatlike-test/absent:1 is not on the Docker host" in lines[1]
    assert "chatlike-runner start --smoke" in lines[1], "no advice to build a CUDA image for a host that cannot run it"
    assert leftovers() == []
    assert {image.id for image in docker_client.images.list()} == images, "the probe's empty image is gone too"


def test_a_plan_that_cannot_be_made_comes_with_every_preflight_failure(cli, docker_client, leftovers):
    """A new machine, as a newcomer meets it: no dataset yet, no NVIDIA runtime, no image. All three, at once."""
    if "nvidia" in docker_client.info().get("Runtimes", {}):
        pytest.skip("this engine has the NVIDIA runtime")
    result = cli("start", "config.yml", "--data", "nowhere/train.jsonl", "--image", "chatlike-test/absent:1",
                 "--gpus", "all")
    assert result.returncode == 2 and result.stdout == "", result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and "Traceback" not in result.stderr, result.stderr
    assert "no NVIDIA runtime" in lines[0] and "image chatlike-test/absent:1 is not on the Docker host" in lines[1]
    assert lines[2].startswith("chatlike-runner: ") and "nowhere/train.jsonl" in lines[2], lines[2]
    assert leftovers() == []


def test_the_cuda_image_is_not_built_on_a_host_without_gpus(cli, docker_client):
    if "nvidia" in docker_client.info().get("Runtimes", {}):
        pytest.skip("this engine has the NVIDIA runtime")
    result = cli("build", "--flavor", "cuda", "--tag", "chatlike-test/never-built:1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "no NVIDIA runtime" in lines[0], result.stderr
    assert "make smoke" in lines[1] and "--no-gpu-check" in lines[1]
    assert result.stdout == "", "nothing was built"
    assert not docker_client.images.list(name="chatlike-test/never-built")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image", "chatlike-test/absent:1"], "is not on the Docker host"),
        (["--ulimit", "memlock=-1"], "memlock"),
        (["--host", "tcp://127.0.0.1:1"], "cannot reach tcp://127.0.0.1:1"),
        (["--gpus", "lots"], "--gpus"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(cli, standin_image, leftovers, args, message):
    result = cli("start", "config.yml", "--image", standin_image, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert leftovers() == []


def test_an_invalid_config_stops_before_training(cli, standin_image, leftovers):
    message = "unknown key 'lora_alpah' (did you mean 'lora_alpha'?)"
    result = cli("start", "config.yml", "--image", standin_image, "--env", "STANDIN_INVALID", env={"STANDIN_INVALID": message})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"chatlike-runner: the config or dataset is not valid: {message}"]
    assert "started" not in result.stdout
    assert leftovers() == []


def test_small_memlock_is_configurable(cli, standin_image, docker_client, workdir, leftovers):
    result = cli("start", "config.yml", "--image", standin_image, "--ulimit", "memlock=8388608", "--ulimit", "stack=67108864", "--shm-size", "256m")
    assert result.returncode == 0, result.stderr
    container = docker_client.containers.get(f"chatlike-{run_dir(workdir / 'outputs').name}")
    host = container.attrs["HostConfig"]
    assert {u["Name"]: u["Soft"] for u in host["Ulimits"]} == {"memlock": 8388608, "stack": 67108864}
    assert host["ShmSize"] == 256 * 2**20 and host["IpcMode"] == "shareable"


def _wait_for(process: subprocess.Popen, text: str, timeout: float = 60) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, f"{text!r} never appeared in:\n{seen}"
        line = process.stdout.readline()
        assert line or process.poll() is None, f"runner ended early:\n{seen}"
        seen += line
    return seen


def _popen(workdir: Path, *args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        runner_cmd(*args), cwd=workdir, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


SLOW = {"STANDIN_STEPS": "300", "STANDIN_STEP_SECONDS": "0.1"}
SLOW_ARGS = ("--env", "STANDIN_STEPS", "--env", "STANDIN_STEP_SECONDS")


def test_ctrl_c_stops_collects_partial_and_cleans_up(workdir, standin_image, leftovers):
    env = {**SLOW, "STANDIN_SAVE_SECONDS": "3"}
    process = _popen(workdir, "start", "config.yml", "--image", standin_image, *SLOW_ARGS,
                     "--env", "STANDIN_SAVE_SECONDS", env=env)
    _wait_for(process, "[progress] step 3/300")
    process.send_signal(signal.SIGINT)
    _wait_for(process, "stopping run")
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)  # while the run saves: must not abort the clean-up
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 130, output
    assert "still cleaning up" in output and "Traceback" not in output
    assert "chatlike-runner resume" in output
    assert leftovers() == []
    outputs = workdir / "outputs"
    (partial,) = [p for p in outputs.iterdir()]
    assert partial.name.endswith(".partial"), "an interrupted run must not look complete"
    manifest = json.loads((partial / "manifest.json").read_text())
    assert (manifest["status"], manifest["complete"]) == ("stopped", False)
    assert list(partial.glob("checkpoint-*/trainer_state.json")), "the run saved a checkpoint on SIGTERM"


RESUMABLE = {"STANDIN_STEPS": "25", "STANDIN_STEP_SECONDS": "0.1"}


def _ctrl_c_after(workdir: Path, image: str, step: int) -> str:
    """Start a run, press Ctrl-C once it reached `step`; returns its id."""
    process = _popen(workdir, "start", "config.yml", "--image", image, *SLOW_ARGS, env=RESUMABLE)
    run_id = started_run(_wait_for(process, f"[progress] step {step}/25"))
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    return run_id


def test_resume_after_ctrl_c_continues_from_the_checkpoint(workdir, standin_image, cli, leftovers):
    env = RESUMABLE
    run_id = _ctrl_c_after(workdir, standin_image, 3)
    partial = workdir / "outputs" / f"{run_id}.partial"
    (checkpoint,) = partial.glob("checkpoint-*")
    resumed = cli("resume", run_id, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {checkpoint.name}" in resumed.stdout
    assert "[progress] step 25/25" in resumed.stdout and "step 1/25" not in resumed.stdout
    final = workdir / "outputs" / run_id
    manifest = json.loads((final / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and (final / checkpoint.name).is_dir()
    assert not partial.exists()
    again = cli("resume", run_id, env=env)
    assert again.returncode == 2 and "start a new run" in again.stderr


def test_resume_refuses_changed_data(workdir, standin_image, cli, leftovers):
    run_id = _ctrl_c_after(workdir, standin_image, 2)
    with (workdir / "data" / "train.jsonl").open("a") as handle:
        handle.write("{}\n")
    refused = cli("resume", run_id, env=RESUMABLE)
    assert refused.returncode == 2 and "data/train.jsonl changed since" in refused.stderr
    assert leftovers() == []


def test_resume_a_run_stopped_with_stop(workdir, standin_image, cli, leftovers):
    env = {"STANDIN_STEPS": "30", "STANDIN_STEP_SECONDS": "0.1"}
    run_id = started_run(cli("start", "config.yml", "--image", standin_image, "--detach", *SLOW_ARGS, env=env, check=True).stdout)
    time.sleep(1)
    stopped = cli("stop", run_id, check=True)
    assert f"Continue it with `chatlike-runner resume {run_id}`" in stopped.stdout
    fetched = cli("fetch", run_id, check=True)
    assert ".partial" in fetched.stdout, "a stopped run is not complete"
    assert f"next: `chatlike-runner resume {run_id}`" in fetched.stdout
    resumed = cli("resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from checkpoint-" in resumed.stdout
    assert json.loads((workdir / "outputs" / run_id / "manifest.json").read_text())["status"] == "succeeded"


def test_detach_attach_fetch_logs_ls_rm(cli, workdir, standin_image, docker_client, leftovers):
    started = cli("start", "config.yml", "--image", standin_image, "--detach", "--env", "STANDIN_STEPS", "--env", "STANDIN_STEP_SECONDS",
                  env={"STANDIN_STEPS": "40", "STANDIN_STEP_SECONDS": "0.1"})
    assert started.returncode == 0, started.stderr
    assert "chatlike-runner attach" in started.stdout
    run_id = started_run(started.stdout)
    listing = cli("ls", check=True).stdout
    assert run_id in listing and "running" in listing

    snapshot = cli("fetch", run_id, check=True)
    assert "running" in snapshot.stdout and f"next: `chatlike-runner attach {run_id}`" in snapshot.stdout
    partial = workdir / "outputs" / f"{run_id}.partial"
    assert json.loads((partial / "manifest.json").read_text())["status"] == "running"
    assert not (workdir / "outputs" / run_id).exists()

    attached = cli("attach", run_id[:17])
    assert attached.returncode == 0, attached.stderr
    assert "[progress] step 40/40" in attached.stdout
    final = workdir / "outputs" / run_id
    assert json.loads((final / "manifest.json").read_text())["status"] == "succeeded"
    assert not partial.exists(), "the snapshot goes once the finished run is published"

    collected_at = json.loads((final / "manifest.json").read_text())["collected_at"]
    again = cli("fetch", run_id)  # a finished run's copy is whole: nothing to do
    assert again.returncode == 0 and str(final) in again.stdout, again.stderr
    assert json.loads((final / "manifest.json").read_text())["collected_at"] == collected_at

    logs = cli("logs", run_id, check=True).stdout
    assert "training finished after 40 steps" in logs

    removed = cli("rm", run_id, check=True).stdout
    assert f"container chatlike-{run_id}" in removed and "chatlike-hf-cache" not in removed
    assert leftovers() == []
    docker_client.volumes.get("chatlike-hf-cache")  # the model cache stays
    assert final.exists(), "rm never touches what was copied home"


def test_rm_refuses_to_lose_unfetched_outputs(cli, standin_image, workdir, leftovers):
    run_id = started_run(cli("start", "config.yml", "--image", standin_image, "--detach", check=True).stdout)
    cli("stop", run_id, "--timeout", "5", check=True)
    refused = cli("rm", run_id, "--out", "elsewhere")
    assert refused.returncode == 2 and "never fetched" in refused.stderr
    assert cli("rm", run_id, "--force", "--out", "elsewhere").returncode == 0
    assert leftovers() == []


def test_losing_the_client_never_stops_the_run(workdir, standin_image, cli, leftovers):
    env = {"STANDIN_STEPS": "30", "STANDIN_STEP_SECONDS": "0.1"}
    process = _popen(workdir, "start", "config.yml", "--image", standin_image, *SLOW_ARGS, env=env)
    seen = _wait_for(process, "[progress] step 2/30")
    run_id = started_run(seen)
    process.kill()  # closed laptop, dropped ssh
    process.wait()
    attached = cli("attach", run_id)
    assert attached.returncode == 0, attached.stderr
    manifest = json.loads((workdir / "outputs" / run_id / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"


def test_outputs_belong_to_a_non_root_user(workdir, standin_image, other_user, shared_tmp, leftovers):
    shutil.copytree(workdir, shared_tmp, dirs_exist_ok=True)
    os.chmod(shared_tmp, 0o777)  # copytree gave it the mode of pytest's folder
    workdir = shared_tmp
    result = subprocess.run(
        as_user(other_user, *runner_cmd("start", "config.yml", "--image", standin_image)),
        cwd=workdir, capture_output=True, text=True, env={**os.environ, "HOME": str(workdir / "home")}, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = run_dir(workdir / "outputs")
    for path in [out, *out.rglob("*")]:
        assert path.stat().st_uid == other_user[0], path


def test_full_disk_is_refused_before_anything_starts(cli, standin_image, workdir, leftovers):
    if os.geteuid() != 0:
        need("mounting a small tmpfs needs root")
    small = workdir / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        result = cli("start", "config.yml", "--image", standin_image, "--out", str(small / "outputs"))
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert result.returncode == 2 and "free some space" in result.stderr
    assert leftovers() == []


def test_doctor_reports_every_check(cli, standin_image):
    result = cli("doctor", "--image", standin_image)
    names = [line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip() and not line.startswith(" " * 10)]
    assert {"engine", "image", "gpus", "space"} <= set(names), result.stdout
    assert ("FAIL" in result.stdout) == (result.returncode == 2)


def test_reproduce_runs_the_same_inputs_again_and_refuses_changed_data(cli, workdir, standin_image, leftovers):
    first = cli("start", "config.yml", "--image", standin_image)
    assert first.returncode == 0, first.stderr
    run_id = run_dir(workdir / "outputs").name
    assert (workdir / "outputs" / run_id / "inputs" / "config.yml").read_text().startswith("base_model: tiny")
    (workdir / "config.yml").write_text("base_model: changed-since\n")  # the config as staged is what runs again
    again = cli("reproduce", run_id)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"reproducing run {run_id} as run " in again.stdout
    assert f"first 5 steps' losses (run {run_id} / this run): 3.0000 / 3.0000" in again.stdout
    assert "the same within 0.01" in again.stdout
    second = next(p for p in (workdir / "outputs").iterdir() if p.name != run_id)
    manifest = json.loads((second / "manifest.json").read_text())
    original = json.loads((workdir / "outputs" / run_id / "manifest.json").read_text())
    assert manifest["flags"]["reproduces"] == run_id and manifest["image"]["id"] == original["image"]["id"]
    assert manifest["dataset_sha256"] == original["dataset_sha256"]
    assert manifest["config_sha256"] == original["config_sha256"]
    with (workdir / "data" / "train.jsonl").open("a") as handle:
        handle.write("{}\n")
    refused = cli("reproduce", str(workdir / "outputs" / run_id / "manifest.json"))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert f"data/train.jsonl changed since run {run_id} trained on it; reproducing it needs the same" in refused.stderr


def test_a_run_is_found_by_its_id_or_a_unique_start_of_it(standin_image, docker_client):
    from chatlike_runner.engine import Engine

    made = [docker_client.containers.create(standin_image, ["true"], labels={
        "org.chatlike.role": "train", "org.chatlike.run": run_id}) for run_id in
        ("20990101-000000-aaaa", "20990101-000000-aaab", "20990101-000000-aaaa-x")]
    try:
        engine = Engine.connect(None)
        assert engine.find("20990101-000000-aaab").container_id == made[1].id
        assert engine.find("20990101-000000-aaaa").container_id == made[0].id, "an exact id wins over longer ones"
        assert engine.find("20990101-000000-aaaa-").container_id == made[2].id
        assert engine.find("20990102") is None
        with pytest.raises(ChatlikeError, match=r"run '20990101' is ambiguous \(20990101-000000-aaab, "
                                                r"20990101-000000-aaaa-x, 20990101-000000-aaaa\); give more"):
            engine.find("20990101")
    finally:
        for container in made:
            container.remove(force=True)


@pytest.mark.parametrize(("text", "says"), [
    ("{not json", "is unreadable or not a run's manifest; cannot resume from it"),
    ('{"run_id": "20261130-010203-dcba", "flags": ["config.yml"]}', "is not a whole manifest of a run; cannot resume from it"),
])
def test_resuming_from_a_damaged_partial_manifest_is_one_line(cli, workdir, text, says):
    partial = workdir / "outputs" / "20261130-010203-dcba.partial"
    partial.mkdir(parents=True)
    (partial / "manifest.json").write_text(text)
    result = cli("resume", "20261130-010203-dcba")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"chatlike-runner: {partial / 'manifest.json'} {says}"]
