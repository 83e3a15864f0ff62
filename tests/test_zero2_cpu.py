"""The multi-GPU path without a GPU: `chatlike-train run` in the CPU image, told of two GPUs, launches accelerate with
one process per GPU and DeepSpeed ZeRO-2 (the production zero2.json), and the two ranks (CPU, gloo) train the tiny
model with DoRA and saved embeddings, checkpoint with ZeRO shards per rank, and resume from them.

Stood in (tests/zero2_cpu/, test fixtures): an `nvidia-smi` that lists two GPUs, and a sitecustomize that makes the
three changes two CPU ranks need (its docstring says which and why); DS_ACCELERATOR=cpu picks DeepSpeed's CPU
accelerator. The config is the CPU smoke recipe with `bf16: true`: what `bf16: auto` picks on a GPU since Ampere
(on the CPU Axolotl would pick fp16, which DeepSpeed's CPU accelerator lacks).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.engine
HERE = Path(__file__).parent
STANDIN = HERE / "zero2_cpu"


def _train(docker_client, image: str, work: Path) -> tuple[int, str]:
    env = dict(item.split("=", 1) for item in docker_client.images.get(image).attrs["Config"]["Env"])
    container = docker_client.containers.run(
        image, ["chatlike-train", "run", "/work/config.yml"], entrypoint=[], detach=True,
        volumes={str(work): {"bind": "/work", "mode": "rw"}},
        environment={"PATH": f"/work/standin:{env['PATH']}", "PYTHONPATH": "/work/standin", "DS_ACCELERATOR": "cpu",
                     "HF_HUB_OFFLINE": "1"})
    try:
        code = container.wait(timeout=900)["StatusCode"]
        return code, container.logs().decode("utf-8", "replace")
    finally:
        container.remove(force=True)


def _steps(log: str) -> dict[str, dict]:
    """Each logged step's record (loss, learning rate) by its epoch, which tells the steps apart (both ranks log
    each step)."""
    return {record["epoch"]: record for record in map(ast.literal_eval, re.findall(r"\{'loss': [^}]*\}", log))}


def test_two_cpu_ranks_train_checkpoint_and_resume_through_zero2(docker_client, cpu_image, tmp_path):
    from chatlike_runner.trial import write_example

    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    write_example(work / "data")
    shutil.copytree(STANDIN, work / "standin")
    raw = yaml.safe_load((HERE.parent / "configs" / "cpu-smoke.yml").read_text())
    raw.update(datasets=[{**raw["datasets"][0], "path": "/work/data/train.jsonl"}], output_dir="/work/out",
               dataset_prepared_path="/work/prepared", deepspeed="configs/deepspeed/zero2.json", max_steps=4,
               save_steps=2, bf16=True)
    raw.pop("saves_per_epoch", None)
    (work / "config.yml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for path in [work, *work.rglob("*")]:
        path.chmod(0o777 if path.is_dir() or path.name == "nvidia-smi" else 0o666)

    code, output = _train(docker_client, cpu_image, work)
    assert code == 0, output[-4000:]
    log = (work / "out" / "logs" / "train.log").read_text()
    manifest = json.loads((work / "out" / "train-manifest.json").read_text())
    assert manifest["gpus"]["count"] == 2 and manifest["exit_code"] == 0
    command = manifest["command"]
    assert "accelerate.commands.launch" in command and command[command.index("--num_processes") + 1] == "2"
    effective = yaml.safe_load((work / "out" / "train-config.yml").read_text())
    assert effective["deepspeed"] == "/opt/chatlike/configs/deepspeed/zero2.json"
    shards = sorted(p.name for p in (work / "out" / "checkpoint-2" / "global_step2").iterdir())
    assert shards == ["bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt", "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt",
                      "mp_rank_00_model_states.pt"]  # optimizer states partitioned across the two ranks
    assert "[RANK:1]" in log
    first = _steps(log)
    assert len(first) == 4, log[-3000:]
    assert (work / "out" / "adapter_model.safetensors").is_file()

    # Stopped after step 2's checkpoint: what step 4 left goes, and the same run again resumes from the ZeRO shards.
    shutil.rmtree(work / "out" / "checkpoint-4")
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        (work / "out" / name).unlink()
    code, output = _train(docker_client, cpu_image, work)
    assert code == 0, output[-4000:]
    log = (work / "out" / "logs" / "train.log").read_text()
    resumed = log[log.rindex("resume from checkpoint at /work/out/checkpoint-2"):]
    again = _steps(resumed)
    last_two = sorted(first, key=float)[2:]
    assert sorted(again, key=float) == last_two, resumed[-3000:]  # steps 3 and 4 only
    for epoch in last_two:
        assert again[epoch]["learning_rate"] == first[epoch]["learning_rate"]  # the scheduler's state came back
        assert abs(float(again[epoch]["loss"]) - float(first[epoch]["loss"])) < 0.05, (again[epoch], first[epoch])
    assert (work / "out" / "adapter_model.safetensors").is_file()
