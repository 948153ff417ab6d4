"""The storage contract, run against a local directory and a real S3 endpoint (moto over HTTP)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from storage import CommitConflict, DatasetWriter, Location, ShardCorrupt, StreamingReader, read_manifest
from storage.lineage import checkpoints_of, read_lineage, record_checkpoint, shards_of
from tests.storage_helpers import make_rows, write_dataset

REPO = Path(__file__).resolve().parents[1]


def _corrupt(loc: Location) -> None:
    data = bytearray(loc.read_bytes())
    data[len(data) // 2] ^= 0x01
    loc.write_bytes(bytes(data))


def test_commit_and_read_back(root):
    uri = write_dataset(root, "docs", shards=3, rows_per_shard=10)
    m = read_manifest(uri)
    assert (m.dataset, m.version, m.rows, len(m.shards)) == ("docs", 1, 30, 3)
    assert m.rejects == {"blank": 1}
    assert m.counts["kind"] == {"document": 30} and sum(m.counts["lang"].values()) == 30
    ids = [r["id"] for r in StreamingReader(uri, shuffle=False)]
    assert ids == [f"document-{i:06d}" for i in range(30)]
    # A dataset directory means its newest version.
    assert read_manifest(Location.parse(root) / "datasets" / "docs").uri == uri


def test_shard_file_is_the_public_contract(root, tmp_path):
    uri = write_dataset(root, "docs", shards=1, rows_per_shard=4)
    shard = read_manifest(uri).shards[0]
    local = tmp_path / "copy.parquet"
    local.write_bytes(Location.parse(shard.uri).read_bytes())
    f = pq.ParquetFile(local)
    meta = f.metadata.row_group(0)
    names = [meta.column(i).path_in_schema for i in range(meta.num_columns)]
    compression = {n: meta.column(i).compression for i, n in enumerate(names)}
    assert compression["image.bytes"] == "UNCOMPRESSED" and compression["text"] == "ZSTD"
    import datasets  # Hugging Face reads the shard and decodes the image column to PIL

    ds = datasets.load_dataset("parquet", data_files=str(local), split="train")
    first = ds[0]
    assert first["image"].size == (48, 48) and first["text"] == "sample number 0"
    assert json.loads(first["meta"])["index"] == 0


def test_same_rows_give_identical_shard_bytes(tmp_path):
    a = DatasetWriter(tmp_path / "a", "d", "cd" * 32).write_shard(0, make_rows(0, 5))
    b = DatasetWriter(tmp_path / "b", "d", "cd" * 32).write_shard(0, make_rows(0, 5))
    assert a.sha256 == b.sha256 and a.bytes == b.bytes


def test_verify_catches_flipped_byte_and_missing_shard(root):
    uri = write_dataset(root, "docs", shards=3, rows_per_shard=5)
    m = read_manifest(uri)
    verify = [sys.executable, "-m", "flows.cli", "data", "verify", uri]
    ok = subprocess.run(verify, capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    _corrupt(Location.parse(m.shards[0].uri))
    Location.parse(m.shards[2].uri).delete()
    bad = subprocess.run(verify, capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 1
    assert f"corrupt: {m.shards[0].uri}" in bad.stdout
    assert f"missing: {m.shards[2].uri}" in bad.stdout
    assert m.shards[1].uri not in bad.stdout
    # The reader refuses the corrupt shard by name instead of yielding its rows.
    with pytest.raises(ShardCorrupt, match=m.shards[0].uri):
        list(StreamingReader(uri, shuffle=False))


def test_writer_killed_between_shards_then_rerun(root):
    cmd = [sys.executable, "-m", "tests.storage_helpers", root, "killed", "4", "6", "1.0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    seen = []
    for line in proc.stdout:
        seen.append(line.strip())
        if line.startswith("wrote 1"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    dataset_dir = Location.parse(root) / "datasets" / "killed"
    assert not (dataset_dir / "manifests" / "v000001.json").exists()  # nothing committed yet
    rerun = subprocess.run(cmd[:-1] + ["0"], capture_output=True, text=True, cwd=REPO, check=True)
    assert "kept 0" in rerun.stdout and "kept 1" in rerun.stdout and "wrote 2" in rerun.stdout
    manifests = [loc for loc in (dataset_dir / "manifests").list()]
    assert [loc.name for loc in manifests] == ["v000001.json"]
    ids = [r["id"] for r in StreamingReader(manifests[0].uri, shuffle=False)]
    assert sorted(ids) == [f"document-{i:06d}" for i in range(24)] and len(ids) == len(set(ids))


def test_two_writers_commit_one_version(root):
    w1 = DatasetWriter(root, "race", "ee" * 32)
    w2 = DatasetWriter(root, "race", "ff" * 32)
    s1, s2 = w1.write_shard(0, make_rows(0, 3)), w2.write_shard(0, make_rows(3, 6))
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def commit(name, writer, shard):
        barrier.wait()
        try:
            results[name] = writer.commit([shard], version=1)
        except CommitConflict as e:
            results[name] = e

    threads = [threading.Thread(target=commit, args=a) for a in (("a", w1, s1), ("b", w2, s2))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    errors = [r for r in results.values() if isinstance(r, CommitConflict)]
    wins = [r for r in results.values() if isinstance(r, str)]
    assert len(errors) == 1 and len(wins) == 1
    assert "race version 1 was already committed by another writer" in str(errors[0])
    winner = read_manifest(wins[0])
    assert winner.shards[0].sha256 in (s1.sha256, s2.sha256)


def test_identical_commits_racing_end_in_one_version_without_error(root):
    """Two identical renders started at once: both commits return the one version; a third, later, too."""
    writer = DatasetWriter(root, "same", "ab" * 32)
    shard = writer.write_shard(0, make_rows(0, 3))
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def commit(name):
        barrier.wait()
        try:
            results[name] = DatasetWriter(root, "same", "ab" * 32).commit([shard], {"seed": 1, "flow_run_id": name})
        except Exception as e:  # noqa: BLE001 - the test reports whatever a commit raised
            results[name] = e

    threads = [threading.Thread(target=commit, args=(n,)) for n in ("a", "b")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results["a"] == results["b"] and str(results["a"]).endswith("v000001.json"), results
    assert writer.commit([shard], {"seed": 1, "flow_run_id": "c"}) == results["a"]
    assert [loc.name for loc in (Location.parse(root) / "datasets/same/manifests").list()] == ["v000001.json"]
    # another recipe over the same shards is a new version
    assert writer.commit([shard], {"seed": 2}).endswith("v000002.json")


def test_dataset_grows_without_rewriting_old_shards(root):
    writer = DatasetWriter(root, "grow", "12" * 32)
    first = [writer.write_shard(k, make_rows(k * 4, k * 4 + 4)) for k in range(2)]
    v1 = writer.commit(first)
    before = {s.uri: Location.parse(s.uri).read_bytes() for s in read_manifest(v1).shards}
    v2 = writer.commit(first + [writer.write_shard(2, make_rows(8, 12))])
    m1, m2 = read_manifest(v1), read_manifest(v2)
    assert (m1.version, m1.rows, m2.version, m2.rows) == (1, 8, 2, 12)
    assert all(Location.parse(u).read_bytes() == b for u, b in before.items())


def test_uncommitted_shards_do_not_exist_for_readers(root):
    writer = DatasetWriter(root, "partial", "34" * 32)
    uri = writer.commit([writer.write_shard(0, make_rows(0, 4))])
    writer.write_shard(1, make_rows(4, 8))  # landed, never committed
    assert len(list(StreamingReader(uri))) == 4


def test_reader_resumes_with_exactly_the_remaining_rows(root):
    uri = write_dataset(root, "docs", shards=4, rows_per_shard=7)
    full = [r["id"] for r in StreamingReader(uri, seed=3)]
    assert sorted(full) == sorted(f"document-{i:06d}" for i in range(28))
    assert full != sorted(full)  # shuffled
    reader = StreamingReader(uri, seed=3)
    it = iter(reader)
    head = [next(it)["id"] for _ in range(11)]
    state = json.loads(json.dumps(reader.state_dict()))  # survives a checkpoint file
    resumed = StreamingReader(uri, seed=3)
    resumed.load_state_dict(state)
    tail = [r["id"] for r in resumed]
    assert head + tail == full
    # The next epoch is another permutation of the same rows.
    epoch1 = [r["id"] for r in resumed]
    assert sorted(epoch1) == sorted(full) and epoch1 != full


def test_split_by_rank_and_worker(root):
    uri = write_dataset(root, "docs", shards=3, rows_per_shard=9)
    parts = []
    for rank in range(2):
        for worker in range(2):
            r = StreamingReader(uri, seed=1, rank=rank, world_size=2, worker_id=worker, num_workers=2)
            rows = [x["id"] for x in r]
            assert len(rows) == len(r) == 27 // 4
            parts.append(rows)
    flat = [i for p in parts for i in p]
    assert len(flat) == len(set(flat)) == 24  # disjoint; the 3-row remainder is dropped so ranks stay in step


def test_weighted_mixture(root):
    a = write_dataset(root, "docs", shards=2, rows_per_shard=20, kind="document")
    b = write_dataset(root, "charts", shards=1, rows_per_shard=10, kind="chart")
    reader = StreamingReader([a, b], weights=[0.8, 0.2], seed=5, samples_per_epoch=200)
    kinds = [r["kind"] for r in reader]
    assert len(kinds) == 200
    assert 0.65 < kinds.count("document") / 200 < 0.92
    # deterministic and resumable, even across a component's cycles
    again = StreamingReader([a, b], weights=[0.8, 0.2], seed=5, samples_per_epoch=200)
    it = iter(again)
    head = [next(it)["id"] for _ in range(77)]
    st = again.state_dict()
    rest = StreamingReader([a, b], weights=[0.8, 0.2], seed=5, samples_per_epoch=200)
    rest.load_state_dict(st)
    assert head + [r["id"] for r in rest] == [r["id"] for r in StreamingReader([a, b], weights=[0.8, 0.2], seed=5, samples_per_epoch=200)]


def test_lineage_answers_both_questions(root, tmp_path):
    docs = write_dataset(root, "docs", shards=2, rows_per_shard=3)
    charts = write_dataset(root, "charts", shards=1, rows_per_shard=3, kind="chart")
    ck1 = Location.parse(root) / "checkpoints" / "tiny-1"
    ck2 = Location.parse(root) / "checkpoints" / "base-1"
    record_checkpoint(ck1, stage="vocab", manifests=[docs], config={"lr": 5e-5, "aws_secret_access_key": "hunter2"},
                      metrics={"loss": 1.5}, flow_run_id="run-123", index_root=root)
    record_checkpoint(ck2, stage="integrate", manifests=[charts], parents=[ck1.uri], config={"lr": 1e-5}, index_root=root)
    docs_shards = {s.uri for s in read_manifest(docs).shards}
    assert {s["uri"] for s in shards_of(ck1)} == docs_shards
    rec = read_lineage(ck1)
    assert rec["prefect"]["flow_run_id"] == "run-123" and rec["manifests"][0]["sha256"] == read_manifest(docs).sha256
    assert "hunter2" not in json.dumps(rec) and rec["config"]["aws_secret_access_key"] == "***"
    assert "testing-secret-value" not in json.dumps(rec)
    assert rec["code"]["git_commit"] is None or len(rec["code"]["git_commit"]) == 40
    if root.startswith("s3://"):
        assert all(s["etag"] for s in rec["shards"])
    for s in docs_shards:
        assert [r["checkpoint"] for r in checkpoints_of(s, root)] == [ck1.uri]
    chart_shard = read_manifest(charts).shards[0].uri
    assert [r["checkpoint"] for r in checkpoints_of(chart_shard, root)] == [ck2.uri]
    assert read_lineage(ck2)["parents"] == [ck1.uri]


def test_listing_carries_size_and_etag_and_a_prefix_digest_costs_no_head(root):
    from generators.render_unit import listing_digest
    from storage import StorageFiles

    base = Location.parse(root) / "inputs"
    for name, data in (("b.pdf", b"%PDF-1 bee"), ("a.pdf", b"%PDF-1 a"), ("c.pdf", b"%PDF-1 seeeee")):
        (base / name).write_bytes(data)
    listing = base.listing()
    assert list(listing) == sorted(listing) == [loc.uri for loc in base.list()]
    assert [size for size, _ in listing.values()] == [8, 10, 13]
    for uri, (size, etag) in listing.items():
        assert Location.parse(uri).stat() == (size, etag) and etag == Location.parse(uri).etag()
    assert (base / "nope.pdf").stat() is None

    heads = []
    if root.startswith("s3://"):
        base.client.meta.events.register("before-call.s3.HeadObject", lambda **kw: heads.append(kw))
    first = listing_digest(base.uri, StorageFiles())
    assert first["files"] == 3 and heads == []
    (base / "a.pdf").write_bytes(b"%PDF-1 A")  # same size, new content: the ETag (S3) or mtime (local) tells
    assert listing_digest(base.uri, StorageFiles()) != first


def test_lineage_index_goes_to_the_data_root_not_the_current_directory(tmp_path, monkeypatch):
    from storage.lineage import checkpoints_of, record_checkpoint

    data_root = str(tmp_path / "data")
    uri = DatasetWriter(data_root, "docs", "ab" * 32).commit([DatasetWriter(data_root, "docs", "ab" * 32).write_shard(0, make_rows(0, 2))])
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("VARYFLOW_ROOT", raising=False)
    record_checkpoint(str(tmp_path / "ckpt"), stage="vocab", manifests=[uri])
    assert not list(cwd.iterdir())  # no ./varyflow-data/lineage here
    shard = read_manifest(uri).shards[0].uri
    assert [r["checkpoint"] for r in checkpoints_of(shard)] == [str(tmp_path / "ckpt")]


@pytest.mark.s3
def test_checkpoint_published_under_an_s3_root_and_fetched_back(tmp_path, s3_bucket):
    from storage.lineage import all_checkpoints, checkpoints_of, read_lineage, record_checkpoint
    from storage.publish import fetch_checkpoint, publish_checkpoint

    root = f"s3://{s3_bucket}/data"
    writer = DatasetWriter(root, "docs", "ab" * 32)
    uri = writer.commit([writer.write_shard(0, make_rows(0, 2))])
    scratch = tmp_path / "scratch" / "checkpoint-000010"
    (scratch / "tokenizer").mkdir(parents=True)
    (scratch / "model.safetensors").write_bytes(os.urandom(3 << 20))
    (scratch / "tokenizer" / "vocab.json").write_text("{}")
    record_checkpoint(str(scratch), stage="vocab", manifests=[uri], index_root=root)
    target = f"{root}/checkpoints/vocab/run-1/checkpoint-000010"
    publish_checkpoint(str(scratch), target, root)

    assert read_lineage(target)["checkpoint"] == target
    assert [r["checkpoint"] for r in all_checkpoints(root)] == [target]  # the scratch path left the index
    assert [r["checkpoint"] for r in checkpoints_of(read_manifest(uri).shards[0].uri)] == [target]
    local = fetch_checkpoint(target, cache=str(tmp_path / "cache"))
    assert (local / "model.safetensors").read_bytes() == (scratch / "model.safetensors").read_bytes()
    assert (local / "tokenizer" / "vocab.json").read_text() == "{}"
    mtime = (local / "model.safetensors").stat().st_mtime_ns
    assert fetch_checkpoint(target, cache=str(tmp_path / "cache")) == local  # unchanged: not fetched again
    assert (local / "model.safetensors").stat().st_mtime_ns == mtime


def test_input_files_read_local_folders_and_s3_prefixes_alike(root):
    """`StorageFiles`, generators' `InputFiles` in a render: the same answers for a folder and a prefix."""
    from generators.sources import list_sources, read_source
    from generators.base import Reject
    from storage import StorageFiles

    base = Location.parse(root) / "inputs"
    for name, data in (("b.pdf", b"%PDF-1 bee"), ("a.pdf", b"%PDF-1 a"), ("list.txt", b"a.pdf\n# a comment\nb.pdf\n")):
        (base / name).write_bytes(data)
    files = StorageFiles()
    spelled = root.rstrip("/") + "/inputs"  # a prefix named without its trailing slash is a folder too
    assert files.is_folder(spelled) and not files.is_folder(f"{spelled}/a.pdf") and not files.is_folder(f"{root}/nothing")
    names = list_sources(spelled, files)
    assert [n.rsplit("/", 1)[1] for n in names] == ["a.pdf", "b.pdf", "list.txt"]
    # a .txt list names files relative to its own folder
    assert list_sources(f"{spelled}/list.txt", files) == [f"{spelled}/a.pdf", f"{spelled}/b.pdf"]
    assert files.read(f"{spelled}/b.pdf") == files.open(f"{spelled}/b.pdf").read() == b"%PDF-1 bee"
    assert files.stat(f"{spelled}/a.pdf") != files.stat(f"{spelled}/b.pdf") and files.stat(f"{spelled}/nope.pdf") is None
    with pytest.raises(FileNotFoundError):
        files.read(f"{spelled}/nope.pdf")
    with pytest.raises(Reject, match="too_large|bytes > max_bytes 4"):
        read_source(f"{spelled}/b.pdf", files, max_bytes=4)


def test_input_files_walk_a_folder_by_one_rule_on_a_disk_and_under_a_prefix(tmp_path, s3_bucket):
    """`StorageFiles.walk` (what a LaTeX paper's folder is made of, and what its stat digests): every file at any
    depth, hidden ones too, sorted folder by folder; on a disk a link to a file is a file, a link to a folder is
    not entered, a broken link is kept with no stat. The same names and order under an S3 prefix."""
    from generators.sources import LocalFiles
    from storage import StorageFiles

    local = tmp_path / "paper"
    files = {"main.tex": b"m", ".hidden.tex": b"h", "a/q.tex": b"q", "a-c/z.tex": b"z", "a/b/z.tex": b"y"}
    for rel, data in files.items():
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
        (Location.parse(f"s3://{s3_bucket}/paper") / rel).write_bytes(data)
    order = [".hidden.tex", "main.tex", "a/q.tex", "a-c/z.tex", "a/b/z.tex"]  # os.walk's folders, sorted
    assert StorageFiles().walk(f"s3://{s3_bucket}/paper/") == (f"s3://{s3_bucket}/paper", order)
    os.symlink("main.tex", local / "link.tex")
    os.symlink("a", local / "linked_folder")
    os.symlink("nowhere.tex", local / "broken.tex")
    name, below = StorageFiles().walk(f"{local}/")
    assert name == str(local) and below == [".hidden.tex", "broken.tex", "link.tex", "main.tex"] + order[2:]
    assert LocalFiles().walk(str(local)) == (name, below)
    stat = StorageFiles().stat(str(local))
    assert StorageFiles().stat(f"{local}/broken.tex") is None and stat is not None
    (local / "a" / "b" / "z.tex").write_bytes(b"changed, deep down")
    assert StorageFiles().stat(str(local)) != stat  # a folder's stat covers every file below it
    with pytest.raises(FileNotFoundError):
        StorageFiles().walk(f"s3://{s3_bucket}/nothing")
