"""`document`: synthetic pages typeset with reportlab from a text corpus, rasterised with PyMuPDF.

Layout is done here, flowable by flowable, instead of by a DocTemplate: the generator then knows exactly
which text landed on page 1 (the target) and never includes overflow. A paragraph that does not fit a
column is cut between sentences and continues in the next column, as in print; words are never split
(`splitLongWords=0`, no hyphenation), unlike SynthDoG's ground truth. The target is checked against
PyMuPDF's extraction of the produced PDF before the page is accepted.
"""
from __future__ import annotations

import functools
import io
import threading
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from generators.base import PROMPT_OCR, Generator, GeneratorError, Reject, Sample, check_not_blank
from generators.corpus import Corpus, pick_lang
from generators.degrade import check_spec
from generators.fonts import BASE14, font_path, require_coverage
from generators.pages import TEXT_FLAGS, rasterise_page

PAGE_SIZES = {"A4": (595.28, 841.89), "letter": (612.0, 792.0)}
# (body font, bold font) per language; base-14 names need no file, the rest are TrueType outlines.
FONT_PAIRS = {
    "en": (("DejaVu Sans", "DejaVu Sans Bold"), ("DejaVu Serif", "DejaVu Serif Bold"),
           ("Helvetica", "Helvetica-Bold"), ("Times-Roman", "Times-Bold"), ("Courier", "Courier-Bold")),
    "zh": (("WenQuanYi Micro Hei", "WenQuanYi Micro Hei"),),
}
BULLETS = ("•", "–", "number")
_register_lock = threading.Lock()
_registered: dict[str, str] = {}


def _rl_font(name: str) -> str:
    """reportlab's name for a font, registering TrueType files once per process."""
    if name in BASE14:
        return name
    with _register_lock:
        if name not in _registered:
            from reportlab.pdfbase import pdfmetrics
            from reportlab.pdfbase.ttfonts import TTFont

            rl_name = "vf-" + name.replace(" ", "")
            pdfmetrics.registerFont(TTFont(rl_name, font_path(name), subfontIndex=0))
            _registered[name] = rl_name
        return _registered[name]


MEMO_LIMIT = 100_000  # strings remembered per font before starting over (a user corpus may be vast)


def _measured_font(name: str) -> str:
    """The generator's name for a font: `_rl_font`'s, except that a base-14 font is registered a
    second time, under its own name, as a font that remembers string widths (`_memo_type1`)."""
    if name not in BASE14:
        return _rl_font(name)
    rl_name = "vf-memo-" + name
    with _register_lock:
        if rl_name not in _registered:
            from reportlab.lib.fonts import addMapping
            from reportlab.pdfbase import pdfmetrics

            std = pdfmetrics.getFont(name)
            pdfmetrics.registerFont(_memo_type1()(rl_name, std.face.name, std.encName))
            addMapping(rl_name, 0, 0, rl_name)  # the paragraph parser looks every font up by family
            _registered[rl_name] = rl_name
    return rl_name


@functools.cache
def _memo_type1() -> type:
    """reportlab's Type 1 font class with a memo of string widths in font units.

    reportlab's line breaker measures every word of a paragraph each time it wraps it, by a C call
    that re-encodes the string for a Type 1 font: about 800 calls a page for the same few thousand
    words, a fifth of the layout time with the base-14 fonts. The memo keeps the sum of the glyph
    widths (integers) and returns `units * 0.001 * size`, the expression reportlab's C code
    evaluates: the same float, hence the same line breaks and the same PDF. Text outside printable
    ASCII (which reportlab may draw from a substitution font) goes to reportlab's own measure.
    TrueType fonts are left alone: reportlab maps every name registered for a TrueType face to the
    first font object registered for it, and their C measure needs no encoding step."""
    from reportlab.pdfbase.pdfmetrics import Font

    class MemoWidthsType1Font(Font):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._units: dict[str, int] = {}

        def stringWidth(self, text: Any, size: float, encoding: str = "utf8") -> float:
            units = self._units.get(text) if isinstance(text, str) else None
            if units is None:
                if not (isinstance(text, str) and text.isascii() and text.isprintable()):
                    return super().stringWidth(text, size, encoding)
                widths = self.widths
                units = sum(widths[ord(c)] for c in text)
                if len(self._units) >= MEMO_LIMIT:
                    self._units.clear()
                self._units[text] = units
            return units * 0.001 * size

    return MemoWidthsType1Font


# Chinese punctuation that may not start a line (kinsoku). reportlab's CJK wrapping knows the Japanese
# set (、。」』）…) but not the full-width comma, semicolon, colon, question and exclamation marks or
# closing double angle bracket, so 3% of Chinese lines began with "，".
NO_LINE_START = "，。、；：？！）》」』"


def _teach_reportlab_kinsoku() -> None:
    """Add NO_LINE_START to the set reportlab's CJK line breaker hangs into the margin instead of
    starting a line with. Both modules read the name at call time; adding characters only ever
    improves other users' Chinese lines in this process."""
    from reportlab.lib import textsplit
    from reportlab.platypus import paragraph

    with _register_lock:
        missing = "".join(c for c in NO_LINE_START if c not in textsplit.ALL_CANNOT_START)
        if missing:
            textsplit.ALL_CANNOT_START += missing
            paragraph.ALL_CANNOT_START = textsplit.ALL_CANNOT_START


@dataclass
class _Block:
    kind: str  # "title" | "heading" | "para" | "item"
    sentences: list[str]
    bullet: str = ""
    continued: bool = False  # the rest of a paragraph begun in the previous column
    new_list: bool = False
    para: Any = None  # the whole block's Paragraph, wrapped at the column width (reused when it moves on)


@dataclass
class _Layout:
    pieces: list[tuple[str, str]] = field(default_factory=list)  # (separator before, text)
    blocks: int = 0
    cut_paragraphs: int = 0


class DocumentGenerator(Generator):
    """Params: lang ('en' | 'zh' | 'mixed'), size (1024), corpus (None = built-in; a path/URI, or a dict
    lang -> path/URI; see `Corpus.load`), files (where corpora are read: `generators.sources.InputFiles`), degradations ({"p", "kinds"} or None),
    prompt (default the OCR prompt), columns (list of allowed column counts, default [1, 2, 3])."""

    kind = "document"
    version = "2"
    input_params = ("corpus",)

    def __init__(self, lang: str = "en", size: int = 1024, corpus: str | dict[str, str] | None = None,
                 files: Any = None, degradations: dict | None = None,
                 prompt: str = PROMPT_OCR, columns: list[int] | tuple[int, ...] = (1, 2, 3)):
        super().__init__(lang=lang, size=size, corpus=corpus, degradations=degradations, prompt=prompt,
                         columns=list(columns))
        if lang not in ("en", "zh", "mixed"):
            raise GeneratorError(f"lang must be 'en', 'zh' or 'mixed', not {lang!r}")
        if not columns or any(c not in (1, 2, 3) for c in columns):
            raise GeneratorError(f"columns must be a non-empty subset of [1, 2, 3], not {columns!r}")
        check_spec(degradations)
        self.lang, self.size, self.prompt, self.degradations = lang, int(size), prompt, degradations
        self.columns = tuple(columns)
        self._corpus_spec, self._files = corpus, files
        self._corpora: dict[str, Corpus] = {}

    def corpus(self, lang: str) -> Corpus:
        if lang not in self._corpora:
            spec = self._corpus_spec.get(lang) if isinstance(self._corpus_spec, dict) else self._corpus_spec
            self._corpora[lang] = Corpus.load(spec, lang, self._files)
        return self._corpora[lang]

    def typeset(self, seed: int, index: int) -> tuple[bytes, str, dict[str, Any], np.random.Generator]:
        """The one-page PDF of sample `index`, its target text, the sampled layout, and the sample's rng
        (positioned after layout, for what follows). Exposed so tests and tools can inspect the PDF."""
        rng = self.rng(seed, index)
        lang = pick_lang(rng, self.lang)
        corpus = self.corpus(lang)
        s = self._sample_style(rng, lang)
        pdf, layout = _lay_out(rng, corpus, s)
        target = _join(layout.pieces)
        if layout.blocks == 0 or not target:
            raise Reject("overflow", "no body text fits the page with the sampled layout")
        sampled = {**s, "lang": lang, "blocks": layout.blocks, "cut_paragraphs": layout.cut_paragraphs,
                   "chars": len(target)}
        sampled.pop("page_wh")
        return pdf, target, sampled, rng

    def make(self, seed: int, index: int, prepared: None = None) -> list[Sample]:
        import pymupdf

        pdf, target, sampled, rng = self.typeset(seed, index)
        with pymupdf.open("pdf", pdf) as doc:
            # The page's content is interpreted once into a display list that both the text
            # extraction and the raster replay (a fifth cheaper than running the page twice).
            page = doc[0].get_displaylist()
            # Creation order is reading order here (the layout draws in reading order), so the
            # plain extraction must equal the target up to line-wrapping whitespace.
            extracted = pymupdf.TextPage(page.get_textpage(flags=TEXT_FLAGS)).extractText()
            if "".join(extracted.split()) != "".join(target.split()):
                raise Reject("text_mismatch", f"PyMuPDF reads {len(extracted)} chars, target has {len(target)}")
            img, _ = rasterise_page(page, self.size)
        # Every fourth pixel of every fourth row tells blank from not as well as all of them: pages
        # of text have 25-55x the threshold's ink, the sample's fraction is within 15% of the full
        # page's, and a histogram of the full page costs 6x more.
        check_not_blank(img.resize((img.width // 4, img.height // 4), Image.Resampling.NEAREST))
        return [self.finish_sample(seed, index, img, rng, lang=sampled["lang"], text=target, sampled=sampled,
                                   degradations=self.degradations, min_ink=None, grayscale=True)]

    # -- sampling ----------------------------------------------------------------------------------
    def _sample_style(self, rng: np.random.Generator, lang: str) -> dict[str, Any]:
        page_size = ("A4", "letter")[int(rng.integers(2))]
        columns = int(rng.choice(self.columns))
        pairs = FONT_PAIRS[lang]
        body_font, bold_font = pairs[int(rng.integers(len(pairs)))]
        font_size = round(float(rng.uniform(9.0, 12.0) if columns < 3 else rng.uniform(8.5, 10.0)), 2)
        return {
            "page_size": page_size,
            "page_wh": PAGE_SIZES[page_size],
            "columns": columns,
            "body_font": body_font,
            "bold_font": bold_font,
            "font_size": font_size,
            "leading": round(font_size * float(rng.uniform(1.2, 1.55)), 2),
            "heading_size": round(font_size * float(rng.uniform(1.1, 1.45)), 2),
            "title_size": round(font_size * float(rng.uniform(1.5, 2.2)), 2),
            "has_title": bool(rng.random() < 0.85),
            "align": ("left", "justify")[int(rng.integers(2))],
            "margins": [round(float(m), 1) for m in rng.uniform(36.0, 86.0, size=4)],  # left right top bottom
            "gutter": round(float(rng.uniform(12.0, 30.0)), 1),
            "block_gap": round(font_size * float(rng.uniform(0.4, 1.2)), 2),
        }


# -- layout: one page, drawn block by block --------------------------------------------------------------
def _lay_out(rng: np.random.Generator, corpus: Corpus, s: dict[str, Any]) -> tuple[bytes, _Layout]:
    """The one-page PDF of a sampled style `s` filled from `corpus`, and what landed on it: an optional
    title across the page, then columns filled in reading order; a paragraph that does not fit a
    column's end is cut between sentences and continues at the top of the next column."""
    page = _Page(s, corpus)
    blocks = _BlockStream(rng, corpus)
    y = page.top
    if s["has_title"]:
        y = page.title(corpus.title(rng, max_words=7))
    pending: _Block | None = None
    for col in range(s["columns"]):
        pending = page.fill_column(col, y, blocks, pending)
    return page.finish(), page.layout


class _BlockStream:
    """The blocks a page draws from the corpus, in layout order. A list is drawn whole (its items share
    a bullet style), then handed out an item at a time."""

    def __init__(self, rng: np.random.Generator, corpus: Corpus):
        self.rng, self.corpus = rng, corpus
        self.items: list[_Block] = []  # the rest of the list being laid out
        self.prev: _Block | None = None  # the last block placed (no heading right after a heading)

    def next(self) -> _Block:
        if self.items:
            return self.items.pop(0)
        rng, corpus = self.rng, self.corpus
        r = rng.random()
        if r < 0.14 and (self.prev is None or self.prev.kind not in ("heading", "title")):
            return _Block("heading", [corpus.title(rng, max_words=5)])
        if r < 0.26:
            lo, hi = (25, 140) if corpus.lang == "en" else (12, 60)
            n = int(rng.integers(2, 6))
            style = BULLETS[int(rng.integers(len(BULLETS)))]
            texts = [corpus.paragraph(rng, lo, hi) for _ in range(n)]
            self.items = [_Block("item", [t], bullet=f"{k + 1}." if style == "number" else style, new_list=(k == 0))
                          for k, t in enumerate(texts)]
            return self.items.pop(0)
        n = int(rng.integers(2, 7))
        return _Block("para", corpus.sentences(rng, n))


class _Page:
    """One page being typeset: reportlab paragraph styles of the sampled style, the canvas, and what has
    been placed so far (the target's pieces, in reading order)."""

    def __init__(self, s: dict[str, Any], corpus: Corpus):
        from reportlab.pdfgen.canvas import Canvas

        for f in (s["body_font"], s["bold_font"]):
            font_path(f) if f not in BASE14 else None  # a missing font is a set-up error, raised early
        self.s, self.joiner = s, corpus.joiner
        self.wrap = "CJK" if corpus.lang == "zh" else None
        if self.wrap:
            _teach_reportlab_kinsoku()
        self.styles = _paragraph_styles(s, self.wrap)
        self.width, self.height = s["page_wh"]
        self.left, right, top, self.bottom = s["margins"]
        self.top = self.height - top
        self.col_w = (self.width - self.left - right - s["gutter"] * (s["columns"] - 1)) / s["columns"]
        self.text_w = self.width - self.left - right
        self._buf = io.BytesIO()
        # The canvas's own first font is Helvetica; naming it as the generator does keeps one font
        # resource for pages set in Helvetica.
        self.canvas = Canvas(self._buf, pagesize=(self.width, self.height), invariant=1, pageCompression=0,
                             initialFontName=_measured_font("Helvetica"))
        self.layout = _Layout()
        self._first_frag: dict[str, Any] = {}  # per block kind: the parser's fragment for plain text

    def title(self, text: str) -> float:
        """Draw the title across the page; the y where the columns start."""
        title = _Block("title", [text])
        p = self.paragraph(title, title.sentences)
        _, h = p.wrap(self.text_w, self.height)
        p.drawOn(self.canvas, self.left, self.top - h)
        self.record(title, title.sentences)
        return self.top - h - self.s["block_gap"] * 1.5

    def fill_column(self, col: int, y: float, blocks: _BlockStream, pending: _Block | None) -> _Block | None:
        """Place blocks in column `col` from `y` down, starting with `pending` (what the previous column
        left over), until one does not fit; returns what is left over for the next column."""
        s = self.s
        x, cur, first = self.left + col * (self.col_w + s["gutter"]), y, True
        while True:
            block = pending or blocks.next()
            pending = None
            gap = 0.0 if first else s["block_gap"] * (0.35 if block.kind == "item" and not block.new_list else 1.0)
            room = cur - gap - self.bottom
            # A heading keeps two lines of what follows with it rather than end a column.
            keep = 2 * s["leading"] if block.kind == "heading" else 0.0
            if block.para is None:
                block.para = self.paragraph(block, block.sentences)
            p = block.para
            if room - keep > 0 and self.fits(p, self.col_w, room - keep):
                shown = block.sentences
            else:
                shown, p = self.cut(block, room) if block.kind == "para" and room > 0 else ([], p)
                if not shown:
                    return block  # starts the next column whole
                self.layout.cut_paragraphs += 1
                pending = _Block("para", block.sentences[len(shown):], continued=True)
            p.drawOn(self.canvas, x, cur - gap - p.height)
            self.record(block, shown)
            self.layout.blocks += 1
            cur -= gap + p.height
            first = False
            blocks.prev = block
            if pending is not None:
                return pending

    def cut(self, block: _Block, room: float) -> tuple[list[str], Any]:
        """The longest run of leading sentences of paragraph `block` that fits in `room`, and its Paragraph;
        no sentences when not even the first fits."""
        cut = _longest_fitting_prefix(block.para, block.sentences, room)
        if cut:
            q = self.paragraph(block, block.sentences[:cut])
            if self.fits(q, self.col_w, room):
                return block.sentences[:cut], q
            cut -= 1
        # Lines the estimate could not read (or a wrong one): the longest run of leading sentences that
        # fits, by binary search (fit is monotone).
        lo, hi, best = 1, cut if cut is not None else len(block.sentences) - 1, None
        while lo <= hi:
            k = (lo + hi) // 2
            q = self.paragraph(block, block.sentences[:k])
            if self.fits(q, self.col_w, room):
                best, lo = (k, q), k + 1
            else:
                hi = k - 1
        return (block.sentences[:best[0]], best[1]) if best is not None else ([], block.para)

    def paragraph(self, block: _Block, sentences: list[str]) -> Any:
        """The reportlab Paragraph of `sentences` of `block` (all of them, or a leading run of a cut)."""
        from reportlab.platypus import Paragraph
        from reportlab.platypus.paragraph import cleanBlockQuotedText

        text = self.joiner.join(sentences)
        if sentences is block.sentences:
            # The target is checked for coverage before anything is drawn: no tofu reaches an
            # image. A cut keeps leading sentences, so checking the whole block covers it too.
            font = self.s["bold_font"] if block.kind in ("title", "heading") else self.s["body_font"]
            require_coverage(text + block.bullet, font)
        bullet = block.bullet or None
        plain = not any(c in text for c in "&<>")
        frag = self._first_frag.get(block.kind) if plain else None
        if frag is not None:
            # reportlab's XML parser makes text without markup characters into one fragment
            # that differs from the style's first one only by its text (whitespace collapsed);
            # cloning that skips the parser, a sixth of the layout time.
            text = cleanBlockQuotedText(text)
            return Paragraph(text, self.styles[block.kind], bulletText=bullet, frags=[frag.clone(text=text)])
        p = Paragraph(escape(text), self.styles[block.kind], bulletText=bullet)
        if plain and len(p.frags) == 1:
            self._first_frag[block.kind] = p.frags[0]
        return p

    def fits(self, p: Any, width: float, height: float) -> bool:
        if getattr(p, "_wrapped_at", None) != width:
            # Wrapped once per width: the height asked for plays no part in the line breaks,
            # so a block that moves on to the next column keeps its lines.
            p.wrap(width, height)
            p._wrapped_at = width
        # reportlab squeezes justified lines a little past the width; a word that does not fit
        # at all overshoots by far more.
        # CJK wrapping hangs closing punctuation, one character past the width.
        if max(p.getActualLineWidths0() or [0]) > width * 1.03 + (self.s["font_size"] * 1.1 if self.wrap else 0):
            raise Reject("overflow", "a word is wider than the column")
        return p.height <= height

    def record(self, block: _Block, sentences: list[str]) -> None:
        """Add what was drawn of `block` to the target, with the separator reading order puts before it."""
        text = self.joiner.join(sentences)
        if block.kind == "item":
            text = f"{block.bullet} {text}"
            sep = "\n\n" if block.new_list else "\n"
        else:
            sep = self.joiner if block.continued else "\n\n"
        self.layout.pieces.append((sep, text))

    def finish(self) -> bytes:
        self.canvas.showPage()
        self.canvas.save()
        return self._buf.getvalue()


def _paragraph_styles(s: dict[str, Any], wrap: str | None) -> dict[str, Any]:
    """reportlab's paragraph style per block kind for the sampled style `s`."""
    from reportlab.lib.enums import TA_JUSTIFY, TA_LEFT
    from reportlab.lib.styles import ParagraphStyle

    body, bold = _measured_font(s["body_font"]), _measured_font(s["bold_font"])
    align = TA_JUSTIFY if s["align"] == "justify" else TA_LEFT
    common = dict(splitLongWords=0, wordWrap=wrap, allowWidows=1, allowOrphans=1)
    return {
        "para": ParagraphStyle("p", fontName=body, fontSize=s["font_size"], leading=s["leading"],
                               alignment=align, **common),
        "item": ParagraphStyle("i", fontName=body, fontSize=s["font_size"], leading=s["leading"], alignment=TA_LEFT,
                               leftIndent=s["font_size"] * 1.8, bulletIndent=s["font_size"] * 0.3,
                               bulletFontName=body, bulletFontSize=s["font_size"], **common),
        "heading": ParagraphStyle("h", fontName=bold, fontSize=s["heading_size"],
                                  leading=s["heading_size"] * 1.25, alignment=TA_LEFT, **common),
        "title": ParagraphStyle("t", fontName=bold, fontSize=s["title_size"], leading=s["title_size"] * 1.25,
                                alignment=1, **common),
    }


def _longest_fitting_prefix(p: Any, sentences: list[str], height: float) -> int | None:
    """How many leading sentences of the wrapped Paragraph `p` (whose text is `sentences`) end
    within the lines that fit in `height`, read off `p`'s own lines: 0 when not even the first
    does, None when its lines are not the plain kind this can read. Greedy line breaking is
    prefix-stable (a break depends only on the text before it), so the first k sentences set
    alone end on the same line as they do in the whole paragraph; the caller still checks the
    fit of what it draws."""
    bl = getattr(p, "blPara", None)
    if bl is None or bl.kind != 0 or len(sentences) < 2:
        return None
    leading = p.style.leading
    n_fit = int(height // leading)
    while n_fit > 0 and n_fit * leading > height:
        n_fit -= 1
    while (n_fit + 1) * leading <= height:
        n_fit += 1
    # Non-space characters up to the end of the last fitting line; whitespace is left out on both
    # sides because the breaker drops and collapses it.
    room = 0
    for _, words in bl.lines[:n_fit]:
        room += sum(len("".join(w.split())) for w in words)
    used, k = 0, 0
    for sentence in sentences[:-1]:
        used += len("".join(sentence.split()))
        if used > room:
            break
        k += 1
    return k


def _join(pieces: list[tuple[str, str]]) -> str:
    out = "".join(sep + text for sep, text in pieces)
    return out.lstrip("\n ")
