"""`latex_page --source` (real LaTeX sources re-typeset page by page) against the raw loop, same pages, same run.

Sources: the real-looking papers of the tests (`tests/gen_support.py`: sections, own macros, align, a
booktabs table, a missing figure, `\\cite`), English ones repeated into papers of several pages, written as
arXiv-style `.tar.gz` archives. Raw loop: the final LaTeX source of every page our generator made (template,
kept blocks, the source's packages), one pdflatex run per page, then PyMuPDF rasterise-to-fit 1024² + Pillow
PNG. It is handed what the generator has to find (where each page ends), so it is the floor of "one TeX run
per page". Ours: `items()` over the papers (parsing, the probe for undefined commands, trimming rounds in
shared TeX runs). `bench(n)` -> rows for benchmarks/render.py.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

GOAL = ">= 0.9x raw"
RAW_LABEL = "final source of each page, one TeX run per page + PyMuPDF fit 1024² + PNG"


def write_sources(d: Path, papers: int) -> None:
    from tests.gen_support import PAPER_EN, tex_archive

    body = PAPER_EN.split("\\section{Introduction}", 1)[1].split("\\bibliographystyle", 1)[0]
    for k in range(papers):
        paper = PAPER_EN.replace(body, body * (8 + 4 * (k % 3)))
        (d / f"paper{k:02d}.tar.gz").write_bytes(tex_archive({"main.tex": paper}))


def page_sources(gen, pages: list) -> list[tuple[str, str]]:
    """(engine, source) of each page, rebuilt from its meta exactly as the generator compiled it."""
    from generators.latex_page import group_source

    out = []
    papers: dict[int, object] = {}
    for s in pages:
        m = s.meta
        index = m["index"]
        if index not in papers:
            paper = gen._paper(m["seed"], index)
            gen._undefined([paper])
            papers[index] = paper
        paper = papers[index]
        start, stop = m["sampled"]["block_range"]
        out.append((m["sampled"]["engine"], group_source(gen._templates[paper.template], paper.lang,
                                                         [paper.blocks[start:stop]], paper.preamble)))
    return out


def bench(n: int = 24) -> list[dict]:
    from benchmarks.render import best_rates, samples
    from benchmarks.render_latex_page import raw_per_page
    from generators.base import Sample
    from generators.latex_page import LatexPageGenerator

    papers = max(2, n // 6)  # 4-7 pages each
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_sources(d, papers)
        with LatexPageGenerator(lang="en", source=str(d), batch=64) as gen:
            pages = [s for s in gen.items(0, 0, papers) if isinstance(s, Sample)]
            sources = page_sources(gen, pages)
            rates = best_rates({"raw": lambda: raw_per_page(sources),
                                "ours": lambda: samples(gen.items(0, 0, papers))})
    return [{"kind": "latex_page --source (en)", "ours_per_s": round(rates["ours"], 2),
             "raw_per_s": round(rates["raw"], 2), "raw_label": RAW_LABEL, "goal": GOAL}]


if __name__ == "__main__":
    import json
    import sys

    for row in bench(int(sys.argv[1]) if len(sys.argv) > 1 else 24):
        print(json.dumps(row, ensure_ascii=False), f"ratio {row['ours_per_s'] / row['raw_per_s']:.2f}x")
