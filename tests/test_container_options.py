"""The container a plan asks for, built as plain data and checked case by case without an engine."""

from __future__ import annotations

import pytest

from chatlike_runner.core import constants as c
from chatlike_runner.parsing import parse_gpus
from chatlike_runner.plan import JobPlan, build_plan, container_options, device_request

RUN_ID = "20261130-000000-abcd"


def options(workdir, validate=False, **flags):
    return container_options(build_plan(workdir / "config.yml", environ={}, run_id=RUN_ID, **flags), validate)


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [("all", {"count": -1}), ("2", {"count": 2}), ("0,1", {"device_ids": ["0", "1"]})],
)
def test_gpu_requests_become_device_requests(gpus, expected):
    request = device_request(parse_gpus(gpus))
    assert request == {"driver": "", "capabilities": [["gpu"]], **expected}


def test_a_cpu_run(workdir):
    got = options(workdir)
    assert got["command"] == ["chatlike-train", "run", "/chatlike/input/config.yml"]
    assert got["name"] == f"chatlike-{RUN_ID}"
    assert got["labels"][c.LABEL_RUN] == RUN_ID and got["labels"][c.LABEL_ROLE] == c.ROLE_TRAIN
    assert got["device_requests"] is None
    assert got["ipc_mode"] == "host" and got["shm_size"] is None
    assert got["mem_limit"] is None and got["ulimits"] is None
    assert got["init"] is True and got["tty"] is False and got["stdin_open"] is False
    assert got["user"] == "chatlike", "never root: the image starts as root for rented boxes"
    assert got["volumes"] == {
        f"chatlike-{RUN_ID}-input": {"bind": c.INPUT_DIR, "mode": "rw"},
        f"chatlike-{RUN_ID}-output": {"bind": c.OUTPUT_DIR, "mode": "rw"},
        c.CACHE_VOLUME: {"bind": c.CACHE_DIR, "mode": "rw"},
    }
    assert got["environment"] == c.CONTAINER_ENV


def test_gpus_shared_memory_memory_and_ulimits(workdir):
    got = options(workdir, gpus="0,1", shm_size="16g", memory="48g", ulimits=["memlock=8388608", "stack=67108864"])
    assert got["device_requests"] == [{"driver": "", "device_ids": ["0", "1"], "capabilities": [["gpu"]]}]
    assert got["ipc_mode"] == "shareable" and got["shm_size"] == 16 * 2**30
    assert got["mem_limit"] == got["memswap_limit"] == 48 * 2**30
    assert got["ulimits"] == [{"name": "memlock", "soft": 8388608, "hard": 8388608},
                              {"name": "stack", "soft": 67108864, "hard": 67108864}]


def test_passed_variables_are_names_never_values(workdir):
    plan = build_plan(workdir / "config.yml", env=["MY_TOKEN"], environ={"HF_TOKEN": "hf_secret1", "MY_TOKEN": "tok_2"},
                      run_id=RUN_ID)
    got = container_options(plan)
    assert got["environment"]["HF_TOKEN"] is None and got["environment"]["MY_TOKEN"] is None
    assert "hf_secret1" not in repr(got) and "tok_2" not in repr(got)


def test_the_validate_container_has_no_name_and_no_gpus(workdir):
    got = options(workdir, validate=True, gpus="all")
    assert got["command"] == ["chatlike-train", "validate", "/chatlike/input/config.yml"]
    assert got["name"] is None and got["device_requests"] is None
    assert got["labels"][c.LABEL_ROLE] == c.ROLE_VALIDATE and got["labels"][c.LABEL_RUN] == RUN_ID
    assert got["volumes"] == options(workdir)["volumes"]


def test_a_job_on_a_finished_run(tmp_path):
    plan = JobPlan(run_id=RUN_ID, kind="eval", stamp="20261130-010203", image="chatlike/train:cpu", host=None,
                   run_dir=tmp_path, heldout=tmp_path / "heldout.jsonl", gpus=parse_gpus("all"), env_names=("HF_TOKEN",),
                   options=("/chatlike/input/data/heldout.jsonl", "/chatlike/output", "--samples", "3"))
    got = container_options(plan)
    job = f"{RUN_ID}-eval-20261130-010203"
    assert got["name"] == f"chatlike-{job}"
    assert got["labels"] == {c.LABEL_RUN: job, c.LABEL_ROLE: "eval"}, "removing a job never touches its run"
    assert got["command"] == ["chatlike-train", "eval", "/chatlike/input/run", "/chatlike/input/data/heldout.jsonl",
                              "/chatlike/output", "--samples", "3"]
    assert got["device_requests"] == [{"driver": "", "count": -1, "capabilities": [["gpu"]]}]
    assert set(got["volumes"]) == {f"chatlike-{job}-input", f"chatlike-{job}-output", c.CACHE_VOLUME}
    assert got["environment"]["HF_TOKEN"] is None and got["stdin_open"] is False


def test_a_chat_reads_its_stdin(tmp_path):
    plan = JobPlan(run_id=RUN_ID, kind="chat", stamp="1", image="i", host=None, run_dir=tmp_path, heldout=None,
                   gpus=parse_gpus("none"), env_names=(), interactive=True)
    got = container_options(plan)
    assert got["stdin_open"] is True and got["tty"] is False and got["command"] == ["chatlike-train", "chat", "/chatlike/input/run"]
