"""`chart` (matplotlib): the dict target equals the data drawn, CJK has no tofu, same seed -> same bytes."""
from __future__ import annotations

import ast
import json
import io

import numpy as np
import pytest
from PIL import Image

from generators import get_generator
from generators.base import PROMPT_CHART, GeneratorError, Reject, Rejected, Sample
from generators.chart_data import CHART_TYPES, ChartData
from tests.gen_support import first_sample


@pytest.fixture(scope="module")
def gens():
    made = {}
    yield lambda **kw: made.setdefault(tuple(sorted((k, str(v)) for k, v in kw.items())), get_generator("chart", **kw))
    for g in made.values():
        g.close()


def drawn(gen) -> dict:
    """What the reused figure holds after the last draw, read back from matplotlib's artists."""
    ax = gen._fig.axes[0]
    return {
        "title": ax.get_title(),
        "xlabel": ax.get_xlabel(),
        "ylabel": ax.get_ylabel(),
        "legend": [t.get_text() for t in ax.get_legend().get_texts()],
        "xticks": [t.get_text() for t in ax.get_xticklabels()],
        "yticks": [t.get_text() for t in ax.get_yticklabels()],
        "ax": ax,
    }


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("chart_type", CHART_TYPES)
def test_target_is_the_data_drawn(gens, lang, chart_type):
    gen = gens(lang=lang, chart_types=[chart_type])
    s = first_sample(gen)
    assert (s.kind, s.lang, s.prompt, s.width, s.height) == ("chart", lang, PROMPT_CHART, 1024, 1024)
    target = ast.literal_eval(s.text)
    data = ChartData.from_meta(s.meta["sampled"]["data"])
    assert s.meta["sampled"]["chart_type"] == chart_type == target["type"]

    # Draw the recorded chart again and read what matplotlib actually put on the canvas.
    img = gen._draw(data, s.meta["sampled"]["style"])
    got = drawn(gen)
    assert target["title"] == got["title"]
    if chart_type == "pie":
        assert list(target["data"]) == got["legend"]
        wedges = [p for p in got["ax"].patches]
        spans = np.array([(w.theta2 - w.theta1) % 360 or 360 for w in wedges])
        values = np.array(list(target["data"].values()), dtype=float)
        assert np.allclose(spans / spans.sum(), values / values.sum(), atol=1e-6)
        return
    assert (target["x_title"], target["y_title"]) == (got["xlabel"], got["ylabel"])
    assert list(target["data"]) == got["legend"]  # series names, in order
    if chart_type == "scatter":
        for coll, pts in zip(got["ax"].collections, target["data"].values()):
            assert np.allclose(coll.get_offsets(), np.array(pts, dtype=float))
        return
    categories = [list(v) for v in target["data"].values()]
    assert all(c == categories[0] for c in categories)
    assert categories[0] == (got["yticks"] if chart_type == "hbar" else got["xticks"])
    values = [list(v.values()) for v in target["data"].values()]
    if chart_type in ("line", "area"):
        for line, vals in zip(got["ax"].lines, values):
            assert np.allclose(line.get_ydata(), vals)
    else:
        for container, vals in zip(got["ax"].containers, values):
            assert np.allclose(container.datavalues, vals)
    # The image of the sample is this very drawing (padded to 1024²).
    assert Image.open(io.BytesIO(s.image)).size == (1024, 1024)
    assert img.size[0] == 1024 or img.size[1] == 1024


def test_cjk_uses_a_font_that_covers_every_character(gens):
    from matplotlib import font_manager

    from generators import fonts

    gen = gens(lang="zh")
    s = first_sample(gen, seed=3)
    style = s.meta["sampled"]["style"]
    assert style["font"] == "WenQuanYi Micro Hei"
    data = ChartData.from_meta(s.meta["sampled"]["data"])
    assert any(ord(ch) > 0x2E80 for ch in s.text)  # the target holds Chinese
    assert fonts.missing_glyphs("".join(data.texts()), style["font"]) == set()
    # matplotlib resolves the family to that very file, so no fallback font draws boxes.
    family = gen._family(style["font"])
    found = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
    assert found == fonts.font_path("WenQuanYi Micro Hei")


def test_uncoverable_text_is_rejected_before_rendering(tmp_path):
    corpus = tmp_path / "rare.txt"
    # U+20000 (CJK Extension B) is in neither DejaVu nor WenQuanYi Micro Hei.
    corpus.write_text("\n".join(f"Alpha\U00020000 beta\U00020000 gamma\U00020000 delta\U00020000 words{i}." for i in range(20)))
    with get_generator("chart", lang="en", corpus=str(corpus)) as gen:
        items = list(gen.items(0, 0, 3))
    assert [type(i) for i in items] == [Rejected] * 3
    assert {i.reason for i in items} == {"font_coverage"}
    assert "U+20000" in items[0].detail


def test_same_seed_same_bytes_and_mixed_languages():
    with get_generator("chart", lang="mixed") as a, get_generator("chart", lang="mixed") as b:
        first = [x for x in a.items(11, 0, 6)]
        again = [x for x in b.items(11, 0, 6)]
    assert [(x.id, x.image, x.text, x.meta) for x in first] == [(x.id, x.image, x.text, x.meta) for x in again]
    samples = [x for x in first if isinstance(x, Sample)]
    assert len({x.image for x in samples}) == len(samples)
    assert {x.lang for x in samples} == {"en", "zh"}


def test_degradations_are_applied_and_recorded():
    spec = {"p": 1.0, "kinds": ["blur", "noise"]}
    with get_generator("chart", lang="en", degradations=spec) as g, get_generator("chart", lang="en") as clean:
        d = first_sample(g, seed=5)
        c = first_sample(clean, seed=5)
    ops = d.meta["sampled"]["degradations"]
    assert [o["op"] for o in ops] == ["blur", "noise"]
    assert d.text == c.text and d.image != c.image
    assert c.meta["sampled"]["degradations"] == []


@pytest.mark.parametrize("kind", ["chart", "echart"])
def test_both_chart_kinds_check_their_parameters_by_one_rule(kind):
    for size in (255, 4097):
        with pytest.raises(GeneratorError, match=r"size must lie in \[256, 4096\] px"):
            get_generator(kind, size=size)
    with pytest.raises(GeneratorError, match="lang"):
        get_generator(kind, lang="fr")
    with pytest.raises(GeneratorError, match="unknown chart types"):
        get_generator(kind, chart_types=["bar", "donut"])
    with pytest.raises(GeneratorError, match="unknown degradations"):
        get_generator(kind, degradations={"kinds": ["smudge"]})
    for size in (256, 4096):  # both ends are allowed; nothing renders until the first sample
        with get_generator(kind, size=size, chart_types=["pie"]) as gen:
            assert gen.size == size and gen.chart_types == ("pie",)


def test_user_text_is_drawn_as_written_never_as_mathtext(tmp_path):
    # "$" in titles and series names is a dollar sign; mathtext would draw "from 5 to 9" in italics (the
    # target keeps the dollars) and the unbalanced "$\frac{$" would raise inside matplotlib.
    corpus = tmp_path / "dollars.txt"
    corpus.write_text("\n".join(f"Costs rose from $5 to $9 and $\\frac{{$ broke {w} with $x$ here." for w in
                                ("prices", "margins", "rents", "wages", "fares", "taxes", "loans", "bonds")))
    with get_generator("chart", lang="en", corpus=str(corpus), chart_types=["bar", "line", "pie"]) as gen:
        items = list(gen.items(0, 0, 6))
        samples = [i for i in items if isinstance(i, Sample)]
        assert len(samples) >= 4, [(i.reason, i.detail) for i in items if isinstance(i, Rejected)]
        assert any("$" in s.text for s in samples)
        for s in samples:
            gen._draw(ChartData.from_meta(s.meta["sampled"]["data"]), s.meta["sampled"]["style"])
            ax = gen._fig.axes[0]
            texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_legend().get_texts()]
            assert ax.get_title() == ast.literal_eval(s.text)["title"]
            for t in texts:
                assert t._preprocess_math(t.get_text()) == (t.get_text(), False), t.get_text()


# -- the text gate: what the target names is drawn in full, nothing hides it --------------------------------

def _style(gen, data, **overrides) -> dict:
    style = gen._sample_style(np.random.default_rng(0), data)
    style.update(width=1024, height=768, **overrides)
    return style


def test_the_legend_moves_off_the_value_labels_it_would_hide(gens):
    gen = gens(lang="en")
    data = ChartData("line", "en", "Rainfall by month", "Month", "Rain (mm)", ["Jan", "Feb", "Mar", "Apr", "May"],
                     [("North", [0.2, 0.3, 0.5, 0.7, 0.9]), ("South", [0.1, 0.15, 0.2, 0.25, 0.3])], 1, False)
    style = _style(gen, data, legend_loc="upper right", show_values=True, marker="o", tick_rotation=0)
    gen._draw(data, style)
    ax = gen._fig.axes[0]
    renderer = gen._canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    labels = [t for t in ax.texts if t.get_visible()]
    assert "0.9" in [t.get_text() for t in labels]  # the value under "upper right" is still drawn ...
    assert not [t.get_text() for t in labels if legend.overlaps(t.get_window_extent(renderer))]  # ... and seen
    assert style["legend_loc"] != "upper right"  # meta records where the legend went


def test_overlapping_axis_labels_are_rejected_naming_them(gens):
    gen = gens(lang="en")
    cats = ["Internationalisation", "Counterrevolutionary", "Uncharacteristically", "Disproportionately",
            "Incomprehensibility", "Telecommunications", "Misunderstandings", "Interdisciplinary"]
    data = ChartData("bar", "en", "Long words", "Word", "Count", cats, [("Count", list(range(1, 9)))], 0, False)
    with pytest.raises(Reject) as e:
        gen._draw(data, _style(gen, data, tick_rotation=0, tick_pt=13.0))
    assert e.value.reason == "overlap" and "overlaps" in e.value.detail
    assert any(c in e.value.detail for c in cats)


def test_no_sample_has_text_the_legend_or_another_text_hides(gens):
    gen = gens(lang="mixed")
    renderer = None
    for item in gen.items(3, 0, 12):
        if not isinstance(item, Sample):
            assert item.reason in ("overlap", "overflow"), item
            continue
        gen._draw(ChartData.from_meta(item.meta["sampled"]["data"]), dict(item.meta["sampled"]["style"]))
        ax = gen._fig.axes[0]
        renderer = gen._canvas.get_renderer()
        legend = ax.get_legend()
        shown = [t for t in [*ax.texts, ax.title, ax.xaxis.label, ax.yaxis.label] if t.get_visible() and t.get_text()]
        boxes = [t.get_window_extent(renderer).shrunk(0.99, 0.99) for t in shown]
        if item.meta["sampled"]["style"]["legend_loc"] != "outside right":
            box = legend.get_window_extent(renderer)
            assert not [t.get_text() for t, b in zip(shown, boxes) if box.overlaps(b)], item.id
        for i, b in enumerate(boxes):
            assert not [shown[j].get_text() for j in range(i + 1, len(boxes)) if b.overlaps(boxes[j])], item.id


# -- coherent chart text: embedded topics, or the user's chart records ----------------------------------------

@pytest.mark.parametrize("lang", ["en", "zh"])
def test_default_chart_text_is_coherent(gens, lang):
    from generators.chart_text import MONTHS, POOLS, SCATTER_TOPICS, TOPICS, WEEKDAYS

    gen = gens(lang=lang)
    titles = {t[0] for t in TOPICS[lang]} | {t[0] for t in SCATTER_TOPICS[lang]}
    pools = [*POOLS.values()]
    for i in range(24):
        data = gen.draw(0, i)[3]
        if data.chart_type == "pie":
            continue
        # the title is a topic's, with its years filled in; the axis titles carry units
        assert any(data.title == t.format(first=data.categories[0] if data.categories else "",
                                          last=data.categories[-1] if data.categories else "") for t in titles), data.title
        names = [n for n, _ in data.series]
        for labels in ([data.categories] if data.categories else []) + [names]:
            in_a_pool = any(set(labels) <= set(p[lang]) for p in pools)
            months = " ".join(labels) in " ".join(MONTHS[lang] + WEEKDAYS[lang])
            years = all(label.isdigit() for label in labels) and \
                [int(y) for y in labels] == list(range(int(labels[0]), int(labels[0]) + len(labels)))
            quarters = all("Q" in label for label in labels)
            assert in_a_pool or months or years or quarters, labels


def test_chart_records_give_the_text_and_values(tmp_path):
    records = tmp_path / "charts.jsonl"
    rec = {"title": "Quarterly revenue by region (USD m)", "x_title": "Quarter", "y_title": "Revenue (USD m)",
           "categories": ["Q1 2024", "Q2 2024", "Q3 2024"],
           "series": [{"name": "North", "values": [12.5, 14.0, 13.25]}, {"name": "South", "values": [9, 11, 10.5]}]}
    records.write_text(json.dumps(rec) + "\n\n")
    blobs = {"s3://b/charts.jsonl": records.read_bytes()}
    from tests.input_files import BlobFiles

    with get_generator("chart", records="s3://b/charts.jsonl", files=BlobFiles(blobs),
                       chart_types=["grouped_bar", "line"]) as gen:
        s = first_sample(gen)
    target = ast.literal_eval(s.text)
    assert (target["title"], target["x_title"], target["y_title"]) == (rec["title"], "Quarter", "Revenue (USD m)")
    assert target["data"] == {"North": {"Q1 2024": 12.5, "Q2 2024": 14.0, "Q3 2024": 13.25},
                              "South": {"Q1 2024": 9.0, "Q2 2024": 11.0, "Q3 2024": 10.5}}
    assert s.meta["params"]["records"] == "s3://b/charts.jsonl"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rec) + "\n" + json.dumps({"title": "x", "categories": ["a"], "series": [
        {"name": "s", "values": [1, 2]}]}) + "\n")
    with pytest.raises(GeneratorError, match=r"bad.jsonl: line 2: series 's' needs one number per category"):
        get_generator("chart", records=str(bad))
