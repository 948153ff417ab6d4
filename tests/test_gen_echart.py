"""`echart` (pyecharts -> ECharts in one offline Chromium): the dict target equals the option drawn, CJK has
no tofu, same seed -> same bytes."""
from __future__ import annotations

import ast
import base64
import io
from typing import Any

import pytest
from PIL import Image

from generators import get_generator
from generators.base import PROMPT_CHART, Reject, Rejected, Sample
from generators.browser import BrowserRenderer
from generators.chart_data import CHART_TYPES, ChartData
from tests.gen_support import first_sample


@pytest.fixture(scope="module")
def browser():
    with BrowserRenderer() as b:
        yield b


def axis(option: dict, name: str) -> dict:
    a = option[name]
    return a[0] if isinstance(a, list) else a


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("chart_type", CHART_TYPES)
def test_target_is_the_option_drawn(browser, lang, chart_type):
    gen = get_generator("echart", lang=lang, chart_types=[chart_type], renderer=browser)
    s = first_sample(gen)
    assert (s.kind, s.lang, s.prompt, s.width, s.height) == ("echart", lang, PROMPT_CHART, 1024, 1024)
    assert Image.open(io.BytesIO(s.image)).size == (1024, 1024)
    target = ast.literal_eval(s.text)
    option = gen.build_option(ChartData.from_meta(s.meta["sampled"]["data"]), s.meta["sampled"]["style"])
    # The recorded option is what was drawn: rendering it again gives the sample's bytes.
    assert browser.render_echart(option, 1024, 1024, s.meta["sampled"]["style"]["background"]) == s.image

    title = option["title"][0] if isinstance(option["title"], list) else option["title"]
    assert target["title"] == title["text"] and target["type"] == chart_type
    series = option["series"]
    if chart_type == "pie":
        assert target["data"] == {d["name"]: d["value"] for d in series[0]["data"]}
        return
    assert list(target["data"]) == [s_["name"] for s_ in series]
    x, y = axis(option, "xAxis"), axis(option, "yAxis")
    assert (target["x_title"], target["y_title"]) == (x.get("name"), y.get("name"))
    if chart_type == "scatter":
        for s_, pts in zip(series, target["data"].values()):
            assert [tuple(p) for p in s_["data"]] == pts
        return
    cat_axis = y if chart_type == "hbar" else x
    assert cat_axis["type"] == "category" and cat_axis["axisLabel"]["interval"] == 0  # every label drawn
    for s_, by_cat in zip(series, target["data"].values()):
        assert list(by_cat) == cat_axis["data"]
        # pyecharts writes Line points as [category, value] pairs and Bar points as bare values.
        points = [p if isinstance(p, list) else [cat, p] for p, cat in zip(s_["data"], cat_axis["data"])]
        assert points == [list(kv) for kv in by_cat.items()]


def test_png_is_what_get_data_url_gives(browser):
    # The page returns zrender's own canvas instead of repainting it the way getDataURL does: same pixels.
    gen = get_generator("echart", lang="en", chart_types=["line"], renderer=browser)
    s = first_sample(gen, seed=4)
    bg = s.meta["sampled"]["style"]["background"]
    url = browser.page_state("echarts.getInstanceByDom(document.getElementById('chart'))"
                             f".getDataURL({{type: 'png', pixelRatio: 1, backgroundColor: '{bg}'}})")
    assert s.image == base64.b64decode(url.partition(",")[2])


def test_blank_chart_is_rejected(browser):
    with pytest.raises(Reject) as e:
        browser.render_echart({"series": []}, 1024, 1024, "#ffffff")
    assert e.value.reason == "blank" and "ink fraction 0.0000" in e.value.detail


def test_cjk_font_covers_text_and_is_in_the_browser(browser):
    from generators import fonts

    gen = get_generator("echart", lang="zh", renderer=browser)
    s = first_sample(gen, seed=3)
    style = s.meta["sampled"]["style"]
    assert style["font"] == "WenQuanYi Micro Hei"
    assert any(ord(ch) > 0x2E80 for ch in s.text)
    assert fonts.missing_glyphs("".join(ChartData.from_meta(s.meta["sampled"]["data"]).texts()), style["font"]) == set()
    option = gen.build_option(ChartData.from_meta(s.meta["sampled"]["data"]), style)
    assert option["textStyle"]["fontFamily"] == "WenQuanYi Micro Hei"
    # Chromium has that family locally (fontconfig), so the canvas text is drawn with it, not a fallback.
    assert browser.page_state("document.fonts.check(\"16px 'WenQuanYi Micro Hei'\", '中文')")


def test_uncoverable_text_is_rejected(browser, tmp_path):
    corpus = tmp_path / "rare.txt"
    corpus.write_text("\n".join(f"中文\U00020000字符{i}，测试\U00020000。" for i in range(20)))
    gen = get_generator("echart", lang="zh", corpus=str(corpus), renderer=browser)
    items = list(gen.items(0, 0, 3))
    assert [type(i) for i in items] == [Rejected] * 3
    assert {i.reason for i in items} == {"font_coverage"}


def test_same_seed_same_bytes(browser):
    a = get_generator("echart", lang="mixed", renderer=browser)
    first = list(a.items(11, 0, 6))
    with get_generator("echart", lang="mixed") as b:  # its own fresh browser
        again = list(b.items(11, 0, 6))
    assert [(x.id, x.image, x.text, x.meta) for x in first] == [(x.id, x.image, x.text, x.meta) for x in again]
    samples = [x for x in first if isinstance(x, Sample)]
    assert {x.lang for x in samples} == {"en", "zh"}
    assert len({x.image for x in samples}) == len(samples)


def test_degradations_are_applied_and_recorded(browser):
    spec = {"p": 1.0, "kinds": ["jpeg", "shadow"]}
    d = first_sample(get_generator("echart", lang="en", degradations=spec, renderer=browser), seed=5)
    c = first_sample(get_generator("echart", lang="en", renderer=browser), seed=5)
    assert [o["op"] for o in d.meta["sampled"]["degradations"]] == ["jpeg", "shadow"]
    assert d.text == c.text and d.image != c.image
    assert Image.open(io.BytesIO(d.image)).size == (1024, 1024)


def test_shared_browser_is_left_open(browser):
    gen = get_generator("echart", lang="en", renderer=browser)
    first_sample(gen)
    gen.close()
    assert browser.page_state("1 + 1") == 2


# -- text-overflow gate: the target names text the image must show in full ----------------------------------

def bar_option(categories: list[str], interval: Any = 0, title: str = "Rainfall", series: str = "Mean") -> dict:
    return {
        "title": {"text": title, "left": "center"},
        "legend": {"bottom": 0},
        "grid": {"containLabel": True},
        "xAxis": {"type": "category", "data": categories, "axisLabel": {"interval": interval, "fontSize": 14}},
        "yAxis": {"type": "value"},
        "series": [{"type": "bar", "name": series, "data": [i + 1 for i in range(len(categories))]}],
    }


def overflow_of(browser, option: dict, required: list[str]) -> Reject:
    with pytest.raises(Reject) as e:
        browser.render_echart(option, 1024, 1024, "#ffffff", required_text=required)
    assert e.value.reason == "overflow"
    return e.value


def test_plain_chart_passes_the_text_gate(browser):
    cats = ["north", "south", "east", "west"]
    png = browser.render_echart(bar_option(cats), 1024, 1024, "#ffffff", required_text=["Rainfall", "Mean", *cats])
    assert Image.open(io.BytesIO(png)).size == (1024, 1024)


def test_title_running_off_the_canvas_is_rejected_naming_it(browser):
    title = "An uncommonly verbose heading " * 6
    r = overflow_of(browser, bar_option(["north", "south"], title=title), required=[])
    # Off-canvas text is caught from the layout alone, required strings or not.
    assert title[:40] in r.detail and "runs off the canvas" in r.detail


def test_labels_echarts_would_hide_are_rejected(browser):
    cats = [f"district number {i:02d}" for i in range(40)]
    # ECharts' default interval hides most of these labels: the target would list categories not drawn.
    r = overflow_of(browser, bar_option(cats, interval="auto"), required=cats)
    assert "is not drawn in full" in r.detail
    # Drawn all (interval 0), they pile onto each other: unreadable, so rejected as well.
    r = overflow_of(browser, bar_option(cats, interval=0), required=cats)
    assert "overlaps" in r.detail and "district number" in r.detail


def test_truncated_legend_entry_is_rejected(browser):
    option = bar_option(["north", "south"], series="Mean monthly rainfall in millimetres")
    option["legend"]["textStyle"] = {"width": 60, "overflow": "truncate"}
    r = overflow_of(browser, option, required=["Mean monthly rainfall in millimetres"])
    assert "'Mean monthly rainfall in millimetres' is not drawn in full" in r.detail


def test_a_hidden_label_is_not_covered_by_a_legend_entry_of_the_same_name(browser):
    # The series is named like a category: the legend shows "south" once, the hidden axis label does not.
    option = bar_option(["north", "south"], series="south")
    browser.render_echart(option, 1024, 1024, "#ffffff", required_text=["south", "north", "south"])
    option["xAxis"]["axisLabel"]["show"] = False
    r = overflow_of(browser, option, required=["south", "north", "south"])
    assert "'north' is not drawn in full" in r.detail and "'south' is not drawn in full" in r.detail


def test_generator_rejects_text_that_cannot_fit(browser, tmp_path):
    words = ["Internationalisationsmisunderstandingscharacteristically", "Counterrevolutionariesoverintellectualising"]
    corpus = tmp_path / "long.txt"
    corpus.write_text("\n".join(" ".join(words[(i + k) % 2] for k in range(8)) + "." for i in range(20)))
    gen = get_generator("echart", lang="en", corpus=str(corpus), renderer=browser)
    items = list(gen.items(0, 0, 4))
    assert [type(i) for i in items] == [Rejected] * 4
    assert {i.reason for i in items} == {"overflow"}
    assert all(any(w[:30] in i.detail for w in words) for i in items)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_seed_sweep_rarely_trips_the_gate(browser, lang):
    # Layout leaves room for the sampled texts (axis names clear of long or rotated labels, overlapping
    # value labels hidden), so the gate is a safety net, not a filter that throws away much of the output.
    with get_generator("echart", lang=lang, renderer=browser) as gen:
        items = list(gen.items(1, 0, 20))
    assert gen._browser is browser and browser._driver is not None  # a lent browser stays open for its owner
    rejects = [i for i in items if isinstance(i, Rejected)]
    assert {r.reason for r in rejects} <= {"overflow"}
    assert len(rejects) <= 1, [r.detail for r in rejects]  # at most 5%
