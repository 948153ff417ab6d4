"""`pdf`: real PDF files -> one sample per page, page text in reading order; bad files are rejects."""
from __future__ import annotations

import io
import itertools
import json
import types
import unicodedata
from pathlib import Path

import pymupdf
import pytest
from PIL import Image
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from generators import get_generator
from generators import pdf as pdf_mod
from generators.base import PROMPT_OCR, GeneratorError, Reject, Rejected, Sample
from generators.fonts import font_path

LEFT = ["Left column opens the article.", "Left column carries on below."]
RIGHT = ["Right column comes after the left.", "Right column closes the page."]


def _lines(c: Canvas, x: float, y: float, lines: list[str], step: float = 14) -> float:
    for ln in lines:
        c.drawString(x, y, ln)
        y -= step
    return y


def _one_column(path: Path) -> None:
    c = Canvas(str(path), pagesize=A4)
    c.setFont("Helvetica", 11)
    _lines(c, 72, 770, ["A plain page of text.", "Its second line."])
    _lines(c, 72, 700, ["A second paragraph below a gap."])
    c.showPage()
    c.save()


def _two_column(path: Path) -> None:
    """Title across the page, then two columns whose text is *written* right column first, so only a
    layout-aware reader gets the order right."""
    c = Canvas(str(path), pagesize=A4)
    c.setFont("Helvetica-Bold", 16)
    c.drawCentredString(A4[0] / 2, 790, "A Two Column Title Spanning The Page")
    c.setFont("Helvetica", 10)
    _lines(c, 320, 740, RIGHT[:1] * 6)
    _lines(c, 320, 640, RIGHT[1:] * 6)
    _lines(c, 60, 740, LEFT[:1] * 6)
    _lines(c, 60, 640, LEFT[1:] * 6)
    c.showPage()
    c.save()


def _with_blank_page_and_colour(path: Path) -> None:
    c = Canvas(str(path), pagesize=A4)
    c.setFont("Helvetica", 12)
    c.drawString(72, 760, "First page has text.")
    c.showPage()
    c.setFillColorRGB(0.2, 0.5, 0.9)
    c.rect(100, 100, 300, 300, fill=1)  # a drawing, no text
    c.showPage()
    c.setFillColorRGB(0.9, 0.1, 0.1)
    c.setFont("Helvetica", 30)
    c.drawString(72, 700, "Red words on page three.")
    c.showPage()
    c.save()


def _chinese(path: Path) -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    pdfmetrics.registerFont(TTFont("wqy-test", font_path("zh"), subfontIndex=0))
    c = Canvas(str(path), pagesize=A4)
    c.setFont("wqy-test", 14)
    c.drawString(72, 760, "长江是中国第一长河。")
    c.showPage()
    c.save()


@pytest.fixture()
def pdf_dir(tmp_path: Path) -> Path:
    d = tmp_path / "pdfs"
    d.mkdir()
    _one_column(d / "a_one.pdf")
    _two_column(d / "b_two.pdf")
    _with_blank_page_and_colour(d / "c_three_pages.pdf")
    _chinese(d / "d_chinese.pdf")
    good = (d / "a_one.pdf").read_bytes()
    (d / "e_truncated.pdf").write_bytes(good[: len(good) // 2])
    (d / "f_garbage.pdf").write_bytes(bytes(range(256)) * 20)
    (d / "g_empty.pdf").write_bytes(b"")
    Image.new("RGB", (20, 20), "white").save(d / "h_picture.png")
    with pymupdf.open(d / "a_one.pdf") as doc:
        doc.save(d / "i_encrypted.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret", owner_pw="owner")
    return d


def test_a_folder_renders_pages_and_rejects_bad_files_with_reasons(pdf_dir: Path):
    gen = get_generator("pdf", source=str(pdf_dir))
    assert len(gen) == 9
    results = list(gen.items(0, 0, len(gen)))
    samples = [r for r in results if isinstance(r, Sample)]
    rejects = {r.id: r for r in results if isinstance(r, Rejected)}
    assert [s.id for s in samples] == ["pdf-s0-000000000-p0000", "pdf-s0-000000001-p0000", "pdf-s0-000000002-p0000",
                                       "pdf-s0-000000002-p0002", "pdf-s0-000000003-p0000"]
    assert rejects["pdf-s0-000000002-p0001"].reason == "no_text"
    by_file = {Path(r.source).name: r.reason for r in rejects.values() if r.reason != "no_text"}
    assert by_file == {"e_truncated.pdf": "truncated_pdf", "f_garbage.pdf": "not_pdf", "g_empty.pdf": "empty_file",
                       "h_picture.png": "not_pdf", "i_encrypted.pdf": "encrypted"}
    for r in rejects.values():
        assert Path(r.source).name in r.detail  # the reason names the file
    one = samples[0]
    assert one.text == "A plain page of text. Its second line.\n\nA second paragraph below a gap."
    assert one.prompt == PROMPT_OCR and one.lang == "en" and one.meta["sampled"]["page"] == 0
    img = Image.open(io.BytesIO(one.image))
    assert img.size == (1024, 1024) and img.mode == "L"  # black on white: encoded as grayscale
    red = Image.open(io.BytesIO(samples[3].image))
    assert red.mode == "RGB" and samples[3].text == "Red words on page three."
    assert samples[4].lang == "zh" and samples[4].text == "长江是中国第一长河。"


def test_two_column_page_reads_title_then_left_then_right(pdf_dir: Path):
    gen = get_generator("pdf", source=[str(pdf_dir / "b_two.pdf")])
    [s] = gen.render(0, 0)
    text = s.text
    assert text.startswith("A Two Column Title Spanning The Page")
    positions = [text.index(t) for t in (LEFT[0], LEFT[1], RIGHT[0], RIGHT[1])]
    assert positions == sorted(positions), text
    # PyMuPDF's creation order (what a naive extractor returns) has the right column first
    with pymupdf.open(pdf_dir / "b_two.pdf") as doc:
        naive = doc[0].get_text()
    assert naive.index(RIGHT[0]) < naive.index(LEFT[0])


def test_same_seed_same_bytes_and_degradations_recorded(pdf_dir: Path):
    src = [str(pdf_dir / "a_one.pdf"), str(pdf_dir / "b_two.pdf")]
    a = list(get_generator("pdf", source=src, degradations={"p": 1.0, "kinds": ["blur", "noise"]}).items(4, 0, 2))
    b = list(get_generator("pdf", source=src, degradations={"p": 1.0, "kinds": ["blur", "noise"]}).items(4, 0, 2))
    assert [(s.image, json.dumps(s.meta)) for s in a] == [(s.image, json.dumps(s.meta)) for s in b]
    assert [o["op"] for o in a[0].meta["sampled"]["degradations"]] == ["blur", "noise"]
    plain = get_generator("pdf", source=src).render(4, 0)[0]
    assert plain.image != a[0].image and plain.text == a[0].text


def test_caps_list_files_and_remote_names_through_input_files(pdf_dir: Path, tmp_path: Path):
    from tests.input_files import BlobFiles

    (tmp_path / "list.txt").write_text("# the good ones\npdfs/a_one.pdf\npdfs/c_three_pages.pdf\n")
    gen = get_generator("pdf", source=str(tmp_path / "list.txt"), max_pages=2)
    results = list(gen.items(0, 0, 2))
    # The three-page file stops after its first two pages (page 1 has no text; page 2 is never read)
    # and its samples say the file was cut short.
    assert [(r.id, type(r).__name__) for r in results] == [
        ("pdf-s0-000000000-p0000", "Sample"), ("pdf-s0-000000001-p0000", "Sample"), ("pdf-s0-000000001-p0001", "Rejected")]
    assert results[0].meta["sampled"]["truncated"] is False and results[0].meta["sampled"]["pages"] == 1
    assert results[1].meta["sampled"]["truncated"] is True and results[1].meta["sampled"]["pages"] == 3
    assert results[1].text == "First page has text." and results[2].reason == "no_text"
    small = get_generator("pdf", source=[str(pdf_dir / "a_one.pdf")], max_bytes=100)
    [r] = list(small.items(0, 0, 1))
    assert r.reason == "too_large" and "a_one.pdf" in r.detail
    blobs = {"s3://bkt/docs/x.pdf": (pdf_dir / "a_one.pdf").read_bytes()}
    remote = get_generator("pdf", source=list(blobs), files=BlobFiles(blobs))
    [s] = remote.render(0, 0)
    assert s.meta["sampled"]["file"] == "s3://bkt/docs/x.pdf" and s.text.startswith("A plain page")
    [missing] = list(get_generator("pdf", source=["s3://bkt/nope.pdf"], files=BlobFiles(blobs)).items(0, 0, 1))
    assert missing.reason == "unreadable" and "nope.pdf" in missing.detail


def test_a_file_over_its_time_limit_is_rejected_whole_and_the_batch_goes_on(pdf_dir: Path, monkeypatch):
    # A clock that moves one second per reading plays a loaded machine: deterministic, nothing sleeps.
    ticks = itertools.count()
    monkeypatch.setattr(pdf_mod, "time", types.SimpleNamespace(monotonic=lambda: float(next(ticks))))
    src = [str(pdf_dir / "a_one.pdf"), str(pdf_dir / "c_three_pages.pdf"), str(pdf_dir / "d_chinese.pdf")]
    gen = get_generator("pdf", source=src, time_limit_s=2.5)
    results = list(gen.items(0, 0, 3))
    # The three-page file runs out of time on its last page: none of its pages is kept, not even the
    # two finished in time, so a slower machine cannot change which pages land in a shard.
    assert [(r.id, type(r).__name__) for r in results] == [
        ("pdf-s0-000000000-p0000", "Sample"), ("pdf-s0-000000001", "Rejected"), ("pdf-s0-000000002-p0000", "Sample")]
    timeout = results[1]
    assert timeout.reason == "timeout" and timeout.source == src[1] and "c_three_pages.pdf" in timeout.detail
    with pytest.raises(Reject) as e:
        gen.render(0, 1)
    assert e.value.reason == "timeout"
    # Within its limit the same file yields every page.
    whole = list(get_generator("pdf", source=src[1:2], time_limit_s=3.5).items(0, 0, 1))
    assert [(r.id, type(r).__name__) for r in whole] == [("pdf-s0-000000000-p0000", "Sample"),
                                                         ("pdf-s0-000000000-p0001", "Rejected"),
                                                         ("pdf-s0-000000000-p0002", "Sample")]
    for bad in ({"time_limit_s": 0}, {"max_pages": 0}, {"max_bytes": 0}):
        with pytest.raises(GeneratorError, match="must be positive"):
            get_generator("pdf", source=src, **bad)


def _squash(s: str) -> str:
    return "".join(s.split())


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_typeset_document_pages_read_back_in_their_known_reading_order(lang):
    # The document kind's target is the page text in reading order by construction: the pdf kind must
    # recover it from the PDF alone, on 1-3 columns. These seeds hold Chinese pages whose closing
    # marks hang into the gutter and pages whose middle column ends in a lone line below the others.
    from generators.document import DocumentGenerator
    from generators.pages import reading_order_text

    gen = DocumentGenerator(lang=lang)
    wrong, columns = [], set()
    # Two pages further on have a title line about 30 pt tall centred across the gutter.
    also = {"en": [(46, 7), (62, 1)], "zh": []}[lang]
    for seed, index in [*itertools.product(range(8), range(8)), *also]:
        pdf, target, sampled, _ = gen.typeset(seed, index)
        columns.add(sampled["columns"])
        with pymupdf.open("pdf", pdf) as doc:
            if _squash(reading_order_text(doc[0])) != _squash(target):
                wrong.append((seed, index, sampled["columns"]))
    assert columns == {1, 2, 3}
    assert wrong == []


def test_closing_marks_hanging_into_the_gutter_do_not_hide_it():
    # Kinsoku lets a closing mark hang past the column edge: its advance box (one em) leaves a 4 pt gap
    # to the next column, its ink far more. Measured without the hanging marks the gutter is there.
    from generators.pages import _find_gutters, _without_hanging_marks, order_blocks

    def line(x0: float, x1: float, text: str) -> dict:
        return {"bbox": (x0, 0, x1, 10), "spans": [{"text": text, "size": 10.0, "bbox": (x0, 0, x1, 10)}]}

    left_lines = [line(60, 220, "长江是中国第一长河全长六千三百多"), line(60, 230, "它发源于青藏高原的唐古拉山脉穿过，"),
                  line(60, 230, "流经四川盆地和两湖平原最后注入东海。 "), line(60, 120, "自古以来")]
    dict_blocks = [{"type": 0, "number": 0, "lines": left_lines},
                   {"type": 0, "number": 1, "lines": [line(234, 394, "熊猫是中国特有的动物主要生活在四")]},
                   {"type": 0, "number": 2, "lines": [line(60, 226, "A Latin closing quote is narrow: ”"), line(60, 90, "。")]}]
    boxes = [(60, 100, 230, 160), (234, 100, 394, 160), (60, 170, 226, 190)]
    trimmed = _without_hanging_marks(dict_blocks, [0, 1, 2], boxes)
    # Only the hanging marks go: the block keeps its widest line without one, other text is untouched.
    assert trimmed == [(60, 100, 220, 160), (234, 100, 394, 160), (60, 170, 226, 190)]
    page = [(60, 100, 230, 700), (234, 100, 394, 690)]
    assert _find_gutters(page, 454) == []
    assert _find_gutters([(60, 100, 220, 700), page[1]], 454) != []
    assert order_blocks([(234, 100, 394, 690), (60, 100, 220, 700)], 454) == [1, 0]


def test_a_lone_last_line_stays_with_its_column_and_a_page_number_stays_last():
    from generators.pages import order_blocks

    body = [
        (50, 100, 210, 684),  # 0 left column
        (230, 100, 390, 690),  # 1 middle column
        (410, 100, 570, 680),  # 2 right column
    ]
    lone_line = (230, 694, 380, 706)  # the middle column's last line, below every other column, centred
    page_number = (305, 760, 315, 772)  # centred under the text, set apart
    title = (240, 60, 380, 84)  # centred over the columns
    assert order_blocks([*body, lone_line], 612) == [0, 1, 3, 2]
    assert order_blocks([*body, lone_line, page_number, title], 612) == [5, 0, 1, 3, 2, 4]
    # The same short line set apart from its column, or not lined up with it, is a footer.
    assert order_blocks([*body, (230, 740, 390, 752)], 612) == [0, 1, 2, 3]
    assert order_blocks([*body, (262, 694, 332, 706)], 612) == [0, 1, 2, 3]


def test_a_block_alone_in_its_strip_does_not_hide_the_gutter_it_spans():
    # A centred title or caption bridging the gutter with no text beside it is no evidence against
    # columns above or below it, however tall: 40 pt of title is over 3% of the page's block height.
    from generators.pages import _find_gutters, order_blocks

    columns = [
        (60, 120, 290, 400),  # 0 left, top
        (60, 410, 290, 700),  # 1 left, lower
        (310, 120, 540, 400),  # 2 right, top
        (310, 410, 540, 700),  # 3 right, lower
    ]
    title = (180, 60, 420, 100)
    gutters = _find_gutters([*columns, title], 600)
    assert len(gutters) == 1 and 290 < gutters[0] < 310
    assert order_blocks([*columns, title], 600) == [4, 0, 1, 2, 3]
    # A three-line caption across both columns in the middle of the page: it separates two bands.
    caption = (170, 404, 430, 452)
    upper = [(60, 120, 290, 250), (60, 260, 290, 400), (310, 120, 540, 250), (310, 260, 540, 400)]
    lower = [(60, 456, 290, 700), (310, 456, 540, 700)]
    assert order_blocks([*lower, caption, *upper], 600) == [3, 4, 5, 6, 2, 0, 1]
    # A heading in one column has the other column's text beside it: it stays in its column.
    heading = (60, 404, 160, 420)
    assert order_blocks([*columns[2:], heading, *columns[:2]], 600) == [3, 2, 4, 0, 1]
    # One column with an indented quotation and its attribution set right: nothing is beside anything,
    # so the gap between the two is no gutter.
    page = [(60, 390, 540, 600), (100, 310, 280, 380), (60, 100, 540, 300), (320, 610, 500, 640)]
    assert _find_gutters(page, 600) == []
    assert order_blocks(page, 600) == [2, 1, 0, 3]


def _body(c: Canvas, x: float, y: float, tag: str, paragraphs: int) -> list[str]:
    """Column text: paragraphs of five lines, 10 pt gaps between them (one block each)."""
    texts = []
    for p in range(paragraphs):
        lines = [f"{tag} paragraph {p} line {k} of the column." for k in range(5)]
        y = _lines(c, x, y, lines, step=12) - 10
        texts.append(" ".join(lines))
    return texts


def _paper(path: Path, across: str) -> list[str]:
    """A two-column paper with a row of blocks across the gutter — `across` "authors": three author
    blocks under the title, the middle one straddling the gutter; "table": a 4x3 table between two
    bands of columns, its middle cells straddling the gutter, drawn column by column so each cell is a
    block of its own. The right column is drawn first. Returns the page's blocks in reading order."""
    c = Canvas(str(path), pagesize=A4)
    mid = A4[0] / 2
    c.setFont("Helvetica-Bold", 16)
    c.drawCentredString(mid, 790, "A Paper With Two Columns")
    order = ["A Paper With Two Columns"]
    c.setFont("Helvetica", 10)
    if across == "authors":
        for cx, who in [(150, "Ann Left"), (mid, "Bo Middle"), (A4[0] - 150, "Cy Right")]:
            lines = [who, f"{who.split()[1]} University", "Main Street"]
            for k, t in enumerate(lines):
                c.drawCentredString(cx, 760 - 12 * k, t)
            order.append(" ".join(lines))
        right = _body(c, 310, 700, "Right", 3)
        order += _body(c, 60, 700, "Left", 3) + right
    else:
        right = _body(c, 310, 760, "Right upper", 3)
        order += _body(c, 60, 760, "Left upper", 3) + right
        cells = {(r, k): f"row {r} cell {k}" for r in range(4) for k in range(3)}
        for k, cx in enumerate([110, mid, 480]):
            for r in range(4):
                c.drawCentredString(cx, 560 - 24 * r, cells[r, k])
        order += [cells[r, k] for r in range(4) for k in range(3)]  # row by row
        right = _body(c, 310, 450, "Right lower", 2)
        order += _body(c, 60, 450, "Left lower", 2) + right
    c.showPage()
    c.save()
    return order


@pytest.mark.parametrize("across", ["authors", "table"])
def test_a_row_of_blocks_across_the_gutter_is_read_as_a_row_between_the_columns(tmp_path: Path, across: str):
    # The middle block of the row covers the gutter; the columns above and below must still be read
    # one after the other, not interleaved paragraph by paragraph, and the row left to right.
    path = tmp_path / f"{across}.pdf"
    order = _paper(path, across)
    [s] = get_generator("pdf", source=[str(path)]).render(0, 0)
    # MuPDF may split an author's lines into two blocks: the order of the words is what counts.
    assert s.text.split() == " ".join(order).split()
    with pymupdf.open(path) as doc:  # the middle of the row really is one block astride the gutter
        middle = [b for b in doc[0].get_text("blocks") if b[4].startswith(("Bo Middle", "row 0 cell 1"))]
    assert len(middle) == 1 and middle[0][0] < A4[0] / 2 - 10 < A4[0] / 2 + 10 < middle[0][2]


def test_a_short_row_votes_against_a_gutter_only_with_its_own_height():
    from generators.pages import _find_gutters, order_blocks

    authors = [(100, 60, 200, 96), (250, 60, 350, 96), (400, 60, 500, 96)]
    columns = [(60, 120, 290, 300), (60, 310, 290, 420), (310, 120, 540, 300), (310, 310, 540, 420)]
    gutters = _find_gutters([*columns, *authors], 600)
    assert len(gutters) == 1 and 290 < gutters[0] < 310
    assert order_blocks([*columns, *authors], 600) == [4, 5, 6, 0, 1, 2, 3]
    # A table as tall as the columns beside it outvotes them: no gutter, the page is read by rows.
    table = [(60, 430, 200, 700), (250, 430, 350, 700), (400, 430, 540, 700)]
    assert _find_gutters([*columns, *table], 600) == []


# -- pages whose text cannot be read at 1024² are rejects --------------------------------------------------

def test_pages_whose_text_cannot_be_read_at_1024_are_rejected_with_a_reason(tmp_path: Path):
    pdf = tmp_path / "sizes.pdf"
    c = Canvas(str(pdf), pagesize=(14400, 14400))  # a 5 m poster: 12 pt text is under a pixel at 1024²
    c.setFont("Helvetica", 12)
    _lines(c, 72, 14000, ["Tiny words on an enormous page."] * 8)
    c.showPage()
    c.setPageSize(A4)
    c.setFont("Helvetica", 12)
    t = c.beginText(72, 760)
    t.setTextRenderMode(3)  # invisible: the text layer of a scan without its picture
    t.textLines(["Invisible words nobody can see.", "A second invisible line."])
    c.drawText(t)
    c.showPage()
    c.setFont("Helvetica", 12)
    c.drawString(72, 760, "An ordinary page that reads well.")
    c.showPage()
    c.save()
    items = list(get_generator("pdf", source=[str(pdf)]).items(0, 0, 1))
    assert [type(i) for i in items] == [Rejected, Rejected, Sample]
    assert [i.reason for i in items[:2]] == ["illegible", "illegible"]
    assert "glyphs 0.9 px tall" in items[0].detail and "sizes.pdf: page 0" in items[0].detail
    assert ": 0 px of ink for 48 characters" in items[1].detail
    assert items[2].text == "An ordinary page that reads well."
    # Its 0.9 px glyphs leave next to no ink either: a lower glyph limit alone does not let it through.
    poster = next(iter(get_generator("pdf", source=[str(pdf)], min_glyph_px=0.5).items(0, 0, 1)))
    assert poster.reason == "illegible" and "px of ink for" in poster.detail
    # The limits are parameters: a caller who wants the poster anyway gets it.
    poster = next(iter(get_generator("pdf", source=[str(pdf)], min_glyph_px=0, min_ink_per_char=0).items(0, 0, 1)))
    assert isinstance(poster, Sample)


# -- text as a reader types it, headings as their own blocks ----------------------------------------------

OT1_PAGE = r"""\documentclass{article}
\pagestyle{empty}
\begin{document}
\noindent{\large\bfseries 4.1 Font definitions for cmex\par}
\noindent The cmex10 option loads the font f\"ur M\"unchen at every size: na\"{\i}ve caf\'e, fa\c{c}ade,
r\^ole, se\~nor, Li\`ege, \v{C}ech; the office finds affine flows, and the paragraph wraps over lines.

\noindent{\bfseries A bold heading of the body size\par}
\noindent A paragraph after a bold heading of the same size, long enough to wrap over more than one line.
\end{document}
"""


def test_tex_pdf_text_has_composed_accents_and_headings_as_their_own_blocks(tmp_path: Path):
    from generators.tex import TexRenderer

    with TexRenderer() as tex:
        pdf = tex.compile(OT1_PAGE, "pdflatex").pdf  # OT1: accents are glyphs of their own
    (tmp_path / "ot1.pdf").write_bytes(pdf)
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        raw = doc[0].get_text()
        blocks = [b[4] for b in doc[0].get_text("blocks")]
    assert "f\u00a8ur M\u00a8unchen" in raw  # what MuPDF extracts: a spacing diaeresis, then the letter
    assert blocks[0].startswith("4.1 Font definitions for cmex\nThe cmex10")  # one block: heading + paragraph
    [s] = get_generator("pdf", source=[str(tmp_path / "ot1.pdf")]).render(0, 0)
    parts = s.text.split("\n\n")
    assert parts[0] == "4.1 Font definitions for cmex"
    assert parts[1].startswith("The cmex10 option loads the font für München at every size: naïve café, façade, "
                               "rôle, señor, Liège, Čech; the office finds affine flows")
    assert parts[2] == "A bold heading of the body size"
    assert parts[3].startswith("A paragraph after a bold heading")
    assert s.text == unicodedata.normalize("NFC", s.text) and "\u00a8" not in s.text


@pytest.mark.parametrize("raw, text", [
    ("f\u00a8ur M\u00a8unchen", "für München"), ("na\u00a8\u0131ve", "naïve"), ("fa\u00b8cade", "façade"),
    ("Li`ege", "Liège"), ("`quoted' text", "`quoted' text"), ("\ufb01nd e\ufb00ect", "find effect"),
    ("e\u0301te\u0301", "été"), ("x\u00a8 alone", "x\u00a8 alone"), ("r\u02c6ole \u02c7Cech", "rôle Čech"),
])
def test_normalize_text(raw, text):
    from generators.pages import normalize_text

    assert normalize_text(raw) == text
