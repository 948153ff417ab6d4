"""A renderer whose system tool is missing fails with an error naming the package to install (the project's
set-up installs them all; a hand-made environment may lack one)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from generators.base import GeneratorError

REPO = Path(__file__).resolve().parents[1]


def test_missing_tex_names_the_texlive_packages(monkeypatch, tmp_path):
    from generators.tex import TexRenderer

    monkeypatch.setenv("PATH", str(tmp_path))  # an empty bin dir: no pdflatex, no xelatex
    with pytest.raises(GeneratorError, match="pdflatex not found: install the Debian packages texlive-latex-base"):
        TexRenderer()


def test_missing_echarts_js_names_setup(monkeypatch, tmp_path):
    from generators.browser import echarts_js_path

    monkeypatch.setenv("VARYFLOW_ECHARTS_JS", str(tmp_path / "echarts.min.js"))
    with pytest.raises(GeneratorError, match="echarts.min.js not found .*infra/setup.sh"):
        echarts_js_path()


def test_missing_chromium_is_one_cli_line_naming_the_package(tmp_path, prefect_api):
    env = {**os.environ, "PYTHONPATH": str(REPO), "VARYFLOW_CHROMIUM": str(tmp_path / "chromium")}
    out = subprocess.run([sys.executable, "-m", "flows.cli", "render", "echart", "--count", "2", "--out",
                          str(tmp_path / "store")], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=180)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("varyflow: error:")]
    assert len(errors) == 1 and "install the Debian package `chromium`" in errors[0], out.stderr[-2000:]
    assert not list((tmp_path / "store").rglob("manifests/*.json"))
