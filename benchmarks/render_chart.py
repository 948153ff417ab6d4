"""`chart` generator vs the raw matplotlib loop, in the same run (one core).

Rows: ours against (a) the same charts drawn the plain way with the same output — a new Figure per chart, the
same plot calls, no layout pass (ours sets margins from font metrics, cheaper than `tight_layout`), the canvas
as RGB, fit/padded to the generator's size, PNG level 1, as ours saves it — and (b) a minimal reference loop
(one bar chart at 1024², `savefig(png)` at matplotlib's defaults: RGBA, zlib's default level).
"""
from __future__ import annotations

import io

GOAL = ">= 0.9x raw"


def _jobs(n: int, lang: str) -> list:
    from generators.chart import ChartGenerator

    gen = ChartGenerator(lang=lang)
    return [gen.draw(1, i)[3:] for i in range(n)]


def _raw_same_charts(gen, jobs: list) -> int:
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image, ImageOps

    from generators.chart import _PLOTTERS, DPI, PALETTES

    for data, st in jobs:
        pal = PALETTES[st["palette"]]
        colors = [pal[i % len(pal)] for i in range(max(len(data.series), len(data.categories)))]
        with rc_context({"font.family": [gen._family(st["font"])], "font.size": st["tick_pt"]}):
            fig = Figure(figsize=(st["width"] / DPI, st["height"] / DPI), dpi=DPI)
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
            _PLOTTERS[data.chart_type](ax, data, st, colors)
            ax.set_title(data.title, fontsize=st["title_pt"])
            if data.chart_type != "pie":
                ax.set_xlabel(data.x_title or "")
                ax.set_ylabel(data.y_title or "")
            ax.legend()
            canvas = fig.canvas
            canvas.draw()
            img = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
            img = img.convert("RGB")
            if img.size != (gen.size, gen.size):
                img = ImageOps.pad(img, (gen.size, gen.size), method=Image.Resampling.LANCZOS, color="white")
            img.save(io.BytesIO(), format="PNG", compress_level=1)
    return len(jobs)


def _raw_minimal(n: int) -> int:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cats = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    for i in range(n):
        fig = Figure(figsize=(10.24, 10.24), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.bar(cats, np.arange(6) + i % 3 + 1, label="series")
        ax.set_title("A chart title")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.legend()
        fig.savefig(io.BytesIO(), format="png")
    return n


def bench(n: int = 30) -> list[dict]:
    from benchmarks.render import best_rates, samples
    from generators.chart import ChartGenerator

    rows = []
    for lang in ("en", "zh"):
        gen = ChartGenerator(lang=lang)
        jobs = _jobs(n, lang)
        list(gen.items(1, 10_000, 10_002))  # warm: fonts, figure, corpus
        _raw_same_charts(gen, jobs[:2])
        loops = {"raw": lambda: _raw_same_charts(gen, jobs), "ours": lambda: samples(gen.items(1, 0, n))}
        if lang == "en":
            loops["minimal"] = lambda: _raw_minimal(n)
        rates = best_rates(loops)
        items = list(gen.items(1, 0, n))
        gen.close()
        rows.append({"kind": f"chart ({lang})", "ours_per_s": round(rates["ours"], 2), "raw_per_s": round(rates["raw"], 2),
                     "raw_label": "same charts, new Figure, no layout pass, RGB fit/pad + PNG L1 (ours' output)",
                     "goal": GOAL,
                     "rejects": sum(1 for x in items if not hasattr(x, "image"))})
        if lang == "en":
            minimal = {"kind": "chart (en)", "ours_per_s": round(rates["ours"], 2), "raw_per_s": round(rates["minimal"], 2),
                       "raw_label": "minimal loop: one 1024² bar chart + savefig(png) at defaults",
                       "goal": "(reference: a simpler chart than ours)"}
    return rows + [minimal]


if __name__ == "__main__":
    import json
    import sys

    for row in bench(int(sys.argv[1]) if len(sys.argv) > 1 else 30):
        print(json.dumps(row, ensure_ascii=False))
