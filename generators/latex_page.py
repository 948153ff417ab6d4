"""`latex_page`: one-page LaTeX documents (Vary-base's "LaTeX-rendered pages") with a Mathpix-style target.

A page is a list of blocks (headings, paragraphs with inline math, display math, tables, lists), each
known both as LaTeX and as markdown. Blocks go through one of the templates in `generators/templates/`
(class, columns, fonts, margins, section styles differ), English with pdflatex, Chinese with xelatex +
xeCJK (WenQuanYi Micro Hei). The page is compiled in the contained `TexRenderer`; when it runs past one
page, trailing blocks are dropped and it is compiled again until it fits, so the target is exactly the
page's content (`meta.sampled.trimmed_blocks` counts the drops). Target conventions: inline math
`\\(...\\)`, display math `\\[...\\]` on its own lines, `#`/`##`/`###` headings, tables in markdown (or
LaTeX tabular where cells are merged), `- ` list items, blocks separated by a blank line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from generators.base import (
    PROMPT_MARKDOWN, Generator, GeneratorError, Reject, Sample, check_not_blank, encode_png, sample_id, sample_rng,
)
from generators.degrade import check_spec, degrade
from generators.formula import _Grammar, normalize_latex, random_formula
from generators.table import CJK_FONT, STYLES, check_text_coverage, random_table, to_latex, to_markdown
from generators.tex import ESCAPE_PREAMBLE, escape_text

TEMPLATE_DIR = Path(__file__).parent / "templates"
LANGS = ("en", "zh", "mixed")
TWO_COLUMN_MARKERS = ("twocolumn", "multicols")


def load_templates() -> dict[str, str]:
    """name -> template text, for every `generators/templates/*.tex`."""
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(TEMPLATE_DIR.glob("*.tex"))}


def instantiate(template: str, lang: str, body: str) -> str:
    """Fill a template: lines marked `%en ` / `%zh ` are kept (unmarked) for that language only; Chinese
    gets xeCJK with the CJK font before `\\begin{document}`."""
    lines = []
    for line in template.splitlines():
        for tag in ("en", "zh"):
            if line.startswith(f"%{tag} "):
                line = line[len(tag) + 2:] if tag == lang else ""
        lines.append(line)
    src = "\n".join(lines).replace("\\begin{document}", ESCAPE_PREAMBLE + "\\begin{document}", 1)
    if lang == "en":  # ligatures extract from the PDF as letters (tests compare the PDF's text to the target)
        src = src.replace("\\begin{document}", "\\input{glyphtounicode}\\pdfgentounicode=1\n\\begin{document}", 1)
    if lang == "zh":
        src = src.replace("\\begin{document}", f"\\usepackage{{xeCJK}}\n\\setCJKmainfont{{{CJK_FONT}}}\n\\begin{{document}}", 1)
    return src.replace("<<BODY>>", body)


@dataclass(frozen=True)
class Block:
    kind: str
    latex: str
    markdown: str


@dataclass(frozen=True)
class CompiledPage:
    pdf: bytes
    target: str
    engine: str
    sampled: dict[str, Any]


class _Blocks:
    """Draws blocks from the sample's rng, a corpus and the formula grammar."""

    def __init__(self, rng: np.random.Generator, corpus: Any, lang: str, narrow: bool):
        self.rng, self.corpus, self.lang, self.narrow = rng, corpus, lang, narrow

    def text(self, s: str) -> tuple[str, str]:
        check_text_coverage(s, self.lang)
        return escape_text(s), s

    def heading(self, level: int) -> Block:
        latex, md = self.text(self.corpus.title(self.rng, max_words=5))
        cmd = {1: "section*", 2: "subsection*"}[level]
        return Block("heading", f"\\{cmd}{{{latex}}}", "#" * (level + 1) + " " + md)

    def title(self) -> Block:
        latex, md = self.text(self.corpus.title(self.rng, max_words=7))
        return Block("title", f"\\begin{{center}}{{\\LARGE\\bfseries {latex}\\par}}\\end{{center}}", "# " + md)

    def inline_math(self) -> str:
        return normalize_latex(_Grammar(self.rng).expr(int(self.rng.integers(0, 2)), 2))

    def paragraph(self) -> Block:
        sentences = self.corpus.sentences(self.rng, int(self.rng.integers(2, 6)))
        tex_parts, md_parts = [], []
        for s in sentences:
            latex, md = self.text(s)
            tex_parts.append(latex)
            md_parts.append(md)
            if self.rng.random() < 0.35:  # inline math between sentences
                f = self.inline_math()
                lead, stop = ("Consider", ".") if self.lang == "en" else ("考虑", "。")
                tex_parts.append(f"{lead} ${f}${stop}")
                md_parts.append(f"{lead} \\({f}\\){stop}")
        joiner = self.corpus.joiner
        return Block("paragraph", joiner.join(tex_parts), joiner.join(md_parts))

    def display_math(self) -> Block:
        f = random_formula(self.rng, max_chars=60 if self.narrow else 110)
        return Block("display_math", f"\\[{f}\\]", f"\\[\n{f}\n\\]")

    def table(self) -> Block:
        table, _ = random_table(self.rng, lambda n: self.corpus.words(self.rng, n), self.corpus.joiner,
                                max_cols=3 if self.narrow else 5, max_rows=6)
        check_text_coverage(table.text(), self.lang)
        style = str(self.rng.choice(STYLES))
        tabular = to_latex(table, style)
        md = to_latex(table, style) if table.merged or table.header_rows != 1 else to_markdown(table)
        # Shrink only a table wider than the column; the tabular itself is what the target shows.
        latex = ("\\begin{center}\\small\\sbox0{" + tabular + "}\\ifdim\\wd0>\\linewidth"
                 "\\resizebox{\\linewidth}{!}{\\usebox0}\\else\\usebox0\\fi\\end{center}")
        return Block("table", latex, md)

    def itemize(self) -> Block:
        items = [self.text(s) for s in self.corpus.sentences(self.rng, int(self.rng.integers(2, 5)))]
        # a math bullet: \textbullet needs TS1 fonts, which OT1-only installs have as bitmaps at best
        latex = "\\begin{itemize}" + "".join(f"\\item[$\\bullet$] {t}" for t, _ in items) + "\\end{itemize}"
        return Block("list", latex, "\n".join(f"- {m}" for _, m in items))

    def page(self, budget: int) -> list[Block]:
        blocks = [self.title()] if self.rng.random() < 0.5 else []
        blocks.append(self.heading(1))
        size = 0
        while size < budget:
            r = self.rng.random()
            if r < 0.5:
                b = self.paragraph()
            elif r < 0.65:
                b = self.display_math()
            elif r < 0.75:
                b = self.table()
            elif r < 0.83:
                b = self.itemize()
            else:
                b = self.heading(int(self.rng.integers(1, 3)))
            blocks.append(b)
            size += len(b.markdown)
        return blocks


class LatexPageGenerator(Generator):
    """Params: lang ("en" | "zh" | "mixed": each sample picks en or zh), corpus (file per language or None),
    reader, templates (names to use; None = all), size (square side, default 1024), timeout_s,
    max_compiles (per page, trims included), budget_chars (range of content drawn before trimming;
    default by language), degradations, prompt."""

    kind = "latex_page"
    version = "1"

    def __init__(self, lang: str = "en", corpus: str | None = None, reader: Callable[[str], bytes] | None = None,
                 templates: list[str] | None = None, size: int = 1024, timeout_s: float = 60.0,
                 max_compiles: int = 8, budget_chars: tuple[int, int] | None = None, degradations: dict | None = None, prompt: str = PROMPT_MARKDOWN):
        if lang not in LANGS:
            raise GeneratorError(f"latex_page lang must be one of {LANGS}, not {lang!r}")
        check_spec(degradations)
        available = load_templates()
        chosen = sorted(available) if templates is None else list(templates)
        unknown = [t for t in chosen if t not in available]
        if unknown or not chosen:
            raise GeneratorError(f"unknown templates {unknown}; available: {', '.join(sorted(available))}")
        super().__init__(lang=lang, corpus=corpus, templates=chosen, size=size, timeout_s=timeout_s,
                         max_compiles=max_compiles, budget_chars=budget_chars, degradations=degradations, prompt=prompt)
        self.lang, self.corpus_spec, self.reader, self.size = lang, corpus, reader, size
        self.template_names, self._templates = chosen, {t: available[t] for t in chosen}
        self.timeout_s, self.max_compiles, self.degradations, self.prompt = timeout_s, max_compiles, degradations, prompt
        self.budget_chars = tuple(budget_chars) if budget_chars else None
        self._corpora: dict[str, Any] = {}
        self._tex: Any = None

    def _corpus(self, lang: str) -> Any:
        if lang not in self._corpora:
            from generators.corpus import Corpus

            self._corpora[lang] = Corpus.load(self.corpus_spec, lang, reader=self.reader)
        return self._corpora[lang]

    def compile_page(self, seed: int, index: int) -> tuple[CompiledPage, np.random.Generator]:
        """The single-page PDF of one index and its target (tests read the PDF's text through this)."""
        from generators.tex import TexError, TexRenderer, open_pdf

        rng = sample_rng(seed, index)
        lang = self.lang if self.lang != "mixed" else str(rng.choice(["en", "zh"]))
        name = self.template_names[int(rng.integers(len(self.template_names)))]
        template = self._templates[name]
        narrow = any(m in template for m in TWO_COLUMN_MARKERS)
        lo, hi = self.budget_chars or ((1200, 3200) if lang == "en" else (500, 1300))
        budget = int(rng.integers(lo, hi + 1))
        blocks = _Blocks(rng, self._corpus(lang), lang, narrow).page(budget)
        engine = "pdflatex" if lang == "en" else "xelatex"
        if self._tex is None:
            self._tex = TexRenderer(timeout_s=self.timeout_s)

        compiles = 0
        pages_of: dict[int, tuple[int, bytes, Any]] = {}

        def build(k: int) -> tuple[int, bytes, Any]:
            nonlocal compiles
            if k not in pages_of:
                if compiles >= self.max_compiles:
                    raise Reject("overflow", f"no single-page fit within {self.max_compiles} compiles")
                compiles += 1
                body = "\n\n".join(b.latex for b in blocks[:k])
                try:
                    out = self._tex.compile(instantiate(template, lang, body), engine)
                except TexError as e:
                    raise Reject(e.reason, f"{name}: {e.detail}") from None
                doc = open_pdf(out.pdf)
                pages_of[k] = (doc.page_count, out.pdf, doc)
            return pages_of[k]

        k = len(blocks)
        count, _, doc = build(k)
        if count > 1:
            # First guess: the blocks whose text fits in the share of text that landed on page one.
            first = len(doc[0].get_text("text"))
            total = sum(len(doc[p].get_text("text")) for p in range(count)) or 1
            share, acc, k = first / total * sum(len(b.markdown) for b in blocks), 0, 0
            while k < len(blocks) and acc + len(blocks[k].markdown) <= share:
                acc += len(blocks[k].markdown)
                k += 1
            k = max(k, 1)
            while build(k)[0] > 1 and k > 1:
                k -= 1
            while k + 1 < len(blocks) and build(k + 1)[0] == 1:  # fill the page when the guess was short
                k += 1
            if build(k)[0] > 1:
                raise Reject("overflow", f"{name}: the first block alone runs past one page")
        count, pdf, doc = build(k)
        kept = blocks[:k]
        target = "\n\n".join(b.markdown for b in kept)
        sampled = {"lang": lang, "template": name, "engine": engine, "budget_chars": budget,
                   "blocks": [b.kind for b in kept], "trimmed_blocks": len(blocks) - k, "compiles": compiles}
        return CompiledPage(pdf, target, engine, sampled), rng

    def render(self, seed: int, index: int) -> list[Sample]:
        from generators.tex import open_pdf, rasterise_fit

        page, rng = self.compile_page(seed, index)
        img = rasterise_fit(open_pdf(page.pdf), 0, self.size)
        check_not_blank(img)
        img, applied = degrade(img, rng, self.degradations)
        meta = self.base_meta(seed, index, **page.sampled, degradations=applied)
        return [Sample(sample_id(self.kind, seed, index), encode_png(img), img.size[0], img.size[1], self.kind,
                       page.sampled["lang"], self.prompt, page.target, meta)]

    def close(self) -> None:
        if self._tex is not None:
            self._tex.close()
            self._tex = None
