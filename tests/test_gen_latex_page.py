from __future__ import annotations

import io
import re
import unicodedata

import pymupdf
import pytest
from PIL import Image

from generators.base import Sample
from generators.latex_page import LatexPageGenerator, group_source, load_templates
from generators.tex import TexRenderer

MATH = re.compile(r"\\\(.*?\\\)|\\\[.*?\\\]|\\begin\{tabular\}.*?\\end\{tabular\}", re.DOTALL)


T1_LIGATURES = str.maketrans({"\x1b": "ff", "\x1c": "fi", "\x1d": "fl", "\x1e": "ffi", "\x1f": "ffl"})


OT1_ACCENTS = str.maketrans({"\u02dc": "~", "\u02c6": "^"})


def _pdf_text(pdf: bytes) -> tuple[int, str]:
    doc = pymupdf.open(stream=pdf, filetype="pdf")
    # Ligatures extract as one character: NFKC folds Unicode ones ("ﬂ"), T1 fonts without a ToUnicode
    # map (PSNFSS Charter) give their encoding slots 0x1b-0x1f.
    text = unicodedata.normalize("NFKC", doc[0].get_text()).translate(T1_LIGATURES)
    return doc.page_count, text.replace("-\n", "")


def _prose(target: str) -> str:
    return MATH.sub(" ", target)


def test_at_least_ten_templates():
    assert len(load_templates()) >= 10


@pytest.mark.parametrize("name", sorted(load_templates()))
def test_every_template_compiles_one_page_whose_text_is_the_target(name):
    with LatexPageGenerator(lang="en", templates=[name]) as gen:
        page, _ = gen.compile_page(1, 0)
    count, text = _pdf_text(page.pdf)
    assert count == 1
    # case-insensitive: small-caps headings extract as capitals
    words = set(re.findall(r"[a-z]{4,}", text.lower()))
    target_words = re.findall(r"[a-z]{4,}", _prose(page.target).lower())
    assert target_words and all(w in words for w in target_words), set(target_words) - words
    assert page.sampled["template"] == name


def test_chinese_pages_show_every_target_character():
    with LatexPageGenerator(lang="zh") as gen:
        for index in range(2):
            page, _ = gen.compile_page(4, index)
            count, text = _pdf_text(page.pdf)
            assert count == 1 and page.engine == "xelatex"
            cjk = {ch for ch in _prose(page.target) if "\u4e00" <= ch <= "\u9fff"}
            assert len(cjk) > 20 and cjk <= set(text), cjk - set(text)


def test_overlong_content_is_trimmed_to_one_page():
    with LatexPageGenerator(lang="en", budget_chars=(9000, 9000), templates=["palatino_smallcaps"]) as gen:
        page, _ = gen.compile_page(0, 1)
    count, text = _pdf_text(page.pdf)
    assert count == 1 and page.sampled["trimmed_blocks"] > 0
    last_words = re.findall(r"[A-Za-z]{4,}", _prose(page.target.split("\n\n")[-1]))
    assert all(w in text for w in last_words)
    # the trim is exact: the page keeps every block that fits, so one block more runs onto a second page
    # (index 1: that block is a paragraph; a heading would fit as the last line of a page that ends there)
    draft = gen._draft(0, 1)
    assert draft.blocks[len(page.sampled["blocks"])].kind == "paragraph"
    kept = len(page.sampled["blocks"])
    with TexRenderer() as tex:
        longer = tex.compile(group_source(gen._templates[draft.template], "en", [draft.blocks[: kept + 1]]))
    assert pymupdf.open(stream=longer.pdf, filetype="pdf").page_count > 1


def test_special_characters_are_escaped(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text('Costs rose 50% & fell; see file_name #3 {braces} ~tilde ^caret back\\slash "quote" $5 a<b>c|d.\n' * 3)
    with LatexPageGenerator(lang="en", corpus=str(corpus), templates=["article_cm", "times_twocol"]) as gen:
        for index in range(3):
            page, _ = gen.compile_page(0, index)
            # OT1 (article_cm) has no glyphs for ~ ^ _: it draws the first two as accents and _ as a rule,
            # which the PDF's text layer shows as U+02DC, U+02C6 and nothing.
            ot1 = page.sampled["template"] == "article_cm"
            text = unicodedata.normalize("NFKC", pymupdf.open(stream=page.pdf, filetype="pdf")[0].get_text()
                                         .translate(OT1_ACCENTS if ot1 else {}))
            for token in ("50%", "&", "file_name", "#3", "{braces}", "~tilde", "^caret", "back\\slash", '"quote"', "$5", "a<b>c|d."):
                if token in page.target:
                    assert (token.replace("_", " ") if ot1 else token) in text, token


def test_render_is_1024_square_mathpix_markdown_and_deterministic():
    with LatexPageGenerator(lang="mixed", degradations={"p": 0.5}) as a:
        first = [a.render(2, i)[0] for i in range(2)]
    with LatexPageGenerator(lang="mixed", degradations={"p": 0.5}) as b:
        second = [b.render(2, i)[0] for i in range(2)]
    assert [s.image for s in first] == [s.image for s in second]
    for s in first:
        assert Image.open(io.BytesIO(s.image)).size == (1024, 1024)
        assert s.text.startswith("#") and s.prompt == "Convert the image to markdown/latex format."
        assert s.lang == s.meta["sampled"]["lang"] in ("en", "zh")
    # Mathpix-style math delimiters, never dollar signs
    assert any("\\(" in s.text or "\\[" in s.text for s in first)
    assert not any(re.search(r"(?<!\\)\$", s.text) for s in first)


@pytest.mark.parametrize("lang, templates", [("en", ["multicol_times", "dense_twocol", "letter_sectsty"]),
                                             ("zh", ["koma_twocol"])])
def test_pages_batched_in_one_tex_run_are_byte_identical_to_pages_rendered_alone(lang, templates):
    n = 6 if lang == "en" else 2
    with LatexPageGenerator(lang=lang, templates=templates, budget_chars=(1500, 4500) if lang == "en" else None,
                            batch=n) as gen:
        batch = list(gen.items(5, 0, n))
        runs = gen._tex.runs
        alone = [gen.render(5, i)[0] for i in range(n)]
    assert all(isinstance(s, Sample) for s in batch), batch
    assert runs < n  # pages sharing a template shared a TeX run
    if lang == "en":  # the batch mixed pages that fitted at once with pages trimmed in a second round
        assert {s.meta["sampled"]["compiles"] for s in batch} == {1, 2}
    for b, a in zip(batch, alone):
        assert (b.image, b.text, b.meta) == (a.image, a.text, a.meta)
