"""Write/read throughput of varyflow's shard storage against plain pyarrow on the same data.

    python benchmarks/storage.py [--rows 300] [--repeat 3] [--out docs/storage-benchmarks.md]

Each target (a local directory, S3 served by a moto server on 127.0.0.1) is measured twice in the same
run: raw `pyarrow.parquet.write_table` / `read_table` of the table, and varyflow's `DatasetWriter.write_shard`
(which also hashes and records the shard) / verified read (which checks the sha256). Later epochs read without
the hash from a memory map, so their baseline is the same plain call with `memory_map=True` (local; S3 has no
memory map, so there it is `read_table` again). Reported as MB/s and as the ratio ours/raw; the goal is >= 0.9.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage import DatasetWriter, is_remote
from storage.location import _pyarrow_s3
from storage.schema import PARQUET_COMPRESSION, SHARD_SCHEMA
from storage.shards import DEFAULT_ROW_GROUP_ROWS, read_verified


def make_table(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    # PNG bytes are incompressible; ~120 KB is a rendered 1024² page at compress level 1.
    images = [rng.bytes(int(rng.integers(90_000, 150_000))) for _ in range(rows)]
    return pa.Table.from_pylist([{
        "id": f"document-{i:09d}", "image": {"bytes": images[i], "path": f"{i}.png"}, "width": 1024, "height": 1024,
        "kind": "document", "lang": "en", "prompt": "Provide the OCR results of this image.",
        "text": " ".join(["lorem ipsum dolor sit amet"] * 60), "meta": '{"generator": "document", "seed": 0}',
    } for i in range(rows)], schema=SHARD_SCHEMA)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(target: str, table: pa.Table, repeat: int, raw_fs, raw_path: str) -> list[dict]:
    kw = dict(row_group_size=DEFAULT_ROW_GROUP_ROWS, compression=PARQUET_COMPRESSION)
    def raw_write() -> None:
        if raw_fs is None:
            pq.write_table(table, raw_path, **kw)
            return
        # moto rejects the small trailing multipart part pyarrow's streaming writer sends, so the raw
        # S3 baseline encodes in memory and uploads in one stream (what varyflow does too).
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **kw)
        with raw_fs.open_output_stream(raw_path) as out:
            out.write(sink.getvalue())

    raw_w = best(raw_write, repeat)
    writer = DatasetWriter(target, "bench", "ab" * 32)
    info = writer.write_shard(0, table)
    mb = info.bytes / 1e6
    ours_w = best(lambda: writer.write_shard(0, table), repeat)
    raw_r = best(lambda: pq.read_table(raw_path, filesystem=raw_fs), repeat)
    ours_r = best(lambda: read_verified(info), repeat)
    # A reader checks each shard's sha256 the first time it reads it; later epochs read without it.
    ours_r2 = best(lambda: read_verified(info, verify=False), repeat)
    raw_r2 = raw_r if raw_fs is not None else best(lambda: pq.read_table(raw_path, memory_map=True), repeat)
    name = target.split(":")[0] if is_remote(target) else "local"
    return [
        {"target": name, "op": "write", "raw": mb / raw_w, "ours": mb / ours_w},
        {"target": name, "op": "read, first (sha256 verified)", "raw": mb / raw_r, "ours": mb / ours_r},
        {"target": name, "op": "read, later epochs" + ("" if raw_fs is not None else " (raw: memory_map=True)"),
         "raw": mb / raw_r2, "ours": mb / ours_r2},
    ]


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = str(Path(sys.executable).with_name("moto_server"))  # this environment's moto, not one on PATH
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=open(os.environ.get("MOTO_LOG", os.devnull), "w"))
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, endpoint


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=None, help="write a markdown table here")
    args = ap.parse_args()
    table = make_table(args.rows)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results += measure(tmp, table, args.repeat, None, os.path.join(tmp, "raw.parquet"))
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    proc, endpoint = start_moto()
    try:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        results += measure("s3://bench/vf", table, args.repeat, _pyarrow_s3(endpoint), "bench/raw.parquet")
    finally:
        proc.terminate()
    lines = [f"Shard of {args.rows} rows ({table.nbytes / 1e6:.0f} MB in memory), best of {args.repeat}, one machine, same run.", "",
             "| target | op | raw pyarrow MB/s | varyflow MB/s | ratio |", "|---|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['target']} | {r['op']} | {r['raw']:.0f} | {r['ours']:.0f} | {r['ours'] / r['raw']:.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text("# Storage benchmark\n\n`python benchmarks/storage.py`\n\n" + text + "\n")


if __name__ == "__main__":
    main()
