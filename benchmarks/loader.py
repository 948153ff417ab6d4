"""Loader throughput: Parquet shard -> normalised 1024² tensors (the training data path, one process)
against a bare PNG-decode loop over the same images, in the same run. Also reports peak RSS growth for
two dataset sizes, to show memory stays flat (one shard in memory at a time).

    .venv/bin/python benchmarks/loader.py [--pages 64] [--shards 4]
Goal (issue 4): >= 150 samples/s per core for the loader.
"""
from __future__ import annotations

import argparse
import hashlib
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_dataset(root: Path, pages: int, shards: int) -> tuple[str, list[bytes]]:
    from generators import Sample, get_generator
    from storage import DatasetWriter

    with get_generator("document", lang="en", size=1024) as g:
        base = [s for s in g.items(0, 0, min(pages, 16)) if isinstance(s, Sample)]
    rows = [dict(base[i % len(base)].to_row(), id=f"p{i}") for i in range(pages)]
    w = DatasetWriter(str(root), f"bench{pages}", hashlib.sha256(str(pages).encode()).hexdigest()[:16])
    per = max(1, pages // shards)
    infos = [w.write_shard(k, rows[i:i + per]) for k, i in enumerate(range(0, pages, per))]
    return w.commit(infos, {}), [r["image"]["bytes"] for r in rows]


def loader_rate(manifest: str, size: int) -> float:
    from storage import StreamingReader
    from training.data import decode_image, sam_transform

    t = time.perf_counter()
    n = 0
    for row in StreamingReader([manifest], verify=False):
        x = sam_transform(decode_image(row["image"]["bytes"]), size)
        n += x.shape[0] > 0
    return n / (time.perf_counter() - t)


def bare_rate(images: list[bytes]) -> float:
    import pyspng

    t = time.perf_counter()
    for b in images:
        pyspng.load(b)
    return len(images) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=64)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # per core
    with tempfile.TemporaryDirectory() as tmp:
        manifest, images = make_dataset(Path(tmp), args.pages, args.shards)
        bare = bare_rate(images)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rate = loader_rate(manifest, args.size)
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        big, _ = make_dataset(Path(tmp) / "big", args.pages * 4, args.shards * 4)
        loader_rate(big, args.size)
        rss2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"bare pyspng decode: {bare:8.1f} images/s (1 core)")
    print(f"loader (Parquet -> normalised {args.size}² tensor): {rate:8.1f} samples/s (1 core), "
          f"{rate / bare:.2f}x the bare decode; goal >= 150/s")
    print(f"peak RSS growth: {args.pages} pages {(rss1 - rss0) / 1024:.0f} MiB; "
          f"{args.pages * 4} pages +{(rss2 - rss1) / 1024:.0f} MiB more (flat when ~0)")


if __name__ == "__main__":
    main()
