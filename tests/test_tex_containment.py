"""Hostile LaTeX is refused by the pre-filter, and stays harmless when the filter is bypassed (the TeX
settings are the real wall): no file outside the work dir is read or written, no command runs, no hang."""
from __future__ import annotations

import os

import pymupdf
import pytest

from generators.base import Reject, Rejected, Sample
from generators.formula import FormulaGenerator
from generators.tex import TexError, TexRenderer, check_untrusted

HOSTILE = [
    r"\input{/etc/passwd}",
    r"\include{/etc/passwd}",
    r"\write18{touch /tmp/pwned}",
    r"\immediate\write18{touch /tmp/pwned}",
    r"\def\x{\x}\x",
    r"\newread\r\openin\r=/etc/passwd",
    r"\openout5=/tmp/evil.txt",
    r"\catcode`\^^5c=12",
    r"\csname input\endcsname{/etc/passwd}",
    r"\inp^^75t{/etc/passwd}",
    r"\usepackage{shellesc}",
    r"\special{dvi: evil}",
    r"\pdffiledump length 10{/etc/passwd}",
    r"\expandafter\x",
    r"x \end x",
    r"\begin{filecontents}{a.tex}x\end{filecontents}",
]


@pytest.mark.parametrize("tex", HOSTILE)
def test_prefilter_rejects_hostile_control_sequences(tex):
    with pytest.raises(Reject) as e:
        check_untrusted(tex)
    assert e.value.reason == "unsafe_tex"


@pytest.mark.parametrize("tex", [r"\frac{a}{b}+\sqrt[3]{x}", r"\text{if } x>0", r"\begin{pmatrix}a&b\\c&d\end{pmatrix}",
                                 r"\textbf{x}\mathbf{y}\end{cases}"])
def test_prefilter_passes_ordinary_math(tex):
    check_untrusted(tex)


def _doc(body: str) -> str:
    return "\\documentclass{article}\n\\begin{document}\n" + body + "\nok\n\\end{document}\n"


@pytest.fixture()
def secret(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("SECRETTOKEN-4711\n")
    return path


class _PreloadingRenderer(TexRenderer):
    """Compiles every document on a format with its preamble preloaded (`TexRenderer.preamble_format`)."""

    preloaded_runs = 0

    def compile(self, source, engine="pdflatex", preload=True):
        try:
            return super().compile(source, engine, preload)
        finally:  # TeX's banner names the format a run started from
            self.preloaded_runs += "preloaded format=vf" in self.read_text("job.log").split("\n", 1)[0]


@pytest.fixture(params=[TexRenderer, _PreloadingRenderer], ids=["plain", "preloaded"])
def tex(request):
    # The same walls hold when runs start from a format with the (trusted) preamble dumped in it.
    with request.param(timeout_s=5) as t:
        yield t
        if request.param is _PreloadingRenderer:
            assert t.preloaded_runs > 0  # the runs above did start from a preloaded format


def _assert_secret_absent(tex: TexRenderer, body: str) -> None:
    try:
        out = tex.compile(_doc(body))
    except TexError as e:
        assert "SECRETTOKEN" not in e.log
        return
    assert "SECRETTOKEN" not in out.log
    text = "".join(page.get_text() for page in pymupdf.open(stream=out.pdf, filetype="pdf"))
    assert "SECRETTOKEN" not in text
    assert b"SECRETTOKEN" not in out.pdf


def test_tex_cannot_read_absolute_path(tex, secret):
    _assert_secret_absent(tex, f"\\input{{{secret}}}")


def test_tex_cannot_read_via_parent_dirs(tex, secret):
    rel = os.path.relpath(secret, tex.workdir)
    assert rel.startswith("..")
    _assert_secret_absent(tex, f"\\input{{{rel}}}")


def test_tex_cannot_openin_or_pdffiledump(tex, secret):
    _assert_secret_absent(tex, f"\\newread\\r\\openin\\r={secret} \\ifeof\\r\\else\\read\\r to\\x \\x\\fi")
    _assert_secret_absent(tex, f"\\pdffiledump length 16{{{secret}}}")


def test_tex_runs_no_shell_command(tex, tmp_path):
    target = tmp_path / "pwned"
    for body in (f"\\immediate\\write18{{touch {target}}}", f"\\write18{{touch {target}}}",
                 f"\\input|\"touch {target}\" "):
        try:
            tex.compile(_doc(body))
        except TexError:
            pass
        assert not target.exists()


def test_tex_cannot_write_outside_workdir(tex, tmp_path):
    target = tmp_path / "evil.txt"
    body = f"\\newwrite\\w\\immediate\\openout\\w={target}\\immediate\\write\\w{{x}}\\immediate\\closeout\\w"
    with pytest.raises(TexError):
        tex.compile(_doc(body))
    assert not target.exists()


def test_runs_cannot_write_into_the_preloaded_formats():
    # A poisoned format would reach every later run of the process; the formats' directory is not the work dir.
    import os

    with TexRenderer(timeout_s=5) as tex:
        fmt = tex.preamble_format(_doc(""), "pdflatex")
        assert fmt is not None
        before = {n: os.path.getmtime(os.path.join(os.path.dirname(fmt), n)) for n in os.listdir(os.path.dirname(fmt))}
        for target in (fmt + ".fmt", os.path.join(os.path.dirname(fmt), "evil.tex")):
            body = f"\\newwrite\\w\\immediate\\openout\\w={target}\\immediate\\write\\w{{x}}\\immediate\\closeout\\w"
            with pytest.raises(TexError):
                tex.compile(_doc(body), preload=True)
        after = {n: os.path.getmtime(os.path.join(os.path.dirname(fmt), n)) for n in os.listdir(os.path.dirname(fmt))}
        assert after == before


def test_infinite_loop_is_killed_as_timeout():
    with TexRenderer(timeout_s=2) as tex:
        with pytest.raises(TexError) as e:
            tex.compile(_doc(r"\def\x{\x}\x"))
        assert e.value.reason == "timeout"
        # the renderer is still usable afterwards
        assert tex.compile(_doc("fine")).pdf.startswith(b"%PDF")


def test_hostile_formula_corpus_rejects_only_the_hostile_lines(tmp_path):
    lines = [r"\frac{a}{b}", r"\input{/etc/passwd}", r"x^{2}+y^{2}", r"\immediate\write18{touch /tmp/pwned}", r"\alpha"]
    src = tmp_path / "formulas.txt"
    src.write_text("\n".join(lines) + "\n")
    with FormulaGenerator(source=str(src), order="sequential", backend="faithful") as gen:
        out = list(gen.items(0, 0, len(lines)))
    assert [isinstance(o, Sample) for o in out] == [True, False, True, False, True]
    assert {o.reason for o in out if isinstance(o, Rejected)} == {"unsafe_tex"}
    assert [o.source for o in out if isinstance(o, Rejected)] == [f"{src}:2", f"{src}:4"]


def test_batch_timeout_is_bisected_down_to_the_culprit():
    # No formula the pre-filter passes keeps TeX busy for long (TeX typesets even 50k-character formulas in
    # well under a second), so the culprit bypasses the filter, as hostile input that slipped past it would.
    from generators.formula import FORMULA_PREAMBLE
    from generators.tex import BatchPage, typeset_batch

    items = ["$a+b$", "$\\frac{1}{x}$", r"\def\x{\x}\x", "$e^{i\\pi}$"]
    with TexRenderer(timeout_s=2) as tex:
        out = typeset_batch(tex, FORMULA_PREAMBLE, items)
        runs = tex.runs
    assert isinstance(out[2], Reject) and out[2].reason == "timeout"
    good = [o for i, o in enumerate(out) if i != 2]
    assert all(isinstance(o, BatchPage) for o in good), out
    # each survivor is its own formula, not a neighbour's page
    texts = ["".join(o.doc[o.page].get_text().split()) for o in good]
    assert texts[0] == "a+b" and "x" in texts[1] and "i" in texts[2] and texts[1] != texts[2]
    assert runs == 5  # the batch, its two halves, then the culprit's half split in two


def test_a_preamble_that_cannot_be_preloaded_compiles_as_usual():
    broken = "\\documentclass{article}\n\\usepackage{no-such-package-4711}\n\\begin{document}\nx\n\\end{document}\n"
    with TexRenderer(timeout_s=5) as tex:
        assert tex.preamble_format(broken, "pdflatex") is None  # the build failed; tried once
        with pytest.raises(TexError) as e:
            tex.compile(broken, preload=True)
        assert e.value.reason == "compile_error" and "no-such-package-4711" in e.value.log
        assert tex.compile(_doc("fine"), preload=True).pdf.startswith(b"%PDF")


def test_hostile_latex_sources_give_pages_without_anything_from_outside(tmp_path, secret):
    # A source archive is read in memory: members are keys, never paths. `\input` reaches only files of the
    # archive; every hostile command left in a block (also through a macro) drops that block.
    from generators.latex_page import LatexPageGenerator
    from tests.gen_support import tex_archive

    pwned = tmp_path / "pwned"
    body = "\n\n".join([
        r"\section{Safe heading}", "An ordinary paragraph that stays.",
        f"\\input{{{secret}}}", f"\\include{{../../..{secret}}}", r"\input{../evil}",
        f"\\immediate\\write18{{touch {pwned}}} Shell paragraph.",
        f"\\def\\leak{{\\input{{{secret}}}}} Macro paragraph \\leak.",
        f"\\newread\\r\\openin\\r={secret} Openin paragraph.",
        f"\\catcode`\\^^5c=12 Catcode paragraph.", f"\\section{{Heading \\immediate\\write18{{touch {pwned}}}}}",
        f"\\[ x \\immediate\\openout5={tmp_path / 'evil.txt'} \\]", "Closing paragraph that stays too.",
    ])
    doc = "\\documentclass{article}\n\\begin{document}\n" + body + "\n\\end{document}\n"
    src = tmp_path / "hostile.tar.gz"
    src.write_bytes(tex_archive({"main.tex": doc, "../evil.tex": "\\write18{touch " + str(pwned) + "}"}))
    with LatexPageGenerator(lang="en", source=[str(src)], templates=["article_cm"]) as gen:
        pages = list(gen.items(0, 0, 1))
    assert [type(p) for p in pages] == [Sample]
    text = pages[0].text
    assert "SECRETTOKEN" not in text and not pwned.exists()
    assert "An ordinary paragraph that stays." in text and "Closing paragraph that stays too." in text
    for gone in ("Shell paragraph", "Openin paragraph", "Catcode paragraph"):
        assert gone not in text
    assert "Macro paragraph ." in text  # the \input in the macro's body read nothing: the macro is empty
    dropped = pages[0].meta["sampled"]["dropped"]
    # three inputs name no member (the macro's among them); four paragraphs keep a command that is not
    # typesetting (write18, newread/openin, catcode, and the archive's own ../evil.tex, which is only a name);
    # a heading and a display with a blocked command fail the allowlist every block passes
    assert dropped == {"missing_input": 3, "unknown_command": 4, "unsafe_tex": 2}
    assert not (tmp_path / "evil.txt").exists()
