"""Rented boxes through SkyPilot (`start --on`, `resume`, `reproduce --on`).

Offline, as the issue asks: no credentials, no network. The task files are checked by SkyPilot 0.14.1 itself, its
schema and its optimizer, against a pinned catalog (tests/skypilot_catalog: rows of skypilot-org/skypilot-catalog
v8). The runs themselves go through skypilot_standin.py (a test fixture): the real CLI, the real image and task
script, outputs home with rsync over the loopback sshd, with only SkyPilot's provisioning stood in for.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import smoke_config, started_run
from chatlike_runner import rented, skypilot
from chatlike_runner.train.launch import Nodes, train_command

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
CATALOG = Path(__file__).parent / "skypilot_catalog"
CONFIG = REPO / "configs" / "llama-3.1-8b-qlora.yml"
DIGEST = "registry.example/chatlike/train@sha256:" + "a" * 64
SECRET = "hf_not_a_real_token_3f9d2c"
STANDIN = Path(__file__).parent / "skypilot_standin.py"
TRAIN_PYTHON = Path(os.environ.get("CHATLIKE_TRAIN_PYTHON", REPO / ".venv-train" / "bin" / "python"))


@pytest.fixture
def catalog(workdir):
    """SkyPilot's catalog where it reads it ($HOME/.sky/catalogs/v8): the pinned fixture, never a download."""
    shutil.copytree(CATALOG / "v8", Path(os.environ["HOME"]) / ".sky" / "catalogs" / "v8")


def _task(workdir: Path, stdout: str) -> tuple[str, Path]:
    """The run id and the task file a dry run wrote."""
    run_id = re.search(r"^name: chatlike-(\S+)$", stdout, re.MULTILINE).group(1)
    return run_id, workdir / "outputs" / f"{run_id}.sky" / "task.yaml"


def _normalized(text: str, run_id: str, workdir: Path) -> str:
    return text.replace(run_id, "RUN_ID").replace(str(workdir), "WORKDIR")


@pytest.mark.parametrize(
    ("args", "golden", "summary"),
    [
        (["--on", "runpod"], "runpod-task.yaml", "runpod, 2x RTX3090 (2x_RTX3090_SECURE) in CA, $1.00/h"),
        (["--on", "lambda", "--nodes", "2", "--disk", "300"], "lambda-2-nodes-task.yaml",
         "lambda, 2 nodes of 2x A6000 (gpu_2x_a6000) in us-east-1, $4.36/h"),
    ],
)
def test_golden_task_files_load_and_place_with_skypilot_itself(cli, catalog, workdir, args, golden, summary):
    result = cli("start", str(CONFIG), "--data", "data/train.jsonl", "--image", DIGEST, *args, "--dry-run",
                 env={"HF_TOKEN": SECRET})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"it would run on {summary}" in result.stdout
    run_id, task = _task(workdir, result.stdout)
    expected = (GOLDEN / golden).read_text()
    assert _normalized(task.read_text(), run_id, workdir) == expected
    import sky

    loaded = sky.Task.from_yaml(str(task))  # SkyPilot's own loader and schema
    assert loaded.num_nodes == (2 if "lambda" in golden else 1)
    # By name only: SkyPilot reads a null secret as a reference whose value is given at launch.
    assert [ref.name for ref in loaded.managed_secret_refs] == ["HF_TOKEN"] and not loaded.secrets
    uploads = task.parent / "input"
    assert sorted(p.relative_to(uploads).as_posix() for p in uploads.rglob("*") if p.is_file()) == [
        "SHA256SUMS", "config.original.yml", "config.yml", "data/train.jsonl"]
    check = subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=uploads, capture_output=True)
    assert check.returncode == 0, check.stdout
    for path in task.parent.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--on", "runpod", "--gpu", "RTX3099:2"], "runpod has no such machine in SkyPilot's catalog; its GPUs: A100-80GB, H100, RTX3090"),
        (["--on", "lambda", "--gpu", "RTX3090:2"], "lambda has no such machine"),
        (["--on", "runpod", "--nodes", "2"], "Runpod pods cannot be joined"),
        (["--on", "lambda", "--spot"], "Lambda has no spot instances"),
        (["--on", "runpod", "--gpu", "RTX 3090"], "give a GPU type and a count"),
        (["--on", "runpod", "--image", "registry.example/chatlike/train:v1"], "by digest"),
        (["--on", "runpod", "--image", ""], "no image pushed yet"),  # "": no --image, and nothing pushed
    ],
)
def test_impossible_choices_are_refused_before_anything_is_launched(cli, catalog, workdir, args, says):
    if args[-1] == "":
        args = args[:-2]
    elif "--image" not in args:
        args = [*args, "--image", DIGEST]
    result = cli("start", str(CONFIG), "--data", "data/train.jsonl", *args, "--dry-run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not list(workdir.glob("outputs/*.sky"))


def test_rented_options_without_on_are_refused(cli):
    result = cli("start", str(CONFIG), "--gpu", "H100:8", "--dry-run")
    assert result.returncode == 2 and "--gpu, --dry-run only apply to rented boxes: add --on" in result.stderr


def test_without_skypilot_one_line_names_the_extra(cli, workdir):
    absent = workdir / "no-skypilot" / "sky"
    absent.mkdir(parents=True)
    (absent / "__init__.py").write_text("raise ImportError('SkyPilot is not installed in this test')\n")
    result = cli("start", str(CONFIG), "--data", "data/train.jsonl", "--image", DIGEST, "--on", "runpod", "--dry-run",
                 env={"PYTHONPATH": f"{absent.parent}:{os.environ.get('PYTHONPATH', '')}"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "chatlike-runner: rented boxes are reached through SkyPilot, which is not installed: "
        "pip install 'chatlike-runner[cloud]'"]


@pytest.mark.engine
def test_on_launches_the_digest_of_the_last_push(cli, catalog, workdir, standin_image, registry_host):
    pushed = cli("push", f"{registry_host}/chatlike/train:v1", "--image", standin_image, check=True)
    ref = re.search(r"^pushed (\S+@sha256:[0-9a-f]{64})$", pushed.stdout, re.MULTILINE).group(1)
    result = cli("start", str(CONFIG), "--data", "data/train.jsonl", "--on", "runpod", "--dry-run", check=True)
    assert f"image_id: docker:{ref}\n" in result.stdout


def test_several_nodes_start_accelerate_as_its_own_parser_reads_it():
    if not TRAIN_PYTHON.exists():
        pytest.skip("no .venv-train (make train-venv)") if os.environ.get("CI") != "true" else pytest.fail("no .venv-train")
    command = train_command(Path("/c.yml"), 2, python="py", nodes=Nodes(2, 1, "10.0.0.7", 29500))
    arguments = command[command.index("accelerate.commands.launch") + 1:]
    parsed = subprocess.run(
        [TRAIN_PYTHON, "-c", "import json, sys; from accelerate.commands.launch import launch_command_parser as p; "
         "a = p().parse_args(sys.argv[1:]); print(json.dumps([a.num_machines, a.machine_rank, a.main_process_ip, "
         "a.main_process_port, a.num_processes, a.multi_gpu, a.module, a.training_script, a.training_script_args]))",
         *arguments],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(parsed.stdout) == [2, 1, "10.0.0.7", 29500, 4, True, True, "axolotl.cli.train", ["/c.yml"]]


@pytest.mark.parametrize("nodes", [1, 2])
def test_the_task_script_is_bash_that_checks_its_inputs_first(nodes):
    script = rented.run_script(rented.rented("lambda", nodes=nodes))
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert script.index("sha256sum --check") < script.index("chatlike-train run")


# The whole run, with SkyPilot's provisioning stood in for (skypilot_standin.py).


@pytest.fixture
def rented_box(workdir, ssh_host, cpu_image, docker_client, catalog, leftovers):
    """Run chatlike-runner through the stand-in: the box is a container of the CPU image on the loopback sshd
    engine. Yields (run, calls): run(*args) starts the CLI process; calls() lists the stand-in's calls."""
    url, known_host, ssh_dir = ssh_host
    (ssh_dir / "known_hosts").write_text(known_host)
    calls_file = workdir / "standin-calls.jsonl"
    env = {**os.environ, "STANDIN_DOCKER_HOST": url, "STANDIN_SSH_PORT": url.rsplit(":", 1)[1],
           "STANDIN_CALLS": str(calls_file), "HF_TOKEN": SECRET, "PYTHONPATH": str(Path(__file__).parent)}
    subprocess.run([sys.executable, "-m", "chatlike_runner", "prepare", "-o", "prepared"], cwd=workdir,
                   capture_output=True, check=True)
    image = "localhost:1/chatlike/train@" + docker_client.images.get(cpu_image).id

    def run(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(STANDIN), *args], cwd=workdir, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def calls() -> list[dict]:
        return [json.loads(line) for line in calls_file.read_text().splitlines()] if calls_file.exists() else []

    yield run, calls, image
    for container in docker_client.containers.list(all=True, filters={"label": "org.chatlike.role=skypilot-standin"}):
        container.remove(force=True)
    for volume in docker_client.volumes.list(filters={"label": "org.chatlike.role=skypilot-standin"}):
        volume.remove(force=True)


SMOKE = ["start", str(REPO / "configs" / "cpu-smoke.yml"), "--data", "prepared/train.jsonl", "--on", "runpod"]


@pytest.mark.engine
def test_a_rented_run_comes_home_like_a_local_one_and_the_cluster_goes_down(rented_box, workdir):
    run, calls, image = rented_box
    process = run(*SMOKE, "--image", image)
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stdout[-3000:] + stderr
    run_id = started_run(stdout)
    assert "started on runpod, 2x RTX3090 (2x_RTX3090_SECURE) in CA, $1.00/h" in stdout
    assert "[progress] step 10/10" in stdout, stdout[-3000:]
    assert [call["call"] for call in calls()] == ["launch", "fetch", "down"]
    assert calls()[0]["secrets"] == ["HF_TOKEN"]
    out = workdir / "outputs" / run_id
    assert (out / "adapter_model.safetensors").stat().st_size > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["complete"] is True and manifest["exit_code"] == 0
    assert manifest["rented"] == {"provider": "runpod", "region": "CA", "zone": None, "instance_type": "2x_RTX3090_SECURE",
                                  "gpu": "RTX3090:2", "nodes": 1, "spot": False, "hourly_price_usd": 1.0}
    assert manifest["image"]["digests"] == [image] and manifest["flags"]["on"]["provider"] == "runpod"
    assert sorted(p.name for p in (out / "inputs").iterdir()) == ["SHA256SUMS", "config.original.yml", "config.yml"]
    assert "chatlike-train: started as root: training as chatlike (uid 1000)" in (out / "logs" / "container.log").read_text()
    assert json.loads((out / "train-manifest.json").read_text())["user"]["uid"] == 1000
    assert not list((workdir / "outputs").glob("*.sky")), "the launch folder is removed after the run"
    for path in out.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path

    again = run("reproduce", run_id, "--on", "runpod", "--dry-run")
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stdout + stderr
    assert f"image_id: docker:{image}\n" in stdout and f"reproducing run {run_id}" in stdout


@pytest.mark.engine
def test_ctrl_c_on_a_rented_run_saves_brings_home_a_partial_and_resume_continues_on_a_new_cluster(
        rented_box, workdir, docker_client):
    run, calls, image = rented_box
    # 40 steps, so that the stop lands mid-run however fast this machine trains; the followed log may pass over
    # a step (10 of 10 once finished before the test saw "step 3" in CI), so any step from 3 on will do.
    process = run("start", str(smoke_config(workdir, 40)), *SMOKE[2:], "--image", image, "--keep")
    seen = ""
    deadline = time.monotonic() + 600
    while not any(3 <= int(step) < 40 for step in re.findall(r"\b(\d+)/40\b", seen)):
        assert time.monotonic() < deadline and process.poll() is None, seen[-3000:]
        seen += process.stdout.readline()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 130, seen[-2000:] + stdout[-3000:] + stderr
    run_id = started_run(seen)
    partial = workdir / "outputs" / f"{run_id}.partial"
    assert list(partial.glob("checkpoint-*")), sorted(p.name for p in partial.iterdir())
    assert json.loads((partial / "manifest.json").read_text())["status"] == "stopped"
    assert [call["call"] for call in calls()] == ["launch", "stop", "fetch"]  # --keep: no down
    assert f"cluster chatlike-{run_id} is still up (--keep)" in stdout
    docker_client.containers.get(f"chatlike-{run_id}").remove(force=True)  # as `sky down` would

    resumed = run("resume", run_id)
    stdout, stderr = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, stdout[-3000:] + stderr
    assert "resuming run" in stdout and "on a new runpod cluster" in stdout
    assert [call["call"] for call in calls()][3:] == ["launch", "fetch"]
    final = workdir / "outputs" / run_id
    log = (final / "logs" / "train.log").read_text()
    assert "checkpoint" in log.lower() and "resum" in log.lower(), log[-3000:]
    assert json.loads((final / "manifest.json").read_text())["status"] == "succeeded"
    assert not partial.exists()


def test_outputs_come_home_over_ssh_as_files_and_folders_only(ssh_host, workdir):
    """rsync over real ssh (the loopback sshd), as from a rented box: a link or a fifo on the box stays there."""
    url, known_host, ssh_dir = ssh_host
    (ssh_dir / "known_hosts").write_text(known_host)
    box = workdir / "box"
    (box / "sub").mkdir(parents=True)
    (box / "adapter.bin").write_bytes(b"x" * 100)
    (box / "sub" / "state.json").write_text("{}")
    (box / "leak").symlink_to("/etc/passwd")
    (box / "sub" / "etc").symlink_to("/etc")
    os.mkfifo(box / "fifo")
    copied = workdir / "copied"
    skypilot.rsync("root@127.0.0.1", str(box), copied, ssh_command=f"ssh -p {url.rsplit(':', 1)[1]} -o BatchMode=yes "
                   f"-o UserKnownHostsFile={ssh_dir / 'known_hosts'} -i {ssh_dir / 'id_ed25519'}")
    assert sorted(p.relative_to(copied).as_posix() for p in copied.rglob("*")) == [
        "adapter.bin", "sub", "sub/state.json"]


def test_resuming_from_a_damaged_rented_manifest_is_one_line(cli, workdir):
    partial = workdir / "outputs" / "20261130-010203-abcd.partial"
    partial.mkdir(parents=True)
    (partial / "manifest.json").write_text(json.dumps({"run_id": "20261130-010203-abcd",
                                                       "flags": {"on": {"provider": "runpod"}}}))
    result = cli("resume", "20261130-010203-abcd")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"chatlike-runner: {partial / 'manifest.json'} is not a whole manifest of a run on a rented box; "
        "cannot resume from it"]
