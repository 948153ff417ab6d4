"""The README's main job (`varyflow pipeline`) end to end with small counts, then `varyflow reproduce` on the
checkpoint it made: every shard named in the lineage re-renders byte-identical."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from generators import get_generator
from storage.manifest import dataset_location, latest_manifest, read_manifest


REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_pipeline_then_reproduce_from_lineage(prefect_api, tmp_path):
    root = tmp_path / "varyflow-data"
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({
        "render": {"document": {"count": 4, "shard_rows": 2}, "chart": {"count": 2, "shard_rows": 2},
                   "table": {"count": 2, "shard_rows": 2}, "pdf": {"shard_rows": 2}},
        "inputs": {"pdfs": {"count": 2, "seed": 3}},
        "train": {"steps": 2}, "integration": {"steps": 2}, "evaluate": {"limit": 2, "max_new_tokens": 8},
    }))
    env = dict(os.environ, PREFECT_API_URL=prefect_api, VARYFLOW_ROOT=str(root))
    run = subprocess.run([sys.executable, "-m", "flows.cli", "pipeline", "--config", str(config)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    out = run.stdout
    # the closing report says where everything is and how to open the UI
    for needle in ("data:", "checkpoints:", "lineage:", "Prefect UI:", str(root)):
        assert needle in out, out
    ckpt = out.split("vocabulary integration ", 1)[1].split()[0]
    lineage = json.loads((Path(ckpt) / "lineage.json").read_text())
    assert lineage["stage"] == "integrate" and lineage["prefect"]["flow_run_id"]
    assert {m["dataset"] for m in lineage["manifests"]} == {"chart", "table"}
    assert "eval" in lineage["metrics"]
    vocab = out.split("vocabulary generation ", 1)[1].split()[0]
    assert {m["dataset"] for m in json.loads((Path(vocab) / "lineage.json").read_text())["manifests"]} == {"document", "pdf", "chart"}

    # the inputs step typeset the PDFs with the document generator; the pdf kind read their text back
    pdfs = sorted((root / "inputs" / "pdfs").iterdir())
    assert [p.name for p in pdfs] == ["document-s3-000000000.pdf", "document-s3-000000001.pdf"]
    manifest = read_manifest(latest_manifest(str(root), "pdf"))
    assert manifest.rows == 2, manifest.summary()
    shards = [dataset_location(str(root), "pdf") / sh.path for sh in manifest.shards]
    rows = [r for sh in shards for r in pq.read_table(sh.uri, columns=["text", "meta"]).to_pylist()]
    document = get_generator("document")
    targets = {}
    for i, pdf in enumerate(pdfs):
        typeset_pdf, targets[str(pdf)], _, _ = document.typeset(3, i)
        assert pdf.read_bytes() == typeset_pdf
    assert sorted(json.loads(r["meta"])["sampled"]["file"] for r in rows) == sorted(targets)
    for row in rows:
        text, target = row["text"], targets[json.loads(row["meta"])["sampled"]["file"]]
        assert text.strip() and "".join(text.split()) in "".join(target.split())

    rep = subprocess.run([sys.executable, "-m", "flows.cli", "reproduce", vocab, "--out", str(tmp_path / "again"), "--json"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rep.returncode == 0, rep.stderr[-4000:]
    report = json.loads(rep.stdout.strip().splitlines()[-1])
    # every shard the stage read (which ones depends on the weighted sampling) is named and re-rendered
    read = {sh["uri"] for sh in json.loads((Path(vocab) / "lineage.json").read_text())["shards"]}
    assert read and {s["uri"] for s in report["shards"]} == read, report
    assert all(s["match"] and s["reproduced_sha256"] == s["sha256"] for s in report["shards"]), report

    # re-rendering into the checkpoint's own root would find the old shards and prove nothing
    same = subprocess.run([sys.executable, "-m", "flows.cli", "reproduce", vocab, "--out", str(root)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert same.returncode == 1 and "own data root" in same.stderr
