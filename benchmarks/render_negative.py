"""`negative` generator vs the raw Pillow loop, in the same run (one core).

Input: photo-like JPEGs (smooth colour fields with grain, 640x480 and 480x640) written to a temp dir.
Raw loop: Pillow open + EXIF transpose + RGB, fit-and-pad to 1024² (LANCZOS), PNG level 1 in RGB — the
same output as ours, without the size guard, the grayscale check, sampling and meta. Rates are samples
per CPU-second, best of three alternating rounds (benchmarks.render.best_rates).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

GOAL = ">= 0.9x raw"


def _make_photos(n: int, folder: Path) -> list[str]:
    import numpy as np
    from PIL import Image

    names = []
    for i in range(n):
        rng = np.random.default_rng(i)
        w, h = (640, 480) if i % 2 == 0 else (480, 640)
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        base = np.stack([np.sin(xx * 6 + i), np.cos(yy * 5), np.sin((xx + yy) * 4)], -1) * 100 + 128
        img = Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8), "RGB")
        path = folder / f"photo{i:04d}.jpg"
        img.save(path, quality=90)
        names.append(str(path))
    return names


def _raw(names: list[str]) -> int:
    from PIL import Image, ImageOps

    from generators.base import encode_png, fit_and_pad

    for name in names:
        with Image.open(name) as im:
            img = ImageOps.exif_transpose(im).convert("RGB")
        encode_png(fit_and_pad(img, 1024, fill=(255, 255, 255)), 1, grayscale=False)
    return len(names)


def _ours(names: list[str]) -> int:
    from generators.negative import NegativeGenerator

    items = list(NegativeGenerator(source=names).items(0, 0, len(names)))
    assert all(hasattr(s, "image") for s in items), [s for s in items if not hasattr(s, "image")]
    return len(items)


def bench(n: int = 30) -> list[dict]:
    from benchmarks.render import best_rates

    with tempfile.TemporaryDirectory() as tmp:
        names = _make_photos(n, Path(tmp))
        _raw(names[:2])
        _ours(names[:2])  # warm
        rates = best_rates({"raw": lambda: _raw(names), "ours": lambda: _ours(names)})
    return [{"kind": "negative", "ours_per_s": round(rates["ours"], 2), "raw_per_s": round(rates["raw"], 2),
             "goal": GOAL, "raw_label": "Pillow open + EXIF transpose + fit/pad 1024 LANCZOS + PNG L1 (RGB)"}]


if __name__ == "__main__":
    import json
    import sys

    for row in bench(int(sys.argv[1]) if len(sys.argv) > 1 else 30):
        print(json.dumps(row, ensure_ascii=False))
