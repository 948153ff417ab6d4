"""`table` (both backends) against the raw library loops, on the same tables, in the same run (one core).

TeX backend; raw loops given the generator's own tabulars and dpi so only the generator's work differs:
- one pdflatex/xelatex run per table (preview-cropped page) + PyMuPDF rasterise + Pillow PNG;
- the batched equivalent: every table of the range in one TeX run, then rasterise + PNG page by page.
HTML backend; raw loop in the generator's own Chromium page, given its drawn cells and style: build a
`<table>` with textContent (cells passed as WebDriver arguments), then a CDP screenshot clipped to it; and the
batched equivalent doing ours' work: every table of the range stacked in one page, one full-height screenshot,
decoded once, each table cropped (fit and padded when the generator has a size: Pillow `ImageOps.pad`) and
saved as grayscale PNG level 1, as ours is.
Samples per CPU-second (this process, its TeX runs, chromedriver and Chromium:
`benchmarks.render.cpu_seconds`), best of three alternating rounds. `bench(n)` -> rows for benchmarks/render.py.
"""
from __future__ import annotations

import io
import os
import subprocess
import tempfile
from typing import Any

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


def _html_jobs(n: int, lang: str, seed: int = 0) -> list[tuple[list, dict]]:
    """[(rows, style)] for the first n indices, drawn exactly as the html backend draws them."""
    from generators.base import Reject
    from generators.table import TableGenerator

    jobs = []
    with TableGenerator(backend="html", lang=lang) as gen:
        for index in range(n):
            try:
                _, _, table, _, style = gen.draw_html(seed, index)
            except Reject:
                continue
            jobs.append((table.to_html_dict()["rows"], style))
    return jobs


# What renderTable (generators/assets/render.js) lays out for these styles, written the plain way:
# default padding 4px 8px, centred nowrap cells, 1px black rules, bold header cells.
_RAW_TABLE_JS = """
const [rows, style] = arguments;
let host = document.getElementById('vf-raw');
if (!host) {
  host = document.body.appendChild(document.createElement('div'));
  host.id = 'vf-raw';
  host.style.cssText = 'position:absolute;left:0;top:0;z-index:1;background:#ffffff';
}
const t = document.createElement('table');
t.style.borderCollapse = 'collapse';
t.style.fontSize = style.font_px + 'px';
t.style.fontFamily = style.font_family;
const rule = '1px solid #000000';
if (style.border !== 'all') { t.style.borderTop = rule; t.style.borderBottom = rule; }
for (const row of rows) {
  const tr = t.insertRow();
  for (const cell of row) {
    const c = tr.appendChild(document.createElement(cell.header ? 'th' : 'td'));
    c.textContent = cell.text;
    c.rowSpan = cell.rowspan;
    c.colSpan = cell.colspan;
    c.style.cssText = 'padding:4px 8px;text-align:center;white-space:nowrap;font-weight:' + (cell.header ? 'bold' : 'normal');
    if (style.border === 'all') c.style.border = rule;
    else if (style.border === 'horizontal' || cell.header) c.style.borderBottom = rule;
  }
}
host.replaceChildren(t);
const r = t.getBoundingClientRect();
return [r.left, r.top, r.right, r.bottom];
"""


def raw_html(driver: Any, jobs: list[tuple[list, dict]]) -> int:
    import base64
    import math

    for rows, style in jobs:
        left, top, right, bottom = driver.execute_script(_RAW_TABLE_JS, rows, style)
        x, y = int(left), int(top)
        clip = {"x": x, "y": y, "width": math.ceil(right) - x, "height": math.ceil(bottom) - y, "scale": 1}
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                                 "fromSurface": True, "optimizeForSpeed": True})
        base64.b64decode(shot["data"])
    driver.execute_script("document.getElementById('vf-raw').remove()")  # uncover the generator's stage
    return len(jobs)


_RAW_STACK_JS = _RAW_TABLE_JS.replace("host.replaceChildren(t);\nconst r = t.getBoundingClientRect();\nreturn [r.left, r.top, r.right, r.bottom];",
                                      "host.appendChild(t);")


def raw_html_batched(driver: Any, jobs: list[tuple[list, dict]], size: int | None) -> int:
    """All tables in one page (one below the other), one screenshot, then crop + fit/pad + grayscale PNG L1."""
    import base64
    import math

    from PIL import Image, ImageOps

    driver.execute_script("const h = document.getElementById('vf-raw'); if (h) h.replaceChildren();")
    for rows, style in jobs:
        driver.execute_script(_RAW_STACK_JS, rows, style)
    rects = driver.execute_script("return [...document.getElementById('vf-raw').children].map(t => {"
                                  "const r = t.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })")
    width = math.ceil(max(r[2] for r in rects))
    height = math.ceil(max(r[3] for r in rects))
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True, "fromSurface": True, "optimizeForSpeed": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    sheet = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("L")
    for left, top, right, bottom in rects:
        img = sheet.crop((int(left), int(top), math.ceil(right), math.ceil(bottom)))
        if size:  # the generator's default is None: the tight crop as is
            img = ImageOps.pad(img, (size, size), method=Image.Resampling.LANCZOS, color=255)
        img.save(io.BytesIO(), format="PNG", compress_level=1)
    driver.execute_script("document.getElementById('vf-raw').remove()")  # uncover the generator's stage
    return len(jobs)


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
    from benchmarks.render import best_rates, samples
    from generators.table import TableGenerator

    rows = []
    for lang in ("en", "zh"):
        engine, preamble, jobs = _jobs(n, lang)
        with TableGenerator(backend="tex", lang=lang) as gen:
            list(gen.items(1, 0, 1))  # the work dir and font caches outside the timing
            rates = best_rates({
                "per_table": lambda: raw_per_table(engine, preamble, jobs[: max(4, n // 4)]),
                "batched": lambda: raw_batched(engine, preamble, jobs),
                "ours": lambda: samples(gen.items(0, 0, n)),
            })
        mine = round(rates["ours"], 1)
        rows.append({"kind": f"table[tex] ({lang})", "ours_per_s": mine, "raw_per_s": round(rates["batched"], 1),
                     "raw_label": f"{engine}, all tables in one run + PyMuPDF + PNG", "goal": GOAL})
        rows.append({"kind": f"table[tex] ({lang})", "ours_per_s": mine, "raw_per_s": round(rates["per_table"], 1),
                     "raw_label": f"{engine} run per table + PyMuPDF + PNG", "goal": ">= 2x raw (batched TeX)"})
    for lang in ("en", "zh"):
        jobs = _html_jobs(n, lang)
        with TableGenerator(backend="html", lang=lang) as gen:
            list(gen.items(1, 0, 2))  # Chromium started, fonts loaded, outside the timing
            driver = gen._browser._driver
            raw_html(driver, jobs[:2])
            raw_html_batched(driver, jobs[:2], gen.size)
            rates = best_rates({"raw": lambda: raw_html(driver, jobs), "ours": lambda: samples(gen.items(0, 0, n)),
                                "batched": lambda: raw_html_batched(driver, jobs, gen.size)})
        rows.append({"kind": f"table[html] ({lang})", "ours_per_s": round(rates["ours"], 1),
                     "raw_per_s": round(rates["batched"], 1),
                     "raw_label": "same cells and style, all tables in one page, one screenshot, crop + fit/pad "
                                  "+ gray PNG L1 (the same work as ours)", "goal": GOAL})
        rows.append({"kind": f"table[html] ({lang})", "ours_per_s": round(rates["ours"], 1),
                     "raw_per_s": round(rates["raw"], 1),
                     "raw_label": "same cells and style, <table> via textContent + CDP screenshot clipped to it, "
                                  "one open Chromium page (Chromium's RGB PNG kept as is: less work than ours)",
                     "goal": "(reference)"})
    return rows


if __name__ == "__main__":
    import json
    import sys

    for row in bench(int(sys.argv[1]) if len(sys.argv) > 1 else 30):
        print(json.dumps(row, ensure_ascii=False), f"ratio {row['ours_per_s'] / row['raw_per_s']:.2f}x")
