"""The run plan is plain data: built and checked without a Docker engine."""

from __future__ import annotations

import sys

import pytest
import yaml

from chatlike_runner.core import constants as c
from chatlike_runner.core.errors import ChatlikeError
from chatlike_runner.parsing import GpuRequest, Ulimit, parse_gpus, parse_size, parse_ulimit
from chatlike_runner.plan import build_plan, container_options


def test_the_plan_and_its_container_options_never_import_docker(workdir, monkeypatch):
    monkeypatch.delitem(sys.modules, "docker", raising=False)  # put back after the test
    container_options(build_plan(workdir / "config.yml", gpus="all", environ={}))
    assert "docker" not in sys.modules


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("all", GpuRequest(count=-1)),
        ("2", GpuRequest(count=2)),
        ("0,1", GpuRequest(device_ids=("0", "1"))),
        ("device=1", GpuRequest(device_ids=("1",))),
        ("none", GpuRequest()),
        ("0", GpuRequest()),
    ],
)
def test_gpus(text, expected):
    assert parse_gpus(text) == expected
    assert parse_gpus(text).wanted == (expected != GpuRequest())


@pytest.mark.parametrize("text", ["lots", "0,x", "-1", "device="])
def test_bad_gpus(text):
    with pytest.raises(ChatlikeError, match="--gpus"):
        parse_gpus(text)


def test_sizes_and_ulimits():
    assert parse_size("16g", "--shm-size") == 16 * 2**30
    assert parse_size("512m", "--shm-size") == 512 * 2**20
    assert parse_size("1024", "--shm-size") == 1024
    assert parse_ulimit("memlock=-1") == Ulimit("memlock", -1, -1)
    assert parse_ulimit("stack=67108864") == Ulimit("stack", 67108864, 67108864)
    assert parse_ulimit("nofile=1024:4096") == Ulimit("nofile", 1024, 4096)
    assert parse_ulimit("memlock=unlimited") == Ulimit("memlock", -1, -1)
    for bad in ("memlock", "bogus=1", "nofile=5:2", "stack=big"):
        with pytest.raises(ChatlikeError, match="--ulimit"):
            parse_ulimit(bad)
    with pytest.raises(ChatlikeError, match="--shm-size"):
        parse_size("huge", "--shm-size")


def test_plan_from_config_and_flags(workdir):
    plan = build_plan(
        workdir / "config.yml",
        gpus="all",
        shm_size="16g",
        ulimits=["memlock=8388608", "stack=67108864"],
        env=["WANDB_PROJECT"],
        environ={"HF_TOKEN": "hf_secret_value", "WANDB_PROJECT": "me"},
        run_id="20261129-000000-abcd",
    )
    assert plan.gpus == GpuRequest(count=-1)
    assert plan.shm_size == 16 * 2**30
    assert plan.env_names == ("HF_TOKEN", "WANDB_PROJECT")
    assert plan.out_dir == (workdir / "outputs").resolve()
    assert plan.volumes == {
        "chatlike-20261129-000000-abcd-input": c.INPUT_DIR,
        "chatlike-20261129-000000-abcd-output": c.OUTPUT_DIR,
        c.CACHE_VOLUME: c.CACHE_DIR,
    }
    assert plan.labels()[c.LABEL_RUN] == "20261129-000000-abcd"
    # The dataset is staged and the config points at the container paths.
    assert [s.name for s in plan.data] == ["data/train.jsonl"]
    rendered = yaml.safe_load(plan.config_text)
    assert rendered["datasets"][0]["path"] == f"{c.INPUT_DIR}/data/train.jsonl"
    assert rendered["output_dir"] == c.OUTPUT_DIR
    assert rendered["base_model"] == "tiny"


def test_secret_values_stay_out_of_the_plan(workdir):
    plan = build_plan(workdir / "config.yml", environ={"HF_TOKEN": "hf_Xq7value", "WANDB_API_KEY": "wb_Zz9value"})
    assert set(plan.env_names) == {"HF_TOKEN", "WANDB_API_KEY"}
    for text in (repr(plan), str(plan.labels()), str(plan.flags())):
        assert "Xq7value" not in text and "Zz9value" not in text


def test_data_flag_replaces_the_dataset(workdir):
    other = workdir / "mine.jsonl"
    other.write_text("{}\n")
    plan = build_plan(workdir / "config.yml", data=other, environ={})
    assert [s.host_path for s in plan.data] == [other.resolve()]
    assert yaml.safe_load(plan.config_text)["datasets"][0]["path"] == f"{c.INPUT_DIR}/data/mine.jsonl"


def test_hub_datasets_are_left_alone(workdir):
    config = workdir / "hub.yml"
    config.write_text("datasets:\n  - path: someone/chats\n    type: chat_template\n")
    plan = build_plan(config, environ={})
    assert plan.data == ()
    assert yaml.safe_load(plan.config_text)["datasets"][0]["path"] == "someone/chats"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("datasets: [\n", "not valid YAML at line"),
        ("- a\n- b\n", "not a YAML mapping"),
        ("datasets:\n  - path: missing.jsonl\n", "does not exist"),
        ("datasets: 3\n", "must be a list"),
    ],
)
def test_bad_configs(workdir, content, match):
    config = workdir / "bad.yml"
    config.write_text(content)
    with pytest.raises(ChatlikeError, match=match):
        build_plan(config, environ={})


def test_bad_flags(workdir):
    config = workdir / "config.yml"
    with pytest.raises(ChatlikeError, match="does not exist"):
        build_plan(workdir / "nope.yml", environ={})
    with pytest.raises(ChatlikeError, match="NAME=VALUE"):
        build_plan(config, env=["HF_TOKEN=abc"], environ={})
    with pytest.raises(ChatlikeError, match="not set"):
        build_plan(config, env=["MISSING_VAR"], environ={})
    with pytest.raises(ChatlikeError, match="twice"):
        build_plan(config, ulimits=["stack=1", "stack=2"], environ={})
    with pytest.raises(ChatlikeError, match="dataset"):
        build_plan(config, data=workdir / "absent.jsonl", environ={})



def test_a_new_run_is_fit_checked_and_a_resumed_one_is_not(workdir):
    from chatlike_runner.plan import replan

    plan = build_plan(workdir / "config.yml", gpus="all")
    assert plan.fit_check and not build_plan(workdir / "config.yml", fit_check=False).fit_check
    assert not replan(plan.flags(), plan.run_id, workdir / "outputs").fit_check  # it ran: not estimated again


def test_resume_and_reproduce_rebuild_a_run_s_plan_through_build_plan_s_checks(workdir, monkeypatch):
    """A resumed run gets its recorded flags back whole; a reproduced one too, with its staged config, a new id and
    the run it reproduces; a recorded flag that no longer passes build_plan's checks is refused, not carried."""
    import hashlib
    import json

    from chatlike_runner.plan import replan
    from chatlike_runner.reproduce import plan_again

    monkeypatch.setenv("WANDB_API_KEY", "x")
    monkeypatch.setenv("MY_VAR", "y")
    plan = build_plan(workdir / "config.yml", gpus="0,1", shm_size="2g", memory="16g", ulimits=["nofile=1024:2048"],
                      env=["MY_VAR"], image="chatlike/train:cpu")
    flags = plan.flags()
    assert replan(flags, plan.run_id, plan.out_dir).flags() == {**flags, "validate": False}  # it was validated

    folder = workdir / "outputs" / plan.run_id
    (folder / c.RUN_INPUTS).mkdir(parents=True)
    original = (workdir / "config.yml").read_bytes()
    (folder / c.RUN_INPUTS / c.ORIGINAL_CONFIG_NAME).write_bytes(original)
    (folder / c.RUN_INPUTS / c.CONFIG_NAME).write_text(plan.config_text)
    manifest = {"run_id": plan.run_id, "flags": json.loads(json.dumps(flags)), "image": {"id": "sha256:abc"},
                "config_sha256": hashlib.sha256(original).hexdigest()}
    again = plan_again(folder, manifest, plan.out_dir, None, None)
    assert again.run_id != plan.run_id and again.reproduces == plan.run_id and again.image == "sha256:abc"
    assert again.config_text == plan.config_text and again.data == plan.data
    ignored = {"image", "config", "reproduces", "command", "validate"}
    assert {k: v for k, v in again.flags().items() if k not in ignored} == \
        {k: v for k, v in flags.items() if k not in ignored}
    manifest["flags"]["ulimits"] = ["nofile=lots"]
    with pytest.raises(ChatlikeError, match="nofile"):
        plan_again(folder, manifest, plan.out_dir, None, None)
