#!/usr/bin/env bash
# Build a flavor of the training image with no registry: cuda (chatlike/train:latest) or cpu (chatlike/train:cpu);
# or `export`: llama.cpp added on top of a built one (docker/export.Dockerfile; IMAGE, RUN_IMAGE and RUN_IMAGE_ID set).
#   1. the base of both: Debian bookworm made by debootstrap and `docker import`ed (skipped when the tag exists),
#   2. cpu only, the wheelhouse: wheelhouse/torch-2.13.0+cpu-...whl, checked against requirements/cpu.lock (the
#      CUDA flavor's torch and CUDA wheels come from the package index, by the hashes of requirements/cuda.lock),
#   3. docker build (BuildKit) of the Dockerfile with FLAVOR=<flavor>, the CA bundle passed as a build secret.
# Usage: docker/build.sh cuda|cpu|export [extra docker build args...]   (making the base needs root: sudo is asked when missing)
# Env: IMAGE (chatlike/train:latest or :cpu), BASE_IMAGE (chatlike/debian:bookworm-minbase), DEBIAN_MIRROR,
#      CA_BUNDLE (/etc/ssl/certs/ca-certificates.crt if present; empty: none), TORCH_WHEEL (path of the wheel;
#      default: found in wheelhouse/, /opt/wheels or pip's find-links, else downloaded from TORCH_INDEX and checked
#      against the lock's sha256), DOCKER (a docker CLI with BuildKit).
set -euo pipefail
cd "$(dirname "$0")/.."

FLAVOR=${1:-}
case "$FLAVOR" in
    cuda) IMAGE=${IMAGE:-chatlike/train:latest} ;;
    cpu) IMAGE=${IMAGE:-chatlike/train:cpu} ;;
    export) : "${IMAGE:?IMAGE: the tag of the export image}" "${RUN_IMAGE:?RUN_IMAGE: the training image it adds to}" ;;
    *) echo "build: usage: docker/build.sh cuda|cpu|export [docker build args...]" >&2; exit 2 ;;
esac
shift
BASE_IMAGE=${BASE_IMAGE:-chatlike/debian:bookworm-minbase}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
WHEEL_NAME=torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
say() { echo "build: $*" >&2; }

# Prerequisites, all checked before anything is made: one line each for what is missing and the package
# that brings it.
missing=()
export DOCKER_BUILDKIT=1
# A docker CLI whose `build` has BuildKit's --secret (Docker >= 23 always; 20.10 with DOCKER_BUILDKIT=1).
if [ -z "${DOCKER:-}" ]; then
    for candidate in docker /usr/bin/docker; do
        if command -v "$candidate" >/dev/null && "$candidate" build --help 2>/dev/null | grep -q -- '--secret'; then
            DOCKER=$candidate; break
        fi
    done
fi
[ -n "${DOCKER:-}" ] || missing+=("no docker CLI with BuildKit (build --secret): apt install docker.io (or docker-buildx-plugin), dnf install docker-buildx-plugin")
SUDO=()
if [ "$FLAVOR" != export ] && [ -n "${DOCKER:-}" ] && ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || missing+=("debootstrap is not installed (it makes the Debian base $BASE_IMAGE): apt install debootstrap, dnf install debootstrap")
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null; then SUDO=(sudo); else
            missing+=("making the base $BASE_IMAGE needs root (debootstrap) and there is no sudo: run this once as root"); fi
    fi
fi
command -v sha256sum >/dev/null || missing+=("sha256sum is not installed: apt install coreutils, dnf install coreutils")
if ((${#missing[@]})); then
    for line in "${missing[@]}"; do say "$line"; done
    exit 2
fi

secret=()
if [ -n "$CA_BUNDLE" ] && [ -s "$CA_BUNDLE" ]; then secret=(--secret "id=ca,src=$CA_BUNDLE"); fi

# The export image: one layer on the built training image.
if [ "$FLAVOR" = export ]; then
    start=$SECONDS
    "$DOCKER" build -f docker/export.Dockerfile --build-arg RUN_IMAGE="$RUN_IMAGE" \
        --build-arg RUN_IMAGE_ID="${RUN_IMAGE_ID:-unknown}" "${secret[@]}" --tag "$IMAGE" "$@" .
    say "$IMAGE built in $((SECONDS - start)) s"
    exit 0
fi

# 1. Base image.
if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    trap '"${SUDO[@]}" rm -rf "$rootfs"' EXIT
    [ ${#SUDO[@]} = 0 ] || say "making the base needs root: asking sudo"
    say "making $BASE_IMAGE with debootstrap (about a minute)"
    start=$SECONDS
    "${SUDO[@]}" debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >/dev/null
    "${SUDO[@]}" rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    "${SUDO[@]}" tar -C "$rootfs" -c . | "$DOCKER" import -c 'CMD ["/bin/bash"]' \
        -m "debootstrap --variant=minbase bookworm $DEBIAN_MIRROR" - "$BASE_IMAGE" >/dev/null
    say "base made in $((SECONDS - start)) s"
fi

# 2. Wheelhouse (cpu): the CPU torch wheel, whose hash the lock pins (found on this machine, else downloaded).
flavor_args=()  # cuda: the Dockerfile's defaults
if [ "$FLAVOR" = cpu ]; then
    mkdir -p wheelhouse
    want=$(grep -A1 '^torch==2.13.0+cpu' requirements/cpu.lock | grep -o 'sha256:[0-9a-f]*' | cut -d: -f2)
    if [ ! -f "wheelhouse/$WHEEL_NAME" ]; then
        wheel=${TORCH_WHEEL:-}
        if [ -z "$wheel" ]; then
            for dir in /opt/wheels $(pip config get global.find-links 2>/dev/null || true) ${PIP_FIND_LINKS:-}; do
                [ -f "$dir/$WHEEL_NAME" ] && { wheel=$dir/$WHEEL_NAME; break; }
            done
        fi
        if [ -n "$wheel" ] && [ -f "$wheel" ]; then
            ln "$wheel" "wheelhouse/$WHEEL_NAME" 2>/dev/null || cp "$wheel" "wheelhouse/$WHEEL_NAME"
        else
            say "downloading $WHEEL_NAME (about 200 MB, once) from $TORCH_INDEX"
            python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
                --index-url "$TORCH_INDEX" --dest wheelhouse "torch==2.13.0+cpu" \
                || { say "could not download $WHEEL_NAME: set TORCH_WHEEL=PATH to a copy of it"; exit 2; }
        fi
    fi
    have=$(sha256sum "wheelhouse/$WHEEL_NAME" | cut -d' ' -f1)
    [ "$want" = "$have" ] || { say "wheelhouse/$WHEEL_NAME has sha256 $have; requirements/cpu.lock wants $want"; exit 2; }
    flavor_args=(--build-arg WHEELHOUSE=wheelhouse --build-arg TORCH_CUDA=none --build-arg MIN_DRIVER=none
                 --build-arg GPU_ARCHS=none)
fi

# 3. The image.
start=$SECONDS
"$DOCKER" build \
    --build-arg FLAVOR="$FLAVOR" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" \
    "${flavor_args[@]}" \
    --build-arg VCS_REF="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "${secret[@]}" \
    --tag "$IMAGE" \
    "$@" .
say "$IMAGE built in $((SECONDS - start)) s"
