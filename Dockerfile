# syntax=docker/dockerfile:1
#
# Two images from one file:
#   docker build -t tritonrs:cpu .                 # the default target, "cpu"
#   docker build -t tritonrs:cuda --target cuda .  # KIND_GPU instances on NVIDIA GPUs
#
# Every build step is a script under scripts/ that CI runs too
# (scripts/check-image.sh), so the steps are tested without a Docker engine.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
ARG CPU_BASE_IMAGE=debian:bookworm-slim
ARG CUDA_BASE_IMAGE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04

# The release binary, built from the locked dependency set.
FROM ${RUST_IMAGE} AS build-cpu
WORKDIR /src
COPY . .
RUN scripts/docker/build-server.sh /staging

FROM ${RUST_IMAGE} AS build-cuda
WORKDIR /src
COPY . .
RUN scripts/docker/build-server.sh /staging cuda

# The ONNX Runtime shared library, taken from the official PyPI wheels.
FROM ${PYTHON_IMAGE} AS onnxruntime-cpu
WORKDIR /src
COPY scripts/fetch-onnxruntime.sh scripts/
RUN scripts/fetch-onnxruntime.sh /staging/lib

FROM ${PYTHON_IMAGE} AS onnxruntime-gpu
WORKDIR /src
COPY scripts/fetch-onnxruntime.sh scripts/
RUN scripts/fetch-onnxruntime.sh --gpu /staging/lib

# The CUDA image: the NVIDIA CUDA and cuDNN runtime the onnxruntime-gpu
# wheel is built for, plus the server.
FROM ${CUDA_BASE_IMAGE} AS cuda
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin triton
COPY --from=build-cuda /staging/ /opt/tritonrs/
COPY --from=onnxruntime-gpu /staging/lib/ /opt/tritonrs/lib/
COPY scripts/docker/install-layout.sh /tmp/install-layout.sh
RUN /tmp/install-layout.sh / && rm /tmp/install-layout.sh
USER 10001
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s \
    CMD ["sh", "-c", "curl -fsS http://127.0.0.1:${AIP_HTTP_PORT:-${TRITONRS_HTTP_PORT:-8000}}/v2/health/ready || exit 1"]
ENTRYPOINT ["/opt/tritonrs/bin/tritonrs"]

# The CPU image (the default target): slim Debian, the binary, the library,
# CA certificates and curl for the health check.
FROM ${CPU_BASE_IMAGE} AS cpu
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin triton
COPY --from=build-cpu /staging/ /opt/tritonrs/
COPY --from=onnxruntime-cpu /staging/lib/ /opt/tritonrs/lib/
COPY scripts/docker/install-layout.sh /tmp/install-layout.sh
RUN /tmp/install-layout.sh / && rm /tmp/install-layout.sh
USER 10001
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s \
    CMD ["sh", "-c", "curl -fsS http://127.0.0.1:${AIP_HTTP_PORT:-${TRITONRS_HTTP_PORT:-8000}}/v2/health/ready || exit 1"]
ENTRYPOINT ["/opt/tritonrs/bin/tritonrs"]
