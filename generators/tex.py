"""A contained TeX runner: compile LaTeX in one private work dir, rasterise the PDF with PyMuPDF.

The wall against hostile input is the TeX configuration, not the pre-filter: no shell escape
(`-no-shell-escape`, `shell_escape=f`), kpathsea's paranoid file access for reads and writes
(`openin_any=p`, `openout_any=p`: no absolute paths outside the work dir, no `..`, no dot files),
stdin closed, a hard wall-clock timeout that kills the whole process group, CPU and file-size rlimits.
`check_untrusted` rejects the control sequences that only hostile or file-touching input needs, so
most bad input costs no TeX run at all.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

from generators.base import GeneratorError, Reject

ENGINES = ("pdflatex", "xelatex", "latex")
# Engines whose formats can hold a loaded preamble (`TexRenderer.preamble_format`). XeTeX cannot \dump once a
# native (OpenType) font is loaded, and xelatex's default TU fonts are native: the class's \normalsize loads
# one. (Loading the class in OT1 dodges that, but shifts rules in 9 of 30 tables: em-based lengths.)
_PRELOADABLE = ("pdflatex", "latex")
# Preloaded formats of this process (`TexRenderer.preamble_format`): preamble key -> path, None where the
# build failed. Their directory goes when the process that made it exits (not a forked child).
_formats: dict[str, str | None] = {}
_formats_lock = threading.Lock()
_formats_dir: str | None = None


def _remove_formats(path: str, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)

# Control words untrusted text never needs: file access, shell, definitions, catcodes, raw PDF/DVI
# output, expansion tricks, and document structure that would break a batch's one-item-per-page layout.
_BLOCKED_WORDS = frozenset(
    """
    input include includeonly InputIfFileExists IfFileExists endinput openin openout closein closeout
    read readline write write18 immediate newread newwrite message errmessage
    catcode lccode uccode sfcode mathcode delcode endlinechar newlinechar escapechar
    def edef gdef xdef let futurelet global long outer protected newcommand renewcommand
    providecommand DeclareRobustCommand DeclareMathOperator newenvironment renewenvironment
    csname endcsname expandafter noexpand afterassignment aftergroup scantokens detokenize
    usepackage RequirePackage documentclass LoadClass special shipout output everypar everymath
    everydisplay everyhbox everyvbox everyjob everycr everyeof jobname directlua latelua
    loop repeat verbatiminput lstinputlisting includegraphics includepdf import subimport
    errorstopmode scrollmode batchmode nonstopmode end dump patterns hyphenation font
    """.split()
)
_BLOCKED_PREFIXES = ("pdf", "XeTeX", "tex", "luatex")  # \pdffiledump, \XeTeXinputencoding, ...
_ALLOWED_PREFIXED = frozenset({"text", "textbf", "textit", "textrm", "textsf", "texttt", "textup", "textsc",
                               "textnormal", "textstyle", "textcolor", "textsuperscript", "textsubscript",
                               "textperiodcentered", "textbackslash", "textasciitilde", "textasciicircum",
                               "textemdash", "textendash", "textbullet", "textdegree", "textmu", "textless",
                               "textgreater", "textbar", "textquotedbl", "textregistered", "texttrademark",
                               "textcopyright", "textsection", "textdagger", "textellipsis", "textonehalf"})
_CONTROL_WORD = re.compile(r"\\([A-Za-z@]+)")
_BLOCKED_ENVIRONMENTS = frozenset({"document", "preview", "filecontents", "filecontents*", "verbatim", "comment"})
_ENVIRONMENT = re.compile(r"\\(?:begin|end)\s*\{([^}]*)\}")


def check_untrusted(tex: str, source: str = "") -> None:
    """Raise Reject("unsafe_tex") when untrusted LaTeX uses anything beyond typesetting.

    `^^` (TeX's hex notation) and `@` are refused outright: either can spell a blocked control sequence
    the regex cannot see, and formulas, tables and prose never need them. `\\end` is only allowed as
    `\\end{env}`."""
    if "^^" in tex:
        raise Reject("unsafe_tex", "'^^' character notation", source)
    if "\x00" in tex:
        raise Reject("unsafe_tex", "NUL byte", source)
    for m in _CONTROL_WORD.finditer(tex):
        word = m.group(1)
        if "@" in word:
            raise Reject("unsafe_tex", f"internal control sequence \\{word}", source)
        if word == "end" and re.match(r"\s*\{", tex[m.end():]):
            continue
        if word in _BLOCKED_WORDS or (word.startswith(_BLOCKED_PREFIXES) and word not in _ALLOWED_PREFIXED):
            raise Reject("unsafe_tex", f"\\{word}", source)
    for m in _ENVIRONMENT.finditer(tex):
        if m.group(1).strip() in _BLOCKED_ENVIRONMENTS:
            raise Reject("unsafe_tex", f"environment {m.group(1)}", source)


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\vfdollar{}", "&": r"\&", "#": r"\#", "%": r"\%",
    "_": r"\_", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", '"': r"\vfquotedbl{}",  # defined by ESCAPE_PREAMBLE
}
_SPECIALS_RE = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIALS))


# In OT1 (plain Computer Modern, whose Type 1 fonts every TeX Live has) \textquotedbl does not exist
# and \$ asks for TS1 fonts this install only has as bitmaps; cmtt's straight quote and math's dollar
# stand in. Every preamble that typesets `escape_text` output includes these (trusted) definitions.
ESCAPE_PREAMBLE = (
    "\\makeatletter\\def\\vf@OT{OT1}"
    "\\DeclareRobustCommand\\vfquotedbl{\\ifx\\f@encoding\\vf@OT\\texttt{\\char34}\\else\\textquotedbl\\fi}"
    "\\DeclareRobustCommand\\vfdollar{\\ifx\\f@encoding\\vf@OT\\ensuremath{\\$}\\else\\$\\fi}"
    "\\makeatother\n"
)


def escape_text(text: str) -> str:
    """Plain text -> LaTeX that typesets exactly that text (every special character neutralised).
    Needs ESCAPE_PREAMBLE in the document's preamble (for `"` and `$`)."""
    return _SPECIALS_RE.sub(lambda m: _LATEX_SPECIALS[m.group(0)], text)


class TexError(Exception):
    """A failed TeX run. `reason` is a reject reason; `error_line` is the source line TeX stopped at."""

    def __init__(self, reason: str, detail: str, log: str = "", error_line: int | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.log = log
        self.error_line = error_line


@dataclass(frozen=True)
class TexOutput:
    pdf: bytes
    log: str
    seconds: float


_ERROR_LINE = re.compile(r"^l\.(\d+)", re.MULTILINE)
_FILE_LINE_ERROR = re.compile(r"^\./job\.tex:(\d+): (.*)$", re.MULTILINE)


def _first_error(log: str) -> tuple[str, int | None]:
    m = _FILE_LINE_ERROR.search(log)
    if m:
        return m.group(2).strip(), int(m.group(1))
    bang = re.search(r"^!\s?(.*)$", log, re.MULTILINE)
    line = _ERROR_LINE.search(log, bang.end()) if bang else None
    return (bang.group(1).strip() if bang else "no error message in log"), (int(line.group(1)) if line else None)


class TexRenderer:
    """One private work dir reused for every compile; use as a context manager.

    `compile(source, engine)` returns the PDF bytes or raises TexError with reason "compile_error",
    "timeout", "output_too_large" or "no_output". The caller decides what a failure means for its
    samples (one formula, a batch, a page)."""

    def __init__(self, timeout_s: float = 30.0, max_output_bytes: int = 64 << 20):
        for engine in ("pdflatex", "xelatex"):
            if shutil.which(engine) is None:
                raise GeneratorError(f"{engine} not found: install the Debian packages texlive-latex-base, "
                                     "texlive-latex-extra, texlive-xetex and texlive-lang-chinese")
        self.timeout_s = float(timeout_s)
        self.max_output_bytes = int(max_output_bytes)
        self._dir: str | None = None
        self.runs = 0

    @property
    def workdir(self) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="varyflow-tex-")
        return self._dir

    def _env(self, outdir: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")}
        env.update(
            openin_any="p", openout_any="p", shell_escape="f", shell_escape_commands="",
            TEXMFOUTPUT=outdir or self.workdir, TEXINPUTS=".:",  # "." then the default path; never a caller's dirs
            # never generate fonts: mktexpk/mktextfm would write bitmap fonts outside the work dir
            MKTEXPK="0", MKTEXTFM="0", MKTEXMF="0", MKOCP="0", MKOFM="0",
            SOURCE_DATE_EPOCH="0", FORCE_SOURCE_DATE="1",  # no dates or IDs that change between runs
            max_print_line="1000", error_line="254", half_error_line="238",  # whole error lines in the log
        )
        return env

    def _limits(self) -> None:  # runs in the child before exec
        cpu = int(self.timeout_s) + 2
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.max_output_bytes, self.max_output_bytes))

    def _clean(self) -> None:
        for name in os.listdir(self.workdir):
            path = os.path.join(self.workdir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)

    def compile(self, source: str, engine: str = "pdflatex", preload: bool = False) -> TexOutput:
        """Compile a whole LaTeX document (already checked by the caller where it holds untrusted text).

        `preload=True` runs it on a format with the document's preamble already loaded (`preamble_format`),
        built on first use for that preamble and engine and kept until `close()`; the output is the same
        bytes, the run skips loading the preamble's packages. Engines or preambles that cannot be dumped
        compile as usual. Only for trusted preambles that callers reuse (the format holds the preamble)."""
        if engine not in ENGINES:
            raise GeneratorError(f"unknown TeX engine {engine!r}; one of {ENGINES}")
        fmt = self.preamble_format(source, engine) if preload else None
        self._clean()
        with open(os.path.join(self.workdir, "job.tex"), "w", encoding="utf-8") as f:
            f.write(source)
        cmd = [engine, *([f"-fmt={fmt}"] if fmt else []), "-no-shell-escape", "-interaction=nonstopmode",
               "-halt-on-error", "-file-line-error", "job.tex"]
        self.runs += 1
        rc, seconds = self._run(cmd, self.workdir, engine)
        log = self._read("job.log")
        if rc in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ) or "File too large" in log:
            raise TexError("output_too_large", f"output exceeded {self.max_output_bytes} bytes", log)
        if rc in (-signal.SIGXCPU, -signal.SIGKILL):
            raise TexError("timeout", f"{engine} exceeded its CPU limit", log)
        out = "job.dvi" if engine == "latex" else "job.pdf"
        pdf_path = os.path.join(self.workdir, out)
        if rc != 0:
            message, line = _first_error(log)
            raise TexError("compile_error", message, log, line)
        if not os.path.exists(pdf_path):
            raise TexError("no_output", f"{engine} produced no {out}", log)
        if os.path.getsize(pdf_path) > self.max_output_bytes:
            raise TexError("output_too_large", f"{out} exceeds {self.max_output_bytes} bytes", log)
        with open(pdf_path, "rb") as f:
            return TexOutput(f.read(), log, seconds)

    def _run(self, cmd: list[str], cwd: str, engine: str) -> tuple[int, float]:
        """Run one TeX process under the sandbox settings; (return code, wall seconds)."""
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=self._env(cwd), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=self._limits)
        try:
            rc = proc.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session holds every child TeX may have started
            proc.wait()
            log = self._read("job.log") if cwd == self.workdir else ""
            raise TexError("timeout", f"{engine} ran past {self.timeout_s:g}s", log) from None
        return rc, time.perf_counter() - t0

    def preamble_format(self, source: str, engine: str) -> str | None:
        """The path of a format (minus `.fmt`) with the preamble of `source` preloaded, or None where there
        is none to be had: an engine that cannot dump it, a `\\begin{document}` not at the start of a line,
        a build that failed (tried once per preamble).

        A run spends most of its CPU on fixed costs (0.12 s for the table preamble on pdflatex against
        ~0.2 ms per table): undumping the format, then loading the preamble's packages. mylatexformat dumps
        the format at `\\begin{document}`; in a run on that format it skips the source's preamble line by
        line, so line numbers (how `typeset_batch` finds a culprit) stay those of the source. The format is
        built from the trusted preamble alone, in its own directory, which compile runs cannot write to.
        Formats are kept per process (building one costs ~0.28 s CPU, what ten batches save): the flows make a
        generator per shard, and every shard a worker renders reuses its formats."""
        head, sep, _ = source.partition("\n" + BATCH_HEADER_END)
        if engine not in _PRELOADABLE or not sep or "endofdump" in head:
            return None
        key = hashlib.sha256(f"{engine}\0{head}".encode()).hexdigest()[:16]
        with _formats_lock:
            if key not in _formats:
                _formats[key] = self._build_format(key, head, engine)
            return _formats[key]

    def _build_format(self, key: str, head: str, engine: str) -> str | None:
        global _formats_dir
        if _formats_dir is None:
            _formats_dir = tempfile.mkdtemp(prefix="varyflow-texfmt-")
            atexit.register(_remove_formats, _formats_dir, os.getpid())
        name = f"vf{key}"
        with open(os.path.join(_formats_dir, f"{name}.tex"), "w", encoding="utf-8") as f:
            f.write(head + "\n" + BATCH_HEADER_END + "\n\\end{document}\n")
        cmd = [engine, "-ini", f"-jobname={name}", "-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error",
               f"&{engine}", "mylatexformat.ltx", f"{name}.tex"]
        try:
            rc, _ = self._run(cmd, _formats_dir, engine)
        except TexError:
            return None
        path = os.path.join(_formats_dir, name)
        return path if rc == 0 and os.path.exists(path + ".fmt") else None

    def read_text(self, name: str) -> str:
        """A text file the last run wrote in the work dir ("" when it wrote none)."""
        return self._read(name)

    def _read(self, name: str) -> str:
        try:
            with open(os.path.join(self.workdir, name), encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        if getattr(self, "_dir", None) is not None:  # __init__ may have failed before setting it
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> "TexRenderer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def open_pdf(pdf: bytes) -> Any:
    import pymupdf

    try:
        return pymupdf.open(stream=pdf, filetype="pdf")
    except Exception as e:  # noqa: BLE001 - PyMuPDF raises several types for damaged files
        raise Reject("corrupt_pdf", str(e)) from None


# -- many items, one TeX run ---------------------------------------------------------------------------
BATCH_HEADER_END = "\\begin{document}"


@dataclass(frozen=True)
class BatchPage:
    """Where one item of a batch landed: page `page` of the PDF `doc` (shared by the batch's items)."""

    doc: Any
    page: int

    def image(self, dpi: float) -> Any:
        """The page rasterised at `dpi`, tightly cropped as TeX set it (one channel)."""
        from generators.pages import rasterise_page

        return rasterise_page(self.doc[self.page], dpi=dpi)[0]


def typeset_batch(tex: TexRenderer, preamble: str, items: list[str], engine: str = "pdflatex",
                  preload: bool = False) -> list[BatchPage | Reject]:
    """Typeset each item as its own tightly cropped page (preview package) in as few TeX runs as possible
    (`preload`: on a format with `preamble` loaded, see `TexRenderer.preamble_format`).

    Every item sits on one source line, so a failing run names its culprit by line number: that item
    becomes a Reject with TeX's message and the rest are compiled again. A failure no line points at
    (a timeout, a runaway argument reported at `\\end{document}`) is found by bisection. One bad item
    never costs the others their samples."""
    results: list[BatchPage | Reject | None] = [None] * len(items)
    for i, item in enumerate(items):
        # An unclosed brace makes TeX read on through every later item and fail only at the end of the
        # file, where no line points at the culprit; catching it here saves a bisection.
        problem = brace_problem(item)
        if problem:
            results[i] = Reject("compile_error", problem)
    todo = [i for i in range(len(items)) if results[i] is None]
    _render_group(tex, preamble, items, todo, engine, results, preload)
    return [r if r is not None else Reject("compile_error", "item lost in batch") for r in results]


def brace_problem(tex: str) -> str | None:
    """Why the braces of `tex` do not balance (escaped braces and `\\` aside), or None."""
    depth = 0
    for i, depth in brace_depths(tex):
        if depth < 0:
            return f"unmatched '}}' at character {i}"
    return f"{depth} unclosed '{{'" if depth else None


_BRACE_OR_ESCAPE = re.compile(r"\\.|[{}]", re.DOTALL)


def brace_depths(tex: str, start: int = 0) -> Iterator[tuple[int, int]]:
    """(position, depth after it) of every brace of `tex` from `start` on, depth counted from `start`;
    a backslash escapes the character after it (`\\{`, `\\}`, `\\\\`). The one brace scanner of the
    TeX code (balance checks here, argument groups in `tex_source`)."""
    depth = 0
    for m in _BRACE_OR_ESCAPE.finditer(tex, start):
        c = m.group()
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        else:
            continue
        yield m.start(), depth


def _batch_source(preamble: str, items: list[str], group: list[int]) -> tuple[str, int]:
    head = preamble.rstrip("\n") + "\n" + BATCH_HEADER_END + "\n"
    first_line = head.count("\n") + 1
    body = "".join("\\begin{preview}" + items[i].replace("\n", " ") + "\\end{preview}\n" for i in group)
    return head + body + "\\end{document}\n", first_line


def _render_group(tex: TexRenderer, preamble: str, items: list[str], group: list[int], engine: str,
                  results: list[BatchPage | Reject | None], preload: bool = False) -> None:
    while group:
        source, first_line = _batch_source(preamble, items, group)
        try:
            out = tex.compile(source, engine, preload)
        except TexError as e:
            pos = (e.error_line - first_line) if e.error_line is not None else -1
            if 0 <= pos < len(group):
                results[group[pos]] = Reject(e.reason, e.detail)
                group = group[:pos] + group[pos + 1:]
                continue
            if len(group) == 1:
                results[group[0]] = Reject(e.reason, e.detail)
                return
            half = len(group) // 2
            _render_group(tex, preamble, items, group[:half], engine, results, preload)
            _render_group(tex, preamble, items, group[half:], engine, results, preload)
            return
        doc = open_pdf(out.pdf)
        if doc.page_count != len(group):  # an item that ends or adds a page would shift every later one
            if len(group) == 1:
                results[group[0]] = Reject("compile_error", f"item made {doc.page_count} pages, expected 1")
                return
            half = len(group) // 2
            _render_group(tex, preamble, items, group[:half], engine, results, preload)
            _render_group(tex, preamble, items, group[half:], engine, results, preload)
            return
        for page, i in enumerate(group):
            results[i] = BatchPage(doc, page)
        return
