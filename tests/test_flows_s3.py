"""The whole render path against a real S3 endpoint (moto over HTTP): inputs read from an s3:// prefix,
shards and manifest written to an s3:// root, rejects counted, nothing substituted."""
from __future__ import annotations

import json

import boto3
import pymupdf

from storage import StreamingReader, read_manifest


def result_reason(result: dict) -> str:
    (reason,) = result["rejects"]
    return reason


def _pdf(text: str, pages: int = 1) -> bytes:
    doc = pymupdf.open()
    for p in range(pages):
        doc.new_page().insert_text((72, 72), f"{text} page {p + 1}", fontsize=14)
    return doc.tobytes()


def test_render_pdf_from_s3_inputs_to_s3_root(prefect_api, s3_endpoint, s3_bucket):
    from flows.render import run_render

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="inputs/a.pdf", Body=_pdf("Alpha report", pages=2))
    s3.put_object(Bucket=s3_bucket, Key="inputs/b.pdf", Body=b"this is not a pdf at all")
    s3.put_object(Bucket=s3_bucket, Key="inputs/c.pdf", Body=_pdf("Gamma notes"))
    result = run_render(kind="pdf", count=3, seed=0, out=f"s3://{s3_bucket}/data", shard_rows=2,
                        params={"source": f"s3://{s3_bucket}/inputs"}, workers=1, runner="thread", gallery=0)
    assert result["manifest"].startswith(f"s3://{s3_bucket}/data/datasets/pdf/manifests/")
    assert result["rows"] == 3 and result["shards"] == 2 and result["rejects"] == {"not_pdf": 1}
    rows = {r["id"]: r["text"] for r in StreamingReader(result["manifest"], shuffle=False)}
    assert sorted(rows) == ["pdf-s0-000000000-p0000", "pdf-s0-000000000-p0001", "pdf-s0-000000002-p0000"]
    assert rows["pdf-s0-000000002-p0000"].strip() == "Gamma notes page 1"
    m = read_manifest(result["manifest"])
    assert m.rejects == {"not_pdf": 1} and all(s.uri.startswith("s3://") for s in m.shards)
    assert "testing-secret-value" not in str(m.facts)


def test_failed_input_read_is_a_storage_error_not_a_reject(prefect_api, s3_endpoint, s3_bucket, tmp_path):
    """An input that storage cannot read (here: a bucket that does not exist) fails the shard task with the
    storage error, is not retried (no retry creates a bucket) and commits nothing: it never becomes an
    `unreadable` reject inside a dataset version. A file that is simply absent stays a per-sample reject."""
    import pytest
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.render import render
    from storage.errors import LocationError
    from storage.manifest import latest_manifest

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="inputs/a.pdf", Body=_pdf("Alpha report"))
    names = tmp_path / "inputs.txt"
    names.write_text(f"s3://{s3_bucket}/inputs/a.pdf\ns3://{s3_bucket}-gone/inputs/b.pdf\n")
    root = f"s3://{s3_bucket}/data"
    state = render(kind="pdf", count=2, out=root, shard_rows=2, params={"source": str(names)}, workers=1,
                   runner="thread", gallery=0, return_state=True)
    assert state.is_failed()
    with pytest.raises(LocationError, match=f"bucket '{s3_bucket}-gone' does not exist"):
        state.result()
    assert latest_manifest(root, "pdf") is None
    from tests.fixtures_prefect import wait_for

    def failed_shard_tasks():
        with get_client(sync_client=True) as client:
            (run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
            tasks = [t for t in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
                     if t.name.startswith("render pdf shard")]
        return tasks if tasks and all(t.state and t.state.is_final() for t in tasks) else None

    # task runs reach the API as events, recorded a moment later (a busy machine read none yet)
    shard_tasks = wait_for("the shard task run", failed_shard_tasks, 60)
    assert [t.run_count for t in shard_tasks] == [1] and shard_tasks[0].state.is_failed()

    # the same list naming a missing object of an existing bucket: a reject, the rest committed
    names.write_text(f"s3://{s3_bucket}/inputs/a.pdf\ns3://{s3_bucket}/inputs/gone.pdf\n")
    state = render(kind="pdf", count=2, out=root, shard_rows=2, params={"source": str(names)}, workers=1,
                   runner="thread", gallery=0, return_state=True)
    result = state.result()
    assert result["rows"] == 1 and sum(result["rejects"].values()) == 1
    # the UI names the rejected input and why (not only a WARNING log line)
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.common import root_tag

    with get_client(sync_client=True) as client:
        arts = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))}
    rejects = arts[f"render-pdf-{root_tag(root)}-rejects"].data
    rejects = json.loads(rejects) if isinstance(rejects, str) else rejects
    assert [(r["source"], r["reason"]) for r in rejects] == [(f"s3://{s3_bucket}/inputs/gone.pdf", result_reason(result))]


def test_training_on_an_s3_root_publishes_its_checkpoint_there(prefect_api, s3_endpoint, s3_bucket, tmp_path, monkeypatch):
    """With an S3 root the stage trains in local scratch and the checkpoint, its lineage and the lineage index
    end up under the root (a pod's folder is gone with the pod); evaluation reads it back from there; nothing is
    written into the current directory."""
    from flows.render import render
    from flows.train import vocabulary_generation
    from storage.lineage import all_checkpoints, read_lineage

    root = f"s3://{s3_bucket}/data"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VARYFLOW_SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setenv("VARYFLOW_CACHE", str(tmp_path / "cache"))
    render(kind="document", count=4, seed=1, out=root, shard_rows=4, workers=1, runner="thread", gallery=0)
    result = vocabulary_generation(config={"preset": "tiny", "deepspeed": False, "steps": 2, "batch_size": 2, "lr": 5e-4,
                                           "max_length": 256, "tokenizer_vocab_size": 512, "log_every": 1},
                                   mixture="vary-tiny", out=root, eval_limit=1, eval_max_new_tokens=4)
    checkpoint = result["checkpoint"]
    assert checkpoint.startswith(f"{root}/checkpoints/vocab/")
    record = read_lineage(checkpoint)
    assert record["checkpoint"] == checkpoint and record["manifests"][0]["uri"].startswith(f"{root}/datasets/document/")
    assert "eval" in record["metrics"]  # evaluation's scalars were added to the record under the root
    assert [r["checkpoint"] for r in all_checkpoints(root)] == [checkpoint]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "scratch"]  # no ./varyflow-data, no ./checkpoints

    # the command line takes the s3:// checkpoint as it is
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "flows.cli", "eval", "--checkpoint", checkpoint, "--data",
                          record["manifests"][0]["uri"], "--split", "all", "--limit", "1", "--max-new-tokens", "4",
                          "--json"], capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["samples"] == 1
