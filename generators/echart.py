"""`echart`: pyecharts options drawn by ECharts in one persistent offline Chromium (`BrowserRenderer`).

pyecharts builds the option (Bar, Line, Pie, Scatter); its JSON goes to the page as a WebDriver argument, and
the PNG comes back as the canvas' data URL (the pixels `getDataURL` gives). The page also rejects a near-blank
chart and text the target names that the image does not show in full (off the canvas, drawn over other text,
hidden or truncated by ECharts). pyecharts' own `render`/`make_snapshot` path (an HTML file per chart pointing
at a CDN, a browser start per chart: 2.5 s each, docs/measured-figures.md) is never used. The canvas is always
`size`×`size`, so without degradations the browser's PNG is the sample as is: no decode/re-encode.
"""
from __future__ import annotations

import functools
import json
import math
from typing import Any

import numpy as np

from generators import fonts
from generators.base import PROMPT_CHART, Generator, OwnsRenderers, Sample
from generators.chart import BACKGROUNDS, PALETTES, ZH_FONT, DrawsCharts
from generators.chart_data import ChartData
from generators.sources import InputFiles

EN_FONTS = ("DejaVu Sans", "DejaVu Serif")
LEGEND_POS = ("top", "bottom", "right")
SYMBOLS = ("circle", "rect", "triangle", "diamond", "emptyCircle", "none")


class EChartGenerator(DrawsCharts, OwnsRenderers, Generator):
    kind = "echart"
    version = "4"
    input_params = ("corpus", "records")
    timeout_s = 30.0  # per page call of the browser (BrowserRenderer's own default)

    def __init__(
        self,
        lang: str = "en",
        chart_types: list[str] | None = None,
        corpus: str | dict[str, str] | None = None,
        size: int = 1024,
        degradations: dict | None = None,
        prompt: str = PROMPT_CHART,
        files: InputFiles | None = None,  # where corpus and records are read
        renderer: Any = None,
        records: str | dict[str, str] | None = None,
    ):
        super().__init__(lang=lang, chart_types=chart_types, corpus=corpus, records=records, size=size,
                         degradations=degradations, prompt=prompt)
        self._init_charts(lang, chart_types, corpus, records, size, degradations, prompt, files)
        # A caller may share one browser between generators; then it also closes it.
        if renderer is not None:
            self._browser, self._shared = renderer, frozenset({"_browser"})

    # -- sampling ---------------------------------------------------------------------------------
    def _sample_style(self, rng: np.random.Generator, data: ChartData) -> dict[str, Any]:
        scale = self.size / 1024
        palette = list(PALETTES)[int(rng.integers(len(PALETTES)))]
        # Margins stand in for the aspect-ratio variety of `chart`: the canvas itself is always square.
        margins = [int(v) for v in rng.integers(4, 18, size=4)]  # percent: left, right, top, bottom
        return {
            "font": ZH_FONT if data.lang == "zh" else EN_FONTS[int(rng.integers(len(EN_FONTS)))],
            "palette": palette,
            "color_offset": int(rng.integers(len(PALETTES[palette]))),
            "background": BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
            "title_px": int(rng.integers(18, 30) * scale),
            "label_px": int(rng.integers(13, 19) * scale),
            "tick_px": int(rng.integers(12, 17) * scale),
            "title_left": ["left", "center"][int(rng.integers(2))],
            "legend_pos": LEGEND_POS[int(rng.integers(len(LEGEND_POS)))],
            "margins_pct": margins,
            "show_values": bool(rng.random() < 0.5),
            "split_line": bool(rng.random() < 0.7),
            "smooth": bool(rng.random() < 0.3),
            "symbol": SYMBOLS[int(rng.integers(len(SYMBOLS)))],
            "bar_gap_pct": int(rng.integers(10, 50)),
            "donut": bool(rng.random() < 0.3),
            "rose": bool(rng.random() < 0.15),
            "tick_rotate": [0, 0, 30, 45][int(rng.integers(4))],
        }

    # -- option -----------------------------------------------------------------------------------
    def build_option(self, data: ChartData, st: dict[str, Any]) -> dict[str, Any]:
        """The ECharts option of a chart, made by pyecharts' chart classes: the series, then the title,
        legend and axes, then what pyecharts has no argument for."""
        chart = _series_chart(data, st, self.size)
        chart.set_global_opts(**_global_opts(data, st))
        option = json.loads(chart.dump_options())
        _add_layout(option, data, st)
        return option

    # -- rendering --------------------------------------------------------------------------------
    def make(self, seed: int, index: int, prepared: None = None) -> list[Sample]:
        _, lang, chart_type, data, style = self.draw(seed, index)
        fonts.require_coverage("".join(data.texts()), style["font"])
        option = self.build_option(data, style)
        png = self.browser().render_echart(option, self.size, self.size, background=style["background"],
                                             required_text=target_texts(data))
        # The page already rejected a blank or overflowing chart; the tail decodes the PNG only when a
        # degradation needs its pixels.
        sampled = {"lang": lang, "chart_type": chart_type, "data": data.to_meta(), "style": style}
        return [self.finish_sample(seed, index, png, self.rng(seed, index, stream=1), lang=lang, text=data.target(),
                                   sampled=sampled, degradations=self.degradations, min_ink=None)]


# -- the option, part by part ------------------------------------------------------------------------------
def _series_chart(data: ChartData, st: dict[str, Any], size: int) -> Any:
    """The pyecharts chart of the data's type holding its series, in the sampled palette."""
    from pyecharts import options as opts
    from pyecharts.charts import Bar, Line, Pie, Scatter

    init = opts.InitOpts(width=f"{size}px", height=f"{size}px", bg_color=st["background"],
                         animation_opts=opts.AnimationOpts(animation=False))
    label = opts.LabelOpts(is_show=st["show_values"], font_size=st["tick_px"])
    ct = data.chart_type
    if ct == "pie":
        chart = Pie(init_opts=init).add(
            data.series[0][0], [list(p) for p in zip(data.categories, data.series[0][1])],
            radius=["38%", "68%"] if st["donut"] else [0, "68%"], rosetype="radius" if st["rose"] else None,
            center=["50%", "55%"],
            label_opts=opts.LabelOpts(is_show=st["show_values"], formatter="{c}", font_size=st["tick_px"]),
        )
    elif ct == "scatter":
        chart = Scatter(init_opts=init).add_xaxis([])  # no shared x: each point carries its own [x, y]
        for name, pts in data.series:
            chart.add_yaxis(name, [list(p) for p in pts], symbol_size=int(10 * size / 1024),
                            label_opts=opts.LabelOpts(is_show=False))
    elif ct in ("line", "area"):
        chart = Line(init_opts=init).add_xaxis(list(data.categories))
        for name, vals in data.series:
            chart.add_yaxis(name, list(vals), is_smooth=st["smooth"], symbol=st["symbol"], label_opts=label,
                            areastyle_opts=opts.AreaStyleOpts(opacity=0.3) if ct == "area" else None)
    else:
        chart = Bar(init_opts=init).add_xaxis(list(data.categories))
        for name, vals in data.series:
            chart.add_yaxis(name, list(vals), stack="total" if ct == "stacked_bar" else None,
                            gap=f"{st['bar_gap_pct']}%", label_opts=label)
        if ct == "hbar":
            chart.reversal_axis()
    pal = PALETTES[st["palette"]]
    chart.set_colors([pal[(st["color_offset"] + i) % len(pal)] for i in range(len(pal))])
    return chart


def _global_opts(data: ChartData, st: dict[str, Any]) -> dict[str, Any]:
    """Title, legend (placed by the sampled position), no tooltip, and the axes of a chart that has them."""
    from pyecharts import options as opts

    top = st["margins_pct"][2]
    legend_kw: dict[str, Any] = {
        "top": {"pos_top": f"{top // 2 + 4}%"}, "bottom": {"pos_bottom": "1%"},
        "right": {"pos_right": "1%", "orient": "vertical", "pos_top": "middle"},
    }[st["legend_pos"]]
    out: dict[str, Any] = {
        "title_opts": opts.TitleOpts(title=data.title, pos_left=st["title_left"], pos_top="1%",
                                     title_textstyle_opts=opts.TextStyleOpts(font_size=st["title_px"])),
        "legend_opts": opts.LegendOpts(textstyle_opts=opts.TextStyleOpts(font_size=st["tick_px"]), **legend_kw),
        "tooltip_opts": opts.TooltipOpts(is_show=False),
    }
    if data.chart_type != "pie":
        out.update(_axes_opts(data, st))
    return out


def _axes_opts(data: ChartData, st: dict[str, Any]) -> dict[str, Any]:
    """`xaxis_opts` and `yaxis_opts`: which axis holds values and which categories (hbar and scatter have
    values on x), the ticks, the names and how far the names stand off their axis."""
    from pyecharts import options as opts

    ct = data.chart_type
    name_style = opts.TextStyleOpts(font_size=st["label_px"])
    tick_label = opts.LabelOpts(font_size=st["tick_px"])
    # interval=0: every category label is drawn (ECharts would otherwise skip some that the target lists).
    cat_label = opts.LabelOpts(font_size=st["tick_px"], rotate=st["tick_rotate"] if ct != "hbar" else 0, interval=0)
    split = opts.SplitLineOpts(is_show=st["split_line"])
    x_is_value = ct in ("hbar", "scatter")
    x_gap, y_gap = _name_gaps(data, st)
    x_axis = dict(name=data.x_title, name_location="middle", name_gap=x_gap,
                  name_textstyle_opts=name_style, axislabel_opts=tick_label if x_is_value else cat_label,
                  type_="value" if x_is_value else "category", splitline_opts=split if x_is_value else None)
    y_axis = dict(name=data.y_title, name_location="middle", name_gap=y_gap,
                  name_textstyle_opts=name_style, axislabel_opts=cat_label if ct == "hbar" else tick_label,
                  type_="category" if ct == "hbar" else "value", splitline_opts=None if ct == "hbar" else split,
                  is_inverse=ct == "hbar")  # hbar: first category on top, as the target lists it
    if ct == "scatter":
        x_axis["is_scale"] = y_axis["is_scale"] = True
    return {"xaxis_opts": opts.AxisOpts(**x_axis), "yaxis_opts": opts.AxisOpts(**y_axis)}


def _name_gaps(data: ChartData, st: dict[str, Any]) -> tuple[int, int]:
    """How far the x and y axis names stand off their axes. A name sits beyond its tick labels: the gap
    grows with the category labels' extent (long or rotated labels would otherwise run into the name).
    hbar's labels lie level beside a vertical axis: they reach out by their full width, as if turned 90
    degrees."""
    ct = data.chart_type
    cat_extent = _label_extent(data.categories, st["font"], st["tick_px"], 90 if ct == "hbar" else st["tick_rotate"])
    x_gap = int(st["label_px"] * 2.2 + st["tick_px"])
    y_gap = int(st["label_px"] * 3.5 + st["tick_px"])
    if ct == "hbar":
        y_gap = max(y_gap, int(cat_extent + 8 + st["label_px"] * 0.8))
    elif ct != "scatter":
        x_gap = max(x_gap, int(cat_extent + 8 + st["label_px"] * 0.5))
    return x_gap, y_gap


def _add_layout(option: dict[str, Any], data: ChartData, st: dict[str, Any]) -> None:
    """What pyecharts has no argument for: the text font, value labels that hide rather than overlap, and
    the plot's grid inside the sampled margins (room on the right for a legend placed there)."""
    option["textStyle"] = {"fontFamily": st["font"]}
    if st["show_values"]:
        # Value labels of neighbouring points (two series at one value) would be drawn over each other
        # and read as neither; ECharts hides one of two overlapping value labels instead.
        for series in option["series"]:
            series["labelLayout"] = {"hideOverlap": True}
    if data.chart_type != "pie":
        left, right, top, bottom = st["margins_pct"]
        option["grid"] = {"left": f"{left + 6}%", "right": f"{right + (14 if st['legend_pos'] == 'right' else 0)}%",
                          "top": f"{top + 8}%", "bottom": f"{bottom + 4}%", "containLabel": True}


@functools.lru_cache(maxsize=64)
def _font(family: str, px: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(fonts.font_path(family), px)


def _label_extent(labels: list[str], family: str, px: int, rotate_deg: int) -> float:
    """How far the longest of `labels`, drawn at `px` and turned by `rotate_deg`, reaches away from its
    axis (its width measured with the font the page draws it with, PIL's advance widths)."""
    if not labels:
        return 0.0
    width = max(_font(family, px).getlength(t) for t in labels)
    a = math.radians(rotate_deg)
    return width * math.sin(a) + px * math.cos(a)


def target_texts(data: ChartData) -> list[str]:
    """The strings of the target the chart must show in full: title, axis names, legend entries (series
    names; a pie's legend lists its categories) and category labels."""
    if data.chart_type == "pie":
        return [data.title, *data.categories]
    out = [data.title, *(t for t in (data.x_title, data.y_title) if t), *(name for name, _ in data.series)]
    return out + list(data.categories)
