"""The whole render path against a real S3 endpoint (moto over HTTP): inputs read from an s3:// prefix,
shards and manifest written to an s3:// root, rejects counted, nothing substituted."""
from __future__ import annotations

import boto3
import pymupdf

from storage import StreamingReader, read_manifest


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
