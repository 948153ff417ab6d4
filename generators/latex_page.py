"""`latex_page`: one-page LaTeX documents (Vary-base's "LaTeX-rendered pages") with a Mathpix-style target.

A page is a list of blocks (headings, paragraphs with inline math, display math, tables, lists), each
known both as LaTeX and as markdown. Blocks go through one of the templates in `generators/templates/`
(class, columns, fonts, margins, section styles differ), English with pdflatex, Chinese with xelatex +
xeCJK (WenQuanYi Micro Hei). The page is compiled in the contained `TexRenderer`; when it runs past one
page, trailing blocks are dropped and it is compiled again until it fits, so the target is exactly the
page's content (`meta.sampled.trimmed_blocks` counts the drops). Target conventions: inline math
`\\(...\\)`, display math `\\[...\\]` on its own lines, `#`/`##`/`###` headings, tables in markdown (or
LaTeX tabular where cells are merged), `- ` list items, blocks separated by a blank line.

The blocks come from a corpus and the formula grammar, or (`source=`) from real LaTeX sources cut into
blocks by `generators.tex_source` and re-typeset page after page, as Vary's pages were made from arXiv.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from generators.base import PROMPT_MARKDOWN, Generator, GeneratorError, OwnsRenderers, Reject, Rejected, Sample
from generators.degrade import check_spec
from generators.sources import InputFiles, SourceFiles, describe_source
from generators.formula import _Grammar, normalize_latex, random_formula
from generators.table import CJK_FONT, STYLES, check_text_coverage, random_table, to_latex, to_markdown
from generators.pages import rasterise_page
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

    def marked(self, mark: str) -> str:
        """The block's LaTeX with `mark` (a `\\write` whatsit recording the page at shipout) at its very end,
        inside the block's own horizontal or math material: a whatsit between vertical items would make the
        glue after it a legal page break (a heading could be left alone at the foot of a page), and one after
        a display would typeset an extra empty line."""
        tails = {"heading": "}", "title": "\\par}\\end{center}", "display_math": "\\]", "table": "\\end{center}",
                 "list": "\\end{itemize}"}
        tail = tails.get(self.kind, "")
        if self.kind == "display_math" and not self.latex.endswith(tail):  # align*, gather* from a real source
            tail = self.latex[self.latex.rindex("\\end{"):]
        assert self.latex.endswith(tail)
        return self.latex[: len(self.latex) - len(tail)] + mark + tail


@dataclass(frozen=True)
class CompiledPage:
    pdf: bytes  # the page compiled alone: a one-page PDF
    source: str  # the LaTeX that made it
    target: str
    engine: str
    sampled: dict[str, Any]


@dataclass
class _Draft:
    """One index's drawn page, before TeX has seen it; `keep` is how many blocks the next compile uses."""

    index: int
    rng: np.random.Generator
    lang: str
    template: str
    engine: str
    budget: int
    blocks: list[Block]
    keep: int
    compiles: int = 0
    preamble: str = ""  # extra preamble lines (a real source's packages)


@dataclass(frozen=True)
class _Placed:
    draft: _Draft
    doc: Any  # the PyMuPDF document of the run that fitted the page (shared with its group)
    page: int


# The page every block of a slot ended on is written at shipout to POSITIONS; \vfmark{slot}{block}
# (block -1: the slot's start) is trusted template code, never reachable from corpus text (escaped).
POSITIONS = "vfpos.txt"
_MARK_PREAMBLE = ("\\newwrite\\vfpos\\immediate\\openout\\vfpos=" + POSITIONS + "\n"
                  "\\newcommand\\vfmark[2]{\\write\\vfpos{#1 #2 \\thepage}}\n")


def group_source(template: str, lang: str, slots: list[list[Block]], preamble: str = "") -> str:
    """One document holding every slot's blocks, each slot starting on a fresh page with the template's own
    body prefix and suffix (`\\small`, `multicols`...), so each page is laid out exactly as when alone.
    `preamble`: trusted extra preamble lines (packages a real source loads)."""
    src = instantiate(template, lang, "<<BODY>>")
    head, rest = src.split("\\begin{document}", 1)
    inner, tail = rest.split("\\end{document}", 1)
    prefix, suffix = inner.split("<<BODY>>", 1)
    pages = []
    for s, blocks in enumerate(slots):
        body = "\n\n".join(b.marked(f"\\vfmark{{{s}}}{{{k}}}") for k, b in enumerate(blocks))
        pages.append(f"\\vfmark{{{s}}}{{-1}}" + prefix + body + suffix + "\\clearpage\n")
    return head + preamble + _MARK_PREAMBLE + "\\begin{document}" + "".join(pages) + "\\end{document}" + tail


def read_positions(text: str) -> dict[tuple[int, int], int]:
    """(slot, block) -> 1-based page, from POSITIONS."""
    out: dict[tuple[int, int], int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and all(p.lstrip("-").isdigit() for p in parts):
            out[(int(parts[0]), int(parts[1]))] = int(parts[2])
    return out


def fitting_blocks(positions: dict[tuple[int, int], int], slot: int, n_blocks: int) -> int:
    """How many leading blocks of `slot` end on the page the slot starts on (all of them: the page fits)."""
    start = positions.get((slot, -1))
    k = 0
    while k < n_blocks and start is not None and positions.get((slot, k)) == start:
        k += 1
    return k


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


class LatexPageGenerator(OwnsRenderers, Generator):
    """Params: lang ("en" | "zh" | "mixed": each sample picks en or zh), corpus (file per language or None),
    files (where corpus and source are read: `generators.sources.InputFiles`), templates (names to use; None = all), size (square side, default 1024), timeout_s (per TeX run),
    max_compiles (per page, trims included), budget_chars (range of content drawn before trimming;
    default by language), batch (indices of an `items()` range drafted together: pages sharing a template
    and language are compiled in one TeX run), degradations, prompt.
    Real sources instead of a corpus: source (.tex files or arXiv-style archives: a file, folder, list or
    `s3://` prefix), max_pages (per source file), max_bytes (per source file).
    Then index i is source file i and yields its pages (ids `-pNNNN`), in the source's own language; see
    `_source_pages` and docs/data-engine-tex.md.

    Fitting: every block ends with a `\\write` to POSITIONS that records, at shipout, the page it ended on.
    A page whose blocks all end on its first page is done; otherwise its leading blocks that did end there
    are kept and it goes into the next round (one more TeX run per template among the pages still open).
    Each slot starts on a fresh page with the template's body prefix, so a page's layout (and its bytes)
    does not depend on what else shares its run: `render(seed, i)` and `items()` agree byte for byte."""

    kind = "latex_page"
    version = "4"
    input_params = ("source", "corpus")
    lists_source = True

    def __init__(self, lang: str = "en", corpus: str | None = None, files: InputFiles | None = None,
                 templates: list[str] | None = None, size: int = 1024, timeout_s: float = 60.0,
                 max_compiles: int = 4, budget_chars: tuple[int, int] | None = None, batch: int = 64,
                 degradations: dict | None = None, prompt: str = PROMPT_MARKDOWN,
                 source: str | list[str] | None = None,
                 max_pages: int = 40, max_bytes: int = 64 << 20):
        if lang not in LANGS:
            raise GeneratorError(f"latex_page lang must be one of {LANGS}, not {lang!r}")
        if int(batch) < 1 or int(max_compiles) < 1:
            raise GeneratorError("latex_page batch and max_compiles must be >= 1")
        check_spec(degradations)
        available = load_templates()
        chosen = sorted(available) if templates is None else list(templates)
        unknown = [t for t in chosen if t not in available]
        if unknown or not chosen:
            raise GeneratorError(f"unknown templates {unknown}; available: {', '.join(sorted(available))}")
        # batch changes nothing in the output, so it is not recorded with the parameters that do
        if source is not None and corpus is not None:
            raise GeneratorError("latex_page takes its text from a corpus or from LaTeX sources, not both")
        extra = {} if source is None else {"source": describe_source(source), "max_pages": int(max_pages)}
        super().__init__(lang=lang, corpus=corpus, templates=chosen, size=size, timeout_s=timeout_s,
                         max_compiles=max_compiles, budget_chars=budget_chars, degradations=degradations, prompt=prompt,
                         **extra)
        self.sources = SourceFiles(source, files) if source is not None else None
        self.max_pages, self.max_bytes = int(max_pages), int(max_bytes)
        self.lang, self.corpus_spec, self.files, self.size = lang, corpus, files, size
        self.template_names, self._templates = chosen, {t: available[t] for t in chosen}
        self.timeout_s, self.max_compiles, self.degradations, self.prompt = timeout_s, int(max_compiles), degradations, prompt
        self.budget_chars = tuple(budget_chars) if budget_chars else None
        self.batch = int(batch)
        self._corpora: dict[str, Any] = {}

    def _corpus(self, lang: str) -> Any:
        if lang not in self._corpora:
            from generators.corpus import Corpus

            self._corpora[lang] = Corpus.load(self.corpus_spec, lang, files=self.files)
        return self._corpora[lang]

    def _draft(self, seed: int, index: int) -> _Draft:
        rng = self.rng(seed, index)
        lang = self.lang if self.lang != "mixed" else str(rng.choice(["en", "zh"]))
        name = self.template_names[int(rng.integers(len(self.template_names)))]
        narrow = any(m in self._templates[name] for m in TWO_COLUMN_MARKERS)
        lo, hi = self.budget_chars or ((1200, 3200) if lang == "en" else (500, 1300))
        budget = int(rng.integers(lo, hi + 1))
        blocks = _Blocks(rng, self._corpus(lang), lang, narrow).page(budget)
        engine = "pdflatex" if lang == "en" else "xelatex"
        return _Draft(index, rng, lang, name, engine, budget, blocks, keep=len(blocks))

    # -- the batch hook ---------------------------------------------------------------------------------
    def prepare(self, seed: int, indices: list[int]) -> dict[int, Any]:
        """Corpus pages: each index's `_Placed` page (`_fit`); real sources: each file's page outcomes
        (`_source_pages`)."""
        return self._source_pages(seed, indices) if self.sources is not None else self._fit(seed, indices)

    def make(self, seed: int, index: int, prepared: Any) -> list[Sample | Rejected]:
        if self.sources is not None:
            return prepared  # every page of source file `index`, made in `prepare`
        return [self._sample(seed, prepared)]

    def _fit(self, seed: int, indices: list[int]) -> dict[int, _Placed | Reject]:
        """Draft every index, then compile rounds until each page fits on one page or is rejected."""
        drafts = self.each(indices, lambda index: self._draft(seed, index))
        return {**drafts, **self._fit_drafts([drafts[i] for i in self.pending(drafts)])}

    def _fit_drafts(self, open_: list[_Draft]) -> dict[int, _Placed | Reject]:
        """Compile rounds until each draft (at most one per index) fits on one page or is rejected."""
        out: dict[int, _Placed | Reject] = {}
        while open_:
            groups: dict[tuple[str, str, str], list[_Draft]] = {}
            for d in open_:
                groups.setdefault((d.template, d.lang, d.preamble), []).append(d)
            open_ = []
            for (name, lang, _), drafts in sorted(groups.items()):
                for d in drafts:
                    d.compiles += 1
                results = self._compile_group(name, lang, drafts)
                for d, res in zip(drafts, results):
                    if isinstance(res, (Reject, _Placed)):
                        out[d.index] = res
                    elif res == 0:
                        out[d.index] = Reject("overflow", f"{name}: the first block alone runs past one page")
                    elif d.compiles >= self.max_compiles:
                        out[d.index] = Reject("overflow", f"{name}: no single-page fit within {self.max_compiles} compiles")
                    else:
                        # a trimmed page that still spills (it should not) loses one more block
                        d.keep = res if res < d.keep else d.keep - 1
                        open_.append(d)
        return out

    def _compile_group(self, name: str, lang: str, drafts: list[_Draft]) -> list[_Placed | Reject | int]:
        """One TeX run for pages sharing a template: each is placed, rejected, or gives the number of its
        blocks that fit. A failed run is retried page by page, so one bad page costs only itself."""
        from generators.tex import TexError, open_pdf

        source = group_source(self._templates[name], lang, [d.blocks[: d.keep] for d in drafts], drafts[0].preamble)
        try:
            out = self.tex().compile(source, drafts[0].engine, preload=True)
        except TexError as e:
            if len(drafts) > 1:
                return [self._compile_group(name, lang, [d])[0] for d in drafts]
            return [Reject(e.reason, f"{name}: {e.detail}")]
        doc = open_pdf(out.pdf)
        positions = read_positions(self.tex().read_text(POSITIONS))
        results: list[_Placed | Reject | int] = []
        for slot, d in enumerate(drafts):
            fit = fitting_blocks(positions, slot, d.keep)
            start = positions.get((slot, -1))
            results.append(_Placed(d, doc, start - 1) if fit == d.keep and start else fit)
        return results

    def _sampled(self, d: _Draft) -> dict[str, Any]:
        return {"lang": d.lang, "template": d.template, "engine": d.engine, "budget_chars": d.budget,
                "blocks": [b.kind for b in d.blocks[: d.keep]], "trimmed_blocks": len(d.blocks) - d.keep,
                "compiles": d.compiles}

    @staticmethod
    def _target(d: _Draft) -> str:
        return "\n\n".join(b.markdown for b in d.blocks[: d.keep])

    def compile_page(self, seed: int, index: int) -> tuple[CompiledPage, np.random.Generator]:
        """The one-page PDF of one index compiled alone, its source and target (tests read the PDF's text)."""
        placed = self._fit(seed, [index])[index]
        if isinstance(placed, Reject):
            raise placed
        d = placed.draft
        doc = placed.doc
        if doc.page_count != 1:  # a group of one is a single page, unless a trailing page was left empty
            doc.select([placed.page])
        source = group_source(self._templates[d.template], d.lang, [d.blocks[: d.keep]])
        return CompiledPage(doc.tobytes(), source, self._target(d), d.engine, self._sampled(d)), d.rng

    def _sample(self, seed: int, placed: _Placed) -> Sample:
        d = placed.draft
        img, _ = rasterise_page(placed.doc[placed.page], self.size)
        return self.finish_sample(seed, d.index, img, d.rng, lang=d.lang, text=self._target(d), sampled=self._sampled(d),
                                  degradations=self.degradations)

    # -- real LaTeX sources -------------------------------------------------------------------------------
    def _paper(self, seed: int, index: int) -> "_Paper":
        """Source file `index` parsed into blocks, with the template and language its pages use."""
        from generators.tex import check_untrusted
        from generators.tex_source import parse_source

        assert self.sources is not None
        name = self.sources.name(index)
        if self.sources.is_folder(name):  # a paper folder (see `list_sources`)
            parsed = parse_source(name, inputs=self.sources.inputs)
        else:
            parsed = parse_source(name, self.sources.read(name, self.max_bytes))
        lang = parsed.lang  # a real source's language decides its engine, whatever `lang` says
        blocks = []
        for b in parsed.blocks:
            try:
                check_untrusted(b.latex, name)
                check_text_coverage(" ".join(b.latex.split()), lang)
            except Reject as r:
                parsed.dropped[r.reason] += 1
                continue
            blocks.append(Block(b.kind, b.latex, b.markdown))
        if not blocks:
            raise Reject("no_blocks", f"{name}: nothing that can be typeset alone ({dict(parsed.dropped)})", name)
        rng = self.rng(seed, index)
        template = self.template_names[int(rng.integers(len(self.template_names)))]
        preamble = "".join(f"\\usepackage{{{p}}}\n" for p in parsed.packages if p not in ("amsmath", "amssymb", "booktabs"))
        return _Paper(index, name, parsed.sha256, parsed.main, lang, template, preamble, blocks, dict(parsed.dropped))

    def _undefined(self, papers: list["_Paper"]) -> None:
        """Drop the blocks that use a control sequence (or environment) their template does not define: TeX
        would stop at it. One probe run per template, language and preamble among `papers`."""
        from generators.tex import TexError

        groups: dict[tuple[str, str, str], list[_Paper]] = {}
        for p in papers:
            groups.setdefault((p.template, p.lang, p.preamble), []).append(p)
        for (template, lang, preamble), group in sorted(groups.items()):
            words = sorted({w for p in group for b in p.blocks for w in _control_words(b.latex)})
            probe = "\\mbox{}" + "".join(f"\\ifcsname {w}\\endcsname\\else\\immediate\\write\\vfpos{{{w}}}\\fi"
                                         for w in words)
            # The pages' own preamble, so the probe runs on the format their runs preload.
            src = group_source(self._templates[template], lang, [[Block("paragraph", probe, "")]], preamble)
            try:
                self.tex().compile(src, "pdflatex" if lang == "en" else "xelatex", preload=True)
                missing = {ln.strip() for ln in self.tex().read_text(POSITIONS).splitlines() if len(ln.split()) == 1}
            except TexError:
                continue  # the pages' own compiles will reject what fails
            for p in group:
                keep = [b for b in p.blocks if not (_control_words(b.latex) & missing)]
                if len(keep) < len(p.blocks):
                    p.dropped["undefined_command"] = p.dropped.get("undefined_command", 0) + len(p.blocks) - len(keep)
                p.blocks = keep

    def _source_pages(self, seed: int, indices: list[int]) -> dict[int, list[Sample | Rejected] | Reject]:
        """Every page of each source file of `indices`, in order (or the file's Reject). Each paper is cut into pages from its first
        block on: a page takes blocks up to a drawn budget, is trimmed to what fits (as corpus pages are),
        and the next page starts at the first block it did not keep; a paper stops at `max_pages`.

        A round is one TeX run per template (and language, preamble) among the open papers. A page that ran
        over is compiled again with the blocks that fitted, and since that says where the next page starts,
        the next page's first draft rides in the same run: about one TeX run per page, as a loop that knew
        every page's end beforehand would need."""
        parsed = self.each(indices, lambda index: self._paper(seed, index))
        papers: dict[int, _Paper] = {i: parsed[i] for i in self.pending(parsed)}
        self._undefined(list(papers.values()))
        pages: dict[int, list[Sample | Rejected]] = {i: [] for i in papers}
        retry: dict[int, _Draft] = {}  # a page that ran over, to compile again with the blocks that fitted
        while True:
            slots: list[tuple[_Paper, _Draft, bool]] = []  # (paper, draft, is a retry)
            for index, p in papers.items():
                start, n_pages = p.cursor, len(pages[index])
                if index in retry:
                    slots.append((p, retry[index], True))
                    start, n_pages = start + retry[index].keep, n_pages + 1
                if start < len(p.blocks) and n_pages < self.max_pages:
                    slots.append((p, self._source_draft(seed, p, start, n_pages), False))
            if not slots:
                break
            groups: dict[tuple[str, str, str], list[tuple[_Paper, _Draft, bool]]] = {}
            for slot in slots:
                groups.setdefault((slot[1].template, slot[1].lang, slot[1].preamble), []).append(slot)
            results: dict[int, Any] = {}
            for (name, lang, _), group in sorted(groups.items()):
                for _, d, _ in group:
                    d.compiles += 1
                for (_, d, _), res in zip(group, self._compile_group(name, lang, [d for _, d, _ in group])):
                    results[id(d)] = res
            for p, d, is_retry in slots:  # a paper's retry comes before its next page
                self._source_outcome(seed, p, d, is_retry, results[id(d)], pages[p.index], retry)
        return {**parsed, **pages}

    def _source_draft(self, seed: int, p: "_Paper", start: int, page: int) -> _Draft:
        """Page `page` of paper `p`, from block `start` on, up to a budget drawn from the page's own rng."""
        rng = self.rng(seed, p.index, stream=page + 1)
        # Real text runs on until the page is full: drafts ask for more than a page holds, the trim cuts.
        lo, hi = self.budget_chars or ((2500, 7000) if p.lang == "en" else (1000, 2600))
        budget = int(rng.integers(lo, hi + 1))
        run, size = [], 0
        for b in p.blocks[start:]:
            if run and size >= budget:
                break
            run.append(b)
            size += len(b.markdown)
        engine = "pdflatex" if p.lang == "en" else "xelatex"
        return _Draft(p.index, rng, p.lang, p.template, engine, budget, run, keep=len(run), preamble=p.preamble)

    def _source_outcome(self, seed: int, p: "_Paper", d: _Draft, is_retry: bool, res: Any, out: list,
                        retry: dict[int, _Draft]) -> None:
        """Apply one compiled slot to its paper: a page placed, a page to compile again, or a reject."""
        if not is_retry and p.index in retry:
            return  # the retry before it ran over again: this draft started at the wrong block
        page, start = len(out), p.cursor
        if isinstance(res, _Placed):
            retry.pop(p.index, None)
            p.cursor += d.keep
            try:
                out.append(self._source_sample(seed, p, res, page, start))
            except Exception as e:
                out.append(self.rejected(seed, p.index, e, f"-p{page:04d}"))
            return
        if isinstance(res, int) and res > 0 and d.compiles < self.max_compiles:
            d.keep = res if res < d.keep else d.keep - 1  # a trimmed page that still spills loses one more
            retry[p.index] = d
            return
        retry.pop(p.index, None)
        if isinstance(res, int):  # the first block alone runs past a page, or no fit within max_compiles
            res = Reject("overflow", "the first block alone runs past one page" if res == 0 else
                         f"no single-page fit within {self.max_compiles} compiles")
        # The block that does not fit is left out (the next page starts after it); a run TeX failed on is
        # left out whole. Either way the page is a reject naming the source and the blocks.
        p.cursor += 1 if res.reason == "overflow" else d.keep
        out.append(self.rejected(seed, p.index, Reject(res.reason, f"{p.name}: blocks {start}-{start + d.keep}: "
                                                       f"{res.detail}", p.name), f"-p{page:04d}"))

    def _source_sample(self, seed: int, p: "_Paper", placed: _Placed, page: int, start: int) -> Sample:
        d = placed.draft
        img, _ = rasterise_page(placed.doc[placed.page], self.size)
        sampled = dict(self._sampled(d), file=p.name, sha256=p.sha256, main=p.main, page=page,
                       block_range=[start, start + d.keep], dropped=p.dropped, packages=p.preamble.split())
        # A paper's last page may hold a heading and a line: real, if sparse; only an empty page is blank.
        return self.finish_sample(seed, d.index, img, d.rng, lang=d.lang, text=self._target(d), sampled=sampled,
                                  degradations=self.degradations, min_ink=0.0002, suffix=f"-p{page:04d}")


@dataclass
class _Paper:
    index: int
    name: str
    sha256: str
    main: str
    lang: str
    template: str
    preamble: str
    blocks: list[Block]
    dropped: dict[str, int]
    cursor: int = 0


def _control_words(latex: str) -> set[str]:
    """The control words a block uses, and the environments it opens (checked as `\\csname`s alike)."""
    import re

    return set(re.findall(r"\\([A-Za-z]+)", latex)) | set(re.findall(r"\\begin\{([A-Za-z]+)\*?\}", latex))
