"""GPU checks: run where an NVIDIA GPU, the NVIDIA Container Toolkit and the CUDA image are present.

CI has no GPU, so these skip there (the only tests allowed to). On a GPU box:
`make image && .venv/bin/pytest -m gpu`.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.engine]
CUDA_IMAGE = "chatlike/train:latest"


@pytest.fixture(scope="module")
def gpu_engine(docker_client):
    if not shutil.which("nvidia-smi") or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode != 0:
        pytest.skip("no NVIDIA GPU on this machine")
    if "nvidia" not in docker_client.info().get("Runtimes", {}):
        pytest.skip("the Docker engine has no NVIDIA runtime (NVIDIA Container Toolkit)")
    try:
        docker_client.images.get(CUDA_IMAGE)
    except Exception:
        pytest.skip(f"{CUDA_IMAGE} is not built here (make image)")
    return docker_client


def test_doctor_names_the_gpus(cli, gpu_engine):
    result = cli("doctor", "--image", CUDA_IMAGE, "--gpus", "all")
    gpus = [line for line in result.stdout.splitlines() if line.strip().startswith("gpus")]
    assert gpus and " ok " in gpus[0] and "found" in gpus[0], result.stdout


def test_smoke_recipe_trains_on_the_gpus(cli, gpu_engine, workdir):
    prepared = workdir / "prepared"
    assert cli("prepare", "-o", str(prepared)).returncode == 0
    result = cli("start", "--smoke", "--image", CUDA_IMAGE, "--gpus", "all", "--data", str(prepared / "train.jsonl"),
                 "--ulimit", "stack=67108864", timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "[progress] step 10/10  loss" in result.stdout
    (out,) = (workdir / "outputs").iterdir()
    train_manifest = json.loads((out / "train-manifest.json").read_text())
    assert train_manifest["gpus"]["count"] >= 1 and train_manifest["gpus"]["names"], train_manifest
    assert (out / "adapter_model.safetensors").stat().st_size > 0
