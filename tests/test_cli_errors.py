"""Failures inside a Prefect flow still reach the terminal as one line; the traceback only with --debug."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def varyflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=180)


def test_unknown_kind_is_one_line(tmp_path):
    out = varyflow("render", "nosuch", "--count", "2", "--out", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "varyflow: error: unknown kind 'nosuch'; known kinds: pdf, document, chart, echart, formula, table, latex_page, negative"]


def test_error_inside_the_flow_prints_no_traceback(tmp_path, prefect_api):
    missing = tmp_path / "no-pdfs-here"
    out = varyflow("render", "pdf", "--count", "2", "--out", str(tmp_path / "store"), "--source", str(missing), cwd=tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("varyflow: error:")]
    assert len(errors) == 1 and str(missing) in errors[0]
    debug = varyflow("--debug", "render", "pdf", "--count", "2", "--out", str(tmp_path / "store"), "--source", str(missing), cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    # nothing was committed for the failed render
    assert not list((tmp_path / "store").rglob("manifests/*.json"))
