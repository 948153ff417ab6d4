"""`pdf` generator vs the raw PyMuPDF loop, in the same run (one core).

Input: one-page PDFs typeset by the `document` generator (1-3 columns, English), written to a temp dir.
Raw loops: (a) tuned — `get_text("blocks")` sorted by position, page rendered straight to 1024 px in
grayscale, padded, PNG level 1; (b) naive — `get_text(sort=True)`, RGB render, padded, PNG level 1.
Ours adds reading-order columns, colour detection, per-file checks and bookkeeping.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

GOAL = ">= 0.9x raw"


def _make_pdfs(n: int, folder: Path) -> list[str]:
    from generators.document import DocumentGenerator

    gen = DocumentGenerator(lang="en")
    names = []
    for i in range(n):
        pdf, *_ = gen.typeset(0, i)
        path = folder / f"doc{i:04d}.pdf"
        path.write_bytes(pdf)
        names.append(str(path))
    return names


def _raw(names: list[str], tuned: bool) -> float:
    import pymupdf
    from PIL import Image

    from generators.base import encode_png, fit_and_pad

    t = time.perf_counter()
    for name in names:
        with pymupdf.open(name) as doc:
            for page in doc:
                if tuned:
                    blocks = sorted(page.get_text("blocks"), key=lambda b: (b[1], b[0]))
                    "\n\n".join(b[4] for b in blocks)
                else:
                    page.get_text(sort=True)
                zoom = 1024 / max(page.rect.width, page.rect.height)
                cs = pymupdf.csGRAY if tuned else pymupdf.csRGB
                pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=cs)
                img = Image.frombytes("L" if tuned else "RGB", (pix.width, pix.height), pix.samples)
                encode_png(fit_and_pad(img, 1024), 1)
    return len(names) / (time.perf_counter() - t)


def _ours(names: list[str]) -> float:
    from generators.pdf import PdfGenerator

    gen = PdfGenerator(source=names)
    t = time.perf_counter()
    items = list(gen.items(0, 0, len(names)))
    dt = time.perf_counter() - t
    assert all(hasattr(s, "image") for s in items), [s for s in items if not hasattr(s, "image")]
    return len(items) / dt


def bench(n: int = 30) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        names = _make_pdfs(n, Path(tmp))
        _raw(names[:2], True)
        _ours(names[:2])  # warm
        tuned = _raw(names, True)
        ours = _ours(names)
        naive = _raw(names, False)
    return [
        {"kind": "pdf (en)", "ours_per_s": round(ours, 2), "raw_per_s": round(tuned, 2), "goal": GOAL,
         "raw_label": "PyMuPDF blocks sorted by (y, x) + gray render 1024 + pad + PNG L1"},
        {"kind": "pdf (en)", "ours_per_s": round(ours, 2), "raw_per_s": round(naive, 2), "goal": "(reference)",
         "raw_label": "naive: get_text(sort=True) + RGB render 1024 + pad + PNG L1"},
    ]


if __name__ == "__main__":
    import json
    import sys

    for row in bench(int(sys.argv[1]) if len(sys.argv) > 1 else 30):
        print(json.dumps(row, ensure_ascii=False))
