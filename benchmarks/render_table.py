"""`table` (TeX backend) against the raw library loops, on the same tables, in the same run (one core).

Raw loops, both given the generator's own tabulars and dpi so only the generator's work differs:
- one pdflatex/xelatex run per table (preview-cropped page) + PyMuPDF rasterise + Pillow PNG;
- the batched equivalent: every table of the range in one TeX run, then rasterise + PNG page by page.
Samples per CPU-second (this process and its TeX runs: `benchmarks.render.cpu_seconds`), best of three
alternating rounds. `bench(n)` -> rows for benchmarks/render.py.
"""
from __future__ import annotations

import io
import os
import subprocess
import tempfile

GOAL = ">= 0.9x raw"


def _jobs(n: int, lang: str, seed: int = 0) -> tuple[str, str, list[tuple[str, int]]]:
    """(engine, preamble, [(tabular, dpi)]) for the first n indices, drawn exactly as the generator draws them."""
    from generators.base import Reject
    from generators.table import TableGenerator, tex_preamble, to_latex

    jobs = []
    with TableGenerator(backend="tex", lang=lang) as gen:
        for index in range(n):
            try:
                rng, _, table, sampled = gen.draw(seed, index)
            except Reject:
                continue
            dpi = int(rng.integers(gen.dpi[0], gen.dpi[1] + 1))
            jobs.append((to_latex(table, sampled["style"]), dpi))
    engine, preamble = tex_preamble(lang)
    return engine, preamble, jobs


def _png(page, dpi: int) -> bytes:
    import pymupdf
    from PIL import Image

    zoom = dpi / 72.0
    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY, alpha=False)
    buf = io.BytesIO()
    Image.frombytes("L", (pix.width, pix.height), pix.samples).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _tex_run(d: str, engine: str, source: str) -> bytes:
    with open(os.path.join(d, "t.tex"), "w", encoding="utf-8") as f:
        f.write(source)
    subprocess.run([engine, "-no-shell-escape", "-interaction=nonstopmode", "t.tex"], cwd=d,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    with open(os.path.join(d, "t.pdf"), "rb") as f:
        return f.read()


def raw_per_table(engine: str, preamble: str, jobs: list[tuple[str, int]]) -> int:
    import pymupdf

    with tempfile.TemporaryDirectory() as d:
        for tabular, dpi in jobs:
            pdf = _tex_run(d, engine, preamble + "\\begin{document}\n\\begin{preview}" + tabular
                           + "\\end{preview}\n\\end{document}\n")
            _png(pymupdf.open(stream=pdf, filetype="pdf")[0], dpi)
    return len(jobs)


def raw_batched(engine: str, preamble: str, jobs: list[tuple[str, int]]) -> int:
    import pymupdf

    with tempfile.TemporaryDirectory() as d:
        body = "".join("\\begin{preview}" + t + "\\end{preview}\n" for t, _ in jobs)
        doc = pymupdf.open(stream=_tex_run(d, engine, preamble + "\\begin{document}\n" + body + "\\end{document}\n"),
                           filetype="pdf")
        for page, (_, dpi) in zip(doc, jobs):
            _png(page, dpi)
    return len(jobs)


def bench(n: int = 30) -> list[dict]:
    from benchmarks.render import best_rates
    from generators.table import TableGenerator

    rows = []
    for lang in ("en", "zh"):
        engine, preamble, jobs = _jobs(n, lang)
        with TableGenerator(backend="tex", lang=lang) as gen:
            list(gen.items(1, 0, 1))  # the work dir and font caches outside the timing
            rates = best_rates({
                "per_table": lambda: raw_per_table(engine, preamble, jobs[: max(4, n // 4)]),
                "batched": lambda: raw_batched(engine, preamble, jobs),
                "ours": lambda: len(list(gen.items(0, 0, n))),
            })
        mine = round(rates["ours"], 1)
        rows.append({"kind": f"table[tex] ({lang})", "ours_per_s": mine, "raw_per_s": round(rates["batched"], 1),
                     "raw_label": f"{engine}, all tables in one run + PyMuPDF + PNG", "goal": GOAL})
        rows.append({"kind": f"table[tex] ({lang})", "ours_per_s": mine, "raw_per_s": round(rates["per_table"], 1),
                     "raw_label": f"{engine} run per table + PyMuPDF + PNG", "goal": ">= 2x raw (batched TeX)"})
    return rows


if __name__ == "__main__":
    import json
    import sys

    for row in bench(int(sys.argv[1]) if len(sys.argv) > 1 else 30):
        print(json.dumps(row, ensure_ascii=False), f"ratio {row['ours_per_s'] / row['raw_per_s']:.2f}x")
