"""`chart`: matplotlib charts (bar, grouped/stacked bar, horizontal bar, line, area, pie, scatter) whose
target is the chart's data as a python-dict, as Vary's tiny stage used (Vary, arXiv 2312.06109).

One Agg figure is reused for every sample (no pyplot: no global state, no GUI backend). The longer side is
drawn at exactly `size` px so `fit_and_pad` only pads and never resamples the glyphs.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from generators import fonts
from generators.base import (
    PROMPT_CHART,
    Generator,
    GeneratorError,
    Reject,
    Sample,
    check_not_blank,
)
from generators.chart_data import ChartData, check_chart_params, sample_chart_data
from generators.chart_text import ChartTexts, CorpusTexts, RecordTexts, TopicTexts
from generators.corpus import Corpus, pick_lang
from generators.sources import InputFiles

# Palettes as fixed hex lists so a recorded palette name always means the same colours.
PALETTES: dict[str, tuple[str, ...]] = {
    "tab10": ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"),
    "set2": ("#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854", "#ffd92f", "#e5c494", "#b3b3b3"),
    "dark2": ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"),
    "muted": ("#4878d0", "#ee854a", "#6acc64", "#d65f5f", "#956cb4", "#8c613c", "#dc7ec0", "#797979", "#d5bb67", "#82c6e2"),
    "office": ("#4472c4", "#ed7d31", "#a5a5a5", "#ffc000", "#5b9bd5", "#70ad47", "#264478", "#9e480e", "#636363", "#997300"),
    "echarts": ("#5470c6", "#91cc75", "#fac858", "#ee6666", "#73c0de", "#3ba272", "#fc8452", "#9a60b4", "#ea7ccc"),
}
BACKGROUNDS = ("#ffffff", "#ffffff", "#f7f7f7", "#fcfaf2", "#f4f7fb")
LEGEND_LOCS = ("upper right", "upper left", "lower right", "lower left", "upper center", "outside right")
MARKERS = ("o", "s", "^", "D", "v", "")
EN_FONTS = ("DejaVu Sans", "DejaVu Serif")
ZH_FONT = "WenQuanYi Micro Hei"
DPI = 100


def load_texts(corpus: str | dict[str, str] | None, records: str | dict[str, str] | None, lang: str,
               files: InputFiles | None) -> dict[str, ChartTexts]:
    """The chart texts of each language `lang` needs: a user's chart records (`records`, JSON lines), else
    runs of words from a text corpus (`corpus`), else the embedded coherent topics. Each of `records` and
    `corpus` is one spec for a single language, or {"en": spec, "zh": spec}."""
    langs = ("en", "zh") if lang == "mixed" else (lang,)
    for what, spec in (("corpus", corpus), ("records", records)):
        if isinstance(spec, str) and lang == "mixed":
            raise GeneratorError(f"lang='mixed' needs {what}={{'en': ..., 'zh': ...}} (or None for the built-ins)")
    if corpus is not None and records is not None:
        raise GeneratorError("give chart texts as corpus= or records=, not both")
    out: dict[str, ChartTexts] = {}
    for lg in langs:
        if records is not None:
            name = records.get(lg) if isinstance(records, dict) else records
            if not name:
                raise GeneratorError(f"records has no file for language {lg!r}")
            out[lg] = RecordTexts(name, files, lg)
        elif corpus is not None:
            spec = corpus.get(lg) if isinstance(corpus, dict) else corpus
            out[lg] = CorpusTexts(Corpus.load(spec, lg, files=files))
        else:
            out[lg] = TopicTexts(lg)
    return out


class DrawsCharts:
    """The sampling `chart` and `echart` share: language, chart type, data, then the kind's own style."""

    lang: str
    chart_types: list[str]
    texts: dict[str, ChartTexts]

    def _init_charts(self, lang: str, chart_types: list[str] | None, corpus: str | dict[str, str] | None,
                     records: str | dict[str, str] | None, size: int, degradations: dict | None, prompt: str,
                     files: InputFiles | None) -> None:
        self.lang, self.chart_types, self.size = check_chart_params(lang, chart_types, size, degradations)
        self.degradations = degradations
        self.prompt = prompt
        self.texts = load_texts(corpus, records, self.lang, files)

    def _sample_style(self, rng: np.random.Generator, data: ChartData) -> dict[str, Any]: ...

    def draw(self, seed: int, index: int) -> tuple[np.random.Generator, str, str, ChartData, dict[str, Any]]:
        """(rng, lang, chart_type, data, style) of sample `index`, drawn in the order `render` draws them."""
        rng = self.rng(seed, index)
        lang = pick_lang(rng, self.lang)
        chart_type = self.chart_types[int(rng.integers(len(self.chart_types)))]
        data = sample_chart_data(rng, self.texts[lang], chart_type, lang)
        return rng, lang, chart_type, data, self._sample_style(rng, data)


class ChartGenerator(DrawsCharts, Generator):
    kind = "chart"
    version = "5"
    input_params = ("corpus", "records")

    def __init__(
        self,
        lang: str = "en",
        chart_types: list[str] | None = None,
        corpus: str | dict[str, str] | None = None,
        size: int = 1024,
        degradations: dict | None = None,
        prompt: str = PROMPT_CHART,
        files: InputFiles | None = None,
        records: str | dict[str, str] | None = None,
    ):
        super().__init__(lang=lang, chart_types=chart_types, corpus=corpus, records=records, size=size,
                         degradations=degradations, prompt=prompt)
        self._init_charts(lang, chart_types, corpus, records, size, degradations, prompt, files)
        self._fig = None
        self._canvas = None
        self._families: dict[str, str] = {}

    # -- resources --------------------------------------------------------------------------------
    def _figure(self):
        if self._fig is None:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            self._fig = Figure(dpi=DPI)
            self._canvas = FigureCanvasAgg(self._fig)
        return self._fig

    def _family(self, font: str) -> str:
        """The matplotlib family name of a font, registering its file (fonts installed after matplotlib
        built its cache, e.g. WenQuanYi, are otherwise unknown and would silently fall back)."""
        if font not in self._families:
            from matplotlib import font_manager

            path = fonts.font_path(font)
            font_manager.fontManager.addfont(path)
            self._families[font] = font_manager.FontProperties(fname=path).get_name()
        return self._families[font]

    def close(self) -> None:
        self._fig = None
        self._canvas = None

    # -- sampling ---------------------------------------------------------------------------------
    def _sample_style(self, rng: np.random.Generator, data: ChartData) -> dict[str, Any]:
        landscape = bool(rng.random() < 0.7)
        short = int(rng.integers(self.size * 9 // 16, self.size + 1))
        width, height = (self.size, short) if landscape else (short, self.size)
        scale = self.size / 1024
        palette = list(PALETTES)[int(rng.integers(len(PALETTES)))]
        return {
            "width": width,
            "height": height,
            "font": ZH_FONT if data.lang == "zh" else EN_FONTS[int(rng.integers(len(EN_FONTS)))],
            "palette": palette,
            "color_offset": int(rng.integers(len(PALETTES[palette]))),
            "background": BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
            "title_pt": round(float(rng.uniform(14, 22)) * scale, 1),
            "label_pt": round(float(rng.uniform(10, 15)) * scale, 1),
            "tick_pt": round(float(rng.uniform(9, 13)) * scale, 1),
            "grid": ["none", "-", "--", ":"][int(rng.integers(4))],
            "open_spines": bool(rng.random() < 0.5),
            "show_values": bool(rng.random() < 0.5),
            "legend_loc": LEGEND_LOCS[int(rng.integers(len(LEGEND_LOCS)))],
            "tick_rotation": [0, 0, 30, 45][int(rng.integers(4))],
            "bar_width": round(float(rng.uniform(0.5, 0.85)), 2),
            "line_width": round(float(rng.uniform(1.2, 3.0)) * scale, 2),
            "marker": MARKERS[int(rng.integers(len(MARKERS)))],
            "donut": bool(rng.random() < 0.3),
            "start_angle": int(rng.integers(0, 360)),
        }

    # -- drawing ----------------------------------------------------------------------------------
    def _draw(self, data: ChartData, st: dict[str, Any]):
        from matplotlib import rc_context
        from PIL import Image

        fig = self._figure()
        fig.clear()
        fig.set_size_inches(st["width"] / DPI, st["height"] / DPI)
        fig.set_facecolor(st["background"])
        pal = PALETTES[st["palette"]]
        colors = [pal[(st["color_offset"] + i) % len(pal)] for i in range(max(len(data.series), len(data.categories)))]
        rc = {
            "font.family": [self._family(st["font"])],
            "font.size": st["tick_pt"],
            "axes.unicode_minus": False,
            "svg.fonttype": "none",
            # Every string is drawn as written: "from $5 to $9" is text, not mathtext (which would draw
            # "from 5 to 9" in italics, or raise on an unbalanced "$\frac{$"), as the target has it.
            "text.parse_math": False,
        }
        with rc_context(rc):
            ax = fig.add_subplot()
            ax.set_facecolor(st["background"])
            values = _PLOTTERS[data.chart_type](ax, data, st, colors)
            ax.set_title(data.title, fontsize=st["title_pt"], pad=12)
            texts = [*values, ax.title]
            if data.chart_type != "pie":
                if data.x_title:
                    texts.append(ax.set_xlabel(data.x_title, fontsize=st["label_pt"]))
                if data.y_title:
                    texts.append(ax.set_ylabel(data.y_title, fontsize=st["label_pt"]))
                if st["grid"] != "none":
                    ax.grid(True, axis="y" if data.chart_type != "hbar" else "x", linestyle=st["grid"], alpha=0.5)
                    ax.set_axisbelow(True)
                if st["open_spines"]:
                    ax.spines[["top", "right"]].set_visible(False)
            # Series names are in the target, so the legend is always drawn (pie: the categories).
            outside = st["legend_loc"] == "outside right"
            kw = {"loc": "center left", "bbox_to_anchor": (1.01, 0.5)} if outside else {"loc": st["legend_loc"]}
            legend = ax.legend(fontsize=st["tick_pt"], frameon=not outside, **kw)
            texts += legend.get_texts()
            renderer = self._canvas.get_renderer()
            _fit_margins(fig, ax, data, st, legend if outside else None, renderer)
            self._canvas.draw()
            _check_inside(fig, renderer, ax, texts, legend)
            named = [t for t in texts[len(values):] if t not in legend.get_texts()]
            if _gate_text(renderer, ax, values, named, legend, st, outside):
                self._canvas.draw()  # the legend moved or value labels were hidden: draw what the gate decided
            w, h = self._canvas.get_width_height()
            img = Image.frombuffer("RGBA", (w, h), self._canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
        return img

    def make(self, seed: int, index: int, prepared: None = None) -> list[Sample]:
        _, lang, chart_type, data, style = self.draw(seed, index)
        fonts.require_coverage("".join(data.texts()), style["font"])
        img = self._draw(data, style)
        check_not_blank(img.reduce(4))  # the ink fraction survives a 4x box reduction; 5x cheaper
        sampled = {"lang": lang, "chart_type": chart_type, "data": data.to_meta(), "style": style}
        return [self.finish_sample(seed, index, img, self.rng(seed, index, stream=1), lang=lang, text=data.target(),
                                   sampled=sampled, size=self.size, degradations=self.degradations, min_ink=None)]


def _tick_strings(axis) -> list[str]:
    """The labels the axis will draw, from its locator and formatter: no text layout needed."""
    lo, hi = sorted(axis.get_view_interval())
    eps = (hi - lo) * 1e-9
    locs = [v for v in axis.get_major_locator()() if lo - eps <= v <= hi + eps]
    return [s for s in axis.get_major_formatter().format_ticks(locs) if s]


def _fit_margins(fig, ax, data: ChartData, st: dict[str, Any], outside_legend, renderer) -> None:
    """Subplot margins from the extents of the texts around the axes, measured with font metrics.

    What `tight_layout` does, at a fraction of its cost (it lays out every tick twice); the overflow check
    after the draw still catches a miss."""
    from math import cos, radians, sin

    from matplotlib.font_manager import FontProperties

    width, height = fig.canvas.get_width_height()
    px = DPI / 72.0
    family = ax.title.get_fontfamily()

    def extent(texts: list[str], size_pt: float, rotation: float = 0.0) -> tuple[float, float]:
        prop = FontProperties(family=family, size=size_pt)
        w = h = 0.0
        for t in texts:
            tw, th, _ = renderer.get_text_width_height_descent(t, prop, ismath=False)
            r = radians(rotation)
            w = max(w, tw * cos(r) + th * sin(r))
            h = max(h, tw * sin(r) + th * cos(r))
        return w, h

    outer = 8 * px
    tick_gap = 7.5 * px  # major tick length 3.5 pt + pad 3.5 pt, and a little air
    _, title_h = extent([data.title], st["title_pt"])
    top = outer + title_h + 12 * px
    left = bottom = right = outer
    if data.chart_type != "pie":
        rot = st["tick_rotation"] if data.chart_type in ("bar", "grouped_bar", "stacked_bar", "line", "area") else 0
        _, xt_h = extent(_tick_strings(ax.xaxis), st["tick_pt"], rot)
        yt_w, _ = extent(_tick_strings(ax.yaxis), st["tick_pt"])
        _, xl_h = extent([data.x_title or ""], st["label_pt"])
        _, yl_h = extent([data.y_title or ""], st["label_pt"])
        bottom += xt_h + tick_gap + xl_h + 4 * px
        left += yt_w + tick_gap + yl_h + 4 * px
    if outside_legend is not None:
        right += outside_legend.get_window_extent(renderer).width + 0.02 * width
    if left + right >= width * 0.8 or top + bottom >= height * 0.8:
        raise Reject("overflow", f"labels leave no room for the plot on a {width}x{height} canvas")
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)


def _drawn_ticklabels(axis) -> list:
    """Tick labels inside the view interval: matplotlib keeps labels for ticks it does not draw."""
    lo, hi = sorted(axis.get_view_interval())
    eps = (hi - lo) * 1e-9
    return [lab for loc, lab in zip(axis.get_majorticklocs(), axis.get_majorticklabels()) if lo - eps <= loc <= hi + eps]


def _check_inside(fig, renderer, ax, texts, legend) -> None:
    """Reject a chart whose drawn text runs off the canvas: the target would hold text the image does not.
    Runs after the draw, so the text extents come from matplotlib's layout cache."""
    fw, fh = fig.canvas.get_width_height()
    items = [t for t in texts if t.get_visible() and t.get_text()]
    if ax.name != "polar" and ax.axison:
        items += _drawn_ticklabels(ax.xaxis) + _drawn_ticklabels(ax.yaxis)
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in items]
    if legend is not None:
        boxes.append(("legend", legend.get_window_extent(renderer)))
    for what, bb in boxes:
        if bb.x0 < -0.5 or bb.y0 < -0.5 or bb.x1 > fw + 0.5 or bb.y1 > fh + 0.5:
            raise Reject("overflow", f"text {what[:40]!r} runs off the {fw}x{fh} canvas "
                         f"(box {bb.x0:.0f},{bb.y0:.0f},{bb.x1:.0f},{bb.y1:.0f})")


# Where a legend inside the axes may go when the sampled place would hide text, in order of preference.
_INSIDE_LOCS = ("upper right", "upper left", "lower right", "lower left", "upper center", "lower center",
                "center right", "center left")


def _boxes(texts: list, renderer) -> np.ndarray:
    """(n, 4) x0, y0, x1, y1 of the texts' drawn extents, shrunk by half a pixel so that touching is not overlapping."""
    if not texts:
        return np.zeros((0, 4))
    b = np.array([t.get_window_extent(renderer).extents for t in texts], dtype=float)
    return b + np.array([0.5, 0.5, -0.5, -0.5])


def _hits(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which of `boxes` overlap `box`."""
    if not len(boxes):
        return np.zeros(0, dtype=bool)
    return (boxes[:, 0] < box[2]) & (boxes[:, 2] > box[0]) & (boxes[:, 1] < box[3]) & (boxes[:, 3] > box[1])


def _gate_text(renderer, ax, values: list, named: list, legend, st: dict[str, Any], outside: bool) -> bool:
    """The text gate `echart`'s page applies, for matplotlib (runs after a draw, on its layout). `values`:
    the value labels; `named`: the texts the target names (title, axis titles; the tick labels and legend
    entries are taken from `ax` and `legend`).
    - the named texts must not overlap each other: Reject("overlap") naming two of them;
    - value labels are optional (the target holds the data either way): one that overlaps a named text or
      an earlier value label is hidden, as ECharts' `hideOverlap` does;
    - the legend must hide no text: it moves to the first place of `_INSIDE_LOCS` where it hides nothing
      (`st["legend_loc"]` records where it went), or the chart is Reject("overlap") naming what it hides.
    Returns whether anything changed (then the canvas must be drawn again)."""
    named = [t for t in named if t.get_visible() and t.get_text()]
    if ax.name != "polar" and ax.axison:
        named += [t for t in _drawn_ticklabels(ax.xaxis) + _drawn_ticklabels(ax.yaxis) if t.get_text()]
    boxes = _boxes(named, renderer)
    for i in range(len(named)):
        hit = _hits(boxes[i], boxes[i + 1:])
        if hit.any():
            other = named[i + 1 + int(np.argmax(hit))]
            raise Reject("overlap", f"text {named[i].get_text()[:40]!r} overlaps {other.get_text()[:40]!r}")
    changed = False
    for t in values:
        if not (t.get_visible() and t.get_text()):
            continue
        box = _boxes([t], renderer)
        if _hits(box[0], boxes).any():
            t.set_visible(False)
            changed = True
            continue
        named.append(t)
        boxes = np.vstack([boxes, box])
    if outside:
        return changed
    first_hidden = ""
    for loc in [st["legend_loc"], *(loc for loc in _INSIDE_LOCS if loc != st["legend_loc"])]:
        if loc != st["legend_loc"]:
            legend.set_loc(loc)
        hidden = _hits(np.array(legend.get_window_extent(renderer).extents), boxes)
        if not hidden.any():
            if loc != st["legend_loc"]:
                st["legend_loc"] = loc
                changed = True
            return changed
        first_hidden = first_hidden or named[int(np.argmax(hidden))].get_text()
    raise Reject("overlap", f"the legend hides {first_hidden[:40]!r} wherever it is placed inside the axes")


def _value_labels(ax, container, data: ChartData, st: dict[str, Any], texts: list, **kw) -> None:
    if st["show_values"]:
        texts += ax.bar_label(container, labels=[data.fmt(v) for v in container.datavalues], fontsize=st["tick_pt"] * 0.9, **kw)


def _bars(ax, data: ChartData, st: dict[str, Any], colors: list[str]) -> list:
    texts: list = []
    n = len(data.series)
    x = np.arange(len(data.categories))
    horizontal = data.chart_type == "hbar"
    stacked = data.chart_type == "stacked_bar"
    width = st["bar_width"] if stacked or n == 1 else st["bar_width"] / n
    bottom = np.zeros(len(data.categories))
    for i, (name, vals) in enumerate(data.series):
        pos = x if stacked or n == 1 else x - st["bar_width"] / 2 + width * (i + 0.5)
        if horizontal:
            c = ax.barh(pos, vals, height=width, label=name, color=colors[i])
        else:
            c = ax.bar(pos, vals, width=width, bottom=bottom if stacked else None, label=name, color=colors[i])
        _value_labels(ax, c, data, st, texts, label_type="center" if stacked else "edge", padding=2)
        if stacked:
            bottom = bottom + np.asarray(vals, dtype=float)
    if horizontal:
        ax.set_yticks(x, data.categories)
        ax.invert_yaxis()  # first category on top, the order a reader (and the target) lists them
    else:
        ax.set_xticks(x, data.categories, rotation=st["tick_rotation"], ha="right" if st["tick_rotation"] else "center")
    ax.margins(x=0.02) if not horizontal else ax.margins(y=0.02)
    if st["show_values"]:
        ax.margins(**({"x": 0.12} if horizontal else {"y": 0.1}))
    return texts


def _lines(ax, data: ChartData, st: dict[str, Any], colors: list[str]) -> list:
    texts: list = []
    x = np.arange(len(data.categories))
    for i, (name, vals) in enumerate(data.series):
        ax.plot(x, vals, label=name, color=colors[i], linewidth=st["line_width"], marker=st["marker"] or None)
        if data.chart_type == "area":
            ax.fill_between(x, vals, alpha=0.25, color=colors[i])
        if st["show_values"]:
            for xi, v in zip(x, vals):
                texts.append(ax.annotate(data.fmt(v), (xi, v), textcoords="offset points", xytext=(0, 5), ha="center",
                                         fontsize=st["tick_pt"] * 0.85, color=colors[i]))
    ax.set_xticks(x, data.categories, rotation=st["tick_rotation"], ha="right" if st["tick_rotation"] else "center")
    if data.chart_type == "area":
        ax.set_ylim(bottom=0)
    ax.margins(y=0.12)
    return texts


def _pie(ax, data: ChartData, st: dict[str, Any], colors: list[str]) -> list:
    vals = data.series[0][1]
    kw: dict[str, Any] = {"wedgeprops": {"width": 0.45}} if st["donut"] else {}
    wedges, _, *auto = ax.pie(
        vals, labels=None, colors=colors[: len(vals)], startangle=st["start_angle"], counterclock=False,
        autopct=(lambda p, it=iter(vals): data.fmt(next(it))) if st["show_values"] else None,
        pctdistance=0.78 if st["donut"] else 0.65, textprops={"fontsize": st["tick_pt"]}, **kw,
    )
    for w, name in zip(wedges, data.categories):
        w.set_label(name)
    ax.set_aspect("equal")
    return list(auto[0]) if auto else []


def _scatter(ax, data: ChartData, st: dict[str, Any], colors: list[str]) -> list:
    for i, (name, pts) in enumerate(data.series):
        xs, ys = zip(*pts)
        ax.scatter(xs, ys, label=name, color=colors[i], marker=st["marker"] or "o", s=30 * st["line_width"])
    ax.margins(0.08)
    return []


_PLOTTERS = {
    "bar": _bars, "grouped_bar": _bars, "stacked_bar": _bars, "hbar": _bars,
    "line": _lines, "area": _lines, "pie": _pie, "scatter": _scatter,
}
