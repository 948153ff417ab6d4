"""`formula`: one LaTeX formula per sample, target = its normalised LaTeX.

Sources: a corpus file (one formula per line; read through `files`, local or remote) or the built-in
procedural grammar (`random_formula`). Backends:
- "fast": latex2mathml -> MathML -> the persistent Chromium (Latin Modern Math), every index of an `items()`
  batch laid out in one page and taken in one screenshot (`BrowserRenderer.render_mathml_many`: the
  screenshot is most of a lone formula's cost); a formula's pixels do not depend on its batch;
- "faithful": real TeX, every index of an `items()` range typeset in one document, one formula per page
  (preview package, tight crop), rasterised page by page with PyMuPDF. A bad formula is found by the
  line TeX stops at (or by bisection) and rejected alone; the rest of the batch is compiled again.

Normalisation (`normalize_latex`) — what the target looks like, and what is rendered:
- `$..$`, `$$..$$`, `\\(..\\)`, `\\[..\\]` wrappers and `%` comments are removed;
- whitespace is dropped between tokens, except one space after a control word followed by a letter
  (`\\alpha x`, never `\\alphax`; but `\\cdot2`, since a digit cannot extend a control word);
- inside text-mode arguments (`\\text{..}`, `\\mbox{..}`, `\\textrm{..}`, ...) runs of whitespace
  become one space and are kept, since there they are visible.
So `\\frac { a } {b}  +  \\alpha  x` becomes `\\frac{a}{b}+\\alpha x`. The image is always rendered from
the normalised string, so the target describes exactly what was drawn.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from generators.base import PROMPT_MARKDOWN, Generator, GeneratorError, OwnsRenderers, Reject, Rejected, Sample
from generators.degrade import check_spec
from generators.sources import InputFiles, input_files, is_paper_folder, list_sources, read_setup_file
from generators.tex import BatchPage, brace_problem, check_untrusted, typeset_batch

BACKENDS = ("fast", "faithful")

# -- normalisation ---------------------------------------------------------------------------------
_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|\s+|.", re.DOTALL)
_TEXT_MODE = frozenset({"\\text", "\\mbox", "\\textrm", "\\textit", "\\textbf", "\\textsf", "\\texttt", "\\textup",
                        "\\textnormal", "\\hbox"})
_WRAPPERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))


def _strip_comments(s: str) -> str:
    return "\n".join(re.sub(r"(?<!\\)((?:\\\\)*)%.*", r"\1", line) for line in s.split("\n"))


def normalize_latex(latex: str) -> str:
    """The canonical spelling of a formula (rules in the module docstring)."""
    s = _strip_comments(latex).strip()
    for left, right in _WRAPPERS:
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left): len(s) - len(right)].strip()
            break
    tokens = _TOKEN.findall(s)
    out: list[str] = []
    text_depth: list[int] = []  # brace depths at which a text-mode argument opened
    depth = 0
    pending_text_arg = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.isspace():
            if text_depth:
                if out and not out[-1].endswith(" "):
                    out.append(" ")
            elif out and re.fullmatch(r"\\[A-Za-z]+", out[-1]) and i + 1 < len(tokens) and tokens[i + 1][:1].isalpha():
                out.append(" ")
            i += 1
            continue
        if tok == "{":
            depth += 1
            if pending_text_arg:
                text_depth.append(depth)
                pending_text_arg = False
        elif tok == "}":
            if text_depth and text_depth[-1] == depth:
                text_depth.pop()
            depth -= 1
        pending_text_arg = tok in _TEXT_MODE
        out.append(tok)
        i += 1
    return "".join(out).strip()


# -- structure -------------------------------------------------------------------------------------
# Commands that take arguments, by how many they need (an optional [..] of \sqrt aside).
_ARITY: dict[str, int] = {
    **dict.fromkeys(("\\frac", "\\dfrac", "\\tfrac", "\\cfrac", "\\binom", "\\dbinom", "\\tbinom", "\\overset",
                     "\\underset", "\\stackrel"), 2),
    **dict.fromkeys(("\\sqrt", "\\hat", "\\bar", "\\vec", "\\tilde", "\\dot", "\\ddot", "\\check", "\\breve", "\\acute",
                     "\\grave", "\\widehat", "\\widetilde", "\\overline", "\\underline", "\\overbrace", "\\underbrace",
                     "\\overrightarrow", "\\overleftarrow", "\\mathbf", "\\mathrm", "\\mathcal", "\\mathbb", "\\mathit",
                     "\\mathsf", "\\mathtt", "\\mathfrak", "\\mathscr", "\\boldsymbol", "\\operatorname", "\\pmb"), 1),
    **dict.fromkeys(_TEXT_MODE, 1),
}
# What cannot be an argument (of a command, `^` or `_`): the end of a group, row or environment.
_NOT_ARGUMENT = frozenset({"}", "&", "^", "_", "\\\\", "\\right", "\\middle", "\\end"})


def structure_problem(latex: str) -> str | None:
    """Why `latex` is not a well-formed formula, or None. Both backends check this before rendering, so
    they agree on what is a formula: TeX stops at these mistakes, while latex2mathml quietly draws
    something for most of them (`\\frac{a}{b` as a fraction, `}}}}` as nothing), whose target would
    then be the broken string. Checked: balanced braces, `\\begin`/`\\end` pairs, `\\left`/`\\right`
    pairs, the arguments of `^`, `_` and of the commands in `_ARITY`, no double script, `&` only directly
    inside an environment, no bare `#` and no lone backslash."""
    problem = brace_problem(latex)
    if problem:
        return problem
    try:
        _Structure([t for t in _TOKEN.findall(latex) if not t.isspace()]).check()
    except _Malformed as e:
        return str(e)
    except RecursionError:
        return "groups nested too deep"
    return None


class _Structure:
    """A recursive walk over a formula's tokens; raises `_Malformed` at the first mistake."""

    def __init__(self, tokens: list[str]):
        self.t = tokens

    def check(self) -> None:
        i = self.seq(0, None, align=False)
        if i < len(self.t):
            raise _Malformed(f"unexpected {self.t[i]}")

    def expect(self, i: int, closer: str, opened: str) -> int:
        if i >= len(self.t) or self.t[i] != closer:
            raise _Malformed(f"{opened} without {closer}")
        return i + 1

    def seq(self, i: int, closer: str | None, align: bool) -> int:
        """Walk a run of atoms up to `closer` (not consumed); `align`: `&` is allowed at this level."""
        scripts: set[str] = set()  # the scripts the current atom already carries
        while i < len(self.t) and self.t[i] != closer:
            tok = self.t[i]
            if tok in ("^", "_"):
                if tok in scripts:
                    raise _Malformed(f"double {'superscript' if tok == '^' else 'subscript'}")
                scripts.add(tok)
                i = self.argument(i + 1, f"'{tok}'")
                continue
            scripts = set()
            i = self.atom(i, align)
        return i

    def atom(self, i: int, align: bool) -> int:
        tok = self.t[i]
        if tok == "{":
            return self.expect(self.seq(i + 1, "}", align=False), "}", "{")
        if tok == "\\begin":
            name, j = self.env_name(i)
            j = self.seq(j, "\\end", align=True)
            if j >= len(self.t):
                raise _Malformed(f"\\begin{{{name}}} without \\end")
            closing, j = self.env_name(j)
            if closing != name:
                raise _Malformed(f"\\begin{{{name}}} closed by \\end{{{closing}}}")
            return j
        if tok == "\\left":
            j = self.seq(self.delimiter(i), "\\right", align=False)
            if j >= len(self.t):
                raise _Malformed("\\left without \\right")
            return self.delimiter(j)
        if tok == "\\middle":
            return self.delimiter(i)
        if tok in ("}", "\\right", "\\end"):
            raise _Malformed(f"{tok} without its opening")
        if tok == "&" and not align:
            raise _Malformed("'&' outside an environment's rows")
        if tok == "\\":
            raise _Malformed("a lone backslash")
        if tok == "#":
            raise _Malformed("macro parameter character '#' (write \\# for the sign)")
        i += 1
        if tok in _ARITY:
            if tok == "\\sqrt" and i < len(self.t) and self.t[i] == "[":
                i = self.expect(self.seq(i + 1, "]", align=False), "]", "\\sqrt[")
            for k in range(_ARITY[tok]):
                i = self.argument(i, f"{tok} (argument {k + 1} of {_ARITY[tok]})")
        return i

    def argument(self, i: int, what: str) -> int:
        if i >= len(self.t) or self.t[i] in _NOT_ARGUMENT:
            raise _Malformed(f"{what} lacks an argument")
        return self.atom(i, align=False)

    def env_name(self, i: int) -> tuple[str, int]:
        """The environment name after `\\begin`/`\\end` at token i, and the index after its closing brace."""
        if i + 1 < len(self.t) and self.t[i + 1] == "{" and "}" in self.t[i + 2:]:
            close = self.t.index("}", i + 2)
            name = "".join(self.t[i + 2: close])
            if re.fullmatch(r"[A-Za-z]+\*?", name):
                return name, close + 1
        raise _Malformed(f"{self.t[i]} without an environment name")

    def delimiter(self, i: int) -> int:
        """The index after the delimiter that follows `\\left`, `\\middle` or `\\right` at token i."""
        if i + 1 >= len(self.t) or self.t[i + 1] in ("{", "}", "&", "^", "_"):
            raise _Malformed(f"{self.t[i]} without a delimiter")
        return i + 2


class _Malformed(Exception):
    pass


# -- the procedural grammar ------------------------------------------------------------------------
GREEK = ("\\alpha \\beta \\gamma \\delta \\epsilon \\varepsilon \\zeta \\eta \\theta \\vartheta \\iota \\kappa "
         "\\lambda \\mu \\nu \\xi \\pi \\rho \\sigma \\tau \\phi \\varphi \\chi \\psi \\omega \\Gamma \\Delta "
         "\\Theta \\Lambda \\Xi \\Pi \\Sigma \\Phi \\Psi \\Omega").split()
LATIN = list("abcdefghijkmnpqrstuvwxyzABCDEFGHKLMNPRSTUVWXYZ")
RELATIONS = ("=", "=", "=", "\\leq", "\\geq", "<", ">", "\\neq", "\\approx", "\\equiv", "\\sim", "\\propto")
BINARY = ("+", "+", "-", "-", "\\cdot", "\\times", "\\pm")
FUNCTIONS = ("\\sin", "\\cos", "\\tan", "\\log", "\\ln", "\\exp", "\\det", "\\max", "\\min")
ACCENTS = ("\\hat", "\\bar", "\\vec", "\\tilde", "\\dot", "\\ddot", "\\overline", "\\mathbf", "\\mathrm", "\\mathcal")
BIG_OPS = ("\\sum", "\\prod", "\\int", "\\oint", "\\iint", "\\bigcup", "\\bigcap")
MATRICES = ("pmatrix", "bmatrix", "vmatrix", "matrix")


def _choice(rng: np.random.Generator, seq: Any) -> Any:
    return seq[int(rng.integers(len(seq)))]


class _Grammar:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def symbol(self) -> str:
        r = self.rng.random()
        if r < 0.45:
            return _choice(self.rng, LATIN)
        if r < 0.75:
            return _choice(self.rng, GREEK)
        if r < 0.9:
            return str(int(self.rng.integers(1, 100)))
        acc = _choice(self.rng, ACCENTS)
        if acc == "\\mathcal":
            return f"{acc}{{{_choice(self.rng, [c for c in LATIN if c.isupper()])}}}"
        font_switch = acc in ("\\mathbf", "\\mathrm")
        return f"{acc}{{{_choice(self.rng, LATIN if font_switch else LATIN + GREEK[:10])}}}"

    def index(self) -> str:
        r = self.rng.random()
        if r < 0.5:
            return _choice(self.rng, list("ijknmt") + ["0", "1", "2"])
        if r < 0.8:
            return f"{_choice(self.rng, list('ijk'))}{_choice(self.rng, ['+1', '-1', 'j', ''])}"
        return str(int(self.rng.integers(2, 10)))

    def atom(self, depth: int) -> str:
        base = self.symbol()
        r = self.rng.random()
        if r < 0.2:
            return f"{base}^{{{self.index()}}}"
        if r < 0.4:
            return f"{base}_{{{self.index()}}}"
        if r < 0.5:
            return f"{base}_{{{self.index()}}}^{{{self.index()}}}"
        return base

    def term(self, depth: int) -> str:
        r = self.rng.random()
        if depth <= 0 or r < 0.35:
            return self.atom(depth)
        if r < 0.5:
            return f"\\frac{{{self.expr(depth - 1)}}}{{{self.expr(depth - 1)}}}"
        if r < 0.58:
            n = "" if self.rng.random() < 0.7 else f"[{int(self.rng.integers(3, 6))}]"
            return f"\\sqrt{n}{{{self.expr(depth - 1)}}}"
        if r < 0.68:
            return f"{_choice(self.rng, FUNCTIONS)}\\left({self.expr(depth - 1)}\\right)"
        if r < 0.76:
            power = f"^{{{self.index()}}}" if self.rng.random() < 0.5 else ""
            return f"\\left({self.expr(depth - 1)}\\right){power}"
        if r < 0.88:
            return self.big_op(depth)
        if r < 0.93:
            v = _choice(self.rng, list("xnth"))
            to = _choice(self.rng, ["\\infty", "0", "a", "0^{+}"])
            return f"\\lim_{{{v}\\to {to}}} {self.term(depth - 1)}"
        return self.atom(depth)

    def big_op(self, depth: int) -> str:
        op = _choice(self.rng, BIG_OPS)
        if op in ("\\int", "\\oint", "\\iint"):
            v = _choice(self.rng, list("xtsuz"))
            limits = "_{" + _choice(self.rng, ["0", "a", "-\\infty", "C", "\\Omega"]) + "}"
            if op == "\\int" and self.rng.random() < 0.7:
                limits += "^{" + _choice(self.rng, ["1", "b", "\\infty", "T", "x"]) + "}"
            return f"{op}{limits}{self.term(depth - 1)}\\,d{v}"
        i = _choice(self.rng, list("ijkn"))
        upper = _choice(self.rng, ["n", "N", "\\infty", "m"])
        return f"{op}_{{{i}=1}}^{{{upper}}}{self.term(depth - 1)}"

    def expr(self, depth: int, max_terms: int = 3) -> str:
        n = int(self.rng.integers(1, max_terms + 1))
        parts = [self.term(depth)]
        for _ in range(n - 1):
            parts.append(_choice(self.rng, BINARY))
            parts.append(self.term(depth))
        return " ".join(parts)  # normalize_latex drops the spaces a control word does not need

    def matrix(self) -> str:
        env = _choice(self.rng, MATRICES)
        rows, cols = int(self.rng.integers(2, 4)), int(self.rng.integers(2, 4))
        body = "\\\\".join("&".join(self.atom(0) for _ in range(cols)) for _ in range(rows))
        return f"\\begin{{{env}}}{body}\\end{{{env}}}"

    def cases(self) -> str:
        n = int(self.rng.integers(2, 4))
        conds = ["\\text{if } " + self.atom(0) + _choice(self.rng, [">", "<", "\\geq"]) + "0",
                 "\\text{otherwise}", self.atom(0) + "\\in" + _choice(self.rng, ["A", "B", "\\Omega"])]
        rows = [f"{self.expr(1, 2)}&{conds[k] if k < n - 1 else conds[1]}" for k in range(n)]
        body = "\\\\".join(rows)
        return f"{self.atom(0)}=\\begin{{cases}}{body}\\end{{cases}}"

    def formula(self) -> str:
        r = self.rng.random()
        if r < 0.1:
            return f"{self.atom(0)}={self.matrix()}"
        if r < 0.18:
            return self.cases()
        if r < 0.25:
            return f"{self.matrix()}{self.matrix()}"
        depth = int(_choice(self.rng, (1, 1, 2, 2, 3)))
        lhs = self.expr(depth - 1, 2)
        if self.rng.random() < 0.2:
            return self.expr(depth)
        return f"{lhs} {_choice(self.rng, RELATIONS)} {self.expr(depth)}"


def random_formula(rng: np.random.Generator, max_chars: int = 160) -> str:
    """A procedurally generated formula (fractions, roots, sums, integrals, limits, matrices, cases,
    accents, Greek, operators, sub/superscripts), already normalised. Draws again (from the same rng,
    so still deterministic) while the formula is longer than `max_chars`, keeping images legible."""
    grammar = _Grammar(rng)
    for _ in range(20):
        latex = normalize_latex(grammar.formula())
        if len(latex) <= max_chars:
            return latex
    return latex


# -- the generator --------------------------------------------------------------------------------
class FormulaGenerator(OwnsRenderers, Generator):
    """Params: source (None = procedural, else a formula file), files (where it is read), order ("random" | "sequential"
    line choice for a file), backend ("fast" | "faithful"),
    size (None = tight crop plus margin; an int pads to size×size), font_px (range for fast),
    dpi (range for faithful), batch (formulas per TeX run or per browser screenshot), timeout_s, degradations, prompt."""

    kind = "formula"
    version = "3"
    input_params = ("source",)

    def __init__(self, source: str | None = None, files: InputFiles | None = None,
                 backend: str = "fast", size: int | None = None, font_px: tuple[int, int] = (24, 48),
                 dpi: tuple[int, int] = (150, 300), batch: int = 64, timeout_s: float = 30.0,
                 degradations: dict | None = None, prompt: str = PROMPT_MARKDOWN, lang: str = "en",
                 order: str = "random"):
        if backend not in BACKENDS:
            raise GeneratorError(f"formula backend must be one of {BACKENDS}, not {backend!r}")
        if lang != "en":
            raise GeneratorError("formula has no language; leave lang at 'en'")
        if order not in ("random", "sequential"):
            raise GeneratorError(f"formula order must be 'random' or 'sequential', not {order!r}")
        check_spec(degradations)
        super().__init__(source=source, order=order, backend=backend, size=size, font_px=list(font_px), dpi=list(dpi),
                         batch=batch, timeout_s=timeout_s, degradations=degradations, prompt=prompt, lang=lang)
        self.source, self.backend, self.size = source, backend, size
        self.font_px, self.dpi, self.batch, self.timeout_s = tuple(font_px), tuple(dpi), int(batch), timeout_s
        self.degradations, self.prompt, self.order = degradations, prompt, order
        self._lines = None
        self._tex_formulas: list[tuple[str, str, str | None]] | None = None  # (where, latex, first occurrence)
        if source and is_tex_source(source, input_files(files)):
            self._tex_formulas = _load_tex_formulas(source, input_files(files))
        elif source:
            self._lines = _load_lines(source, files)

    # -- drawing a formula --------------------------------------------------------------------------
    def _draw(self, rng: np.random.Generator, index: int) -> tuple[str, dict[str, Any]]:
        if self._tex_formulas is not None:
            return self._draw_tex(rng, index)
        if self._lines is None:
            return random_formula(rng), {"origin": "procedural"}
        # "sequential" walks the file (index i -> i-th formula, wrapping), for rendering a whole corpus
        pick = index % len(self._lines) if self.order == "sequential" else int(rng.integers(len(self._lines)))
        line_no, raw = self._lines[pick]
        src = f"{self.source}:{line_no}"
        latex = normalize_latex(raw)
        if not latex:
            raise Reject("empty_formula", "formula is empty after normalisation", src)
        check_untrusted(latex, src)
        problem = structure_problem(latex)
        if problem:
            raise Reject("malformed_formula", problem, src)
        return latex, {"origin": "corpus", "line": line_no}

    def _draw_tex(self, rng: np.random.Generator, index: int) -> tuple[str, dict[str, Any]]:
        """Formula `index` of the LaTeX sources (in document order; "random" order draws one). A formula seen
        before in the run is a `duplicate` reject naming the first place it occurred."""
        assert self._tex_formulas is not None
        n = len(self._tex_formulas)
        where, latex, first = self._tex_formulas[index % n if self.order == "sequential" else int(rng.integers(n))]
        if first is not None:
            raise Reject("duplicate", f"same formula as {first}", where)
        check_untrusted(latex, where)
        problem = structure_problem(latex)
        if problem:
            raise Reject("malformed_formula", problem, where)
        return latex, {"origin": "tex", "where": where}

    # -- the batch hook: every index of a batch is drawn, then rendered by one call of the backend ------
    def prepare(self, seed: int, indices: list[int]) -> dict[int, Any]:
        """fast: one layout and one screenshot of the batch's MathML in Chromium (the screenshot is most of a
        lone formula's cost); faithful: one TeX run, a formula a page. A formula's pixels do not depend on
        its batch (tested in test_browser_containment and test_gen_formula), so `render` and `items` agree
        byte for byte."""
        if self.backend == "fast":
            drawn = self.each(indices, lambda index: self._draw_fast(seed, index))
            good = self.pending(drawn)
            shots = self._mathml_images([drawn[i].mathml for i in good], [drawn[i].sampled["font_px"] for i in good])
        else:
            drawn = self.each(indices, lambda index: self._draw_faithful(seed, index))
            good = self.pending(drawn)
            shots = typeset_batch(self.tex(), FORMULA_PREAMBLE, [f"$\\displaystyle {drawn[i].latex}$" for i in good],
                                  preload=True)
        return self.with_shots(drawn, dict(zip(good, shots)))

    def make(self, seed: int, index: int, prepared: "_Drawn") -> list[Sample | Rejected]:
        d = prepared
        img = d.shot.image(d.sampled["dpi"]) if isinstance(d.shot, BatchPage) else d.shot.convert("L")
        return [self.finish_sample(seed, index, img, d.rng, lang="en", text=d.latex, sampled=d.sampled,
                                   size=self.size, degradations=self.degradations)]

    def _draw_fast(self, seed: int, index: int) -> "_Drawn":
        rng = self.rng(seed, index)
        latex, sampled = self._draw(rng, index)
        font_px = int(rng.integers(self.font_px[0], self.font_px[1] + 1))
        mathml = to_mathml(latex)
        _require_mathml_glyphs(mathml)
        return _Drawn(rng, latex, dict(sampled, backend="fast", font_px=font_px), mathml)

    def _draw_faithful(self, seed: int, index: int) -> "_Drawn":
        rng = self.rng(seed, index)
        latex, sampled = self._draw(rng, index)
        dpi = int(rng.integers(self.dpi[0], self.dpi[1] + 1))
        return _Drawn(rng, latex, dict(sampled, backend="faithful", engine="pdflatex", dpi=dpi))

    def _mathml_images(self, mathmls: list[str], sizes: list[int]) -> list[Any]:
        """One PIL image or Reject per formula."""
        if not mathmls:
            return []
        try:
            return self.browser().render_mathml_many(mathmls, font_px=sizes)
        except Reject as r:
            if len(mathmls) == 1:
                return [r]
        # The whole call failed (a timeout, a crashed page): render one by one, so only the culprit is rejected.
        return [img for m, f in zip(mathmls, sizes) for img in self._mathml_images([m], [f])]


@dataclass(frozen=True)
class _Drawn:
    """One index of a batch: its rng (positioned after the draws, for the degradations), formula and sampled
    parameters, then what the backend made of it (`shot`: a PIL image, or the `BatchPage` of a TeX run)."""

    rng: np.random.Generator
    latex: str
    sampled: dict[str, Any]
    mathml: str = ""
    shot: Any = None


FORMULA_PREAMBLE = r"""\documentclass[12pt]{article}
\usepackage{amsmath,amssymb}
\usepackage[active,tightpage]{preview}
\setlength\PreviewBorder{4pt}
\pagestyle{empty}
"""


def to_mathml(latex: str) -> str:
    """latex2mathml's MathML for a formula; Reject("mathml_error") when it cannot convert it or leaves a
    control sequence it does not know as literal text (it would be drawn as `\\foo`)."""
    import latex2mathml.converter

    # latex2mathml has no `aligned` (it leaves the `&` as text: malformed MathML); `split` is the same
    # alignment (right, left columns, no space between) and it knows that one.
    latex = re.sub(r"\\(begin|end)\{aligned\}", r"\\\1{split}", latex)
    try:
        mathml = latex2mathml.converter.convert(latex, display="block")
    except Exception as e:  # latex2mathml raises many exception types for bad input
        raise Reject("mathml_error", f"{type(e).__name__}: {e}") from None
    unknown = re.search(r">(\\[A-Za-z]+)<", mathml)
    if unknown:
        raise Reject("mathml_error", f"unknown command {unknown.group(1)}")
    return mathml


# What the fast path's page can draw with: the math font, then the text fonts infra/setup.sh installs,
# which Chromium falls back to (through fontconfig) for a glyph the math font lacks.
FAST_PATH_FONTS = ("DejaVu Sans", "DejaVu Serif", "WenQuanYi Micro Hei")


def _require_mathml_glyphs(mathml: str) -> None:
    """Reject("font_coverage") for a character of the MathML's text that none of the fast path's fonts
    draws: Chromium would show it as a box (tofu) while the target names it."""
    import html

    from generators import fonts
    from generators.browser import MATH_FONT

    text = html.unescape("".join(re.findall(r">([^<]+)<", mathml)))
    missing = set(fonts.missing_glyphs(text, MATH_FONT))
    for font in FAST_PATH_FONTS:
        missing &= fonts.missing_glyphs("".join(missing), font)
    if missing:
        shown = "".join(sorted(missing)[:20])
        raise Reject("font_coverage", f"no font of the fast path (Latin Modern Math, {', '.join(FAST_PATH_FONTS)}) "
                                      f"draws {shown!r} ({', '.join(f'U+{ord(c):04X}' for c in sorted(missing)[:20])})")


def _load_lines(source: str, files: InputFiles | None) -> list[tuple[int, str]]:
    data = read_setup_file(source, files, what="formula file")
    lines = [(n, line) for n, line in enumerate(data.decode("utf-8").splitlines(), 1) if line.strip()]
    if not lines:
        raise GeneratorError(f"formula file {source!r} holds no formulas")
    return lines


TEX_SOURCE_SUFFIXES = (".tex", ".tar.gz", ".tgz", ".tar", ".gz")


def is_tex_source(source: str, files: InputFiles) -> bool:
    """Whether `source` names LaTeX sources (a .tex file, an archive, or a folder of them) rather than a
    formula list (one formula per line)."""
    return source.lower().endswith(TEX_SOURCE_SUFFIXES) or files.is_folder(source)


def _load_tex_formulas(source: str, files: InputFiles) -> list[tuple[str, str, str | None]]:
    """Every formula of the sources, inline and display, normalised, in order (files sorted), each with where
    it first occurred when it is a repeat. A paper's own folder (`is_paper_folder`) is one source, its parts
    inlined; a folder of sources reads the source files in it. A source that does not parse is a GeneratorError
    naming it: without its formulas the run's indices would mean other formulas."""
    from generators.tex_source import extract_formulas

    folder = files.is_folder(source)
    paper = folder and is_paper_folder(*files.walk(source), files)  # one paper's folder: its files, read whole
    names = [n for n in list_sources(source, files) if paper or n.lower().endswith(TEX_SOURCE_SUFFIXES)] \
        if folder else [source]
    out: list[tuple[str, str, str | None]] = []
    first: dict[str, str] = {}
    for name in names:
        try:
            if paper:
                found = extract_formulas(name, inputs=files)
            else:
                found = extract_formulas(name, read_setup_file(name, files, what="LaTeX source"))
        except Reject as r:
            raise GeneratorError(r.detail) from None
        for where, latex in found:
            out.append((where, latex, first.get(latex)))
            first.setdefault(latex, where)
    if not out:
        raise GeneratorError(f"LaTeX sources {source!r} hold no formulas")
    return out
