"""`latex_page` against the raw library loop, on the same pages, in the same run (one core).

Raw loop: the final (already trimmed) LaTeX source of each page, one pdflatex/xelatex run per page, then
PyMuPDF rasterise-to-fit 1024² + Pillow PNG. It is handed the answer the generator has to find (what fits
on one page), so it is the floor of "one TeX run per page". Ours is measured twice: `items()` with its
default batch (pages sharing a template share a TeX run) and with batch=1 (every page alone).
`bench(n)` -> rows for benchmarks/render.py.
"""
from __future__ import annotations

import io
import os
import subprocess
import tempfile

GOAL = ">= 0.9x raw"
RAW_LABEL = "final source, one TeX run per page + PyMuPDF fit 1024² + PNG"


def final_sources(n: int, lang: str, seed: int = 0) -> list[tuple[str, str]]:
    """(engine, source) of each page that fits, exactly as the generator settles it."""
    from generators.latex_page import LatexPageGenerator, _Placed, group_source

    with LatexPageGenerator(lang=lang) as gen:
        placed = gen._fit(seed, list(range(n)))
        return [(p.draft.engine, group_source(gen._templates[p.draft.template], p.draft.lang,
                                              [p.draft.blocks[: p.draft.keep]]))
                for p in placed.values() if isinstance(p, _Placed)]


def raw_per_page(sources: list[tuple[str, str]], size: int = 1024) -> int:
    import pymupdf
    from PIL import Image

    with tempfile.TemporaryDirectory() as d:
        for engine, source in sources:
            with open(os.path.join(d, "p.tex"), "w", encoding="utf-8") as f:
                f.write(source)
            subprocess.run([engine, "-no-shell-escape", "-interaction=nonstopmode", "p.tex"], cwd=d,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
            page = pymupdf.open(os.path.join(d, "p.pdf"))[0]
            zoom = size / max(page.rect.width, page.rect.height)
            pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY, alpha=False)
            img = Image.new("L", (size, size), 255)
            img.paste(Image.frombytes("L", (pix.width, pix.height), pix.samples), (0, 0))
            img.save(io.BytesIO(), format="PNG", compress_level=1)
    return len(sources)


def bench(n: int = 24) -> list[dict]:
    from benchmarks.render import best_rates, samples
    from generators.latex_page import LatexPageGenerator

    rows = []
    for lang, count in (("en", n), ("zh", max(4, n // 2))):
        sources = final_sources(count, lang)
        with LatexPageGenerator(lang=lang, batch=64) as batched, LatexPageGenerator(lang=lang, batch=1) as single:
            for gen in (batched, single):
                gen.render(1, 0)  # corpus, work dir, font caches outside the timing
            rates = best_rates({"raw": lambda: raw_per_page(sources),
                                "64": lambda: samples(batched.items(0, 0, count)),
                                "1": lambda: samples(single.items(0, 0, count))})
        for batch, goal in ((64, GOAL), (1, "–")):
            rows.append({"kind": f"latex_page ({lang}, batch {batch})", "ours_per_s": round(rates[str(batch)], 2),
                         "raw_per_s": round(rates["raw"], 2), "raw_label": RAW_LABEL, "goal": goal})
    return rows


if __name__ == "__main__":
    import json
    import sys

    for row in bench(int(sys.argv[1]) if len(sys.argv) > 1 else 24):
        print(json.dumps(row, ensure_ascii=False), f"ratio {row['ours_per_s'] / row['raw_per_s']:.2f}x")
