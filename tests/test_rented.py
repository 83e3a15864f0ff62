"""Rented boxes through SkyPilot (`start --on`, `resume`, `reproduce --on`).

No credentials, no provider: the task files are checked by SkyPilot 0.14.1 itself, its schema and its optimizer,
against a pinned catalog (tests/skypilot_catalog: rows of skypilot-org/skypilot-catalog v8). Whole runs go through
SkyPilot's own code end to end (its local API server, provisioner, runtime set-up, file-mount sync, job, log
stream and tear-down) with only Runpod's API stood in for (runpod_standin.py, a test fixture whose pods are
containers of the real image on the Docker engine); failures are injected there, at the pod.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import runpod_standin
from conftest import need, runner_cmd, smoke_config, started_run
from chatlike_runner import skytask, skypilot
from chatlike_runner.train.training import Nodes, train_command

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
CATALOG = Path(__file__).parent / "skypilot_catalog"
CONFIG = REPO / "configs" / "llama-3.1-8b-qlora.yml"
DIGEST = "registry.example/chatlike/train@sha256:" + "a" * 64
RECORDED = Path(__file__).parent / "skypilot_logs" / "runpod-smoke.repr"
SECRET = "hf_not_a_real_token_3f9d2c"
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
        (["--on", "lambda", "--nodes", "2"], "lambda-2-nodes-task.yaml",
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
        (["--on", "lambda", "--disk", "300"], "a Lambda VM comes with the disk of its instance type"),
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


def test_the_dry_run_shows_the_spot_bid_and_the_on_demand_price_apart_and_what_a_pre_emption_loses(cli, catalog, workdir):
    result = cli("start", str(CONFIG), "--data", "data/train.jsonl", "--image", DIGEST, "--on", "runpod", "--spot",
                 "--dry-run", check=True)
    assert ("it would run on runpod, 2x RTX3090 (2x_RTX3090_SECURE) in CA (spot), $1.00/h bid (on-demand $1.00/h)"
            in result.stdout)
    assert ("--spot: Runpod may take the pod back at any time; a pre-emption ends the run and its disk goes with it, "
            "checkpoints included" in " ".join(result.stdout.split()))


def test_without_a_catalog_and_no_way_to_download_one_the_dry_run_says_what_is_missing(cli, workdir):
    # No catalog under HOME, and every download fails at once (a proxy that refuses): SkyPilot cannot fetch one.
    closed = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    result = cli("start", str(CONFIG), "--data", "data/train.jsonl", "--image", DIGEST, "--on", "runpod", "--dry-run",
                 env=closed)
    assert result.returncode == 2, result.stdout + result.stderr
    path = Path(os.environ["HOME"]) / ".sky" / "catalogs" / "v8" / "common" / "accelerators.csv"
    assert result.stderr.startswith(f"chatlike-runner: SkyPilot's catalog of runpod machines and prices is not on this "
                                    f"machine ({path}) and could not be downloaded (")
    assert "github.com/skypilot-org/skypilot-catalog" in _one_line(result.stderr)
    assert not list(workdir.glob("outputs/*.sky"))


def test_a_remote_api_server_is_refused_before_launch_for_want_of_an_ssh_alias(cli, catalog, workdir):
    result = cli("start", str(CONFIG), "--data", "data/train.jsonl", "--image", DIGEST, "--on", "runpod",
                 env={"SKYPILOT_API_SERVER_ENDPOINT": "http://user:pass123@203.0.113.9:46580"})
    assert result.returncode == 2, result.stdout + result.stderr
    line = _one_line(result.stderr)
    assert "SkyPilot's API server is http://user:<redacted>@203.0.113.9:46580, not a local one: it writes no ssh " \
           "alias for chatlike-" in line and "pass123" not in result.stdout + result.stderr
    assert "launching" not in result.stdout and not list(workdir.glob("outputs/*"))


def test_skypilot_s_log_stream_reads_as_the_run_s_own_lines_with_progress():
    """Lines SkyPilot 0.14.1 itself streamed for a smoke run on the Runpod stand-in (recorded from
    test_a_run_on_runpod_goes_through_skypilot_itself_and_comes_home): colours and Ray's task prefixes come off,
    tqdm's pieces after a carriage return (which come without a prefix) stay the run's, and SkyPilot's own lines
    are told apart, the last saying how the job finished."""
    from chatlike_runner.core.trainlog import TrainingState

    job_log, state = skypilot.JobLog(), TrainingState()
    lines = [job_log.read(ast.literal_eval(raw)) for raw in RECORDED.read_text(encoding="utf-8").splitlines()]
    own = [line for line in lines if line.rank is None]
    assert [line.text for line in own] == ["Waiting for task resources on 1 node.",
                                           "Job started. Streaming logs... (Ctrl-C to exit log streaming; job will "
                                           "not be killed)", "Job finished (status: SUCCEEDED)."]
    assert [line.finished for line in own] == [None, None, "SUCCEEDED"]
    run = [line.text for line in lines if line.rank == 0]
    assert run[0] == "chatlike-train: this image needs no NVIDIA driver (CPU flavor)"
    assert not [text for text in run if "\x1b" in text or "pid=" in text]
    for text in run:
        state.update(text)
    assert (state.step, state.total) == (10, 10) and state.metrics["loss"] == 5.746


@pytest.mark.parametrize(
    ("raw", "text", "rank"),
    [   # task_codegen.py's task names on several nodes: `head, rank=0,` and `worker1, rank=1,`
        ("\x1b[36m(head, rank=0, pid=412)\x1b[0m  10%|█         | 1/10 [00:01<00:09,  1.0s/it]\n",
         " 10%|█         | 1/10 [00:01<00:09,  1.0s/it]", 0),
        ("\x1b[36m(worker1, rank=1, pid=97)\x1b[0m chatlike-train: exit 0\n", "chatlike-train: exit 0", 1),
        ("ssh: connect to host 127.0.0.1 port 32770: Connection refused\n",
         "ssh: connect to host 127.0.0.1 port 32770: Connection refused", 1),  # plain: the last prefixed node's
    ],
)
def test_the_node_of_each_line_is_read_from_its_prefix(raw, text, rank):
    job_log = skypilot.JobLog()
    job_log.read("\x1b[36m(worker1, rank=1, pid=97)\x1b[0m before\n")
    assert job_log.read(raw) == skypilot.LogLine(text, rank)


@pytest.mark.parametrize(
    ("answers", "status", "copied", "says", "torn_down"),
    [
        (True, "RUNNING", True, "x; its outputs so far are in OUT/r.partial. Cluster chatlike-r is left up so that "
                                "nothing is lost (it bills while up): copy its outputs home with `rsync ", False),
        (True, "SUCCEEDED", True, "x; its outputs so far are in OUT/r.partial. Its job had ended (SUCCEEDED): cluster "
                                  "chatlike-r was torn down", True),
        (True, None, False, "x; copying its outputs home failed too (rsync broke). Cluster chatlike-r is left up", False),
        (False, None, True, "x; the box no longer answers (pre-empted, or ended by its provider), so nothing came home "
                            "and its disk, checkpoints included, is gone. Cluster chatlike-r was torn down", True),
    ],
)
def test_after_a_failure_the_cluster_stays_up_only_while_more_can_come_home(monkeypatch, answers, status, copied,
                                                                             says, torn_down):
    """The decision after any failure on a launched cluster (the failures themselves are injected at the pod in
    the whole runs below): what SkyPilot and ssh would answer is given here."""
    from types import SimpleNamespace

    from chatlike_runner import rented
    from chatlike_runner.core.errors import ChatlikeError

    downed = []
    monkeypatch.setattr(skypilot, "answers", lambda cluster: answers)
    monkeypatch.setattr(skypilot, "job_status", lambda cluster, job: status)
    monkeypatch.setattr(skypilot, "down", downed.append)

    def snapshot() -> Path:
        if not copied:
            raise ChatlikeError("rsync broke")
        return Path("OUT/r.partial")

    error = rented._failed(SimpleNamespace(run_id="r", out_dir=Path("OUT")), "chatlike-r", "x", 1, snapshot)
    assert error.format_message().startswith(says) and error.exit_code == 1
    assert downed == (["chatlike-r"] if torn_down else [])


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
    script = skytask.run_script(skytask.rented("lambda", nodes=nodes))
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert script.index("sha256sum --check") < script.index("chatlike-train run")


# Whole runs: SkyPilot 0.14.1 itself, with only Runpod's API stood in for (runpod_standin.py).

SKY = Path(sys.executable).parent / "sky"
UV = Path(sys.executable).parent / "uv"
SSH_WRAPPER = """#!/bin/sh
# Test fixture: OpenSSH reads ~/.ssh/config from the passwd entry's home, never $HOME, and expands ~ there too:
# hand it the cluster aliases SkyPilot wrote under this test's HOME instead.
mkdir -p "$HOME/.ssh"
cat "$HOME"/.sky/generated/ssh/* > "$HOME/.ssh/chatlike-test-config" 2>/dev/null
exec {ssh} -F "$HOME/.ssh/chatlike-test-config" "$@"
"""


@pytest.fixture(scope="session")
def runpod(docker_client, tmp_path_factory):
    """Test fixture: Runpod's GraphQL API on loopback, whose pods are containers on the engine (a uv cache shared
    by them: SkyPilot's runtime downloads once per session)."""
    if not UV.exists():
        need("uv is not in the test venv (pip install -e '.[test]')")
    folder = tmp_path_factory.mktemp("runpod")
    (folder / "uv-cache").mkdir()
    standin = runpod_standin.Runpod(docker_client, runpod_standin.write_nvidia_smi(folder), UV, folder / "uv-cache")
    server = runpod_standin.serve(standin)
    yield standin, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    standin.remove_all()


@pytest.fixture
def box(workdir, runpod, cpu_image, docker_client, catalog):
    """chatlike-runner through SkyPilot itself, on Runpod's stand-in: the runner's process starts SkyPilot's local
    API server under the test's HOME (Runpod's key in ~/.runpod, the catalog fixture, Runpod the only cloud
    enabled), which provisions, sets up, syncs, runs and tears down for real against runpod_standin. Yields
    (run, runpod, image, env): run(*args) starts the CLI; image names the CPU image by id as a digest."""
    if shutil.which("rsync") is None or not Path("/usr/bin/ssh").exists():
        need("rsync and OpenSSH's client are not installed (apt-get install rsync openssh-client)")
    standin, url = runpod
    standin.calls.clear()
    standin.driver = "580.95.05"
    home = Path(os.environ["HOME"])
    (home / ".runpod").mkdir()
    (home / ".runpod" / "config.toml").write_text('[default]\napi_key = "runpod-standin"\n')
    (home / ".sky" / "config.yaml").write_text("allowed_clouds:\n  - runpod\n")
    client = workdir / "ssh-client"
    client.mkdir()
    (client / "ssh").write_text(SSH_WRAPPER.format(ssh="/usr/bin/ssh"))
    (client / "ssh").chmod(0o755)
    env = {**os.environ, "RUNPOD_API_BASE_URL": url, "HF_TOKEN": SECRET, "PATH": f"{client}:{os.environ['PATH']}"}
    subprocess.run([SKY, "api", "stop"], env=env, capture_output=True)  # a server left by another HOME
    subprocess.run([sys.executable, "-m", "chatlike_runner", "prepare", "-o", "prepared"], cwd=workdir,
                   capture_output=True, check=True)
    image = "localhost:1/chatlike/train@" + docker_client.images.get(cpu_image).id

    def run(*args: str, cwd: Path = workdir) -> subprocess.Popen:
        return subprocess.Popen(runner_cmd(*args), cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    yield run, standin, image, env
    subprocess.run([SKY, "api", "stop"], env=env, capture_output=True)
    standin.remove_all()


def _pods(runpod) -> list[str]:
    """The stand-in's pods still there, by the API and on the engine."""
    return sorted(pod.name for pod in runpod.pods.values()) + sorted(
        c.name for c in runpod.client.containers.list(all=True, filters={"label": "org.chatlike.role=runpod-standin"}))


def _pod_calls(runpod, cluster: str = "") -> list[str]:
    """The pods (of `cluster`, else all) the stand-in was asked to create and to end (and ended itself), in order."""
    ids = {call["id"] for call in runpod.calls if call["call"] == "create" and call["name"].startswith(cluster)}
    return [call["call"] for call in runpod.calls if call["call"] in ("create", "terminate", "preempted")
            and call["id"] in ids]


def _read(stream, lines: list[str]) -> None:
    lines.extend(iter(stream.readline, ""))


TRAINING = r"\bstep ([3-9]|[1-3][0-9])/40\b"  # a progress line of step 3 or later of 40


class _Followed:
    """A runner process whose output a thread reads as it comes (so that several can run at once)."""

    def __init__(self, process: subprocess.Popen):
        self.process, self.lines, self.errors = process, [], []
        self.readers = [threading.Thread(target=_read, args=(stream, lines), daemon=True)
                        for stream, lines in ((process.stdout, self.lines), (process.stderr, self.errors))]
        for reader in self.readers:
            reader.start()

    def until(self, pattern: str) -> str:
        """The output so far, once a line matches `pattern` (the followed log may pass over a step)."""
        deadline = time.monotonic() + 600
        while not re.search(pattern, "".join(self.lines), re.MULTILINE):
            if self.process.poll() is not None:
                self.end()  # what it wrote before it ended, read whole
                assert re.search(pattern, "".join(self.lines), re.MULTILINE), "".join(self.lines)[-3000:]
                break
            assert time.monotonic() < deadline, "".join(self.lines)[-3000:]
            time.sleep(0.5)
        return "".join(self.lines)

    def end(self, timeout: float = 900) -> tuple[str, str]:
        """Its whole stdout and stderr, once it ended."""
        self.process.wait(timeout=timeout)
        for reader in self.readers:
            reader.join()
        return "".join(self.lines), "".join(self.errors)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


SMOKE = ["--data", "prepared/train.jsonl", "--on", "runpod", "--gpu", "RTX3090:1"]


@pytest.mark.engine
def test_a_run_on_runpod_goes_through_skypilot_itself_and_comes_home(box, workdir):
    run, runpod, image, env = box
    process = _Followed(run("start", str(smoke_config(workdir, 40)), *SMOKE, "--image", image, "--keep"))
    run_id = started_run(process.until(TRAINING))
    cluster = f"chatlike-{run_id}"
    # The stream breaks while training goes on (its reader on the box is gone): the runner follows again.
    assert runpod.container(cluster).exec_run(["pkill", "-f", "log_lib.tail_logs"]).exit_code == 0
    stdout, stderr = process.end()
    assert process.process.returncode == 0, stdout[-3000:] + stderr
    assert f"the log stream from {cluster} was lost" in stdout
    assert "[progress] step 40/40" in stdout, stdout[-3000:]
    assert f"started on runpod, 1x RTX3090 (1x_RTX3090_SECURE) in CA, $0.50/h (cluster {cluster})" in stdout
    (created,) = [call for call in runpod.calls if call["call"] == "create"]
    assert created["imageName"] == image and created["gpuCount"] == "1"
    assert "apt install openssh-server rsync curl patch" in base64.b64decode(
        created["dockerArgs"].split("echo ")[1].split(" |")[0]).decode()  # SkyPilot's own start command
    out = workdir / "outputs" / run_id
    assert (out / "adapter_model.safetensors").stat().st_size > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["complete"] is True and manifest["exit_code"] == 0
    assert manifest["rented"] == {"provider": "runpod", "region": "CA", "zone": "CA-MTL-1",
                                  "instance_type": "1x_RTX3090_SECURE", "gpu": "RTX3090:1", "nodes": 1, "spot": False,
                                  "hourly_price_usd": 0.5}
    assert manifest["image"]["digests"] == [image] and manifest["flags"]["on"]["provider"] == "runpod"
    assert sorted(p.name for p in (out / "inputs").iterdir()) == ["SHA256SUMS", "config.original.yml", "config.yml"]
    log = (out / "logs" / "container.log").read_text()
    assert log.count("chatlike-train: started as root: training as chatlike (uid 1000)") == 1  # none read twice
    assert log.rstrip().endswith("Job finished (status: SUCCEEDED).")
    assert json.loads((out / "train-manifest.json").read_text())["user"]["uid"] == 1000
    assert not list((workdir / "outputs").glob("*.sky")), "the launch folder is removed after the run"
    for path in out.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
    # --keep: the cluster is up, SkyPilot's alias reaches it, and `sky down` ends it.
    assert f"cluster {cluster} is still up (--keep) and billing $0.50/h" in stdout
    assert subprocess.run(["ssh", "-o", "BatchMode=yes", cluster, "test -s /chatlike/output/adapter_model.safetensors"],
                          env=env, capture_output=True).returncode == 0
    subprocess.run([SKY, "down", "--yes", cluster], env=env, capture_output=True, check=True)
    assert _pods(runpod) == []

    again = run("reproduce", run_id, "--on", "runpod", "--dry-run")
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stdout + stderr
    assert f"image_id: docker:{image}\n" in stdout and f"reproducing run {run_id}" in stdout


@pytest.mark.engine
def test_ctrl_c_brings_a_partial_home_and_resume_continues_on_a_new_pod(box, workdir):
    run, runpod, image, _ = box
    process = _Followed(run("start", str(smoke_config(workdir, 40)), *SMOKE, "--image", image))
    run_id = started_run(process.until(TRAINING))
    process.process.send_signal(signal.SIGINT)
    stdout, stderr = process.end(timeout=600)
    assert process.process.returncode == 130, stdout[-3000:] + stderr
    partial = workdir / "outputs" / f"{run_id}.partial"
    assert list(partial.glob("checkpoint-*")), sorted(p.name for p in partial.iterdir())
    assert json.loads((partial / "manifest.json").read_text())["status"] == "stopped"
    assert _pod_calls(runpod) == ["create", "terminate"] and _pods(runpod) == []

    resumed = run("resume", run_id)
    stdout, stderr = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, stdout[-3000:] + stderr
    assert "resuming run" in stdout and "on a new runpod cluster" in stdout
    assert _pod_calls(runpod) == ["create", "terminate", "create", "terminate"]
    final = workdir / "outputs" / run_id
    log = (final / "logs" / "train.log").read_text()
    assert "checkpoint" in log.lower() and "resum" in log.lower(), log[-3000:]
    assert json.loads((final / "manifest.json").read_text())["status"] == "succeeded"
    assert not partial.exists() and _pods(runpod) == []


@pytest.mark.engine
def test_a_host_driver_below_the_images_minimum_is_refused_in_one_line(box, cuda_image, docker_client, workdir):
    run, runpod, _, _ = box
    runpod.driver = "550.127.05"
    image = "localhost:1/chatlike/train@" + docker_client.images.get(cuda_image).id  # its minimum: 580
    process = run("start", str(REPO / "configs" / "cpu-smoke.yml"), *SMOKE, "--image", image)
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 2, stdout[-3000:] + stderr
    line = _one_line(stderr)
    assert "this machine's NVIDIA driver is 550.127.05, older than the 580 this image's CUDA build needs" in line
    assert "torn down; nothing was trained" in line
    assert _pod_calls(runpod) == ["create", "terminate"] and _pods(runpod) == []
    assert not [p for p in (workdir / "outputs").iterdir() if not p.name.startswith(".")]


@pytest.mark.engine
def test_a_box_that_stops_answering_is_torn_down_in_one_line(box, workdir):
    """Two boxes lost while they train, launched at once: one pre-empted (Runpod ends the pod, its disk gone), one
    that runs on with nothing reaching it any more (its sshd gone)."""
    run, runpod, image, _ = box
    failures = {}
    for failure in ("pre-empted", "sshd gone"):
        folder = workdir / failure.replace(" ", "-")
        shutil.copytree(workdir / "prepared", folder / "prepared")
        failures[failure] = (folder, _Followed(run("start", str(smoke_config(folder, 40)), *SMOKE, "--image", image,
                                                   cwd=folder)))
        failures[failure][1].until(r"^Running on cluster")  # SkyPilot's local API server is up: the next one shares it
    for failure, (_, followed) in failures.items():
        cluster = f"chatlike-{started_run(followed.until(TRAINING))}"
        if failure == "pre-empted":
            runpod.preempt(cluster)
        else:
            runpod.container(cluster).exec_run(["sh", "-c", "pkill -x sshd; pkill -f 'sshd:'"])
    for failure, (folder, followed) in failures.items():
        stdout, stderr = followed.end(timeout=600)
        cluster = f"chatlike-{started_run(stdout)}"
        assert followed.process.returncode == 1, stdout[-3000:] + stderr
        line = _one_line(stderr)
        assert "lost its box while it trained" in line and "nothing came home" in line
        assert f"Cluster {cluster} was torn down" in line
        assert _pod_calls(runpod, cluster)[-1] == ("preempted" if failure == "pre-empted" else "terminate")
        assert not [p for p in (folder / "outputs").iterdir() if not p.name.startswith(".")]
    assert _pods(runpod) == []


@pytest.mark.engine
def test_a_copy_home_that_fails_leaves_the_cluster_up_with_the_commands_that_finish_it(box, workdir):
    run, runpod, image, env = box
    process = _Followed(run("start", str(REPO / "configs" / "cpu-smoke.yml"), *SMOKE, "--image", image))
    # SkyPilot synced its uploads with rsync: now the box loses it.
    cluster = f"chatlike-{started_run(process.until(' started on runpod'))}"
    pod = runpod.container(cluster)
    assert pod.exec_run(["mv", "/usr/bin/rsync", "/usr/bin/rsync.gone"]).exit_code == 0
    stdout, stderr = process.end(timeout=600)
    assert process.process.returncode == 1, stdout[-3000:] + stderr
    line = _one_line(stderr)
    assert "copying chatlike-" in line and f"Cluster {cluster} is left up so that nothing is lost" in line
    copy, down = re.findall(r"`([^`]+)`", line)[-2:]
    assert down == f"sky down {cluster}" and [p.name for p in runpod.pods.values()]
    pod.exec_run(["mv", "/usr/bin/rsync.gone", "/usr/bin/rsync"])
    subprocess.run(shlex.split(copy), env=env, cwd=workdir, check=True, capture_output=True)
    assert (workdir / "outputs" / f"{cluster.removeprefix('chatlike-')}.copied" / "adapter_model.safetensors").is_file()
    subprocess.run([SKY, *shlex.split(down)[1:], "--yes"], env=env, check=True, capture_output=True)  # SkyPilot's CLI
    assert _pods(runpod) == []


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
