#!/usr/bin/env bash
# One-shot, idempotent set-up of a fresh Debian machine (Python 3.11, root) for varyflow:
# system renderers (Chromium, TeX, fonts), the echarts JavaScript from npm, and a venv in .venv.
# Re-running it is cheap: each step checks before it installs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
export DEBIAN_FRONTEND=noninteractive DO_NOT_TRACK=1 PIP_DISABLE_PIP_VERSION_CHECK=1

APT_PACKAGES=(chromium chromium-driver texlive-latex-base texlive-latex-recommended texlive-fonts-recommended cm-super
              texlive-latex-extra texlive-xetex texlive-lang-chinese dvipng fonts-wqy-microhei fonts-lmodern
              preview-latex-style fonts-dejavu-core)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "setup: installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ECharts is served to the offline browser from disk, never from a CDN.
ECHARTS_VERSION=5.6.0
if [ ! -f infra/vendor/echarts/dist/echarts.min.js ]; then
  echo "setup: fetching echarts@${ECHARTS_VERSION} from the npm registry"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "echarts@${ECHARTS_VERSION}" >/dev/null && tar xzf echarts-*.tgz)
  mkdir -p infra/vendor/echarts/dist
  cp "$tmp/package/dist/echarts.min.js" "$tmp/package/LICENSE" infra/vendor/echarts/
  mv infra/vendor/echarts/echarts.min.js infra/vendor/echarts/dist/
  rm -rf "$tmp"
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
if ! $VPY -c "import torch" 2>/dev/null; then
  echo "setup: installing torch==2.13.0"
  $VPY -m pip install -q torch==2.13.0
fi
# DeepSpeed builds its ops just in time; building them at install time needs CUDA.
stamp=.venv/.varyflow-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing varyflow and its dependencies"
  DS_BUILD_OPS=0 $VPY -m pip install -q -e ".[test]"
  touch "$stamp"
fi
# Prefect's database of the default PREFECT_HOME, migrated here once rather than by the first command's API start
# (its 116 SQLite migrations: ~9 s of a 2-core machine's first `varyflow pipeline`).
PHOME=${PREFECT_HOME:-~/.prefect}
if [ -z "${PREFECT_API_DATABASE_CONNECTION_URL:-}" ] && [ ! -f "$PHOME/prefect.db" ]; then
  echo "setup: creating Prefect's database in $PHOME"
  mkdir -p "$PHOME"
  DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false .venv/bin/prefect server database upgrade -y >/dev/null ||
    echo "setup: Prefect's database was not created now; the first command that needs it will create it"
fi
echo "setup: ok ($ROOT/.venv)"
