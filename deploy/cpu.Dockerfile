# syntax=docker/dockerfile:1
# The CPU image: Debian 12's packages and Python, and llmft on PyPI's torch 2.11 wheel (the only libtorch 2.x
# for Debian: its own libtorch-dev is 1.13). For data preparation (llmft prep), conversion and export jobs, and CPU
# training; the GPU code is not compiled (no NCCL communicator, no CUDA architectures), so the build is shorter. The
# runtime is as large as the GPU image's (about 4.7 GB): PyPI's torch for Linux is the CUDA build, libraries and all.
#   docker build -f deploy/cpu.Dockerfile -t llmft:cpu .
# The runtime also has huggingface_hub's `hf` command, for jobs that download models and datasets.

FROM debian:12 AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /usr/src/llmft
COPY . .
RUN apt-get update \
 && apt-get install -y --no-install-recommends patchelf \
 && LLMFT_VENV=/opt/build-venv scripts/deps.sh build \
 && rm -rf /var/lib/apt/lists/*
RUN LLMFT_VENV=/opt/build-venv deploy/image-artifacts.sh /out -DLLMFT_WITH_NCCL=OFF

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
ENV PATH=/opt/llmft/bin:$PATH
RUN llmft world
WORKDIR /workspace
CMD ["llmft", "--help"]
