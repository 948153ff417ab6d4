from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from generators.base import Sample, encode_png
from generators.table import TableGenerator, tex_preamble, to_latex
from generators.pages import rasterise_page
from generators.tex import TexRenderer, typeset_batch


def _cells(table) -> list[str]:
    return [c.text for row in table.rows for c in row]


def _first_with(gen, want_merged: bool, seed: int = 0):
    for index in range(60):
        _, _, table, _ = gen.draw(seed, index)
        if table.merged == want_merged:
            return index
    raise AssertionError("no such table in 60 draws")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_tex_tables_show_exactly_the_target_cells(lang):
    with TableGenerator(backend="tex", lang=lang) as gen, TexRenderer() as tex:
        indices = sorted({_first_with(gen, False), _first_with(gen, True)} | {0, 1})
        samples = {i: s for i in indices for s in gen.items(3, i, i + 1)}
        for index, sample in samples.items():
            assert isinstance(sample, Sample), sample
            _, _, table, sampled = gen.draw(3, index)
            # The sample's pixels are exactly those of its tabular typeset alone...
            engine, preamble = tex_preamble(lang)
            (page,) = typeset_batch(tex, preamble, [to_latex(table, sampled["style"])], engine)
            assert encode_png(rasterise_page(page.doc[page.page], dpi=sample.meta["sampled"]["dpi"])[0]) == sample.image
            # ...and that page shows every cell's text.
            pdf_text = "".join(page.doc[page.page].get_text().split())
            for cell in _cells(table):
                assert "".join(cell.split()) in pdf_text, cell
            if sampled["target_format"] == "markdown":
                lines = sample.text.split("\n")
                assert re.fullmatch(r"\| ---( \| ---)* \|", lines[1])
                got = [c.strip() for line in lines[:1] + lines[2:] for c in line.strip("|").split(" | ")]
                assert got == _cells(table)
            else:
                assert table.merged and sample.text.startswith("\\begin{tabular}")
                assert "\\multirow" in sample.text or "\\multicolumn" in sample.text
                for cell in _cells(table):
                    assert cell.replace("%", "\\%") in sample.text
            assert sample.lang == lang and sample.meta["sampled"]["lang"] == lang


def test_some_tables_merge_cells_and_have_numbers():
    with TableGenerator(lang="en") as gen:
        tables = [gen.draw(0, i)[2] for i in range(40)]
    assert 0 < sum(t.merged for t in tables) < 40
    assert all(t.header_rows in (1, 2) and t.rows[0][0].header for t in tables)
    assert any(re.fullmatch(r"-?\d+(\.\d+)?%?", c.text) for t in tables for row in t.rows for c in row)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_html_tables_render_with_the_same_target(lang):
    with TableGenerator(backend="html", lang=lang) as html, TableGenerator(backend="tex", lang=lang) as tex:
        out = list(html.items(5, 0, 3))
        ref = list(tex.items(5, 0, 3))
        # The sample's pixels are exactly the browser's render of the drawn cells in the drawn style, as
        # Pillow decodes and greys it (the generator decodes with pyspng when it can).
        _, _, table, _, style = html.draw_html(5, 0)
        png = html._browser.render_table(table.to_html_dict(), style)
        assert encode_png(Image.open(io.BytesIO(png)).convert("L")) == out[0].image
    for s, r in zip(out, ref):
        assert isinstance(s, Sample), s
        img = np.asarray(Image.open(io.BytesIO(s.image)).convert("L"))
        assert (img < 128).mean() > 0.005
        assert s.text == r.text  # the target does not depend on the backend
        assert s.meta["sampled"]["backend"] == "html"


def test_mixed_lang_picks_a_language_per_sample():
    with TableGenerator(backend="tex", lang="mixed") as gen:
        out = list(gen.items(0, 0, 8))
    assert {s.lang for s in out} == {"en", "zh"}
    assert all(s.meta["sampled"]["engine"] == ("xelatex" if s.lang == "zh" else "pdflatex") for s in out)


@pytest.mark.parametrize("backend", ["tex", "html"])
def test_same_seed_same_bytes(backend):
    with TableGenerator(backend=backend, lang="en", degradations={"p": 0.6}) as a:
        first = [s.image for s in a.items(9, 0, 3)]
    with TableGenerator(backend=backend, lang="en", degradations={"p": 0.6}) as b:
        second = [s.image for s in b.items(9, 0, 3)]
    assert first == second


def test_preloaded_preamble_gives_the_same_pages_and_still_names_the_bad_table():
    # Runs on a format with the preamble dumped skip the source's preamble line by line: the pages must be
    # those of a plain run, and a failing table must still be found by its line number (no bisection).
    with TableGenerator(backend="tex", lang="en") as gen:
        good = [to_latex(t, s["style"]) for _, _, t, s in (gen.draw(4, i) for i in range(3))]
    bad = "\\begin{tabular}{ll} a & b & c \\\\ \\end{tabular}"  # balanced braces, one column too many
    items = [good[0], bad, good[1], good[2]]
    engine, preamble = tex_preamble("en")
    with TexRenderer() as tex:
        plain = typeset_batch(tex, preamble, items, engine)
        fmt = tex.preamble_format(preamble + "\\begin{document}\n", engine)
        assert fmt is not None
        runs = tex.runs
        preloaded = typeset_batch(tex, preamble, items, engine, preload=True)
        assert tex.runs - runs == 2  # the failing run names line 2 of the body; the rest compiles once
        assert tex.preamble_format(preamble + "\\begin{document}\n", engine) == fmt  # built once, reused
        # xeCJK loads an OpenType font, which XeTeX cannot dump: Chinese tables compile without a format
        assert tex.preamble_format(tex_preamble("zh")[1] + "\\begin{document}\n", "xelatex") is None
    for a, b in zip(plain, preloaded):
        if a is plain[1]:
            assert b.reason == a.reason == "compile_error" and "Extra alignment tab" in b.detail
            continue
        pa, pb = (p.doc[p.page].get_pixmap(dpi=150) for p in (a, b))
        assert pa.samples == pb.samples and pa.width == pb.width


def test_html_render_gives_the_bytes_of_items():
    # items() lays a whole batch out in one page; render() draws one table alone: same samples.
    with TableGenerator(backend="html", lang="mixed", batch=5, degradations={"p": 0.5}) as gen:
        batch = list(gen.items(11, 0, 7))
        assert all(isinstance(s, Sample) for s in batch)
        assert {s.lang for s in batch} == {"en", "zh"}
        assert gen._browser.screenshots < 7  # the batches really share screenshots
        for index in (0, 3, 6):
            (alone,) = gen.render(11, index)
            assert alone == batch[index]


_HANG_ON_BATCH = """(() => {
  const one = window.vf.renderTableMany;
  window.vf.renderTableMany = function (tables, ...rest) {
    if (tables.length > 1) { while (true) {} }
    return one.call(this, tables, ...rest);
  };
  return true;
})()"""


def test_html_batch_that_hangs_falls_back_to_one_table_at_a_time():
    with TableGenerator(backend="html", lang="en", timeout_s=3) as ref:
        expected = list(ref.items(2, 0, 4))
    with TableGenerator(backend="html", lang="en", timeout_s=3) as gen:
        list(gen.items(2, 0, 1))  # the browser is up
        # A page that hangs on any multi-table layout (a stand-in for a runaway page or crash): the batch
        # call times out, the browser restarts without the hook, and every table is drawn on its own.
        assert gen._browser.page_state(_HANG_ON_BATCH)
        out = list(gen.items(2, 0, 4))
        assert gen._browser.restarts == 1
    assert [s.image for s in out] == [s.image for s in expected]
