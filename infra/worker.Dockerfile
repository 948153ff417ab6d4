# The varyflow worker image: Debian with the renderers (Chromium, TeX, CJK fonts) and the package.
FROM python:3.11-slim-bookworm
ENV DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends npm git && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/varyflow
COPY . .
RUN bash infra/setup.sh && ln -s /opt/varyflow/.venv/bin/prefect /usr/local/bin/prefect && ln -s /opt/varyflow/.venv/bin/varyflow /usr/local/bin/varyflow
ENV PATH=/opt/varyflow/.venv/bin:$PATH
