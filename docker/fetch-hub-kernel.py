"""Fetch a hub kernel's build for the installed torch into KERNELS_CACHE at image build time (no GPU needed).

Usage: python fetch-hub-kernel.py REPO REVISION   e.g. kernels-community/flash-attn2 v2

At run time `get_kernel(REPO, version=2)` (Axolotl's flash_attention_2 path) finds it offline: the kernels
library resolves versions from KERNELS_CACHE/<repo>/refs/v2 when HF_HUB_OFFLINE=1, and from the hub otherwise.
When the hub cannot be reached from the build (a build without internet, as in CI), it says so and the image goes
without the kernel: `chatlike-train validate` then refuses flash_attention_2 configs in one line.
"""

import os
import sys
from pathlib import Path

import requests
from huggingface_hub import constants
from kernels import install_kernel

repo, revision = sys.argv[1], sys.argv[2]
cache = os.environ.get("KERNELS_CACHE")
assert cache, "set KERNELS_CACHE to a folder outside the model-cache volume"
try:
    requests.head(constants.ENDPOINT, timeout=20)
except requests.RequestException as exc:
    print(f"flash-attention: not fetched, {constants.ENDPOINT} is not reachable from this build "
          f"({type(exc).__name__}); this image has no {repo}@{revision}, and `chatlike-train validate` refuses "
          "attn_implementation: flash_attention_2 (sdpa works; build again where the hub is reachable)")
    sys.exit(0)
# backend="cuda": at build time there is no GPU, so the backend cannot be detected.
path = Path(install_kernel(repo, revision=revision, backend="cuda"))
libraries = sorted(p.name for p in path.rglob("*.so"))
assert libraries, f"{repo}@{revision} has no compiled build for this torch under {path}"
refs = list(Path(cache).rglob(f"refs/{revision}"))
assert refs, f"no refs/{revision} under {cache}: an offline run could not resolve version {revision}"
print(f"{repo}@{revision}: {path} ({', '.join(libraries)})")
