# The GPU trainer image: the `gpu` pool's Kubernetes jobs (infra/k8s/gpu-base-job-template.json, variable
# `image`) and the DeepSpeed launches (infra/deepspeed/launch.sh). CUDA devel base, because DeepSpeed
# compiles its fused ops just in time with nvcc on first use. No renderers: training reads committed shards.
# Build from the repository root:
#   docker build -f infra/docker/trainer.Dockerfile -t varyflow-trainer .
#   (--build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 for an older driver)
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04
FROM ${CUDA_IMAGE}
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 DEBIAN_FRONTEND=noninteractive
# python3 is 3.12 on Ubuntu 24.04 (varyflow needs >=3.11,<3.14); pdsh + ssh for DeepSpeed's multi-node
# launcher over ssh, ninja for its JIT op builds, git for lineage's commit record.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      python3 python3-venv python3-dev build-essential ninja-build git pdsh openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/varyflow
RUN python3 -m venv .venv && .venv/bin/pip install -q "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md ./
COPY flows flows
COPY generators generators
COPY storage storage
COPY training training
# DS_BUILD_OPS=0: ops compile on the GPU node at first use, not here (a build machine has no GPU).
RUN DS_BUILD_OPS=0 .venv/bin/pip install -q -e . && .venv/bin/python -c "import torch, deepspeed, training, flows"
COPY . .
ENV PATH=/opt/varyflow/.venv/bin:$PATH VARYFLOW_CHECKOUT=/opt/varyflow
CMD ["python", "-m", "training", "--help"]
