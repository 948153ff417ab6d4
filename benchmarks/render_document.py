"""`document` generator vs the raw reportlab + PyMuPDF loop, in the same run (one core).

Raw loop: the same amount of corpus text per page (the length of our target for that index) laid out by
platypus `SimpleDocTemplate` in one column, page 1 rendered by PyMuPDF straight to 1024 px in grayscale,
padded, PNG level 1 (every page it laid out: a text may spill onto a second page at platypus' defaults,
and a page laid out is a page rendered) — the tuned settings of docs/measured-figures.md, without our layout control, target bookkeeping,
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


def _raw(texts: list[list[str]], lang: str, pages: list[int] | None = None) -> int:
    """Lay out each text with platypus and rasterise every page laid out; `pages[0]` counts them."""
    import pymupdf
    from PIL import Image
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    from generators.base import encode_png, fit_and_pad
    from generators.document import _rl_font

    pages = pages if pages is not None else [0]
    font = _rl_font("WenQuanYi Micro Hei" if lang == "zh" else "DejaVu Serif")
    style = ParagraphStyle("p", fontName=font, fontSize=10, leading=13, wordWrap="CJK" if lang == "zh" else None)
    for paras in texts:
        buf = io.BytesIO()
        SimpleDocTemplate(buf, pagesize=A4).build([Paragraph(p, style) for p in paras])
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
        texts = [[escape(p) for p in s.text.split("\n\n")] for s in items if hasattr(s, "text")]
        _raw(texts[:2], lang)  # warm
        rates = best_rates({"ours": loop, "raw": lambda: _raw(texts, lang)})
        pages = [0]
        _raw(texts, lang, pages)
        ours, raw = rates["ours"], rates["raw"]
        rejects = sum(1 for x in items if not hasattr(x, "image"))
        rows.append({"kind": f"document ({lang})", "ours_per_s": round(ours, 2), "raw_per_s": round(raw, 2),
                     "raw_label": "reportlab SimpleDocTemplate, same text, 1 column + PyMuPDF gray 1024 + PNG L1, "
                                  f"every page laid out ({pages[0] / max(len(texts), 1):.2f} pages per sample)",
                     "goal": GOAL, "rejects": rejects})
    return rows


if __name__ == "__main__":
    import json
    import sys

    for row in bench(int(sys.argv[1]) if len(sys.argv) > 1 else 30):
        print(json.dumps(row, ensure_ascii=False))
