"""`pdf`: pages of real PDF files -> (page image, page text in reading order).

Index i is file i of the sorted source list and yields one sample per page (id suffix `-pNNNN`). A page
without text is not a sample: `items()` yields `Rejected("no_text")` for it so the driver counts it. A
file that cannot be used (empty, not a PDF, truncated, corrupt, encrypted, over max_bytes) is a `Reject`
naming the file; the rest of the batch goes on.

The limits that shape a shard are the deterministic ones: a file over max_bytes is rejected, and a file
longer than max_pages yields its first max_pages pages, each recording `truncated: true` and the file's
page count in meta. The time limit is only a guard against pathological files: a file that runs past it is
rejected whole (`Rejected("timeout")`, no pages kept), because keeping the pages done so far would make
the shard's content depend on machine load. So the same params + seed give the same samples or a
recorded reject. The price is that a file's encoded pages are held until it is done: max_pages bounds
that buffer (a 1024² text page is ~100 KB of PNG, so ~50 MB at the default 500 pages).
"""
from __future__ import annotations

import time
from typing import Any, Sequence

from generators.base import PROMPT_OCR, Generator, GeneratorError, Reject, Rejected, Sample
from generators.degrade import check_spec
from generators.pages import PageText, page_text, rasterise_page, text_lang
from generators.sources import FileSourced, InputFiles, SourceFiles, describe_source


class PdfGenerator(FileSourced, Generator):
    """Params: source (folder, list of names, or .txt list file, read through `files`: see
    `generators.sources`), size (1024), lang ('auto' detects per page; 'en'/'zh' labels every page),
    max_bytes (per file: larger files are rejected), max_pages (per file: later pages are not
    rendered), time_limit_s (per file, checked after each page; past it the whole file is rejected),
    min_glyph_px and min_ink_per_char (a page whose text would be unreadable at `size`² is rejected as
    `illegible`: see `_illegible`), degradations, prompt."""

    kind = "pdf"
    version = "3"
    input_params = ("source",)
    lists_source = True
    requires_source = True
    source_suffixes = (".pdf",)

    def __init__(self, source: str | Sequence[str] | None = None, size: int = 1024, lang: str = "auto",
                 max_bytes: int = 64 * 2**20, max_pages: int = 500, time_limit_s: float = 60.0,
                 degradations: dict | None = None, prompt: str = PROMPT_OCR,
                 files: InputFiles | None = None,
                 min_glyph_px: float = 5.0, min_ink_per_char: float = 2.0):
        super().__init__(source=describe_source(source), size=size,
                         lang=lang, max_bytes=max_bytes, max_pages=max_pages, time_limit_s=time_limit_s,
                         degradations=degradations, prompt=prompt, min_glyph_px=min_glyph_px,
                         min_ink_per_char=min_ink_per_char)
        if lang not in ("auto", "mixed", "en", "zh"):
            raise GeneratorError(f"lang must be 'auto', 'en' or 'zh' for pdf, not {lang!r}")
        if int(max_bytes) < 1 or int(max_pages) < 1 or not float(time_limit_s) > 0:
            raise GeneratorError(f"max_bytes, max_pages and time_limit_s must be positive, not "
                                 f"{max_bytes}, {max_pages}, {time_limit_s}")
        check_spec(degradations)
        self.size, self.lang, self.prompt, self.degradations = int(size), lang, prompt, degradations
        self.max_bytes, self.max_pages, self.time_limit_s = int(max_bytes), int(max_pages), float(time_limit_s)
        self.sources = SourceFiles(source, files)
        self.min_glyph_px, self.min_ink_per_char = float(min_glyph_px), float(min_ink_per_char)

    def make(self, seed: int, index: int, prepared: None = None) -> list[Sample | Rejected]:
        """Every page outcome of file `index`, or Reject for the whole file. Pages are collected before any
        is handed out so that a file over its time limit leaves nothing behind."""
        import pymupdf

        name = self.sources.name(index)
        started = time.monotonic()
        data = self.sources.read(name, self.max_bytes)
        _check_pdf_bytes(name, data)
        try:
            doc = pymupdf.open(stream=data, filetype="pdf")
        except Exception as e:  # MuPDF raises FileDataError, RuntimeError, ValueError for bad files
            raise Reject("corrupt_pdf", f"{name}: {e}", source=name) from None
        out: list[Sample | Rejected] = []
        with doc:
            if doc.needs_pass:
                raise Reject("encrypted", f"{name}: needs a password", source=name)
            if doc.page_count == 0:
                raise Reject("empty_pdf", f"{name}: no pages", source=name)
            truncated = doc.page_count > self.max_pages
            for pno in range(min(doc.page_count, self.max_pages)):
                out.append(self._page_item(seed, index, name, doc, pno, truncated))
                if time.monotonic() - started >= self.time_limit_s:
                    raise Reject("timeout", f"{name}: time limit {self.time_limit_s}s reached after {pno + 1} of "
                                 f"{doc.page_count} pages; the whole file is left out", source=name)
        return out

    def _page_item(self, seed: int, index: int, name: str, doc: Any, pno: int, truncated: bool) -> Sample | Rejected:
        suffix = f"-p{pno:04d}"
        try:
            page = doc.load_page(pno)
            read = page_text(page)
            text = read.text
            if not text.strip():
                return self.rejected(seed, index, Reject("no_text", f"{name}: page {pno} has no text", name), suffix)
            img, gray = rasterise_page(page, self.size, gray=None)
        except Exception as e:  # a damaged page object; the other pages may still be fine
            return self.rejected(seed, index, Reject("corrupt_page", f"{name}: page {pno}: {e}", name), suffix)
        problem = self._illegible(page, read, img)
        if problem:
            return self.rejected(seed, index, Reject("illegible", f"{name}: page {pno}: {problem}", name), suffix)
        lang = text_lang(text) if self.lang in ("auto", "mixed") else self.lang
        sampled = {"file": name, "page": pno, "pages": doc.page_count, "truncated": truncated, "lang": lang,
                   "grayscale": gray, "page_size": [round(page.rect.width, 2), round(page.rect.height, 2)]}
        return self.finish_sample(seed, index, img, self.rng(seed, index, stream=pno + 1), lang=lang, text=text,
                                  sampled=sampled, degradations=self.degradations, min_ink=None, grayscale=gray,
                                  suffix=suffix)

    def _illegible(self, page: Any, read: PageText, img: Any) -> str | None:
        """Why the text of a page cannot be read once it is `size`² (a poster-sized page shrinks its glyphs
        to dots: the target would name text the image does not show), or None. Two signs: the glyphs
        the most text is set in come out under `min_glyph_px` tall, or the page shows less ink than
        `min_ink_per_char` pixels per character (invisible text, text under an image, hairline glyphs)."""
        import numpy as np

        scale = self.size / max(page.rect.width, page.rect.height)
        glyph_px = read.glyph_pt * scale
        if glyph_px < self.min_glyph_px:
            return (f"glyphs {glyph_px:.1f} px tall at {self.size}² (most text {read.glyph_pt:.1f} pt on a "
                    f"{page.rect.width:.0f}x{page.rect.height:.0f} pt page; min_glyph_px {self.min_glyph_px})")
        # Ink: pixels more than 40 levels from the background (the median of a sparse grid), counted on
        # every other row and doubled: a fifth of the cost of a full histogram (2.5 ms a page), and the
        # limit is a few pixels per character, far coarser than the estimate's error.
        arr = np.asarray(img if img.mode == "L" else img.convert("L"))
        background = int(np.median(arr[::16, ::16]))
        rows = arr[::2]
        if background >= 215:  # light paper: ink is only darker
            far = rows < background - 40
        elif background <= 40:  # dark paper: ink is only lighter
            far = rows > background + 40
        else:
            far = np.abs(rows.astype(np.int16) - background) > 40
        ink = 2 * int(np.count_nonzero(far))
        if read.chars and ink < self.min_ink_per_char * read.chars:
            return (f"{ink} px of ink for {read.chars} characters at {self.size}² "
                    f"(min_ink_per_char {self.min_ink_per_char})")
        return None


def _check_pdf_bytes(name: str, data: bytes) -> None:
    """Reject what MuPDF would silently 'repair' into something else: no bytes, no PDF header, no end."""
    if not data:
        raise Reject("empty_file", f"{name}: 0 bytes", source=name)
    if b"%PDF-" not in data[:1024]:
        raise Reject("not_pdf", f"{name}: no %PDF- header", source=name)
    if b"%%EOF" not in data[-2048:]:
        raise Reject("truncated_pdf", f"{name}: no %%EOF marker at the end (truncated download?)", source=name)
