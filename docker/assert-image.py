"""Build-time asserts of the training image: a swapped torch, a lost CUDA build or a broken import fails the build.

Run by the Dockerfile with the expected versions in the environment (the same build args the labels state).
"""

import importlib.metadata as md
import os
import sys

import torch

env = os.environ
want = {
    "torch": env["TORCH_VERSION"],
    "axolotl": env["AXOLOTL_VERSION"],
    "bitsandbytes": env["BITSANDBYTES_VERSION"],
    "deepspeed": env["DEEPSPEED_VERSION"],
    "transformers": env["TRANSFORMERS_VERSION"],
    "llama-cpp-python": env["LLAMA_CPP_PYTHON_VERSION"],
}
for name, version in want.items():
    got = md.version(name)
    assert got.split("+")[0] == version, f"{name} {got} is installed, {version} expected"

flavor = env["FLAVOR"]
if flavor == "cuda":
    assert torch.version.cuda == env["TORCH_CUDA"], f"torch is built for CUDA {torch.version.cuda}, {env['TORCH_CUDA']} expected"
    archs = set(torch.cuda.get_arch_list())
    assert {"sm_86", "sm_90"} <= archs, f"torch has no code for sm_86 (RTX 3090) or sm_90 (H100): {sorted(archs)}"
elif flavor == "cpu":
    assert torch.version.cuda is None, f"the CPU flavor got a CUDA build of torch ({torch.__version__})"
else:
    sys.exit(f"FLAVOR must be cuda or cpu, not {flavor!r}")

import accelerate  # noqa: E402,F401
import axolotl.cli.train  # noqa: E402,F401
import bitsandbytes  # noqa: E402,F401
import deepspeed  # noqa: E402,F401
import kernels  # noqa: E402,F401
import llama_cpp  # noqa: E402
assert llama_cpp.llama_model_quantize_default_params().ftype, "llama.cpp's quantizer is not there"
assert os.path.isfile("/opt/llama.cpp/convert_hf_to_gguf.py"), "llama.cpp's converter is not in /opt/llama.cpp"
import peft  # noqa: E402,F401
import wandb  # noqa: E402,F401
from transformers.modeling_flash_attention_utils import FLASH_ATTN_KERNEL_FALLBACK  # noqa: E402

# flash_attention_2 resolves to the hub kernel (the flash-attn package is not installed: sdist only).
kernel = FLASH_ATTN_KERNEL_FALLBACK["flash_attention_2"]
assert kernel == env["FA2_HUB_KERNEL"], f"flash_attention_2 falls back to {kernel}, not {env['FA2_HUB_KERNEL']}"
print(f"image asserts ok: {flavor}, torch {torch.__version__} (CUDA {torch.version.cuda}), Python {sys.version.split()[0]}")
