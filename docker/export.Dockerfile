# The export image: a built training image plus llama.cpp, which only `chatlike-runner export` uses (the GGUF's
# conversion, quantization and llama.cpp's checks of the file). Kept out of the training image so that the first
# smoke run does not wait for llama.cpp's build (about 5 minutes on 2 cores).
#
#   IMAGE=chatlike/train-export:<id> RUN_IMAGE=<a name of the training image> RUN_IMAGE_ID=<its id> docker/build.sh export
#
# `export` builds it the first time a run is exported with an image that lacks it (no org.chatlike.llama-cpp-python
# label), tagged chatlike/train-export:<the first 12 hex digits of that image's id>, and reuses it after.
#
# One llama.cpp release, vendored in llama-cpp-python's sdist, whose hash requirements/llama-cpp.lock pins. Its Python
# bindings (loader, quantizer) are built for the CPU, portable (no -march=native), without an isolated build
# environment (its build requirements are pinned too, requirements/llama-cpp-build.lock); llama.cpp's own converter
# and gguf-py come from the same archive into /opt/llama.cpp. Its runtime dependencies are already in the training
# image (both flavors' locks pin them): `pip check` proves it. Behind a TLS-intercepting proxy the CA bundle comes
# in as a build secret, as for the training image, and is never written to a layer.

ARG RUN_IMAGE=chatlike/train:cpu
FROM ${RUN_IMAGE}

# The training image's id, for the label (RUN_IMAGE is a name: BuildKit's FROM takes no bare id).
ARG RUN_IMAGE_ID=unknown
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36
COPY requirements/llama-cpp-build.lock requirements/llama-cpp.lock /opt/chatlike/
# (pip keeps no cache: PIP_NO_CACHE_DIR=1 comes with the training image.)
# hadolint ignore=DL3042
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    pip install --no-deps --require-hashes -r /opt/chatlike/llama-cpp-build.lock \
    && pip download --no-deps --no-build-isolation --require-hashes --no-binary :all: --dest /tmp/llama \
        -r /opt/chatlike/llama-cpp.lock \
    && CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF" \
        CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" pip install --no-deps --no-build-isolation /tmp/llama/llama_cpp_python-*.tar.gz \
    && mkdir -p /opt/llama.cpp \
    && tar -xzf /tmp/llama/llama_cpp_python-*.tar.gz -C /opt/llama.cpp --strip-components=3 --wildcards \
        '*/vendor/llama.cpp/convert_hf_to_gguf.py' '*/vendor/llama.cpp/conversion' '*/vendor/llama.cpp/gguf-py' \
    && rm -rf /tmp/llama \
    && pip check \
    && test "$(python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')" = "${LLAMA_CPP_PYTHON_VERSION}" \
    && python -c 'import llama_cpp; assert llama_cpp.llama_model_quantize_default_params().ftype, "no quantizer"' \
    && test -f /opt/llama.cpp/convert_hf_to_gguf.py \
    && chmod -R a+rX /opt/llama.cpp /opt/chatlike

LABEL org.chatlike.llama-cpp-python="${LLAMA_CPP_PYTHON_VERSION}" \
      org.chatlike.export-of="${RUN_IMAGE_ID}"
ENV CHATLIKE_LLAMA_CPP=/opt/llama.cpp
