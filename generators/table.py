"""`table`: tables with header rows, numeric and text cells and some merged cells.

Backends: "tex" (tabular + booktabs/multirow, all indices of an `items()` range in one TeX run, one
table per page) and "html" (the persistent Chromium: every index of an `items()` batch laid out in one
page and taken in a screenshot per viewport-sized sheet, `BrowserRenderer.render_table_many`). The target is
markdown when the table has one header row and no merged cells; otherwise (markdown cannot express
merges) it is the LaTeX tabular itself. `meta.sampled.target_format` says which.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from generators.base import PROMPT_MARKDOWN, Generator, GeneratorError, OwnsRenderers, Reject, Rejected, Sample
from generators.degrade import check_spec
from generators.tex import ESCAPE_PREAMBLE, BatchPage, escape_text, typeset_batch

BACKENDS = ("tex", "html")
STYLES = ("booktabs", "grid", "hlines")
_HTML_BORDER = {"booktabs": "booktabs", "grid": "all", "hlines": "horizontal"}
LANGS = ("en", "zh", "mixed")
CJK_FONT = "WenQuanYi Micro Hei"


@dataclass(frozen=True)
class Cell:
    text: str
    header: bool = False
    rowspan: int = 1
    colspan: int = 1


@dataclass(frozen=True)
class Table:
    """HTML-style rows: a cell covered by another's rowspan/colspan is absent from its row."""

    rows: list[list[Cell]]
    n_cols: int
    header_rows: int
    numeric_cols: tuple[int, ...]

    @property
    def merged(self) -> bool:
        return any(c.rowspan > 1 or c.colspan > 1 for row in self.rows for c in row)

    def text(self) -> str:
        return " ".join(c.text for row in self.rows for c in row)

    def grid(self) -> list[list[tuple[Cell, bool] | None]]:
        """Every (row, col) position -> (owning cell, whether this is its top-left corner)."""
        g: list[list[tuple[Cell, bool] | None]] = [[None] * self.n_cols for _ in self.rows]
        for r, row in enumerate(self.rows):
            c = 0
            for cell in row:
                while g[r][c] is not None:
                    c += 1
                for dr in range(cell.rowspan):
                    for dc in range(cell.colspan):
                        g[r + dr][c + dc] = (cell, dr == 0 and dc == 0)
                c += cell.colspan
        return g

    def to_html_dict(self) -> dict[str, Any]:
        return {"rows": [[{"text": c.text, "header": c.header, "rowspan": c.rowspan, "colspan": c.colspan}
                          for c in row] for row in self.rows]}


# -- sampling -------------------------------------------------------------------------------------
def _number(rng: np.random.Generator, fmt: str) -> str:
    if fmt == "int":
        return str(int(rng.integers(0, 10_000)))
    if fmt == "signed":
        return f"{float(rng.normal(0, 5)):.2f}"
    if fmt == "percent":
        return f"{float(rng.uniform(0, 100)):.1f}%"
    return f"{float(rng.uniform(0, 1000)):.{int(rng.integers(1, 4))}f}"


def random_table(rng: np.random.Generator, words: Callable[[int], list[str]], joiner: str, max_cols: int = 6,
                 max_rows: int = 8) -> tuple[Table, dict[str, Any]]:
    """A table whose words come from `words(n)`; returns it and its sampled layout parameters."""
    n_cols = int(rng.integers(2, max_cols + 1))
    n_body = int(rng.integers(2, max_rows + 1))
    numeric = tuple(c for c in range(1, n_cols) if rng.random() < 0.7)
    formats = {c: str(rng.choice(["int", "float", "percent", "signed"])) for c in numeric}
    header_group = n_cols >= 4 and rng.random() < 0.3
    row_groups = n_body >= 4 and rng.random() < 0.3

    def phrase(k_max: int) -> str:
        return joiner.join(words(int(rng.integers(1, k_max + 1))))

    rows: list[list[Cell]] = []
    if header_group:
        top, sub = [Cell(phrase(2), True, rowspan=2)], []
        c = 1
        while c < n_cols:
            k = min(int(rng.integers(1, 4)), n_cols - c)
            if k == 1:
                top.append(Cell(phrase(2), True, rowspan=2))
            else:
                top.append(Cell(phrase(2), True, colspan=k))
                sub.extend(Cell(phrase(1), True) for _ in range(k))
            c += k
        rows += [top, sub]
    else:
        rows.append([Cell(phrase(2), True) for _ in range(n_cols)])
    header_rows = len(rows)
    r = 0
    while r < n_body:
        span = min(int(rng.integers(1, 4)), n_body - r) if row_groups else 1
        for k in range(span):
            row = [Cell(phrase(2), rowspan=span)] if k == 0 else []
            row += [Cell(_number(rng, formats[c]) if c in numeric else phrase(3)) for c in range(1, n_cols)]
            rows.append(row)
        r += span
    table = Table(rows, n_cols, header_rows, numeric)
    return table, {"n_cols": n_cols, "n_body_rows": n_body, "numeric_cols": list(numeric), "formats":
                   {str(k): v for k, v in formats.items()}, "header_group": header_group, "row_groups": row_groups}


# -- targets --------------------------------------------------------------------------------------
def to_markdown(table: Table) -> str:
    """Pipe-table markdown (only for one header row and no merged cells)."""
    if table.merged or table.header_rows != 1:
        raise ValueError("markdown cannot express merged cells or several header rows")

    def line(row: list[Cell]) -> str:
        return "| " + " | ".join(c.text.replace("|", "\\|") for c in row) + " |"

    return "\n".join([line(table.rows[0]), "| " + " | ".join("---" for _ in range(table.n_cols)) + " |",
                      *(line(row) for row in table.rows[1:])])


def to_latex(table: Table, style: str) -> str:
    """The tabular that typesets `table` in `style`, one row per line."""
    grid = table.grid()
    n = table.n_cols
    aligns = ["l"] + ["r" if c in table.numeric_cols else "l" for c in range(1, n)]
    spec = ("|" + "|".join(aligns) + "|") if style == "grid" else "".join(aligns)
    top = {"booktabs": "\\toprule", "grid": "\\hline", "hlines": "\\hline"}[style]
    mid = {"booktabs": "\\midrule", "grid": "\\hline", "hlines": "\\hline"}[style]
    bottom = {"booktabs": "\\bottomrule", "grid": "\\hline", "hlines": "\\hline"}[style]
    lines = [f"\\begin{{tabular}}{{{spec}}}", top]
    grouped = any(c.rowspan > 1 for row in table.rows[table.header_rows:] for c in row)
    for r, row_positions in enumerate(grid):
        parts: list[str] = []
        c = 0
        while c < n:
            owner, corner = row_positions[c]  # type: ignore[misc]
            text = escape_text(owner.text) if corner else ""
            if corner and owner.rowspan > 1:
                text = f"\\multirow{{{owner.rowspan}}}{{*}}{{{text}}}"
            if owner.colspan > 1 and corner:
                col_spec = ("c|" if style == "grid" else "c")
                parts.append(f"\\multicolumn{{{owner.colspan}}}{{{col_spec}}}{{{text}}}")
                c += owner.colspan
                continue
            parts.append(text)
            c += 1
        rule = ""
        if r == table.header_rows - 1:
            rule = " " + mid
        elif r < len(grid) - 1:
            below = grid[r + 1]
            # columns whose cell continues into the next row get no rule under this one
            open_cols = [c for c in range(n) if below[c] is not None and not below[c][1] and below[c][0].rowspan > 1]  # type: ignore[index]
            partial = [c for c in range(n) if c not in open_cols]
            if r < table.header_rows - 1:  # under a group header: rules only beneath the spanning cells
                spans = [(c0 + 1, c0 + cell.colspan) for c0, pos in enumerate(row_positions)
                         if pos and pos[1] and (cell := pos[0]).colspan > 1]
                cmd = "\\cmidrule(lr)" if style == "booktabs" else "\\cline"
                rule = " " + " ".join(f"{cmd}{{{a}-{b}}}" for a, b in spans)
            elif style == "grid":
                rule = " \\hline" if not open_cols else " " + _clines(partial)
            elif style == "hlines" and grouped and not open_cols:  # a rule between row groups
                rule = " \\hline"
        lines.append(" & ".join(parts) + " \\\\" + rule)
    lines.append(bottom)
    lines.append("\\end{tabular}")
    return "\n".join(lines)


def _clines(cols: list[int]) -> str:
    runs: list[tuple[int, int]] = []
    for c in cols:
        if runs and runs[-1][1] == c - 1:
            runs[-1] = (runs[-1][0], c)
        else:
            runs.append((c, c))
    return " ".join(f"\\cline{{{a + 1}-{b + 1}}}" for a, b in runs)


def tex_preamble(lang: str) -> tuple[str, str]:
    """(engine, preamble) for tables and formulas in `lang`."""
    head = "\\documentclass[11pt]{article}\n\\usepackage{amsmath,amssymb,booktabs,multirow,array}\n" + ESCAPE_PREAMBLE
    tail = "\\usepackage[active,tightpage]{preview}\n\\setlength\\PreviewBorder{6pt}\n\\pagestyle{empty}\n"
    if lang == "en":
        # OT1 Computer Modern: its Type 1 fonts ship with TeX Live base (T1 would need cm-super or bitmap
        # fonts); glyphtounicode makes ligatures ("ff", "fi") extract as letters for PDF text checks
        return "pdflatex", head + "\\input{glyphtounicode}\\pdfgentounicode=1\n" + tail
    return "xelatex", head + f"\\usepackage{{xeCJK}}\n\\setCJKmainfont{{{CJK_FONT}}}\n" + tail


def check_text_coverage(text: str, lang: str) -> None:
    """No tofu: CJK text must be drawable by the CJK font; pdflatex text must stay in ASCII and Latin-1 letters."""
    if lang == "en":
        bad = sorted({ch for ch in text if not (" " <= ch <= "~" or ("\u00c0" <= ch <= "\u00ff" and ch not in "×÷ÐðÞþ"))})
        if bad:
            raise Reject("font_coverage", f"pdflatex (OT1/T1 Type 1 fonts) cannot set {''.join(bad[:20])!r}")
        return
    from generators.fonts import require_coverage

    require_coverage(text, CJK_FONT)


# -- the generator --------------------------------------------------------------------------------
class TableGenerator(OwnsRenderers, Generator):
    """Params: backend ("tex" | "html"), lang ("en" | "zh" | "mixed": each sample picks en or zh), corpus
    (a corpus file per language, None = built-in), files (where it is read), size (None = tight crop; int pads to square),
    dpi range (tex), font_px range (html), batch, timeout_s, degradations, prompt."""

    kind = "table"
    version = "2"
    input_params = ("corpus",)

    def __init__(self, backend: str = "tex", lang: str = "en", corpus: str | None = None,
                 files: Any = None, size: int | None = None,
                 dpi: tuple[int, int] = (120, 220), font_px: tuple[int, int] = (14, 22), batch: int = 32,
                 timeout_s: float = 60.0, degradations: dict | None = None, prompt: str = PROMPT_MARKDOWN):
        if backend not in BACKENDS:
            raise GeneratorError(f"table backend must be one of {BACKENDS}, not {backend!r}")
        if lang not in LANGS:
            raise GeneratorError(f"table lang must be one of {LANGS}, not {lang!r}")
        check_spec(degradations)
        super().__init__(backend=backend, lang=lang, corpus=corpus, size=size, dpi=list(dpi), font_px=list(font_px),
                         batch=batch, timeout_s=timeout_s, degradations=degradations, prompt=prompt)
        self.backend, self.lang, self.corpus_spec, self.files = backend, lang, corpus, files
        self.size, self.dpi, self.font_px, self.batch = size, tuple(dpi), tuple(font_px), int(batch)
        self.timeout_s, self.degradations, self.prompt = timeout_s, degradations, prompt
        self._corpora: dict[str, Any] = {}

    def _corpus(self, lang: str) -> Any:
        if lang not in self._corpora:
            from generators.corpus import Corpus

            self._corpora[lang] = Corpus.load(self.corpus_spec, lang, files=self.files)
        return self._corpora[lang]

    def draw(self, seed: int, index: int) -> tuple[np.random.Generator, str, Table, dict[str, Any]]:
        """The sample's rng (positioned after the draw), language, table and sampled parameters."""
        rng = self.rng(seed, index)
        lang = self.lang if self.lang != "mixed" else str(rng.choice(["en", "zh"]))
        corpus = self._corpus(lang)
        table, sampled = random_table(rng, lambda n: corpus.words(rng, n), corpus.joiner)
        style = str(rng.choice(STYLES))
        check_text_coverage(table.text(), lang)
        target_format = "latex" if table.merged or table.header_rows != 1 else "markdown"
        return rng, lang, table, dict(sampled, lang=lang, style=style, target_format=target_format)

    @staticmethod
    def target(table: Table, style: str, tabular: str | None = None) -> str:
        """Markdown, or the tabular (`tabular` when the caller already typeset it) where markdown cannot say it."""
        if table.merged or table.header_rows != 1:
            return tabular if tabular is not None else to_latex(table, style)
        return to_markdown(table)

    def draw_html(self, seed: int, index: int) -> tuple[np.random.Generator, str, Table, dict[str, Any], dict[str, Any]]:
        """`draw` plus the html backend's draws: (rng, lang, table, sampled, style for `render_table`)."""
        rng, lang, table, sampled = self.draw(seed, index)
        font_px = int(rng.integers(self.font_px[0], self.font_px[1] + 1))
        family = "WenQuanYi Micro Hei, sans-serif" if lang == "zh" else str(
            rng.choice(["serif", "sans-serif", "DejaVu Serif", "DejaVu Sans"]))
        style = {"font_px": font_px, "border": _HTML_BORDER[sampled["style"]], "font_family": family}
        return rng, lang, table, dict(sampled, backend="html", font_px=font_px, font_family=family), style

    # -- the batch hook: every index of a batch is drawn, then rendered by one call of the backend ------
    def prepare(self, seed: int, indices: list[int]) -> dict[int, Any]:
        """html: one layout and screenshot of the batch's tables in Chromium; tex: one TeX run per language
        present in the batch, a table a page. A table's pixels do not depend on its batch (tested in
        test_browser_containment and test_gen_table), so `render` and `items` agree byte for byte."""
        if self.backend == "html":
            drawn = self.each(indices, lambda index: self._draw_html(seed, index))
            good = self.pending(drawn)
            shots = dict(zip(good, self._html_images([drawn[i].table.to_html_dict() for i in good],
                                                     [drawn[i].style for i in good])))
        else:
            drawn = self.each(indices, lambda index: self._draw_tex(seed, index))
            shots = {}
            for lang in ("en", "zh"):  # one TeX run per language present in the batch
                group = [i for i in self.pending(drawn) if drawn[i].lang == lang]
                if group:
                    engine, preamble = tex_preamble(lang)
                    shots.update(zip(group, typeset_batch(self.tex(), preamble, [drawn[i].tabular for i in group],
                                                          engine, preload=True)))
        return self.with_shots(drawn, shots)

    def make(self, seed: int, index: int, prepared: "_Drawn") -> list[Sample | Rejected]:
        d = prepared
        img = d.shot.image(d.sampled["dpi"]) if isinstance(d.shot, BatchPage) else d.shot
        return [self.finish_sample(seed, index, img, d.rng, lang=d.lang, text=self.target(d.table, d.sampled["style"], d.tabular),
                                   sampled=d.sampled, size=self.size, degradations=self.degradations)]

    def _draw_html(self, seed: int, index: int) -> "_Drawn":
        rng, lang, table, sampled, style = self.draw_html(seed, index)
        return _Drawn(rng, lang, table, sampled, style=style)

    def _draw_tex(self, seed: int, index: int) -> "_Drawn":
        rng, lang, table, sampled = self.draw(seed, index)
        dpi = int(rng.integers(self.dpi[0], self.dpi[1] + 1))
        engine = tex_preamble(lang)[0]
        # typeset once: the tabular is both what TeX sets and, for merged tables, the target
        tabular = to_latex(table, sampled["style"])
        return _Drawn(rng, lang, table, dict(sampled, backend="tex", engine=engine, dpi=dpi), tabular=tabular)

    def _html_images(self, tables: list[dict[str, Any]], styles: list[dict[str, Any]]) -> list[Any]:
        """One greyscale PIL image or Reject per table."""
        if not tables:
            return []
        try:
            return self.browser().render_table_many(tables, styles, mode="L")
        except Reject as r:
            if len(tables) == 1:
                return [r]
        # The whole call failed (a timeout, a crashed page): render one by one, so only the culprit is rejected.
        return [img for t, st in zip(tables, styles) for img in self._html_images([t], [st])]


@dataclass(frozen=True)
class _Drawn:
    """One index of a batch: its rng (positioned after the draws, for the degradations), language, table and
    sampled parameters, the backend's input (`style` for html, `tabular` for tex), then what the backend
    made of it (`shot`: a PIL image, or the `BatchPage` of a TeX run)."""

    rng: np.random.Generator
    lang: str
    table: Table
    sampled: dict[str, Any]
    style: dict[str, Any] | None = None
    tabular: str | None = None
    shot: Any = None
