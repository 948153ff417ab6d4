"""The data behind one chart, shared by the matplotlib (`chart`) and ECharts (`echart`) kinds.

A `ChartData` is drawn first (texts from `generators.chart_text`, values already rounded to the precision they
are shown with), then handed to a renderer, so the target — Vary's python-dict of the chart's data — is known by
construction and equals what is drawn.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from generators.base import GeneratorError
from generators.chart_text import ChartTexts
from generators.degrade import check_spec

CHART_TYPES = ("bar", "grouped_bar", "stacked_bar", "hbar", "line", "area", "pie", "scatter")
LANG_CHOICES = ("en", "zh", "mixed")

# (min, max) categories and series per type; scatter's "categories" are points per series.
_SHAPES: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "bar": ((3, 8), (1, 1)),
    "grouped_bar": ((3, 6), (2, 4)),
    "stacked_bar": ((3, 7), (2, 4)),
    "hbar": ((3, 8), (1, 2)),
    "line": ((4, 10), (1, 4)),
    "area": ((4, 10), (1, 3)),
    "pie": ((3, 7), (1, 1)),
    "scatter": ((5, 16), (1, 3)),
}
MAGNITUDES = (1, 10, 100, 1000, 10000)
# Below 256 px the labels are unreadable; above 4096 one chart costs more memory than a page of text.
MIN_SIZE, MAX_SIZE = 256, 4096


@dataclass(frozen=True)
class ChartData:
    chart_type: str
    lang: str
    title: str
    category_title: str | None  # the axis holding categories (x, or y for hbar; scatter: x)
    value_title: str | None
    categories: list[str]  # bar/line/area/pie labels; empty for scatter
    series: list[tuple[str, list[Any]]]  # (name, values aligned with categories | [(x, y), ...] for scatter)
    decimals: int
    thousands: bool

    @property
    def x_title(self) -> str | None:
        return self.value_title if self.chart_type == "hbar" else self.category_title

    @property
    def y_title(self) -> str | None:
        return self.category_title if self.chart_type == "hbar" else self.value_title

    def texts(self) -> list[str]:
        """Every string the chart draws, for the font coverage check."""
        out = [self.title, *self.categories, *(name for name, _ in self.series)]
        out += [t for t in (self.category_title, self.value_title) if t]
        return out + [self.fmt(v) for v in self.all_values()]

    def all_values(self) -> list[float | int]:
        if self.chart_type == "scatter":
            return [c for _, pts in self.series for p in pts for c in p]
        return [v for _, vals in self.series for v in vals]

    def fmt(self, v: float | int) -> str:
        """A value as its label shows it."""
        return f"{v:,.{self.decimals}f}" if self.thousands else f"{v:.{self.decimals}f}"

    def target_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.chart_type, "title": self.title}
        if self.chart_type == "pie":
            d["data"] = dict(zip(self.categories, self.series[0][1]))
            return d
        d["x_title"] = self.x_title
        d["y_title"] = self.y_title
        if self.chart_type == "scatter":
            d["data"] = {name: [tuple(p) for p in pts] for name, pts in self.series}
        else:
            d["data"] = {name: dict(zip(self.categories, vals)) for name, vals in self.series}
        return d

    def target(self) -> str:
        """Vary's target: the python-dict of the chart's data (insertion-ordered, values as displayed)."""
        return repr(self.target_dict())

    def to_meta(self) -> dict[str, Any]:
        d = asdict(self)
        d["series"] = [[name, [list(v) if isinstance(v, tuple) else v for v in vals]] for name, vals in self.series]
        return d

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "ChartData":
        """The data a sample's `meta["sampled"]["data"]` records (`to_meta` reversed)."""
        d = dict(meta)
        d["series"] = [(name, [tuple(v) if isinstance(v, list) else v for v in vals]) for name, vals in d["series"]]
        return cls(**d)


def check_chart_types(types: Any) -> tuple[str, ...]:
    types = tuple(types or CHART_TYPES)
    bad = [t for t in types if t not in CHART_TYPES]
    if bad:
        raise GeneratorError(f"unknown chart types {bad}; known: {', '.join(CHART_TYPES)}")
    return types


def check_lang(lang: str) -> str:
    if lang not in LANG_CHOICES:
        raise GeneratorError(f"lang must be one of {LANG_CHOICES}, not {lang!r}")
    return lang


def check_chart_params(lang: str, chart_types: Any, size: Any,
                       degradations: dict | None) -> tuple[str, tuple[str, ...], int]:
    """The checked (lang, chart_types, size) of a chart kind, or GeneratorError naming the bad parameter.
    `chart` and `echart` take the same parameters and follow this one rule."""
    size = int(size)
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise GeneratorError(f"size must lie in [{MIN_SIZE}, {MAX_SIZE}] px, not {size}")
    check_spec(degradations)
    return check_lang(lang), check_chart_types(chart_types), size


def distinct(draw, n: int, max_tries: int = 8) -> list[str]:
    """n distinct non-empty strings from `draw()`; a chart with two equal labels has an ambiguous target."""
    out: list[str] = []
    seen: set[str] = set()
    for _ in range(n * max_tries):
        s = draw()
        if s and s.lower() not in seen:
            seen.add(s.lower())
            out.append(s)
            if len(out) == n:
                return out
    return out


def _round(v: float, decimals: int) -> float | int:
    return int(round(v)) if decimals == 0 else round(float(v), decimals)


def sample_chart_data(rng: np.random.Generator, texts: ChartTexts, chart_type: str, lang: str) -> ChartData:
    """The data of one chart: shape from `_SHAPES`, words from `texts`, values drawn at a scale the texts
    allow (or the texts' own values), rounded to the decimals they are shown with."""
    (cmin, cmax), (smin, smax) = _SHAPES[chart_type]
    n_cat = int(rng.integers(cmin, cmax + 1))
    n_series = int(rng.integers(smin, smax + 1))
    drawn = texts.draw(rng, chart_type, n_cat, n_series)
    title, cat_title, val_title, names = drawn.title, drawn.category_title, drawn.value_title, drawn.names
    if chart_type == "pie":
        cat_title = val_title = None
    categories = drawn.categories
    decimals = int(rng.integers(0, 3))
    magnitude = int(drawn.magnitudes[int(rng.integers(len(drawn.magnitudes)))])
    thousands = bool(magnitude >= 1000 and rng.random() < 0.5)
    x_mag = int(MAGNITUDES[int(rng.integers(len(MAGNITUDES)))]) if chart_type == "scatter" else magnitude
    if min(magnitude, x_mag) == 1:
        decimals = max(decimals, 1)  # values of 0 and 1 only would make a dull, ambiguous chart
    if chart_type == "scatter":
        series = []
        for name in names:
            xs = rng.uniform(0, 1, n_cat) * x_mag
            ys = rng.uniform(0.05, 1, n_cat) * magnitude
            series.append((name, [(_round(x, decimals), _round(y, decimals)) for x, y in zip(xs, ys)]))
        return ChartData(chart_type, lang, title, cat_title, val_title, [], series, decimals, thousands)
    if drawn.values is not None:
        # The record's own values, shown with as many decimals as the most precise of them needs.
        vals = [v for vs in drawn.values for v in vs]
        decimals = max((len(repr(float(v)).split(".")[1].rstrip("0")) for v in vals if float(v) != int(v)), default=0)
        decimals = min(decimals, 3)
        thousands = any(abs(v) >= 10000 for v in vals)
        series = [(name, [_round(v, decimals) for v in vs]) for name, vs in zip(names, drawn.values)]
        return ChartData(chart_type, lang, title, cat_title, val_title, categories, series, decimals, thousands)
    series = []
    for name in names:
        if chart_type in ("line", "area"):
            # A random walk reads like a real time series more than independent draws do.
            steps = rng.normal(0, 0.15, len(categories))
            vals = _fold(0.5 + np.cumsum(steps), 0.05, 1.0) * magnitude
        else:
            vals = rng.uniform(0.1, 1.0, len(categories)) * magnitude
        series.append((name, [_round(v, decimals) for v in vals]))
    return ChartData(chart_type, lang, title, cat_title, val_title, categories, series, decimals, thousands)


def _fold(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """`x` reflected back into [lo, hi] at each bound. Clipping would turn a walk that wanders out into a
    flat run of values at the bound (six equal maxima in a row reads as a broken chart)."""
    span = hi - lo
    t = np.mod(x - lo, 2 * span)
    return lo + np.where(t > span, 2 * span - t, t)
