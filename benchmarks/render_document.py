"""`document` generator vs the raw reportlab + PyMuPDF loop, in the same run (one core).

Raw loop: our target for that index laid out by platypus `SimpleDocTemplate` in one column on the page size,
margins, font size and leading our page sampled, every page it laid out rendered by PyMuPDF straight to
1024 px in grayscale, padded, PNG level 1 (one column loses no gutter, so the text fits about one page; the
label says how many pages per sample it took) — the tuned settings of docs/measured-figures.md, without our layout control, target bookkeeping,
font coverage check, extraction cross-check or blank check. Rates are samples per CPU-second, best of
three alternating rounds (benchmarks.render.best_rates).
"""
from __future__ import annotations

import io

GOAL = ">= 15/s and >= 0.9x raw (SynthDoG: 0.52/s)"


def _ours(n: int, lang: str) -> tuple[object, list]:
    from benchmarks.render import samples
    from generators.document import DocumentGenerator

    gen = DocumentGenerator(lang=lang)
    list(gen.items(0, 10_000, 10_002))  # warm: fonts, corpus
    return (lambda: samples(gen.items(0, 0, n))), list(gen.items(0, 0, n))


def _raw(texts: list[tuple[list[str], dict]], lang: str, pages: list[int] | None = None) -> int:
    """Lay out each text with platypus on our page's size, margins, font size and leading (one column), and
    rasterise every page laid out; `pages[0]` counts them."""
    import pymupdf
    from PIL import Image
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    from generators.base import encode_png, fit_and_pad
    from generators.document import PAGE_SIZES, _rl_font

    pages = pages if pages is not None else [0]
    font = _rl_font("WenQuanYi Micro Hei" if lang == "zh" else "DejaVu Serif")
    for paras, st in texts:
        style = ParagraphStyle("p", fontName=font, fontSize=st["font_size"], leading=st["leading"],
                               wordWrap="CJK" if lang == "zh" else None)
        left, right, top, bottom = st["margins"]
        buf = io.BytesIO()
        SimpleDocTemplate(buf, pagesize=PAGE_SIZES[st["page_size"]], leftMargin=left, rightMargin=right,
                          topMargin=top, bottomMargin=bottom).build([Paragraph(p, style) for p in paras])
        with pymupdf.open("pdf", buf.getvalue()) as doc:
            for page in doc:  # every page it laid out (the text of one of our pages may spill onto a second)
                zoom = 1024 / max(page.rect.width, page.rect.height)
                pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY)
                img = fit_and_pad(Image.frombytes("L", (pix.width, pix.height), pix.samples), 1024)
                encode_png(img, 1, grayscale=True)
                pages[0] += 1
    return len(texts)


def bench(n: int = 30) -> list[dict]:
    from xml.sax.saxutils import escape

    from benchmarks.render import best_rates

    rows = []
    for lang in ("en", "zh"):
        loop, items = _ours(n, lang)
        texts = [([escape(p) for p in s.text.split("\n\n")], s.meta["sampled"]) for s in items if hasattr(s, "text")]
        _raw(texts[:2], lang)  # warm
        rates = best_rates({"ours": loop, "raw": lambda: _raw(texts, lang)})
        pages = [0]
        _raw(texts, lang, pages)
        ours, raw = rates["ours"], rates["raw"]
        rejects = sum(1 for x in items if not hasattr(x, "image"))
        rows.append({"kind": f"document ({lang})", "ours_per_s": round(ours, 2), "raw_per_s": round(raw, 2),
                     "raw_label": "reportlab SimpleDocTemplate, same text, page size, margins and font size, 1 column "
                                  "+ PyMuPDF gray 1024 + PNG L1 of every page laid out "
                                  f"({pages[0] / max(len(texts), 1):.2f} pages per sample)",
                     "goal": GOAL, "rejects": rejects})
    return rows


if __name__ == "__main__":
    import json
    import sys

    for row in bench(int(sys.argv[1]) if len(sys.argv) > 1 else 30):
        print(json.dumps(row, ensure_ascii=False))
