# syntax=docker/dockerfile:1
# The GPU image: the llmft program, libllmft and the Python package, on PyPI's CUDA build of libtorch 2.11 (CUDA
# 13.0, NCCL), in a virtual environment at /opt/llmft with torchrun beside the program. Nothing to compile at run
# time: the build stage compiles llmft (for A100 and H100 by default) and hands over a wheel and the program.
#   docker build -f deploy/gpu.Dockerfile -t llmft:gpu .
# The NVIDIA driver comes from the node (the NVIDIA container toolkit, or GKE's and EKS's GPU device plugins).
# The runtime also has huggingface_hub's `hf` command, for jobs that download models and datasets.

FROM debian:12 AS build
ARG TORCH_CUDA_ARCH_LIST="8.0;9.0"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /usr/src/llmft
COPY . .
# scripts/deps.sh build: compiler, CMake, Debian's libraries, and the Python environment with torch and the CUDA
# compiler (PyPI's nvidia wheels); patchelf for the wheel.
RUN apt-get update \
 && apt-get install -y --no-install-recommends patchelf \
 && LLMFT_VENV=/opt/build-venv scripts/deps.sh build \
 && rm -rf /var/lib/apt/lists/*
RUN LLMFT_VENV=/opt/build-venv deploy/image-artifacts.sh /out "-DTORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST}"

FROM debian:12-slim AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out /tmp/llmft-dist
RUN python3 -m venv /opt/llmft \
 && /opt/llmft/bin/pip install --no-cache-dir --disable-pip-version-check -c /tmp/llmft-dist/constraints.txt \
      /tmp/llmft-dist/llmft-*.whl huggingface_hub \
 && install -m 0755 /tmp/llmft-dist/llmft /opt/llmft/bin/llmft \
 && rm -rf /tmp/llmft-dist
ENV PATH=/opt/llmft/bin:$PATH \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN llmft world
WORKDIR /workspace
CMD ["llmft", "--help"]
