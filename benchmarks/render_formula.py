"""Formula rendering speed: the generator's backends against the best plain TeX path — latex on 50 formulas
per document, one page each, + one dvipng run per document — and, for reference, one TeX process per formula
+ dvipng, on the same formulas, in the same run. Samples per CPU-second (this process, its TeX
children and its live Chromium), best of three alternating rounds (`benchmarks.render.best_rates`).
`bench(n)` -> rows for benchmarks/render.py.
"""
from __future__ import annotations

import os
import subprocess
import tempfile

from benchmarks.render import best_rates, samples
from generators.base import sample_rng
from generators.formula import FormulaGenerator, random_formula

RAW_LABEL = "latex + dvipng, one process per formula"
BATCHED_LABEL = "latex + dvipng, 50 formulas per document (one page each)"
BATCH = 50
_DOC = ("\\documentclass[12pt]{article}\\usepackage{amsmath,amssymb}\\pagestyle{empty}"
        "\\begin{document}$\\displaystyle %s$\\end{document}\n")


def raw_tex_per_formula(formulas: list[str]) -> int:
    """The baseline everyone starts from: a latex run and a dvipng run for every formula."""
    env = dict(os.environ, openin_any="p", openout_any="p", shell_escape="f")
    with tempfile.TemporaryDirectory() as d:
        for i, f in enumerate(formulas):
            name = f"f{i}"
            with open(os.path.join(d, name + ".tex"), "w") as fh:
                fh.write(_DOC % f)
            subprocess.run(["latex", "-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error", name + ".tex"],
                           cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            subprocess.run(["dvipng", "-q", "-T", "tight", "-D", "200", "-o", name + ".png", name + ".dvi"],
                           cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return len(formulas)


def raw_tex_batched(formulas: list[str], batch: int = BATCH) -> int:
    """The best plain TeX path: `batch` formulas per document, one per page, one latex and one dvipng run each."""
    env = dict(os.environ, openin_any="p", openout_any="p", shell_escape="f")
    head, tail = _DOC.split("\\begin{document}")
    with tempfile.TemporaryDirectory() as d:
        for k in range(0, len(formulas), batch):
            name = f"b{k}"
            pages = "\\newpage\n".join(f"$\\displaystyle {f}$\n" for f in formulas[k:k + batch])
            with open(os.path.join(d, name + ".tex"), "w") as fh:
                fh.write(head + "\\begin{document}\n" + pages + "\\end{document}\n")
            subprocess.run(["latex", "-no-shell-escape", "-interaction=nonstopmode", name + ".tex"],
                           cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
            subprocess.run(["dvipng", "-q", "-T", "tight", "-D", "200", "-o", name + "-%d.png", name + ".dvi"],
                           cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    return len(formulas)


def bench(n: int = 100) -> list[dict]:
    formulas = [random_formula(sample_rng(0, i, kind="formula")) for i in range(n)]
    with FormulaGenerator(backend="fast") as fast, FormulaGenerator(backend="faithful") as faithful:
        for gen in (fast, faithful):
            list(gen.items(1, 0, 2))  # start the browser / TeX work dir outside the timing
        rates = best_rates({
            "raw": lambda: raw_tex_per_formula(formulas[: max(10, n // 4)]),
            "batched": lambda: raw_tex_batched(formulas),
            "fast": lambda: samples(fast.items(0, 0, n)),
            "faithful": lambda: samples(faithful.items(0, 0, n)),
        })
    rows = [{"kind": f"formula[{backend}]", "ours_per_s": round(rates[backend], 1),
             "raw_per_s": round(rates["batched"], 1), "raw_label": BATCHED_LABEL, "goal": goal}
            for backend, goal in (("fast", ">= 30/s/core and >= 2x the best TeX path"), ("faithful", ">= 0.9x raw"))]
    return rows + [{"kind": f"formula[{backend}]", "ours_per_s": round(rates[backend], 1),
                    "raw_per_s": round(rates["raw"], 1), "raw_label": RAW_LABEL, "goal": "(reference: the naive path)"}
                   for backend in ("fast", "faithful")]


if __name__ == "__main__":
    import sys

    for row in bench(int(sys.argv[1]) if len(sys.argv) > 1 else 100):
        print(row, f"ratio {row['ours_per_s'] / row['raw_per_s']:.1f}x")
