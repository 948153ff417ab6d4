"""The background Prefect API (`flows.api`): started once per PREFECT_HOME by the first command that needs it,
reused by the next ones, runs and artifacts kept where `prefect server start` finds them; start-up says what it
waits for, retries once and falls back to Prefect's own temporary server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent


def _varyflow(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_renders_share_one_background_api_and_their_runs_stay_in_it(tmp_path):
    home = tmp_path / "prefect-home"
    try:
        first = _varyflow("render", "document", "--count", "2", "--out", str(tmp_path / "a"), "--json", home=home)
        assert first.returncode == 0, first.stderr[-3000:]
        assert "starting the Prefect API" in first.stderr and "/health" in first.stderr
        state = json.loads((home / "varyflow-api.json").read_text())

        second = _varyflow("render", "chart", "--count", "2", "--out", str(tmp_path / "b"), "--json", home=home)
        assert second.returncode == 0, second.stderr[-3000:]
        assert "starting the Prefect API" not in second.stderr  # reused, not started again
        assert json.loads((home / "varyflow-api.json").read_text()) == state

        # both runs, with their artifacts, are in the API (and so in PREFECT_HOME's database for the UI)
        runs = httpx.post(f"{state['url']}/flow_runs/filter", json={}).json()
        by_name = {r["name"]: r for r in runs}
        assert {"render-document-2x-seed0", "render-chart-2x-seed0"} <= set(by_name)
        assert all(by_name[n]["state_type"] == "COMPLETED" for n in ("render-document-2x-seed0", "render-chart-2x-seed0"))
        arts = httpx.post(f"{state['url']}/artifacts/filter", json={
            "artifacts": {"flow_run_id": {"any_": [by_name["render-chart-2x-seed0"]["id"]]}}}).json()
        assert {"stats", "gallery", "manifest"} <= {a["key"].rsplit("-", 1)[1] for a in arts if a["key"].startswith("render-chart-")}

        status = _varyflow("api", home=home)
        assert state["url"] in status.stdout
    finally:
        stopped = _varyflow("api", "--stop", home=home)
    assert "stopped" in stopped.stdout
    assert not (home / "varyflow-api.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(state["pid"], 0)


def test_an_api_that_does_not_start_is_retried_once_then_prefect_starts_its_own(tmp_path, monkeypatch):
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    from flows import api

    said: list[str] = []
    monkeypatch.setattr(api, "startup_timeout", lambda: 0)  # nothing can answer in 0 s
    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
    with temporary_settings(updates={PREFECT_HOME: str(tmp_path)}, restore_defaults={PREFECT_API_URL}):
        assert api.ensure_background_api(said.append) is None
    assert "waiting up to 0 s" in said[0] and f"{tmp_path}" in said[0]
    assert sum("starting the Prefect API" in s for s in said) == 2 and "trying once more" in said
    assert said[-1].startswith("falling back to Prefect's temporary per-command server")
    assert not (tmp_path / "varyflow-api.json").exists()
    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)


def test_a_set_api_url_is_used_as_is(prefect_api, tmp_path):
    from prefect.settings import PREFECT_HOME, temporary_settings

    from flows import api

    with temporary_settings(updates={PREFECT_HOME: str(tmp_path)}):
        assert api.ensure_background_api(lambda s: pytest.fail(s)) is None
    assert not (tmp_path / "varyflow-api.json").exists()
