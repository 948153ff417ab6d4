"""Loader throughput: Parquet shards -> 1024² model batches on one core, against a bare pyspng decode
loop over the same PNGs, measured in the same run.

Rates are CPU time of this process (`time.process_time`, torch pinned to one thread), best of `--repeat`
passes, so other work on a shared machine does not count against them; wall-clock rates are printed next to
them for reference. Four paths are timed:
  bare    pyspng.load over the PNG bytes already in memory (the ceiling for the decode step);
  loader  storage.StreamingReader -> training.data.decode_image -> sam_pixels (uint8, one sample at a time);
  stream  training.data.VaryStream, the trainer's path: the above plus tokenisation and uint8 batch collation,
          up to the host->device copy (on a GPU the normalisation runs there, next to the model);
  stream_cpu_norm  the stream plus `model_inputs` on the CPU: what a CPU-only run pays per sample.
The per-stage breakdown (read / decode / normalise / collate) says where the time goes.

Memory: each dataset size runs the whole stream once in a fresh process and reports its peak RSS; with a
fixed number of rows per shard the peak should not grow with the number of shards.

    .venv/bin/python benchmarks/loader.py [--pages 64] [--rows-per-shard 16] [--repeat 3] [--json OUT]
Goal (issue 4): >= 150 samples/s per core.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GOAL = 150.0
BATCH = 8


def make_dataset(root: Path, pages: int, rows_per_shard: int, size: int) -> tuple[str, list[bytes]]:
    """`pages` rows cycling through 16 rendered `document` pages (distinct ids), `rows_per_shard` per shard."""
    from generators import Sample, get_generator
    from storage import DatasetWriter

    with get_generator("document", lang="en", size=size) as g:
        base = [s for s in g.items(0, 0, min(pages, 16)) if isinstance(s, Sample)]
    rows = [dict(base[i % len(base)].to_row(), id=f"p{i}") for i in range(pages)]
    w = DatasetWriter(str(root), f"bench{pages}", hashlib.sha256(f"{pages}/{size}".encode()).hexdigest()[:16])
    infos = [w.write_shard(k, rows[i:i + rows_per_shard]) for k, i in enumerate(range(0, pages, rows_per_shard))]
    return w.commit(infos, {}), [r["image"]["bytes"] for r in rows]


def best_of(fn: Callable[[], int], repeat: int) -> tuple[float, float]:
    """(samples per CPU-second, samples per wall-second), each the best of `repeat` passes."""
    cpu = wall = 0.0
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        n = fn()
        c, w = time.process_time() - c, time.perf_counter() - w
        cpu, wall = max(cpu, n / c), max(wall, n / w)
    return cpu, wall


def spec(size: int):
    from training.modeling import DataSpec

    return DataSpec(layout="opt", image_size=size, clip_size=None, num_image_tokens=256)


def tokenizer(manifest: str):
    from training.tokenizer import manifest_texts, train_tokenizer

    return train_tokenizer(manifest_texts([manifest]), 1000)


def run_stream(manifest: str, tok, size: int, pages: int) -> int:
    from training.data import VaryStream

    stream = VaryStream([manifest], None, tok, spec(size), BATCH, 4096, seed=0)
    n = 0
    for batch in stream:  # endless; one epoch's worth of full batches
        n += batch["pixel_values"].shape[0]
        if n + BATCH > pages:
            return n
    return n


def run_stream_cpu_norm(manifest: str, tok, size: int, pages: int) -> int:
    import torch

    from training.data import VaryStream, model_inputs

    stream = VaryStream([manifest], None, tok, spec(size), BATCH, 4096, seed=0)
    n, cpu = 0, torch.device("cpu")
    for batch in stream:
        n += model_inputs(batch, cpu)["pixel_values"].shape[0]
        if n + BATCH > pages:
            return n
    return n


def measure(manifest: str, images: list[bytes], size: int, repeat: int) -> dict:
    import pyspng
    import torch

    from storage import StreamingReader
    from training.data import (IMAGENET_MEAN, IMAGENET_STD, collate, decode_image, make_example, normalise_pixels,
                               sam_pixels, stack_pixels)

    n = len(images)
    tok = tokenizer(manifest)

    def bare() -> int:
        for b in images:
            pyspng.load(b)
        return n

    def loader() -> int:
        k = 0
        for row in StreamingReader([manifest], shuffle=False):
            k += sam_pixels(decode_image(row["image"]["bytes"]), size).shape[0] == size
        return k

    def read() -> int:
        return sum(1 for _ in StreamingReader([manifest], shuffle=False))

    def decode() -> int:
        for b in images:
            decode_image(b)
        return n

    arrays = [decode_image(b) for b in images[:16]]
    pixels = stack_pixels([sam_pixels(a, size) for a in arrays[:BATCH]])

    def norm() -> int:  # on the CPU; on a GPU this runs on the device
        for _ in range(2):
            normalise_pixels(pixels, IMAGENET_MEAN, IMAGENET_STD)
        return 2 * BATCH

    rows = list(StreamingReader([manifest], shuffle=False))[:BATCH]
    examples = [make_example(r, tok, spec(size), 4096) for r in rows]

    def coll() -> int:
        for _ in range(4):
            collate(examples, tok.pad_token_id)
        return 4 * len(examples)

    out = {"samples": n, "size": size, "image_shape": list(arrays[0].shape), "png_bytes": len(images[0])}
    for name, fn in (("bare", bare), ("loader", loader), ("stream", lambda: run_stream(manifest, tok, size, n)),
                     ("stream_cpu_norm", lambda: run_stream_cpu_norm(manifest, tok, size, n)),
                     ("read", read), ("decode", decode), ("normalise", norm),
                     ("collate", coll)):
        cpu, wall = best_of(fn, repeat)
        out[name] = {"cpu_per_s": round(cpu, 1), "wall_per_s": round(wall, 1), "ms_per_sample": round(1e3 / cpu, 3)}
    return out


def peak_rss_child(manifest: str, size: int, pages: int) -> None:
    """Run in a fresh process: one epoch of the training stream, then print peak RSS (MiB) as JSON."""
    import torch

    torch.set_num_threads(1)
    tok = tokenizer(manifest)
    before = _status_kib("VmRSS")
    n = run_stream(manifest, tok, size, pages)
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child would report its parent's peak.
    peak = _status_kib("VmHWM")
    print(json.dumps({"samples": n, "peak_rss_mib": round(peak / 1024, 1),
                      "growth_during_stream_mib": round((peak - before) / 1024, 1)}))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_rss(manifest: str, size: int, pages: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--rss-child", manifest, "--size", str(size), "--pages", str(pages)],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=64, help="rows in the timed dataset; the memory check also uses 4x")
    ap.add_argument("--rows-per-shard", type=int, default=16)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        return peak_rss_child(args.rss_child, args.size, args.pages)
    import torch

    torch.set_num_threads(1)  # per core
    with tempfile.TemporaryDirectory() as tmp:
        manifest, images = make_dataset(Path(tmp) / "small", args.pages, args.rows_per_shard, args.size)
        res = measure(manifest, images, args.size, args.repeat)
        big, _ = make_dataset(Path(tmp) / "big", args.pages * 4, args.rows_per_shard, args.size)
        res["rss"] = {str(args.pages): peak_rss(manifest, args.size, args.pages),
                      str(args.pages * 4): peak_rss(big, args.size, args.pages * 4)}
    res["cpu_count_note"] = "rates are per CPU-second of one process with torch.set_num_threads(1)"
    bare = res["bare"]["cpu_per_s"]
    print(f"{res['samples']} pages {res['image_shape']} ({res['png_bytes'] / 1e3:.0f} kB PNG), best of {args.repeat}, "
          f"samples per CPU-second (wall in brackets)")
    for name in ("bare", "loader", "stream", "stream_cpu_norm"):
        r = res[name]
        print(f"  {name:15s} {r['cpu_per_s']:7.1f}/s  ({r['wall_per_s']:6.1f}/s wall)  {r['cpu_per_s'] / bare:.2f}x bare")
    print(f"  goal >= {GOAL:.0f}/s per core: loader {'met' if res['loader']['cpu_per_s'] >= GOAL else 'NOT met'}, "
          f"stream {'met' if res['stream']['cpu_per_s'] >= GOAL else 'NOT met'}, "
          f"stream_cpu_norm {'met' if res['stream_cpu_norm']['cpu_per_s'] >= GOAL else 'NOT met'}")
    print("  ms per sample: " + ", ".join(f"{k} {res[k]['ms_per_sample']:.2f}"
                                          for k in ("read", "decode", "normalise", "collate")))
    for pages, r in res["rss"].items():
        print(f"  peak RSS (VmHWM), {pages:>4s} pages ({int(pages) // args.rows_per_shard} shards): {r['peak_rss_mib']:.0f} MiB "
              f"(+{r['growth_during_stream_mib']:.0f} MiB while streaming)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
