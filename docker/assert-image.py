"""Build-time asserts of the training image: a swapped torch, a lost CUDA build or a broken import fails the build.

Run by the Dockerfile with the expected versions in the environment (the same build args the labels state).
"""

import importlib.metadata as md
import os
import subprocess
import sys
from pathlib import Path

import torch

env = os.environ
want = {
    "torch": env["TORCH_VERSION"],
    "axolotl": env["AXOLOTL_VERSION"],
    "bitsandbytes": env["BITSANDBYTES_VERSION"],
    "deepspeed": env["DEEPSPEED_VERSION"],
    "transformers": env["TRANSFORMERS_VERSION"],
}
for name, version in want.items():
    got = md.version(name)
    assert got.split("+")[0] == version, f"{name} {got} is installed, {version} expected"

# The host's driver brings these into the container (the NVIDIA Container Toolkit); nothing in the image may.
HOST_DRIVER = {"libcuda.so.1", "libnvidia-ml.so.1"}


def unresolved(libraries: list[Path]) -> dict[str, list[str]]:
    """Per shared library, what the loader cannot find (`ldd`: "not found"), the host driver's libraries aside."""
    missing = {}
    for library in libraries:
        lines = subprocess.run(["ldd", str(library)], capture_output=True, text=True, check=False).stdout.splitlines()
        names = [line.split()[0] for line in lines if "not found" in line and line.split()[0] not in HOST_DRIVER]
        if names:
            missing[library.name] = names
    return missing


flavor = env["FLAVOR"]
if flavor == "cuda":
    assert torch.version.cuda == env["TORCH_CUDA"], f"torch is built for CUDA {torch.version.cuda}, {env['TORCH_CUDA']} expected"
    archs = set(torch.cuda.get_arch_list())
    assert {"sm_86", "sm_90"} <= archs, f"torch has no code for sm_86 (RTX 3090) or sm_90 (H100): {sorted(archs)}"
    cuda_tag = "cuda" + env["TORCH_CUDA"].replace(".", "")
    bnb = Path(md.distribution("bitsandbytes").locate_file("bitsandbytes"))
    bnb_cuda = bnb / f"libbitsandbytes_{cuda_tag}.so"
    assert bnb_cuda.is_file(), f"bitsandbytes has no library for CUDA {env['TORCH_CUDA']} ({bnb_cuda.name})"
    # torch's own libraries, bitsandbytes' for this CUDA (its others are for CUDA 11 and 12, never loaded with this
    # torch) and the flash-attention kernel's, when the build fetched it.
    libraries = [*sorted((Path(torch.__file__).parent / "lib").glob("*.so*")), bnb_cuda,
                 *sorted(Path(env["KERNELS_CACHE"]).rglob("*.so"))]
    missing = unresolved(libraries)
    assert not missing, f"shared libraries that do not resolve in the image: {missing}"
    print(f"ldd: {len(libraries)} shared libraries of torch, bitsandbytes ({bnb_cuda.name}) and the flash-attention "
          "kernel resolve (the host driver's libcuda aside)")
elif flavor == "cpu":
    assert torch.version.cuda is None, f"the CPU flavor got a CUDA build of torch ({torch.__version__})"
else:
    sys.exit(f"FLAVOR must be cuda or cpu, not {flavor!r}")

import accelerate  # noqa: E402,F401
import axolotl.cli.train  # noqa: E402,F401
import bitsandbytes  # noqa: E402,F401
import deepspeed  # noqa: E402,F401
import kernels  # noqa: E402,F401
import peft  # noqa: E402,F401
import wandb  # noqa: E402,F401
from transformers.modeling_flash_attention_utils import FLASH_ATTN_KERNEL_FALLBACK  # noqa: E402

# flash_attention_2 resolves to the hub kernel (the flash-attn package is not installed: sdist only).
kernel = FLASH_ATTN_KERNEL_FALLBACK["flash_attention_2"]
assert kernel == env["FA2_HUB_KERNEL"], f"flash_attention_2 falls back to {kernel}, not {env['FA2_HUB_KERNEL']}"
from chatlike_runner.train.hubkernel import KERNEL_ENV, baked  # noqa: E402

repo, _, revision = env[KERNEL_ENV].rpartition("@")
has_kernel = baked(Path(env["KERNELS_CACHE"]), repo, revision)
# A kernel fetched but not where validate looks would refuse flash_attention_2 on the very image that has it.
assert has_kernel or not any(Path(env["KERNELS_CACHE"]).rglob("*.so")), f"{env[KERNEL_ENV]} is in the image, not as validate expects"
print(f"flash-attention kernel {env[KERNEL_ENV]}: {'in the image' if has_kernel else 'not in the image (validate refuses flash_attention_2)'}")
print(f"image asserts ok: {flavor}, torch {torch.__version__} (CUDA {torch.version.cuda}), Python {sys.version.split()[0]}")
