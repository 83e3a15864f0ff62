#!/usr/bin/env bash
# Regenerate requirements/cuda.lock and requirements/cpu.lock (every package pinned, with sha256 hashes)
# from requirements/*.in, for linux x86_64 and Python 3.11 (Debian bookworm, the one base of both flavors): they
# differ only in torch's build and the CUDA wheels it brings. Pins already in a lock are kept unless --upgrade (or
# --upgrade-package NAME) is given.
#
#   requirements/lock.sh [--upgrade | --upgrade-package NAME ...]
#
# Env: WHEELHOUSE (folder holding torch-2.13.0+cpu-cp311-*.whl; default wheelhouse/, else /opt/wheels),
#      SSL_CERT_FILE (CA bundle for a TLS-intercepting proxy), PIP_INDEX_URL (default https://pypi.org/simple),
#      LOCK_VENV (where uv is installed; default .venv-lock).
# Check the CUDA lock against the index afterwards: requirements/check-cuda-lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
LOCK_VENV=${LOCK_VENV:-.venv-lock}
INDEX=${PIP_INDEX_URL:-https://pypi.org/simple}
if [ -z "${WHEELHOUSE:-}" ]; then
    if compgen -G "wheelhouse/torch-2.13.0+cpu-*.whl" >/dev/null; then WHEELHOUSE=wheelhouse; else WHEELHOUSE=/opt/wheels; fi
fi
compgen -G "$WHEELHOUSE/torch-2.13.0+cpu-cp311-*.whl" >/dev/null \
    || { echo "no torch-2.13.0+cpu cp311 wheel in $WHEELHOUSE (set WHEELHOUSE)" >&2; exit 2; }

if [ ! -x "$LOCK_VENV/bin/uv" ] || [ "$("$LOCK_VENV/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    python3 -m venv "$LOCK_VENV"
    "$LOCK_VENV/bin/pip" install --quiet "uv==$UV_VERSION"
fi

common=(--generate-hashes --python-platform x86_64-manylinux_2_28 --index-url "$INDEX" --no-config
        --custom-compile-command "requirements/lock.sh" --quiet "$@")
export DS_BUILD_OPS=0  # DeepSpeed is an sdist: resolving it builds its metadata, without its CUDA ops
"$LOCK_VENV/bin/uv" pip compile requirements/cuda.in --python-version 3.11 "${common[@]}" -o requirements/cuda.lock
"$LOCK_VENV/bin/uv" pip compile requirements/cpu.in --python-version 3.11 --find-links "$WHEELHOUSE" "${common[@]}" \
    -o requirements/cpu.lock
# The lock must not name this machine's wheelhouse: the image build passes its own with --find-links.
sed -i "s#$WHEELHOUSE#WHEELHOUSE#g" requirements/cpu.lock
echo "requirements/cuda.lock: $(grep -c '^[a-z0-9]' requirements/cuda.lock) packages; requirements/cpu.lock: $(grep -c '^[a-z0-9]' requirements/cpu.lock) packages"
