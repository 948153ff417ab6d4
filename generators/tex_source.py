"""Real LaTeX sources (a `.tex` file, an arXiv-style `.tar.gz` / `.gz`, or a folder) -> blocks and formulas.

Vary's LaTeX-rendered pages were real arXiv sources re-typeset through templates; im2latex and pix2tex took
their formulas from the same kind of sources. This module reads a source in memory (archives are never
unpacked to disk: a member's name is only a key, so `../../etc/passwd` reads nothing), finds the main file by
`\\documentclass`, inlines `\\input`/`\\include` of files the source has (a missing one is dropped and
noted), expands the document's own simple macros (`\\newcommand`, `\\renewcommand`, `\\def` without side
effects, `\\DeclareMathOperator`), and cuts the body into blocks, each known both as LaTeX that typesets
alone and as Mathpix-style markdown:

- headings (`\\section`..`\\paragraph`, starred or not), the title and the abstract;
- paragraphs with inline math (`$..$`, `\\(..\\)`, markdown `\\(..\\)`), `\\cite` as "[key]", `\\ref` as the
  label's number, `\\emph`/`\\textbf` as `*..*`/`**..**`;
- display math (`equation`, `align`, `gather`, `multline`, `eqnarray`, `$$`, `\\[`), unnumbered;
- tables (`tabular`, booktabs rules kept), target the tabular itself;
- lists (`itemize`, `enumerate`).
What cannot be re-typeset alone is dropped and counted by reason: figures, `\\includegraphics`, the
bibliography, footnotes, unknown environments, and any block with a control sequence the typesetting
allowlist (`check_untrusted`) refuses.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from generators.base import Reject
from generators.sources import InputFiles, input_files
from generators.tex import brace_depths

MAX_MEMBER_BYTES = 8 << 20  # one .tex file of an archive; real papers are well under 1 MB
MAX_INPUT_DEPTH = 8
MAX_MACRO_PASSES = 6


@dataclass(frozen=True)
class SrcBlock:
    kind: str  # heading | title | paragraph | display_math | table | list
    latex: str
    markdown: str


@dataclass
class Parsed:
    """A source document cut into blocks."""

    name: str  # the input's name
    sha256: str  # of the input's bytes
    main: str  # the main file within it
    blocks: list[SrcBlock]
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    packages: list[str] = field(default_factory=list)  # allowlisted packages the source loads
    lang: str = "en"


# -- reading a source ---------------------------------------------------------------------------------------
def read_tex_files(name: str, data: bytes) -> dict[str, str]:
    """{member path: text} of a `.tex` file, a `.tar(.gz)`/`.tgz` archive or a gzipped `.tex` (arXiv serves
    single-file sources so). Only `.tex`, `.bbl` and `.sty`-free text members are kept."""
    raw = data
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise Reject("bad_source", f"{name}: not a readable gzip file ({e})", name) from None
    if _is_tar(raw):
        files: dict[str, str] = {}
        try:
            with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                for m in tar.getmembers():
                    path = str(PurePosixPath(m.name))
                    if m.isfile() and path.endswith((".tex", ".bbl")) and m.size <= MAX_MEMBER_BYTES:
                        f = tar.extractfile(m)
                        if f is not None:
                            files[_member(path)] = _decode(f.read())
        except tarfile.TarError as e:
            raise Reject("bad_source", f"{name}: not a readable archive ({e})", name) from None
        return files
    if b"\x00" in raw[:4096]:
        raise Reject("bad_source", f"{name}: neither a .tex file nor a tar archive", name)
    return {PurePosixPath(name.rsplit("/", 1)[-1].removesuffix(".gz")).name: _decode(raw)}


def _member(path: str) -> str:
    """A member's key: its POSIX path without leading "./" (a key only: nothing is read from disk by it)."""
    return re.sub(r"^(\./)+", "", str(PurePosixPath(path)))


def _is_tar(raw: bytes) -> bool:
    return len(raw) > 262 and raw[257:262] == b"ustar"


def _decode(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def main_file(name: str, files: dict[str, str]) -> str:
    """The member holding `\\documentclass` and `\\begin{document}` (the shortest path, then the name, when
    several do)."""
    mains = [p for p, t in files.items() if re.search(r"^[^%\n]*\\documentclass", t, re.M) and "\\begin{document}" in t]
    if not mains:
        raise Reject("bad_source", f"{name}: no file with \\documentclass and \\begin{{document}}", name)
    return sorted(mains, key=lambda p: (p.count("/"), p))[0]


def strip_comments(tex: str) -> str:
    return re.sub(r"(?<!\\)((?:\\\\)*)%[^\n]*", r"\1", tex)


def inline_inputs(text: str, files: dict[str, str], dropped: Counter, depth: int = 0) -> str:
    """`\\input{x}` / `\\include{x}` replaced by the file the source has (x or x.tex); a missing one by
    nothing (noted as `missing_input`)."""
    def repl(m: re.Match) -> str:
        target = m.group(2).strip()
        for cand in (target, target + ".tex"):
            cand = _member(cand)
            if cand in files and depth < MAX_INPUT_DEPTH:
                return inline_inputs(strip_comments(files[cand]), files, dropped, depth + 1)
        dropped["missing_input"] += 1
        return ""

    return re.sub(r"\\(input|include)\s*\{([^}]*)\}", repl, text)


# -- balanced-brace helpers -----------------------------------------------------------------------------------
def group_end(s: str, i: int) -> int:
    """Index just past the group that opens with `{` at s[i] (or past the one token at s[i])."""
    if i >= len(s):
        return i
    if s[i] != "{":
        if s[i] == "\\":
            m = re.match(r"\\([A-Za-z]+|.)", s[i:])
            return i + (m.end() if m else 1)
        return i + 1
    for j, depth in brace_depths(s, i):
        if depth == 0:
            return j + 1
    raise ValueError("unbalanced braces")


def args(s: str, i: int, n: int, optional: bool = False) -> tuple[list[str], int]:
    """The `n` brace arguments after position i (an optional [..] first, skipped), and the index past them."""
    out = []
    i = _skip_ws(s, i)
    if optional and i < len(s) and s[i] == "[":
        close = s.find("]", i)
        i = _skip_ws(s, close + 1) if close >= 0 else i
    for _ in range(n):
        i = _skip_ws(s, i)
        end = group_end(s, i)
        out.append(s[i + 1: end - 1] if i < len(s) and s[i] == "{" else s[i:end])
        i = end
    return out, i


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t\n":
        i += 1
    return i


# -- macros ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Macro:
    nargs: int
    default: str | None  # the optional first argument's default, when it has one
    body: str


def collect_macros(tex: str) -> tuple[dict[str, Macro], str]:
    """The document's simple macros, and `tex` without their definitions."""
    macros: dict[str, Macro] = {}
    out, i = [], 0
    pat = re.compile(r"\\(newcommand|renewcommand|providecommand|DeclareMathOperator)(\*?)\s*|\\def\s*(\\[A-Za-z]+)")
    while True:
        m = pat.search(tex, i)
        if not m:
            out.append(tex[i:])
            break
        out.append(tex[i:m.start()])
        try:
            if m.group(3):  # \def\name<params>{body}
                pm = re.match(r"((?:#\d)*)\s*", tex[m.end():])
                j = m.end() + pm.end()
                end = group_end(tex, j)
                macros[m.group(3)] = Macro(len(pm.group(1)) // 2, None, tex[j + 1: end - 1])
                i = end
                continue
            j = _skip_ws(tex, m.end())
            end = group_end(tex, j)
            name = tex[j:end].strip("{}").strip()
            j = _skip_ws(tex, end)
            if m.group(1) == "DeclareMathOperator":
                (body,), i = args(tex, j, 1)
                macros[name] = Macro(0, None, f"\\operatorname{'*' if m.group(2) else ''}{{{body}}}")
                continue
            nargs, default = 0, None
            if j < len(tex) and tex[j] == "[":
                close = tex.index("]", j)
                nargs = int(tex[j + 1: close])
                j = _skip_ws(tex, close + 1)
                if j < len(tex) and tex[j] == "[":
                    close = tex.index("]", j)
                    default = tex[j + 1: close]
                    j = close + 1
            (body,), i = args(tex, j, 1)
            if re.fullmatch(r"\\[A-Za-z]+", name):
                macros[name] = Macro(nargs, default, body)
        except (ValueError, IndexError):
            i = m.end()  # a definition we cannot read stays in the text; check_untrusted drops its block
            out.append(m.group(0))
    return macros, "".join(out)


def expand_macros(tex: str, macros: dict[str, Macro]) -> str:
    """`tex` with every use of `macros` replaced by its body (arguments substituted), a few passes deep."""
    if not macros:
        return tex
    names = sorted(macros, key=len, reverse=True)
    pat = re.compile("(" + "|".join(re.escape(n) for n in names) + r")(?![A-Za-z@])")
    for _ in range(MAX_MACRO_PASSES):
        out, i, changed = [], 0, False
        for m in pat.finditer(tex):
            if m.start() < i:
                continue
            mac = macros[m.group(1)]
            j = m.end()
            params: list[str] = []
            try:
                if mac.default is not None:
                    k = _skip_ws(tex, j)
                    if k < len(tex) and tex[k] == "[":
                        close = tex.index("]", k)
                        params.append(tex[k + 1: close])
                        j = close + 1
                    else:
                        params.append(mac.default)
                more, j = args(tex, j, mac.nargs - len(params))
                params += more
            except (ValueError, IndexError):
                continue
            body = mac.body
            for n, p in enumerate(params, 1):
                body = body.replace(f"#{n}", p)
            out.append(tex[i:m.start()])
            # A control word body followed by a letter would merge with it: keep them apart.
            sep = " " if re.search(r"\\[A-Za-z]+$", body) and tex[j:j + 1].isalpha() else ""
            out.append(body + sep)
            i = j
            changed = True
        out.append(tex[i:])
        tex = "".join(out)
        if not changed:
            break
    return tex


# -- the body -------------------------------------------------------------------------------------------------
DISPLAY_ENVS = ("equation", "align", "gather", "multline", "eqnarray", "flalign", "alignat", "displaymath", "math")
DROPPED_ENVS = ("figure", "wrapfigure", "tikzpicture", "thebibliography", "algorithm", "algorithmic", "lstlisting",
                "verbatim", "minted", "comment", "picture", "subfigure", "acks")
SAFE_PACKAGES = ("amsmath", "amssymb", "amsfonts", "mathtools", "bm", "booktabs", "multirow", "array", "mathrsfs",
                 "upgreek", "xcolor", "url")
_SECTION = re.compile(r"\\(part|chapter|section|subsection|subsubsection|paragraph)\*?\s*(?=[\[{])")
_LEVEL = {"part": 1, "chapter": 1, "section": 1, "subsection": 2, "subsubsection": 3, "paragraph": 3}
_DROP_COMMANDS = ("label", "footnote", "thanks", "vspace", "hspace", "bibliography", "bibliographystyle",
                  "includegraphics", "addbibresource", "keywords", "date", "pagestyle", "thispagestyle", "setlength",
                  "addtolength", "setcounter", "affiliation", "email", "address", "author", "title", "caption")
_NO_ARG_DROP = ("maketitle", "newpage", "clearpage", "noindent", "centering", "small", "footnotesize", "nonumber",
                "notag", "tableofcontents", "appendix", "bigskip", "medskip", "smallskip", "par", "hline")


def read_tex_folder(folder: str, inputs: InputFiles) -> tuple[dict[str, str], str]:
    """{relative path: text} of the `.tex`/`.bbl` files of a paper folder (`generators.sources.is_paper_folder`)
    at any depth, read through `inputs`, and a sha256 over their paths and bytes in `walk` order (the folder's
    identity for lineage): the same on a disk and under an S3 prefix."""
    name, below = inputs.walk(folder)
    files: dict[str, str] = {}
    sha = hashlib.sha256()
    for rel in below:
        if rel.endswith((".tex", ".bbl")):
            with inputs.open(f"{name}/{rel}") as f:
                data = f.read(MAX_MEMBER_BYTES + 1)
            if len(data) <= MAX_MEMBER_BYTES:
                sha.update(rel.encode() + b"\0" + data + b"\0")
                files[rel] = _decode(data)
    return files, sha.hexdigest()


def parse_source(name: str, data: bytes | None = None, inputs: InputFiles | None = None) -> Parsed:
    """A source's blocks (see the module docstring), or Reject("bad_source") naming it. `data`: the bytes of
    a file or archive; None for a paper folder, read through `inputs` (this machine's files when None)."""
    if data is None:
        files, sha = read_tex_folder(name, input_files(inputs))
    else:
        files, sha = read_tex_files(name, data), hashlib.sha256(data).hexdigest()
    main = main_file(name, files)
    dropped: Counter = Counter()
    tex = inline_inputs(strip_comments(files[main]), files, dropped)
    head, _, rest = tex.partition("\\begin{document}")
    body = rest.partition("\\end{document}")[0]
    macros, head = collect_macros(head)
    more, body = collect_macros(body)
    macros.update(more)
    body = expand_macros(body, macros)
    packages = [p.strip() for opts, ps in re.findall(r"\\usepackage\s*(\[[^]]*\])?\s*\{([^}]*)\}", head)
                for p in ps.split(",") if p.strip() in SAFE_PACKAGES]
    lang = "zh" if re.search(r"\\usepackage[^\n]*\{(xeCJK|ctex|CJKutf8)\}|\\documentclass[^\n]*\{ctex", head) \
        or len(re.findall(r"[\u4e00-\u9fff]", body)) > 0.05 * max(1, len(body)) else "en"
    labels = _label_numbers(body)
    blocks: list[SrcBlock] = []
    title = re.search(r"\\title\s*(\[[^]]*\])?\s*\{", head + body)
    if title:
        try:
            (t,), _ = args(head + body, title.end() - 1, 1)
            t = _clean_text(expand_macros(t, macros).replace("\\\\", " "), labels)
            if t.strip():
                blocks.append(SrcBlock("title", f"\\begin{{center}}{{\\LARGE\\bfseries {t.strip()}\\par}}\\end{{center}}",
                                       "# " + _markdown(t.strip())))
        except ValueError:
            dropped["unparsable"] += 1
    for kind, latex in _chunks(body, dropped):
        block = _to_block(kind, latex, labels, dropped)
        if block is not None:
            blocks.append(block)
    return Parsed(name, sha, main, blocks, dropped, sorted(set(packages)), lang)


def _label_numbers(body: str) -> dict[str, str]:
    """label key -> its number, counted per kind of environment it sits in (sections, equations, tables...),
    the way LaTeX's counters run."""
    counters: Counter = Counter()
    out: dict[str, str] = {}
    token = re.compile(r"\\(section|subsection|subsubsection)\*?\s*[\[{]|\\begin\{(equation|align|gather|table|figure"
                       r"|theorem|lemma)\*?\}|\\label\{([^}]*)\}")
    current = "section"
    for m in token.finditer(body):
        if m.group(1):
            current = "section"
            counters["section"] += 1
        elif m.group(2):
            current = {"align": "equation", "gather": "equation"}.get(m.group(2), m.group(2))
            counters[current] += 1
        elif m.group(3):
            out[m.group(3)] = str(max(1, counters[current]))
    return out


def _chunks(body: str, dropped: Counter):
    """(kind, latex) pieces of the body in order: sections, environments, display math, and text between."""
    i = 0
    text_start = 0
    n = len(body)
    pat = re.compile(r"\\begin\s*\{([A-Za-z*]+)\}|\$\$|\\\[|" + _SECTION.pattern)
    while True:
        m = pat.search(body, i)
        if not m:
            break
        if m.group(0).startswith("\\begin"):
            env = m.group(1)
            base = env.rstrip("*")
            end = _env_end(body, m.end(), env)
            if end < 0:
                dropped["unparsable"] += 1
                i = m.end()
                continue
            inner = body[m.end(): end - len(f"\\end{{{env}}}")]
            if base in ("abstract", "itemize", "enumerate", "table", "tabular", "center", "quote", "theorem", "lemma",
                        "proof", "definition", "proposition", "corollary", "remark", "example") or base in DISPLAY_ENVS \
                    or base in DROPPED_ENVS:
                yield from _text(body[text_start:m.start()])
                if base in DISPLAY_ENVS:
                    yield "display", (base, inner)
                elif base in DROPPED_ENVS:
                    dropped[base] += 1
                elif base == "abstract":
                    yield "heading", (2, "Abstract")
                    yield from _text(inner)
                elif base in ("itemize", "enumerate"):
                    yield "list", (base, inner)
                elif base in ("table", "tabular", "center"):
                    tab = re.search(r"\\begin\{tabular\}", inner) if base != "tabular" else None
                    if base == "tabular":
                        yield "table", body[m.start():end]
                    elif tab:
                        t_end = _env_end(inner, tab.end(), "tabular")
                        yield ("table", inner[tab.start():t_end]) if t_end > 0 else ("drop", "table")
                    elif base == "center":
                        yield from _text(inner)
                    else:
                        dropped["table"] += 1
                else:  # theorem-like and quotes: their text, headed by the environment's name
                    if base not in ("quote", "proof"):
                        yield "paragraph_prefix", base.capitalize() + "."
                    yield from _text(inner)
                i = text_start = end
            else:
                i = end  # an environment inside text (e.g. a small inline one): part of the paragraph
            continue
        if m.group(0) in ("$$", "\\["):
            close = body.find("$$" if m.group(0) == "$$" else "\\]", m.end())
            if close < 0:
                dropped["unparsable"] += 1
                i = m.end()
                continue
            yield from _text(body[text_start:m.start()])
            yield "display", ("equation", body[m.end():close])
            i = text_start = close + 2
            continue
        yield from _text(body[text_start:m.start()])  # a section command
        try:
            (title,), end = args(body, m.end(), 1, optional=True)
        except ValueError:
            dropped["unparsable"] += 1
            i = m.end()
            continue
        yield "heading", (_LEVEL[m.group(2)], title)
        i = text_start = end
    yield from _text(body[text_start:n])


def _env_end(s: str, start: int, env: str) -> int:
    """Index just past the `\\end{env}` that closes an environment opened before `start` (nesting counted)."""
    depth = 1
    pat = re.compile(r"\\(begin|end)\s*\{" + re.escape(env) + r"\}")
    for m in pat.finditer(s, start):
        depth += 1 if m.group(1) == "begin" else -1
        if depth == 0:
            return m.end()
    return -1


def _text(s: str):
    for para in re.split(r"\n\s*\n", s):
        if para.strip():
            yield "paragraph", para.strip()


_ALLOWED_TEXT_COMMANDS = frozenset(
    "emph textbf textit texttt textsc textrm textsf textup underline mbox cite citep citet ref eqref autoref cref "
    "Cref url ldots dots textendash textemdash S P copyright LaTeX TeX today item".split())


def _to_block(kind: str, piece, labels: dict[str, str], dropped: Counter) -> SrcBlock | None:
    from generators.formula import normalize_latex, structure_problem

    if kind == "drop":
        dropped[piece] += 1
        return None
    if kind == "heading":
        level, title = piece
        t = _clean_text(title, labels).strip()
        if not t:
            return None
        cmd = {1: "section*", 2: "subsection*", 3: "subsubsection*"}[level]
        return SrcBlock("heading", f"\\{cmd}{{{t}}}", "#" * (level + 1) + " " + _markdown(t))
    if kind == "paragraph_prefix":
        return SrcBlock("paragraph", f"\\textbf{{{piece}}}", f"**{piece}**")
    if kind == "display":
        env, inner = piece
        inner = re.sub(r"\\(label|tag)\s*\{[^}]*\}|\\(nonumber|notag)\b", "", inner).strip()
        if not inner:
            return None
        multi = env in ("align", "gather", "multline", "eqnarray", "flalign", "alignat") or "\\\\" in inner
        if env == "eqnarray":
            inner = inner.replace("&", "", 1) if inner.count("&") == 1 else inner
            env = "align"
        problem = structure_problem(inner if not multi else f"\\begin{{aligned}}{inner}\\end{{aligned}}")
        if problem:
            dropped["malformed_math"] += 1
            return None
        norm = normalize_latex(inner)
        if multi:
            star = "gather*" if env == "gather" else "align*"
            inner_md = "gathered" if env == "gather" else "aligned"
            return SrcBlock("display_math", f"\\begin{{{star}}}{inner}\\end{{{star}}}",
                            f"\\[\n\\begin{{{inner_md}}}{norm}\\end{{{inner_md}}}\n\\]")
        return SrcBlock("display_math", f"\\[{inner}\\]", f"\\[\n{norm}\n\\]")
    if kind == "table":
        tab = _refs_as_text(re.sub(r"\\label\s*\{[^}]*\}", "", piece), labels).strip()
        if "\\\\" not in tab:  # no row ends: a layout device, not a table of data
            dropped["table"] += 1
            return None
        latex = ("\\begin{center}\\small\\sbox0{" + tab + "}\\ifdim\\wd0>\\linewidth"
                 "\\resizebox{\\linewidth}{!}{\\usebox0}\\else\\usebox0\\fi\\end{center}")
        return SrcBlock("table", latex, tab)
    if kind == "list":
        env, inner = piece
        items = [it.strip() for it in re.split(r"\\item\b", inner)[1:] if it.strip()]
        if not items:
            return None
        cleaned = [_clean_text(it, labels) for it in items]
        if any(not _text_ok(c) for c in cleaned):
            dropped["unknown_command"] += 1
            return None
        marks = [f"{k}." for k in range(1, len(items) + 1)] if env == "enumerate" else ["-"] * len(items)
        # a math bullet: \textbullet needs TS1 fonts (see latex_page); enumerate numbers are typeset as text
        tex_marks = [f"{k}." for k in range(1, len(items) + 1)] if env == "enumerate" else ["$\\bullet$"] * len(items)
        latex = "\\begin{itemize}" + "".join(f"\\item[{tm}] {c}" for tm, c in zip(tex_marks, cleaned)) + "\\end{itemize}"
        return SrcBlock("list", latex, "\n".join(f"{mk} {_markdown(c)}" for mk, c in zip(marks, cleaned)))
    text = _clean_text(piece, labels).strip()
    if not text:
        return None
    if not _text_ok(text):
        dropped["unknown_command"] += 1
        return None
    return SrcBlock("paragraph", text, _markdown(text))


def _clean_text(s: str, labels: dict[str, str]) -> str:
    """LaTeX of a paragraph as it will be typeset: references in text form, dropped commands gone, white
    space collapsed. Still LaTeX (math, emphasis, escapes)."""
    s = _refs_as_text(s, labels)
    for cmd in _DROP_COMMANDS:
        s = _drop_command(s, cmd)
    s = re.sub(r"\\(" + "|".join(_NO_ARG_DROP) + r")(?![A-Za-z])\s*", "", s)
    s = re.sub(r"[ \t]*\n[ \t]*", " ", s)
    s = re.sub(r"(?<!\\)~", " ", s)
    return re.sub(r"  +", " ", s)


def _refs_as_text(s: str, labels: dict[str, str]) -> str:
    """`\\cite{a,b}` as "[a, b]", `\\ref`/`\\eqref` as the label's number."""
    s = re.sub(r"\\(cite[pt]?|citeauthor|citeyear)\s*(\[[^]]*\])?\s*\{([^}]*)\}",
               lambda m: "[" + ", ".join(k.strip() for k in m.group(3).split(",")) + "]", s)
    s = re.sub(r"\\(eqref)\s*\{([^}]*)\}", lambda m: f"({labels.get(m.group(2), '?')})", s)
    return re.sub(r"\\(ref|autoref|cref|Cref)\s*\{([^}]*)\}", lambda m: labels.get(m.group(2), "?"), s)


def _drop_command(s: str, cmd: str) -> str:
    out, i = [], 0
    pat = re.compile(r"\\" + cmd + r"\*?(?![A-Za-z])")
    for m in pat.finditer(s):
        if m.start() < i:
            continue
        try:
            _, end = args(s, m.end(), 1, optional=True)
        except ValueError:
            continue
        out.append(s[i:m.start()])
        i = end
    out.append(s[i:])
    return "".join(out)


def _text_ok(text: str) -> bool:
    """Whether a paragraph's text-mode commands are all ones a template typesets and `_markdown` renders."""
    outside_math = re.sub(r"\$[^$]*\$|\\\(.*?\\\)", "", text, flags=re.S)
    return all(c in _ALLOWED_TEXT_COMMANDS for c in re.findall(r"\\([A-Za-z]+)", outside_math))


_MD_TEXT = [(re.compile(r"\\(?:emph|textit)\s*\{([^{}]*)\}"), r"*\1*"), (re.compile(r"\\textbf\s*\{([^{}]*)\}"), r"**\1**"),
            (re.compile(r"\\(?:texttt|textsc|textrm|textsf|textup|mbox|underline|url)\s*\{([^{}]*)\}"), r"\1"),
            (re.compile(r"\\(?:ldots|dots)(?![A-Za-z])\s?"), "…"), (re.compile(r"---"), "—"), (re.compile(r"--"), "–"),
            (re.compile(r"``"), "“"), (re.compile(r"''"), "”"), (re.compile(r"\\([%&#_$])"), r"\1"),
            (re.compile(r"\\LaTeX(?![A-Za-z])\s?"), "LaTeX"), (re.compile(r"\\TeX(?![A-Za-z])\s?"), "TeX")]


def _markdown(text: str) -> str:
    """Mathpix-style markdown of a paragraph's LaTeX: inline math as `\\(..\\)`, emphasis as `*`/`**`."""
    from generators.formula import normalize_latex

    parts = re.split(r"(\$[^$]+\$|\\\(.*?\\\))", text, flags=re.S)
    out = []
    for k, part in enumerate(parts):
        if k % 2:
            math = part[1:-1] if part.startswith("$") else part[2:-2]
            out.append(f"\\({normalize_latex(math)}\\)")
        else:
            for pat, rep in _MD_TEXT:
                part = pat.sub(rep, part)
            out.append(part)
    return "".join(out).strip()


# -- formulas for `formula --source` -------------------------------------------------------------------------
def extract_formulas(name: str, data: bytes | None = None, inputs: InputFiles | None = None) -> list[tuple[str, str]]:
    """(where, latex) of every formula of a source, inline and display, in document order, normalised;
    where = "file:line" (an archive's "archive:member:line"). `data`: as `parse_source` takes it (None: a paper
    folder read through `inputs`)."""
    from generators.formula import normalize_latex

    files = read_tex_files(name, data) if data is not None else read_tex_folder(name, input_files(inputs))[0]
    main = main_file(name, files)
    # A folder's file by its path; a file as itself; an archive's member after the archive's name.
    where = f"{name}/{main}" if data is None else \
        name if main == name.rsplit("/", 1)[-1].removesuffix(".gz") else f"{name}:{main}"
    tex = inline_inputs(strip_comments(files[main]), files, Counter())
    head, _, rest = tex.partition("\\begin{document}")
    macros, _ = collect_macros(head)
    more, body = collect_macros(rest.partition("\\end{document}")[0])
    macros.update(more)
    offset = tex.count("\n", 0, len(head) + len("\\begin{document}"))
    envs = "|".join(DISPLAY_ENVS)
    pat = re.compile(r"\\begin\{(" + envs + r")\*?\}(.*?)\\end\{\1\*?\}|\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)"
                     r"|(?<![\\$])\$([^$]+?)(?<!\\)\$", re.S)
    out = []
    for m in pat.finditer(body):
        raw = next(g for g in (m.group(2), m.group(3), m.group(4), m.group(5), m.group(6)) if g is not None)
        raw = re.sub(r"\\(label|tag)\s*\{[^}]*\}|\\(nonumber|notag)\b", "", expand_macros(raw, macros))
        if m.group(1) and m.group(1) not in ("equation", "displaymath", "math") or "\\\\" in raw:
            raw = f"\\begin{{aligned}}{raw}\\end{{aligned}}"
        latex = normalize_latex(raw)
        if latex:
            line = offset + body.count("\n", 0, m.start()) + 1
            out.append((f"{where}:{line}", latex))
    return out
