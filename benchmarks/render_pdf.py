"""`pdf` generator vs the raw PyMuPDF loop, in the same run (one core).

Input: one-page PDFs typeset by the `document` generator (1-3 columns), written to a temp dir: one set in
English, one in Chinese (embedded CJK TrueType font; its closing marks take the line-level path of
reading order), each measured against the same raw loops.
Raw loops: (a) tuned — `get_text("blocks")` sorted by position, page rendered straight to 1024 px, kept
gray when it has no colour (the same output as ours: same colour handling, same PNG settings), padded,
PNG level 1; (b) the same rendered gray unconditionally (no colour detection; a cheaper job than ours);
(c) naive — `get_text(sort=True)`, RGB render, padded, RGB PNG level 1.
Ours adds reading-order columns, colour detection, per-file checks and bookkeeping. Rates are samples
per CPU-second, best of three alternating rounds (benchmarks.render.best_rates).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

GOAL = ">= 0.9x raw"


def _make_pdfs(n: int, folder: Path, lang: str = "en") -> list[str]:
    from generators.document import DocumentGenerator

    gen = DocumentGenerator(lang=lang)
    names = []
    for i in range(n):
        pdf, *_ = gen.typeset(0, i)
        path = folder / f"{lang}{i:04d}.pdf"
        path.write_bytes(pdf)
        names.append(str(path))
    return names


def _raw(names: list[str], mode: str) -> int:
    """mode "tuned": blocks sorted by (y, x), RGB render, colour check, gray PNG for gray pages — the same
    output and colour handling as ours, without reading-order columns or checks; "gray": the same but
    always gray (no colour detection, so cheaper than what we do); "naive": get_text(sort=True), RGB PNG."""
    import pymupdf
    from PIL import Image

    from generators.base import encode_png, fit_and_pad, is_grayscale

    for name in names:
        with pymupdf.open(name) as doc:
            for page in doc:
                if mode == "naive":
                    page.get_text(sort=True)
                else:
                    blocks = sorted(page.get_text("blocks"), key=lambda b: (b[1], b[0]))
                    "\n\n".join(b[4] for b in blocks)
                zoom = 1024 / max(page.rect.width, page.rect.height)
                cs = pymupdf.csGRAY if mode == "gray" else pymupdf.csRGB
                pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=cs)
                img = Image.frombytes("L" if mode == "gray" else "RGB", (pix.width, pix.height), pix.samples)
                gray = mode == "gray" or mode == "tuned" and is_grayscale(img)
                encode_png(fit_and_pad(img, 1024), 1, grayscale=gray)
    return len(names)


def _ours(names: list[str]) -> int:
    from generators.pdf import PdfGenerator

    items = list(PdfGenerator(source=names).items(0, 0, len(names)))
    assert all(hasattr(s, "image") for s in items), [s for s in items if not hasattr(s, "image")]
    return len(items)


def bench(n: int = 30) -> list[dict]:
    return [row for lang in ("en", "zh") for row in _bench_lang(n, lang)]


def _bench_lang(n: int, lang: str) -> list[dict]:
    from benchmarks.render import best_rates

    with tempfile.TemporaryDirectory() as tmp:
        names = _make_pdfs(n, Path(tmp), lang)
        _raw(names[:2], "tuned")
        _ours(names[:2])  # warm
        rates = best_rates({mode: (lambda mode=mode: _raw(names, mode)) for mode in ("tuned", "gray", "naive")}
                           | {"ours": lambda: _ours(names)})
    ours = rates["ours"]
    row = {"kind": f"pdf ({lang})", "ours_per_s": round(ours, 2)}
    return [
        {**row, "raw_per_s": round(rates["tuned"], 2), "goal": GOAL,
         "raw_label": "PyMuPDF blocks sorted by (y, x) + RGB render 1024 + colour check + pad + PNG L1 (gray when no colour)"},
        {**row, "raw_per_s": round(rates["gray"], 2), "goal": "(reference)",
         "raw_label": "the same, always rendered gray: no colour detection"},
        {**row, "raw_per_s": round(rates["naive"], 2), "goal": "(reference)",
         "raw_label": "naive: get_text(sort=True) + RGB render 1024 + pad + PNG L1 (RGB)"},
    ]


if __name__ == "__main__":
    import json
    import sys

    for row in bench(int(sys.argv[1]) if len(sys.argv) > 1 else 30):
        print(json.dumps(row, ensure_ascii=False))
