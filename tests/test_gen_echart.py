"""`echart` (pyecharts -> ECharts in one offline Chromium): the dict target equals the option drawn, CJK has
no tofu, same seed -> same bytes."""
from __future__ import annotations

import ast
import io

import pytest
from PIL import Image

from generators import get_generator
from generators.base import PROMPT_CHART, Rejected, Sample
from generators.browser import BrowserRenderer
from generators.chart_data import CHART_TYPES, ChartData


def chart_data_from_meta(meta: dict) -> ChartData:
    d = dict(meta["sampled"]["data"])
    d["series"] = [(name, [tuple(v) if isinstance(v, list) else v for v in vals]) for name, vals in d["series"]]
    return ChartData(**d)


def first_sample(gen, seed: int = 7, start: int = 0, tries: int = 6) -> Sample:
    for item in gen.items(seed, start, start + tries):
        if isinstance(item, Sample):
            return item
    raise AssertionError("no sample in a row of indices")


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
    option = gen.build_option(chart_data_from_meta(s.meta), s.meta["sampled"]["style"])
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


def test_cjk_font_covers_text_and_is_in_the_browser(browser):
    from generators import fonts

    gen = get_generator("echart", lang="zh", renderer=browser)
    s = first_sample(gen, seed=3)
    style = s.meta["sampled"]["style"]
    assert style["font"] == "WenQuanYi Micro Hei"
    assert any(ord(ch) > 0x2E80 for ch in s.text)
    assert fonts.missing_glyphs("".join(chart_data_from_meta(s.meta).texts()), style["font"]) == set()
    option = gen.build_option(chart_data_from_meta(s.meta), style)
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
