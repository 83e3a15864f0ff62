#!/usr/bin/env bash
# Check that every pin of requirements/cuda.lock resolves on the index for the CUDA image's target
# (linux x86_64, CPython 3.11, manylinux_2_28 or older), hashes required, without installing anything:
# `pip install --dry-run` fetches wheel metadata only (PEP 658 .metadata files), plus the few sdists
# (DeepSpeed and some pure-Python packages, a few MB) whose metadata it has to build.
#   requirements/check-cuda-lock.sh [REPORT.json]      (pip's installation report; default: a temp file)
# Env: PIP (default: pip $PIP_VERSION in LOCK_VENV=.venv-lock), PIP_INDEX_URL, PIP_CERT (CA bundle for a TLS-intercepting proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
# pip >= 24 (23.x checks Requires-Python against the running interpreter, not --python-version), kept in
# the same tool venv as lock.sh's uv.
PIP_VERSION=26.3
LOCK_VENV=${LOCK_VENV:-.venv-lock}
if [ -z "${PIP:-}" ]; then
    PIP=$LOCK_VENV/bin/pip
    if [ ! -x "$PIP" ] || [ "$("$PIP" --version | cut -d' ' -f2)" != "$PIP_VERSION" ]; then
        [ -x "$PIP" ] || python3 -m venv "$LOCK_VENV"
        PIP_CONFIG_FILE=/dev/null "$PIP" install --quiet "pip==$PIP_VERSION"
    fi
fi
report=${1:-$(mktemp --suffix=.json)}
target=$(mktemp -d)
trap 'rm -rf "$target"' EXIT

platforms=()
for glibc in 28 27 26 25 24 23 22 21 20 19 18 17 12 5; do platforms+=(--platform "manylinux_2_${glibc}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)

# Only the index counts: no pip config (local find-links or extra indexes would hide a missing wheel).
PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= DS_BUILD_OPS=0 "$PIP" install --dry-run --ignore-installed --quiet \
    --target "$target" "${platforms[@]}" --python-version 3.11 --implementation cp --abi cp311 \
    --no-deps --require-hashes -r requirements/cuda.lock --report "$report"
echo "requirements/cuda.lock resolves for linux x86_64 / CPython 3.11: $report"
