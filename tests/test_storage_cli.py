"""`varyflow data ...` and `varyflow lineage ...` as a user runs them: output, exit codes, one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage import Location, read_manifest
from storage.lineage import record_checkpoint
from tests.storage_helpers import make_rows, write_dataset

REPO = Path(__file__).resolve().parents[1]


def varyflow(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_show_json_and_text(root):
    uri = write_dataset(root, "docs", shards=2, rows_per_shard=5)
    out = varyflow("data", "show", uri, "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert (info["rows"], info["shards"], info["rejects"], info["counts"]["kind"]) == (10, 2, {"blank": 1}, {"document": 10})
    text = varyflow("data", "show", uri)
    assert "rows 10" in text.stdout and "blank=1" in text.stdout


def test_export_writes_png_and_txt_pairs(root, tmp_path):
    uri = write_dataset(root, "docs", shards=2, rows_per_shard=5)
    out = varyflow("data", "export", uri, "--out", str(tmp_path / "x"), "--n", "3")
    assert out.returncode == 0, out.stderr
    pngs = sorted((tmp_path / "x").glob("*.png"))
    assert len(pngs) == 3
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert p.with_suffix(".txt").read_text().startswith("sample number")


def test_lineage_cli(root):
    uri = write_dataset(root, "docs", shards=2, rows_per_shard=3)
    ck = (Location.parse(root) / "checkpoints" / "c1").uri
    record_checkpoint(ck, stage="vocab", manifests=[uri], index_root=root)
    rec = json.loads(varyflow("lineage", ck, "--json").stdout)
    assert {s["uri"] for s in rec["shards"]} == {s.uri for s in read_manifest(uri).shards}
    shard = read_manifest(uri).shards[1].uri
    back = json.loads(varyflow("lineage", "--shard", shard, "--root", root, "--json").stdout)
    assert [r["checkpoint"] for r in back] == [ck]


@pytest.mark.parametrize("target, message", [
    ("ftp://host/x.json", "unknown scheme 'ftp'"),
    ("{tmp}/nope/manifests/v000001.json", "manifest not found"),
    ("{tmp}/bad.json", "not a valid manifest"),
    ("{tmp}/other.json", "not a varyflow manifest"),
])
def test_errors_are_one_line(tmp_path, target, message):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    out = varyflow("data", "show", target.format(tmp=tmp_path))
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and message in out.stderr and "Traceback" not in out.stderr
    debug = varyflow("--debug", "data", "show", target.format(tmp=tmp_path))
    assert "Traceback" in debug.stderr


def test_s3_errors_are_one_line(s3_endpoint, s3_bucket):
    missing = varyflow("data", "show", "s3://no-such-bucket-vf/datasets/x/manifests/v000001.json")
    assert missing.returncode == 1 and "bucket 'no-such-bucket-vf' does not exist" in missing.stderr
    assert missing.stderr.count("\n") == 1
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}
    nocreds = varyflow("data", "show", f"s3://{s3_bucket}/datasets/x/manifests/v000001.json", env=env)
    assert nocreds.returncode == 1 and "no AWS credentials found" in nocreds.stderr
    assert nocreds.stderr.count("\n") == 1


def test_credentials_never_printed_or_recorded(root, monkeypatch):
    secret = "do-not-print-this-secret"
    if root.startswith("s3://"):
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)  # the CLI subprocesses sign with it
    from storage import DatasetWriter

    writer = DatasetWriter(root, "docs", "ab" * 32)
    facts = {"source": f"https://user:{secret}@host/pdfs", "params": {"secretKey": secret, "sessionToken": secret},
             "presigned": f"https://b.s3.amazonaws.com/k?X-Amz-Signature={secret}&partNumber=1"}
    uri = writer.commit([writer.write_shard(0, make_rows(0, 2))], facts=facts)
    assert secret not in Location.parse(uri).read_bytes().decode()
    m = read_manifest(uri)
    assert m.facts["params"]["secretKey"] == "***" and m.facts["source"] == "https://host/pdfs"
    assert m.facts["presigned"] == "https://b.s3.amazonaws.com/k?partNumber=1"
    for args in (("data", "show", uri, "--json"), ("data", "verify", uri), ("data", "show", uri, "--debug")):
        out = varyflow(*args)
        assert out.returncode == 0, out.stderr
        assert secret not in out.stdout + out.stderr


def test_lineage_of_a_shard_from_another_directory_finds_its_root(tmp_path):
    """Run elsewhere, without --root: the index is the shard's root's; a root without one is an error, not
    'no checkpoint was trained on ...' with exit 0."""
    root = str(tmp_path / "store")
    uri = write_dataset(root, "docs", shards=2, rows_per_shard=2)
    shard = read_manifest(uri).shards[0].uri
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args):
        return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=elsewhere,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)

    untrained = run("lineage", "--shard", shard)
    assert untrained.returncode == 1 and "no lineage index under" in untrained.stderr and untrained.stderr.count("\n") == 1
    ck = str(tmp_path / "store/checkpoints/c1")
    record_checkpoint(ck, stage="vocab", manifests=[uri], index_root=root)
    found = run("lineage", "--shard", shard)
    assert found.returncode == 0 and found.stdout.split()[0] == ck
    missing = run("lineage", "--shard", shard.replace("shard-000000", "shard-000009"))
    assert missing.returncode == 1 and "no such shard" in missing.stderr


def test_dataset_folder_reads_with_the_ecosystems_tools(tmp_path):
    """shards/ holds Parquet only; the card's YAML configs and `data files` list the committed shards."""
    import datasets
    import pyarrow.dataset as pads
    import yaml

    from storage import DatasetWriter

    root = str(tmp_path / "store")
    uri = write_dataset(root, "docs", shards=2, rows_per_shard=3)
    writer = DatasetWriter(root, "docs", "cd" * 32)
    v2 = writer.commit(read_manifest(uri).shards + [writer.write_shard(0, make_rows(6, 8))])
    folder = tmp_path / "store/datasets/docs"
    assert {p.suffix for p in (folder / "shards").iterdir()} == {".parquet"}
    assert pads.dataset(str(folder / "shards"), format="parquet").count_rows() == 8
    loaded = datasets.load_dataset("parquet", data_dir=str(folder / "shards"), split="train")
    assert loaded.num_rows == 8 and loaded.features["image"].__class__.__name__ == "Image"

    files = varyflow("data", "files", v2)
    assert files.returncode == 0 and files.stdout.split() == [s.uri for s in read_manifest(v2).shards]
    card = (folder / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    configs = {c["config_name"]: c for c in header["configs"]}
    assert set(configs) == {"v000001", "v000002"} and configs["v000002"].get("default") is True
    assert {f["name"]: f["dtype"] for f in header["dataset_info"]["features"]}["image"] == "image"
    # the card's data_files for a version are exactly its manifest's shards, and load as such
    (v1_files,) = configs["v000001"]["data_files"]
    assert sorted(v1_files["path"]) == sorted(s.path for s in read_manifest(uri).shards)
    one = datasets.load_dataset(str(folder), "v000001", split="train")
    assert one.num_rows == 6
