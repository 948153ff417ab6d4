from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generators.base import GeneratorError, Reject, Rejected, Sample, sample_rng
from generators.formula import FormulaGenerator, normalize_latex, random_formula, structure_problem, to_mathml

FEATURES = (r"\frac", r"\sqrt", r"\sum", r"\int", r"\lim", r"\begin{cases}", "matrix}", r"\alpha", "^{", "_{")


@pytest.mark.parametrize("raw, norm", [
    (r"\frac { a } {b}  +  \alpha  x", r"\frac{a}{b}+\alpha x"),
    (r"$$ x ^ { 2 } $$", r"x^{2}"),
    (r"\[ \sum _ { i = 1 } ^ n i \]", r"\sum_{i=1}^ni"),  # same TeX: ^ takes one token
    ("a + b % a comment\n + c", "a+b+c"),
    (r"\text{ if   x }  >  0", r"\text{ if x }>0"),
    (r"50 \% \cdot 2", r"50\%\cdot2"),
])
def test_normalize_latex(raw, norm):
    assert normalize_latex(raw) == norm
    assert normalize_latex(norm) == norm  # idempotent


def test_procedural_formulas_cover_the_grammar_and_are_normalised():
    formulas = [random_formula(sample_rng(3, i, kind="formula")) for i in range(300)]
    assert all(normalize_latex(f) == f for f in formulas)
    for feature in FEATURES:
        assert any(feature in f for f in formulas), feature
    assert len(set(formulas)) > 280
    assert [f for f in formulas if structure_problem(f)] == []  # the checks both backends apply pass them all


def _check(sample: Sample) -> np.ndarray:
    img = Image.open(io.BytesIO(sample.image))
    assert img.size == (sample.width, sample.height)
    arr = np.asarray(img.convert("L"))
    assert (arr < 128).mean() > 0.005  # ink
    assert sample.kind == "formula" and sample.prompt and sample.text == normalize_latex(sample.text)
    return arr


@pytest.mark.parametrize("backend", ["faithful", "fast"])
def test_backends_render_procedural_formulas(backend):
    with FormulaGenerator(backend=backend) as gen:
        out = list(gen.items(7, 0, 4))
    assert all(isinstance(o, Sample) for o in out), out
    for s in out:
        _check(s)
        assert s.meta["sampled"]["backend"] == backend and s.meta["seed"] == 7
    # the target is drawn before the backend's own parameters: both backends agree on it
    assert [s.text for s in out] == [random_formula(sample_rng(7, i, kind="formula")) for i in range(4)]


def test_faithful_batch_rejects_only_the_bad_formula(tmp_path):
    lines = [r"a+b", r"\frac{1}{x}", r"\undefinedcommand{x}", r"\sqrt{y}", r"\phantom{x}", r"e^{i\pi}",
             r"\frac{a}{", r"\sum_{k=1}^{n}k"]
    src = tmp_path / "f.txt"
    src.write_text("\n".join(lines))
    with FormulaGenerator(source=str(src), order="sequential", backend="faithful", batch=16) as gen:
        out = list(gen.items(0, 0, len(lines)))
        runs = gen._tex.runs
    reasons = [o.reason if isinstance(o, Rejected) else None for o in out]
    assert reasons == [None, None, "compile_error", None, "blank", None, "malformed_formula", None]
    assert "Undefined control sequence" in out[2].detail
    assert [o.text for o in out if isinstance(o, Sample)] == [r"a+b", r"\frac{1}{x}", r"\sqrt{y}", r"e^{i\pi}", r"\sum_{k=1}^{n}k"]
    assert runs <= 2  # one batch run, one re-run without the formula TeX stopped at


def test_fast_backend_rejects_what_latex2mathml_cannot_convert(tmp_path):
    with pytest.raises(Reject) as e:
        to_mathml(r"\frac{a}{")
    assert e.value.reason == "mathml_error"
    with pytest.raises(Reject) as e:
        to_mathml(r"\nosuchmacro{x}")
    assert e.value.reason == "mathml_error"
    src = tmp_path / "f.txt"
    src.write_text("x^{2}\n\\nosuchmacro{x}\n")
    with FormulaGenerator(source=str(src), order="sequential", backend="fast") as gen:
        out = list(gen.items(0, 0, 2))
    assert isinstance(out[0], Sample) and isinstance(out[1], Rejected) and out[1].reason == "mathml_error"


def test_formula_file_comes_through_the_input_files_and_close_releases_tex(tmp_path):
    from tests.input_files import BlobFiles

    name = "s3://bkt/formulas.txt"
    with pytest.raises(GeneratorError, match="formula file not found: s3://bkt/formulas.txt"):
        FormulaGenerator(source=name)  # built on its own, a generator reads this machine's files
    with pytest.raises(GeneratorError, match="formula file not found"):
        FormulaGenerator(source=str(tmp_path / "missing.txt"))

    def broken(_: str) -> bytes:
        raise ConnectionError("socket closed")

    with pytest.raises(GeneratorError, match=f"cannot read formula file {name}: socket closed"):
        FormulaGenerator(source=name, files=BlobFiles({}, read=broken))
    blobs = {name: b"x^{2}\n\n\\sqrt{y}\n"}
    gen = FormulaGenerator(source=name, files=BlobFiles(blobs), order="sequential", backend="faithful")
    first = list(gen.items(0, 0, 2))
    assert [(s.text, s.meta["sampled"]["line"]) for s in first] == [("x^{2}", 1), (r"\sqrt{y}", 3)]
    workdir = gen._tex._dir
    gen.close()
    assert gen._tex is None and not Path(workdir).exists()
    # a closed generator reopens its renderer on the next sample and draws the same bytes
    assert gen.render(0, 0)[0].image == first[0].image
    gen.close()


@pytest.mark.parametrize("backend", ["faithful", "fast"])
def test_same_seed_same_bytes(backend):
    with FormulaGenerator(backend=backend, size=256, degradations={"p": 0.7}) as a:
        first = [s.image for s in a.items(11, 5, 8)]
    with FormulaGenerator(backend=backend, size=256, degradations={"p": 0.7}) as b:
        second = [s.image for s in b.items(11, 5, 8)]
        other = [s.image for s in b.items(12, 5, 8)]
    assert first == second
    assert first != other
    assert Image.open(io.BytesIO(first[0])).size == (256, 256)


@pytest.mark.parametrize("backend", ["faithful", "fast"])
def test_render_matches_items(backend):
    # items() renders a whole range in one TeX run / one browser screenshot; render() renders one index alone
    with FormulaGenerator(backend=backend, degradations={"p": 0.5}) as gen:
        (one,) = gen.render(2, 9)
        batch = list(gen.items(2, 0, 20))
    assert batch[9].image == one.image and batch[9].text == one.text and batch[9].meta == one.meta


def test_fast_batch_draws_each_formula_at_its_own_size():
    with FormulaGenerator(backend="fast") as gen:
        batch = list(gen.items(4, 0, 12))
        sizes = [s.meta["sampled"]["font_px"] for s in batch]
        assert len(set(sizes)) > 4
        for s in batch:  # the very pixels of a lone render at the sampled size
            lone = gen._browser.render_mathml(to_mathml(s.text), font_px=s.meta["sampled"]["font_px"])
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(s.image))),
                                  np.asarray(Image.open(io.BytesIO(lone)).convert("L")))


def test_fast_batch_rejects_only_the_bad_formulas(tmp_path):
    lines = [r"a+b", r"\frac{a}{", r"\sqrt{y}", r"\nosuchmacro{x}", r"\input{/etc/passwd}", r"\phantom{x}",
             r"e^{i\pi}"]
    src = tmp_path / "f.txt"
    src.write_text("\n".join(lines))
    with FormulaGenerator(source=str(src), order="sequential", backend="fast", batch=16) as gen:
        out = list(gen.items(0, 0, len(lines)))
        lone = [gen.render(0, i)[0].image for i in (0, 2, 6)]
    reasons = [o.reason if isinstance(o, Rejected) else None for o in out]
    # refused before drawing (malformed, no MathML, untrusted TeX) or after (nothing visible), each alone
    assert reasons == [None, "malformed_formula", None, "mathml_error", "unsafe_tex", "blank", None]
    assert [o.text for o in out if isinstance(o, Sample)] == [r"a+b", r"\sqrt{y}", r"e^{i\pi}"]
    assert [o.image for o in out if isinstance(o, Sample)] == lone


def test_fast_backend_rejects_glyphs_no_font_draws_before_rendering(tmp_path):
    # Chinese in \text falls back to WenQuanYi; a character no installed font of the fast path draws
    # (U+1F9A0, Tangut U+17000) would be tofu, so it is a font_coverage reject naming the code point.
    lines = ["\\text{速度}=\\frac{d}{t}", "\\text{\U0001F9A0}+1", "x+\\text{\U00017000}", "a^{2}"]
    src = tmp_path / "f.txt"
    src.write_text("\n".join(lines), encoding="utf-8")
    with FormulaGenerator(source=str(src), order="sequential", backend="fast", batch=16) as gen:
        out = list(gen.items(0, 0, len(lines)))
    assert [o.reason if isinstance(o, Rejected) else None for o in out] == [None, "font_coverage", "font_coverage", None]
    assert "U+1F9A0" in out[1].detail and "U+17000" in out[2].detail
    assert out[0].text == "\\text{速度}=\\frac{d}{t}"


MALFORMED = [r"\frac{a}{b", r"}}}}", r"{a", r"x^", r"a_{}_", r"\frac{a}", r"x^2^3", r"x_1_2", r"\left(a", r"a\right)",
             r"\begin{pmatrix}a", r"\begin{matrix}a\end{pmatrix}", r"a&b", r"\sqrt", r"\sqrt[3", r"a#b", "x\\",
             r"\frac{\left(a}{b\right)}", r"{a&b}", r"\end{cases}", r"\begin{}x\end{}", "{" * 2000 + "}" * 2000]
WELL_FORMED = [r"\frac12", r"\frac{a}{b}", r"x^{2}_{i}", r"x_i^2", r"\left(\frac{a}{b}\right)^{2}", r"\left.x\right|",
               r"\begin{pmatrix}a&b\\c&d\end{pmatrix}", r"\sqrt[3]{x}", r"\text{if } x>0", r"a\&b\#c\{d\}",
               r"f(x)=\begin{cases}1&x>0\\0&\text{otherwise}\end{cases}", r"\mathbf{v}\cdot\hat{n}", r"e^{i\pi}+1=0"]


@pytest.mark.parametrize("latex", MALFORMED)
def test_malformed_formulas_are_found(latex):
    assert structure_problem(latex)


@pytest.mark.parametrize("latex", WELL_FORMED)
def test_well_formed_formulas_pass(latex):
    assert structure_problem(latex) is None


@pytest.mark.parametrize("backend", ["fast", "faithful"])
def test_both_backends_reject_malformed_formulas_alike(tmp_path, backend):
    # latex2mathml drew "\frac{a}{b" as a fraction and "}}}}" as nothing; the targets were the broken strings.
    lines = [r"\frac{a}{b", r"}}}}", r"a+b", r"x^2^3", r"\left(a", r"\frac{a}{b}"]
    src = tmp_path / "f.txt"
    src.write_text("\n".join(lines))
    with FormulaGenerator(source=str(src), order="sequential", backend=backend, batch=16) as gen:
        out = list(gen.items(0, 0, len(lines)))
    assert [o.reason if isinstance(o, Rejected) else None for o in out] == ["malformed_formula"] * 2 + [None] + \
        ["malformed_formula"] * 2 + [None]
    assert out[0].source == f"{src}:1" and "unclosed" in out[0].detail
    assert [o.text for o in out if isinstance(o, Sample)] == [r"a+b", r"\frac{a}{b}"]


def test_formulas_from_tex_sources_inline_and_display_with_duplicates_dropped(tmp_path):
    from tests.gen_support import PAPER_EN, tex_archive

    d = tmp_path / "sources"
    d.mkdir()
    (d / "a.tar.gz").write_bytes(tex_archive({"p/main.tex": PAPER_EN}))
    (d / "b.tex").write_text("\\documentclass{article}\n\\begin{document}\nAgain $k = 4$, then\n"
                             "\\[ f(x) = \\sum_{i=1}^{n} w_i x_i + b \\]\nand \\( a ^ 2 \\).\n\\end{document}\n")
    with FormulaGenerator(source=str(d), order="sequential", backend="fast", batch=16) as gen:
        out = list(gen.items(0, 0, 9))
    reasons = [o.reason if isinstance(o, Rejected) else None for o in out]
    assert reasons == [None] * 6 + ["duplicate", "duplicate", None]
    assert [o.text for o in out if isinstance(o, Sample)] == [
        r"16\times16", r"\left\lVert x-\hat{x}\right\rVert\le\varepsilon", r"x\in\mathbb{R}^n",  # inline, macros expanded
        r"\begin{aligned}\mathcal{L}&=\mathcal{L}_{\text{rec}}+\lambda\mathcal{L}_{\text{kl}}\\"
        r"\mathcal{L}_{\text{kl}}&=\operatorname{Tr}(\Sigma)-\log\det\Sigma\end{aligned}",  # align, labels gone
        r"f(x)=\sum_{i=1}^{n}w_ix_i+b", "k=4", "a^2"]
    assert out[0].meta["sampled"] == {**out[0].meta["sampled"], "origin": "tex", "where": f"{d / 'a.tar.gz'}:p/main.tex:14"}
    assert out[6].source == f"{d / 'b.tex'}:3" and out[6].detail == f"same formula as {d / 'a.tar.gz'}:p/main.tex:56"
    (tmp_path / "notes.tex").write_text("notes without a document")
    with pytest.raises(GeneratorError, match="notes.tex: no file with .documentclass"):
        FormulaGenerator(source=str(tmp_path / "notes.tex"))


def test_formulas_of_a_paper_folder_with_its_parts_alike_on_a_disk_and_on_s3(tmp_path, s3_bucket):
    """A paper's own folder as `source`: one source, its `\\input` parts inlined, read through the input files, so
    the same formulas (and where they are) come from a folder on a disk and from an S3 prefix."""
    from storage import Location, StorageFiles

    files = {"main.tex": "\\documentclass{article}\n\\begin{document}\nFirst $a^2 + b^2 = c^2$.\n\\input{parts/two}\n"
                         "\\end{document}\n",
             "parts/two.tex": "Then \\[ \\int_0^1 x \\, dx = \\frac{1}{2} \\]\n", "fig.png": "not a figure"}
    local, remote = str(tmp_path / "paper"), f"s3://{s3_bucket}/paper"
    for rel, text in files.items():
        for base in (local, remote):
            (Location.parse(base) / rel).write_bytes(text.encode())

    def formulas(source: str) -> list[tuple[str, str]]:
        with FormulaGenerator(source=source, files=StorageFiles(), order="sequential", backend="fast") as gen:
            out = list(gen.items(0, 0, 2))
        assert all(isinstance(o, Sample) for o in out)
        return [(o.text, o.meta["sampled"]["where"].removeprefix(source.rstrip("/"))) for o in out]

    assert formulas(local) == formulas(remote + "/") == [("a^2+b^2=c^2", "/main.tex:3"),
                                                          (r"\int_0^1x\,dx=\frac{1}{2}", "/main.tex:4")]
