"""Every TeX preamble the generators use draws with outline fonts on a machine set up by `infra/setup.sh` alone.

A font with no Type 1 outline installed either stops the contained TeX run ("Font ecsx1200 at 600 not found":
`mktexpk` cannot run there) or, where bitmap generation is allowed, lands in the PDF as a Type 3 bitmap.
Both are a missing system package, so the failure names the package to add to `infra/setup.sh`.
"""
from __future__ import annotations

import re

import pymupdf
import pytest

from generators.formula import FORMULA_PREAMBLE
from generators.latex_page import instantiate, load_templates
from generators.table import tex_preamble
from generators.tex import TexError, TexRenderer

# Every font shape a page body can reach: headings (sans in KOMA), bold, italic, small caps, sans,
# typewriter, math, a booktabs table. Sizes vary with the template's class options.
PROBE = r"""\section{Heading}\subsection{Sub}\paragraph{Para} Body \textbf{bold} \textit{italic} \textsc{Small Caps}
\textsf{sans \textbf{bold} \textit{it}} \texttt{mono \textbf{bold}} \emph{em} \textbf{\textit{bi}} {\small small}
{\footnotesize foot} {\large large} $x^2+\alpha\sum_i \int f$ \[ \frac{a}{b} \]
\begin{tabular}{ll}\toprule a & b\\\midrule c & d\\\bottomrule\end{tabular}"""
PROBE_ZH = PROBE + "中文文字，标点。"

# TeX font name prefix -> the Debian package holding its Type 1 outline.
OUTLINE_PACKAGES = {"ec": "cm-super", "tc": "cm-super", "cm": "texlive-fonts-recommended (amsfonts)",
                    "lm": "fonts-lmodern", "p": "texlive-fonts-recommended (PSNFSS)"}
OUTLINE_FONT_TYPES = {"Type1", "Type1C", "TrueType", "Type0", "CIDFontType0C", "CIDFontType2", "OpenType"}


def _package_for(font: str) -> str:
    for prefix, package in OUTLINE_PACKAGES.items():
        if font.lower().startswith(prefix):
            return package
    return f"the Debian package holding {font}.pfb (apt-file search {font}.pfb)"


def _sources() -> list[tuple[str, str, str]]:
    """(name, engine, source) for every template x language, the table preambles and the formula preamble."""
    out = []
    for name, template in sorted(load_templates().items()):
        out.append((f"template {name} en", "pdflatex", instantiate(template, "en", PROBE)))
        out.append((f"template {name} zh", "xelatex", instantiate(template, "zh", PROBE_ZH)))
    for lang in ("en", "zh"):
        engine, preamble = tex_preamble(lang)
        # the preview package (active) ships only what stands in a preview environment
        body = "\\begin{preview}\\begin{minipage}{10cm}" + (PROBE if lang == "en" else PROBE_ZH) + "\\end{minipage}\\end{preview}"
        out.append((f"table {lang}", engine, preamble + "\\begin{document}" + body + "\\end{document}"))
    out.append(("formula", "pdflatex", FORMULA_PREAMBLE + "\\begin{document}\\begin{preview}$\\displaystyle \\sum_{i=1}^n "
                "\\frac{\\alpha_i}{\\sqrt{x}} \\mathbb{R} \\mathcal{L} \\mathrm{d}x$\\end{preview}\\end{document}"))
    return out


SOURCES = _sources()


@pytest.fixture(scope="module")
def tex():
    with TexRenderer() as renderer:
        yield renderer


@pytest.mark.parametrize("name, engine, source", SOURCES, ids=[s[0] for s in SOURCES])
def test_preamble_draws_every_font_shape_with_outline_fonts(tex, name, engine, source):
    try:
        out = tex.compile(source, engine=engine)
    except TexError as e:
        missing = re.search(r"Font (\S+?) at \d+ not found", e.detail)
        if missing:
            pytest.fail(f"{name}: no outline font for {missing.group(1)}: install {_package_for(missing.group(1))} "
                        f"in infra/setup.sh", pytrace=False)
        raise
    doc = pymupdf.open(stream=out.pdf, filetype="pdf")
    fonts = {(f[2], f[3]) for page in doc for f in page.get_fonts()}
    assert fonts, f"{name}: the PDF uses no font at all"
    bitmap = sorted(basefont for kind, basefont in fonts if kind not in OUTLINE_FONT_TYPES)
    assert not bitmap, (f"{name}: bitmap (Type 3) fonts {bitmap}: install "
                        f"{', '.join(sorted({_package_for(re.sub(r'^[A-Z]{6}[+]', '', b)) for b in bitmap}))} "
                        "in infra/setup.sh")
