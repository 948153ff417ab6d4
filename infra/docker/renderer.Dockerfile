# The CPU renderer image: the `cpu` pool's process worker (infra/compose.yaml) and the image of Docker or
# Kubernetes work pools that run render flows. Debian bookworm (Python 3.11) + infra/setup.sh: Chromium,
# TeX, CJK fonts, echarts from npm, and varyflow installed editable in /opt/varyflow/.venv, so the
# deployments' pull step (flows/deploy_steps.py: the checkout the `flows` package is imported from) lands in
# /opt/varyflow. Build from the repository root:
#   docker build -f infra/docker/renderer.Dockerfile -t varyflow-renderer .
FROM python:3.11-slim-bookworm
ENV DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false HF_HUB_OFFLINE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 DEBIAN_FRONTEND=noninteractive
# npm fetches echarts in setup.sh; git lets lineage record the commit (the .git folder is not copied, see
# the .dockerignore beside this file, so pass VARYFLOW_GIT_COMMIT at build time if you want it recorded).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends npm git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/varyflow
# setup.sh first with only what it reads, so code edits do not reinstall the system packages.
COPY pyproject.toml README.md ./
COPY infra/setup.sh infra/setup.sh
COPY flows flows
COPY generators generators
COPY storage storage
COPY training training
# The CPU build of torch first: setup.sh keeps a torch it finds, and PyPI's default wheel is the CUDA one (GBs).
RUN python -m venv .venv && .venv/bin/pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
RUN bash infra/setup.sh && rm -rf /root/.cache /root/.npm /var/lib/apt/lists/*
COPY . .
ENV PATH=/opt/varyflow/.venv/bin:$PATH VARYFLOW_CHECKOUT=/opt/varyflow
# A process worker by default; Docker/Kubernetes pools override the command with the flow-run entry point.
CMD ["prefect", "worker", "start", "--pool", "cpu", "--type", "process"]
