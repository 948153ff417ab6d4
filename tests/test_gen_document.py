"""`document`: synthetic reportlab pages whose target is exactly the text on the page."""
from __future__ import annotations

import io
import json
import re

import pymupdf
import pytest
from PIL import Image

from generators import get_generator
from generators.base import PROMPT_OCR, Rejected, Sample
from generators.corpus import Corpus
from generators.fonts import missing_glyphs
from generators.pages import reading_order_text


def _squash(s: str) -> str:
    return "".join(s.split())


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_pages_render_with_targets_matching_the_pdf_in_reading_order(lang):
    gen = get_generator("document", lang=lang)
    columns_seen = set()
    for index in range(4):
        pdf, target, sampled, _ = gen.typeset(11, index)
        columns_seen.add(sampled["columns"])
        with pymupdf.open("pdf", pdf) as doc:
            assert doc.page_count == 1
            # Reading order recovered from block positions alone (the pdf kind's algorithm) agrees
            # with the target known by construction, columns included.
            assert _squash(reading_order_text(doc[0])) == _squash(target)
            fonts = " ".join(f[3] for f in doc[0].get_fonts())
        if lang == "zh":
            assert "WenQuanYi" in fonts, fonts  # embedded, so the glyphs are the ones checked
            assert missing_glyphs(target, "WenQuanYi Micro Hei") == set()
        [sample] = gen.render(11, index)
        assert sample.text == target and sample.prompt == PROMPT_OCR and sample.lang == lang
        img = Image.open(io.BytesIO(sample.image))
        assert img.format == "PNG" and img.size == (1024, 1024) and img.mode == "L"
        assert sample.meta["sampled"]["columns"] == sampled["columns"]
        assert sample.meta["generator"] == "document" and sample.meta["index"] == index
    assert len(columns_seen) >= 2


def test_english_targets_never_break_words():
    gen = get_generator("document", lang="en")
    # Case aside: headings capitalise their first word.
    vocab = {w.strip("\"'()[],.;:!?").lower() for s in gen.corpus("en").sentences_ for w in s.split()}
    for index in range(4):
        pdf, target, _, _ = gen.typeset(3, index)
        words = {w.strip("\"'()[],.;:!?•–").lower() for w in target.split()} - {""}
        assert words - vocab == set() or all(re.fullmatch(r"\d+\.?", w) for w in words - vocab)
        with pymupdf.open("pdf", pdf) as doc:
            # every word PyMuPDF sees at a line end on the page is a whole corpus word, not a fragment
            page_words = {w[4].strip("\"'()[],.;:!?").lower() for w in doc[0].get_text("words")} - {"", "•", "–"}
        assert {w for w in page_words if not w.isdigit()} <= vocab


def test_overflow_is_not_in_the_target():
    gen = get_generator("document", lang="en", columns=[1])
    pdf, target, sampled, _ = gen.typeset(5, 0)
    corpus_text = _squash(" ".join(gen.corpus("en").sentences_))
    with pymupdf.open("pdf", pdf) as doc:
        on_page = _squash(doc[0].get_text())
    assert on_page == _squash(target) and len(target) < len(corpus_text)
    assert sampled["blocks"] > 0


def test_same_seed_same_bytes_and_different_index_differs():
    a = get_generator("document", lang="mixed", degradations={"p": 0.7})
    b = get_generator("document", lang="mixed", degradations={"p": 0.7})
    ra, rb = list(a.items(9, 0, 3)), list(b.items(9, 0, 3))
    assert [(s.image, s.text, json.dumps(s.meta)) for s in ra] == [(s.image, s.text, json.dumps(s.meta)) for s in rb]
    assert len({s.image for s in ra}) == 3
    langs = {s.lang for s in a.items(9, 0, 8)}
    assert langs == {"en", "zh"}
    assert any(s.meta["sampled"]["degradations"] for s in ra)


def test_uncovered_characters_are_rejected_before_rendering(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": "古文字𠀀很少见。这一句也在同一段里。"}, ensure_ascii=False) + "\n")
    gen = get_generator("document", lang="zh", corpus=str(tmp_path / "c.jsonl"))
    results = list(gen.items(0, 0, 2))
    assert all(isinstance(r, Rejected) and r.reason == "font_coverage" and "𠀀" in r.detail for r in results)


def test_user_corpus_feeds_the_page(tmp_path):
    lines = [f"Lighthouse keeper number {i} trims the lamp at dusk. The beam sweeps the bay until dawn." for i in range(40)]
    (tmp_path / "c.txt").write_text("\n".join(lines))
    gen = get_generator("document", lang="en", corpus=str(tmp_path / "c.txt"))
    [s] = gen.render(1, 0)
    assert isinstance(s, Sample) and "Lighthouse keeper number" in s.text
    assert Corpus.load(str(tmp_path / "c.txt"), "en").lang == "en"


def test_chinese_lines_never_start_with_closing_punctuation():
    from generators.document import NO_LINE_START

    gen = get_generator("document", lang="zh")
    starts = []
    for index in range(6):
        pdf, _, _, _ = gen.typeset(2, index)
        with pymupdf.open("pdf", pdf) as doc:
            for block in doc[0].get_text("dict")["blocks"]:
                for line in block.get("lines", []):
                    text = "".join(span["text"] for span in line["spans"]).strip()
                    if text:
                        starts.append(text[0])
    # The corpus is full of "，" and "。", so a breaker without the rule starts some lines with them.
    assert len(starts) > 200 and not set(starts) & set(NO_LINE_START), sorted(set(starts) & set(NO_LINE_START))


def _lines_by_layout_column(page, sampled: dict) -> str:
    """The page's text lines read the way the layout placed them: the title, then each column
    (known from the sampled margins, gutter and column count) top to bottom."""
    ml, mr, _, _ = sampled["margins"]
    n, gutter = sampled["columns"], sampled["gutter"]
    col_w = (page.rect.width - ml - mr - gutter * (n - 1)) / n
    lines = [ln for b in page.get_text("dict")["blocks"] for ln in b.get("lines", [])]

    def column(ln) -> int:
        if abs(ln["spans"][0]["size"] - sampled["title_size"]) < 0.01:
            return -1
        return min(n - 1, max(0, int((ln["bbox"][0] - ml + gutter / 2) // (col_w + gutter))))

    lines.sort(key=lambda ln: (column(ln), ln["bbox"][1], ln["bbox"][0]))
    return "".join(span["text"] for ln in lines for span in ln["spans"])


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_targets_follow_the_columns_a_reader_reads(lang):
    # Seed 2 holds the Chinese pages whose hanging punctuation narrows the gap between column
    # text boxes below what the pdf kind's layout-blind gutter finder needs; read column by column
    # they are exactly the target.
    gen = get_generator("document", lang=lang, columns=[2, 3])
    for index in range(6):
        pdf, target, sampled, _ = gen.typeset(2, index)
        with pymupdf.open("pdf", pdf) as doc:
            assert _squash(_lines_by_layout_column(doc[0], sampled)) == _squash(target), (lang, index)


def test_cut_paragraphs_keep_the_longest_run_of_sentences_that_fits():
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph

    from generators.document import _longest_fitting_prefix, _measured_font

    for lang, font in (("en", "Times-Roman"), ("en", "DejaVu Sans"), ("zh", "WenQuanYi Micro Hei")):
        corpus = get_generator("document", lang=lang).corpus(lang)
        style = ParagraphStyle("p", fontName=_measured_font(font), fontSize=10.3, leading=13.4, splitLongWords=0,
                               wordWrap="CJK" if lang == "zh" else None)
        for start in range(0, 60, 6):
            sentences = corpus.sentences_[start:start + 6]
            whole = Paragraph(corpus.joiner.join(sentences), style)
            whole.wrap(170, 10_000)
            heights = [Paragraph(corpus.joiner.join(sentences[:k]), style).wrap(170, 10_000)[1]
                       for k in range(1, len(sentences))]
            for room in (5.0, 13.4, 40.0, 100.0, 201.0, 400.0):
                expected = sum(1 for h in heights if h <= room)  # heights grow with k
                assert _longest_fitting_prefix(whole, sentences, room) == expected, (lang, font, start, room)


def test_memo_fonts_measure_as_reportlab_does():
    import random

    from reportlab.pdfbase.pdfmetrics import stringWidth

    from generators.document import FONT_PAIRS, _measured_font, _rl_font

    rng = random.Random(0)
    words = [w for s in get_generator("document", lang="en").corpus("en").sentences_[:300] for w in s.split()]
    words += ["naïve", "café – “quoted”", "", "Ω≈ç"]  # outside printable ASCII: reportlab's own measure
    for name in {f for pair in FONT_PAIRS["en"] for f in pair}:
        for w in words:
            size = round(rng.uniform(8.0, 26.0), 2)
            assert stringWidth(w, _measured_font(name), size) == stringWidth(w, _rl_font(name), size), (name, w)
