"""The render flow against a real Prefect API: shards, artifacts, idempotent reruns, crash recovery."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest


REPO = Path(__file__).resolve().parent.parent


def _ids(manifest_uri: str) -> list[str]:
    from storage import read_manifest

    ids: list[str] = []
    for shard in read_manifest(manifest_uri).shards:
        ids += pq.read_table(shard.uri, columns=["id"]).column("id").to_pylist()
    return ids


def _artifacts(flow_run_id: str) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in arts}


def test_render_flow_writes_shards_manifest_and_artifacts(prefect_api, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from flows.render import render

    root = str(tmp_path / "data")
    state = render(kind="document", count=5, seed=3, out=root, shard_rows=2, workers=2, gallery=2, return_state=True)
    result = state.result()
    assert result["rows"] == 5 and result["shards"] == 3 and result["reused"] == 0
    assert sorted(_ids(result["manifest"])) == [f"document-s3-{i:09d}" for i in range(5)]

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run.name])))
    assert run.name == "render-document-5x-seed3"
    # one task per shard plus the commit, named after what they do
    assert sorted(t.name for t in tasks) == ["commit document manifest"] + [f"render document shard {k}" for k in range(3)]

    arts = _artifacts(str(run.id))
    assert arts["render-document-progress"].data == 100.0
    table = arts["render-document-stats"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert {"measure": "rows", "value": 5} in table
    assert arts["render-document-gallery"].data.count("data:image/png;base64,") == 2
    assert result["manifest"] in arts["render-document-manifest"].data

    # the same render again is a no-op: same manifest, nothing rendered, no second version
    again = render(kind="document", count=5, seed=3, out=root, shard_rows=2, workers=1)
    assert again["manifest"] == result["manifest"] and again["reused"] == 3
    assert sorted(p.name for p in (tmp_path / "data/datasets/document/manifests").iterdir()) == ["v000001.json"]


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.slow
def test_render_killed_mid_run_resumes_without_duplicates_or_losses(prefect_api, tmp_path):
    root = tmp_path / "data"
    env = dict(os.environ, PREFECT_API_URL=prefect_api)
    args = ("render", "document", "--count", "12", "--seed", "7", "--shard-rows", "2", "--workers", "1",
            "--out", str(root), "--json")
    shards = root / "datasets/document/shards"
    proc = _cli(*args, env=env)
    try:
        deadline = time.monotonic() + 300
        while len(list(shards.glob("*.parquet.json"))) < 2:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no shard landed"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its task workers, mid-run
        proc.communicate()
    written_before = {p.name for p in shards.glob("*.parquet.json")}
    assert 2 <= len(written_before) < 6
    assert not (root / "datasets/document/manifests").exists() or not any((root / "datasets/document/manifests").iterdir())

    rerun = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    out = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert out["rows"] == 12 and out["shards"] == 6
    assert sorted(_ids(out["manifest"])) == [f"document-s7-{i:09d}" for i in range(12)]
    assert [p.name for p in (root / "datasets/document/manifests").iterdir()] == ["v000001.json"]
    # shards finished before the kill were kept, not rendered again
    assert "not rendered again" in rerun.stderr
