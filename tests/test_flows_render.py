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
    from storage import read_manifest

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

    from flows.common import root_tag

    arts = _artifacts(str(run.id))
    scope = f"render-document-{root_tag(root)}"  # by dataset and root: another root's render is another artifact
    assert arts[f"{scope}-progress"].data == 100.0
    table = arts[f"{scope}-stats"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert {"measure": "rows", "value": 5} in table
    shards = arts[f"{scope}-shards"].data
    shards = json.loads(shards) if isinstance(shards, str) else shards
    committed = {s.index: s for s in read_manifest(result["manifest"]).shards}
    assert [(r["index"], r["rows"], r["sha256"], r["reused"]) for r in shards] == [
        (k, committed[k].rows, committed[k].sha256, False) for k in range(3)]
    assert arts[f"{scope}-gallery"].data.count("data:image/png;base64,") == 2
    assert f"`{result['manifest']}`" in arts[f"{scope}-manifest"].data  # a path to copy, not a dead file:// link
    assert root_tag(root) != root_tag(str(tmp_path / "elsewhere" / "data"))

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
    shards = root / "datasets/document/shard-meta"  # one sidecar per whole shard
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


def _shards(manifest_uri: str) -> dict[int, tuple[str, str, int]]:
    from storage import read_manifest

    return {s.index: (s.path, s.sha256, s.rows) for s in read_manifest(manifest_uri).shards}


def test_growing_a_dataset_reuses_whole_shards_and_rewrites_the_old_partial_one(prefect_api, tmp_path):
    from flows.render import render

    root = str(tmp_path / "data")
    kw = dict(kind="document", seed=4, out=root, shard_rows=2, workers=1, runner="thread", gallery=0)
    five = render(count=5, **kw)  # shards [0,2) [2,4) [4,5)
    six = render(count=6, **kw)  # the last shard now covers [4,6): written anew, not the 1-row one reused
    assert (six["reused"], six["rows"]) == (2, 6)
    old, grown = _shards(five["manifest"]), _shards(six["manifest"])
    assert [grown[k] for k in (0, 1)] == [old[k] for k in (0, 1)]
    assert grown[2][0] != old[2][0] and (old[2][2], grown[2][2]) == (1, 2)

    ten = render(count=10, **kw)
    assert (ten["reused"], ten["shards"], ten["rows"]) == (3, 5, 10)
    final = _shards(ten["manifest"])
    assert [final[k] for k in (0, 1, 2)] == [grown[k] for k in (0, 1, 2)]  # same files, same bytes
    assert not {final[k][0] for k in (3, 4)} & {p for p, _, _ in grown.values()}
    assert ten["manifest"].endswith("v000003.json")
    assert sorted(_ids(ten["manifest"])) == [f"document-s4-{i:09d}" for i in range(10)]
    # each shard's bytes are what a fresh render of the same range gives
    fresh = render(count=10, **{**kw, "out": str(tmp_path / "fresh")})
    assert {k: s[1] for k, s in _shards(fresh["manifest"]).items()} == {k: s[1] for k, s in final.items()}


def test_a_changed_input_folder_or_corpus_is_a_new_render(prefect_api, tmp_path):
    from PIL import Image

    from flows.render import render
    from generators.render_unit import RenderSpec, input_digest
    from storage import StorageFiles

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, colour in enumerate(("navy", "olive")):
        Image.new("RGB", (96, 64), colour).save(photos / f"p{i}.png")
    root = str(tmp_path / "data")
    kw = dict(kind="negative", count=2, seed=0, out=root, shard_rows=2, workers=1, runner="thread", gallery=0,
              params={"source": str(photos), "size": 256})
    first = render(**kw)
    assert render(**kw)["manifest"] == first["manifest"]  # unchanged inputs: nothing to do

    Image.new("RGB", (96, 64), "maroon").save(photos / "a0.png")  # sorts first: every index now names another file
    second = render(**kw)
    assert second["manifest"] != first["manifest"] and second["reused"] == 0
    from storage import read_manifest

    before, after = read_manifest(first["manifest"]), read_manifest(second["manifest"])
    assert before.facts["fingerprint"] != after.facts["fingerprint"]
    assert (before.facts["inputs"]["source"]["files"], after.facts["inputs"]["source"]["files"]) == (2, 3)
    assert before.shards[0].sha256 != after.shards[0].sha256
    # `varyflow reproduce` names the cause when the old render's inputs are gone
    from flows.reproduce import _inputs_changed

    assert (_inputs_changed(before.facts), _inputs_changed(after.facts)) == (True, False)

    # a corpus edited in place, same name: another fingerprint
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("One paragraph of text.\n")
    params = {"corpus": str(corpus)}
    def fingerprint() -> str:
        inputs = input_digest("document", params, StorageFiles())
        return RenderSpec.of("document", count=2, shard_rows=2, params=params, inputs=inputs).fingerprint

    fp = fingerprint()
    corpus.write_text("Another paragraph of text.\n")
    assert fingerprint() != fp


def test_shard_rows_zero_is_an_error_and_the_default_is_storages(capsys):
    from flows.cli import main
    from flows.render import DEFAULT_SHARD_ROWS
    from storage.shards import DEFAULT_SHARD_ROWS as STORAGE_DEFAULT

    assert DEFAULT_SHARD_ROWS == STORAGE_DEFAULT
    assert main(["render", "document", "--count", "4", "--shard-rows", "0"]) == 1
    assert "--shard-rows must be at least 1, got 0" in capsys.readouterr().err


def test_dask_runner_renders_the_same_shards_as_the_process_pool(prefect_api, tmp_path):
    """`runner="dask"` (a local Dask cluster here; `runner_address` for a real one) spreads the shard tasks
    over Dask workers and gives byte-identical shards to the default process pool."""
    from flows.render import render
    from storage import read_manifest

    kw = dict(kind="chart", count=4, seed=2, shard_rows=2, workers=2, gallery=0)
    by_dask = render(out=str(tmp_path / "dask"), runner="dask", **kw)
    by_pool = render(out=str(tmp_path / "pool"), runner="process", **kw)
    assert by_dask["rows"] == 4 and by_dask["shards"] == 2
    assert [s.sha256 for s in read_manifest(by_dask["manifest"]).shards] == \
        [s.sha256 for s in read_manifest(by_pool["manifest"]).shards]


def test_a_count_beyond_the_input_files_renders_each_file_once(prefect_api, tmp_path):
    # Rejects are for bad inputs: `--count 8` over 3 photos used to add 5 `no_such_file` rejects.
    from PIL import Image

    from flows.render import render
    from storage import read_manifest

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, colour in enumerate(("navy", "olive", "teal")):
        Image.new("RGB", (96, 64), colour).save(photos / f"p{i}.png")
    kw = dict(kind="negative", seed=0, out=str(tmp_path / "data"), shard_rows=2, workers=1, runner="thread", gallery=0,
              params={"source": str(photos), "size": 256})
    result = render(count=8, **kw)
    assert (result["rows"], result["rejects"]) == (3, {})
    assert read_manifest(result["manifest"]).facts["count"] == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no input files"):
        render(count=2, **{**kw, "params": {"source": str(tmp_path / "empty")}})


def test_a_small_render_is_split_across_the_workers_with_progress_per_sample(prefect_api, tmp_path, monkeypatch):
    """One shard (3 samples, 512 rows a shard) on 2 workers: the local pool renders its index range in two parts,
    written as one shard with the bytes of rendering it whole; the progress listeners hear samples as they are
    rendered, not only when the shard ends."""
    from flows import render as render_mod
    from flows import runners
    from storage import read_manifest

    monkeypatch.setattr(runners, "MIN_SPLIT_PART", 1)  # split even 3 samples (by default a part holds 32 or more)
    heard: list[tuple[str, int, int]] = []
    render_mod.PROGRESS_LISTENERS.append(lambda kind, done, total: heard.append((kind, done, total)))
    try:
        split = render_mod.render(kind="document", count=3, seed=5, out=str(tmp_path / "split"), workers=2, gallery=0)
    finally:
        render_mod.PROGRESS_LISTENERS.clear()
    whole = render_mod.render(kind="document", count=3, seed=5, out=str(tmp_path / "whole"), workers=1, runner="thread",
                              gallery=0)
    assert (split["rows"], split["shards"]) == (3, 1)
    assert [s.sha256 for s in read_manifest(split["manifest"]).shards] == \
        [s.sha256 for s in read_manifest(whole["manifest"]).shards]
    done = [d for _, d, _ in heard]
    assert heard[-1] == ("document", 3, 3) and done == sorted(done)
    assert any(0 < d < 3 for d in done), heard  # samples reported before the shard ended
