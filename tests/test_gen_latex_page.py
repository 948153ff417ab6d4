from __future__ import annotations

import io
import re
import unicodedata

import pymupdf
import pytest
from PIL import Image

from generators.base import Rejected, Sample
from generators.latex_page import LatexPageGenerator, group_source, load_templates
from generators.tex import TexRenderer

MATH = re.compile(r"\\\(.*?\\\)|\\\[.*?\\\]|\\begin\{tabular\}.*?\\end\{tabular\}", re.DOTALL)


T1_LIGATURES = str.maketrans({"\x1b": "ff", "\x1c": "fi", "\x1d": "fl", "\x1e": "ffi", "\x1f": "ffl"})


OT1_ACCENTS = str.maketrans({"\u02dc": "~", "\u02c6": "^"})


def _pdf_text(pdf: bytes) -> tuple[int, str]:
    doc = pymupdf.open(stream=pdf, filetype="pdf")
    # Ligatures extract as one character: NFKC folds Unicode ones ("ﬂ"), T1 fonts without a ToUnicode
    # map (PSNFSS Charter) give their encoding slots 0x1b-0x1f.
    text = unicodedata.normalize("NFKC", doc[0].get_text()).translate(T1_LIGATURES)
    return doc.page_count, text.replace("-\n", "")


def _prose(target: str) -> str:
    return MATH.sub(" ", target)


def test_at_least_ten_templates():
    assert len(load_templates()) >= 10


@pytest.mark.parametrize("name", sorted(load_templates()))
def test_every_template_compiles_one_page_whose_text_is_the_target(name):
    with LatexPageGenerator(lang="en", templates=[name]) as gen:
        page, _ = gen.compile_page(1, 0)
    count, text = _pdf_text(page.pdf)
    assert count == 1
    # case-insensitive: small-caps headings extract as capitals
    words = set(re.findall(r"[a-z]{4,}", text.lower()))
    target_words = re.findall(r"[a-z]{4,}", _prose(page.target).lower())
    assert target_words and all(w in words for w in target_words), set(target_words) - words
    assert page.sampled["template"] == name


def test_chinese_pages_show_every_target_character():
    with LatexPageGenerator(lang="zh") as gen:
        for index in range(2):
            page, _ = gen.compile_page(4, index)
            count, text = _pdf_text(page.pdf)
            assert count == 1 and page.engine == "xelatex"
            cjk = {ch for ch in _prose(page.target) if "\u4e00" <= ch <= "\u9fff"}
            assert len(cjk) > 20 and cjk <= set(text), cjk - set(text)


def test_overlong_content_is_trimmed_to_one_page():
    with LatexPageGenerator(lang="en", budget_chars=(9000, 9000), templates=["palatino_smallcaps"]) as gen:
        page, _ = gen.compile_page(0, 1)
    count, text = _pdf_text(page.pdf)
    assert count == 1 and page.sampled["trimmed_blocks"] > 0
    last_words = re.findall(r"[A-Za-z]{4,}", _prose(page.target.split("\n\n")[-1]))
    assert all(w in text for w in last_words)
    # the trim is exact: the page keeps every block that fits, so one block more runs onto a second page
    # (index 1: that block is a paragraph; a heading would fit as the last line of a page that ends there)
    draft = gen._draft(0, 1)
    assert draft.blocks[len(page.sampled["blocks"])].kind == "paragraph"
    kept = len(page.sampled["blocks"])
    with TexRenderer() as tex:
        longer = tex.compile(group_source(gen._templates[draft.template], "en", [draft.blocks[: kept + 1]]))
    assert pymupdf.open(stream=longer.pdf, filetype="pdf").page_count > 1


def test_special_characters_are_escaped(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text('Costs rose 50% & fell; see file_name #3 {braces} ~tilde ^caret back\\slash "quote" $5 a<b>c|d.\n' * 3)
    with LatexPageGenerator(lang="en", corpus=str(corpus), templates=["article_cm", "times_twocol"]) as gen:
        for index in range(3):
            page, _ = gen.compile_page(0, index)
            # OT1 (article_cm) has no glyphs for ~ ^ _: it draws the first two as accents and _ as a rule,
            # which the PDF's text layer shows as U+02DC, U+02C6 and nothing.
            ot1 = page.sampled["template"] == "article_cm"
            text = unicodedata.normalize("NFKC", pymupdf.open(stream=page.pdf, filetype="pdf")[0].get_text()
                                         .translate(OT1_ACCENTS if ot1 else {}))
            for token in ("50%", "&", "file_name", "#3", "{braces}", "~tilde", "^caret", "back\\slash", '"quote"', "$5", "a<b>c|d."):
                if token in page.target:
                    assert (token.replace("_", " ") if ot1 else token) in text, token


def test_render_is_1024_square_mathpix_markdown_and_deterministic():
    with LatexPageGenerator(lang="mixed", degradations={"p": 0.5}) as a:
        first = [a.render(2, i)[0] for i in range(2)]
    with LatexPageGenerator(lang="mixed", degradations={"p": 0.5}) as b:
        second = [b.render(2, i)[0] for i in range(2)]
    assert [s.image for s in first] == [s.image for s in second]
    for s in first:
        assert Image.open(io.BytesIO(s.image)).size == (1024, 1024)
        assert s.text.startswith("#") and s.prompt == "Convert the image to markdown/latex format."
        assert s.lang == s.meta["sampled"]["lang"] in ("en", "zh")
    # Mathpix-style math delimiters, never dollar signs
    assert any("\\(" in s.text or "\\[" in s.text for s in first)
    assert not any(re.search(r"(?<!\\)\$", s.text) for s in first)


@pytest.mark.parametrize("lang, templates", [("en", ["multicol_times", "dense_twocol", "letter_sectsty"]),
                                             ("zh", ["koma_twocol"])])
def test_pages_batched_in_one_tex_run_are_byte_identical_to_pages_rendered_alone(lang, templates):
    n = 6 if lang == "en" else 2
    with LatexPageGenerator(lang=lang, templates=templates, budget_chars=(1500, 4500) if lang == "en" else None,
                            batch=n) as gen:
        batch = list(gen.items(5, 0, n))
        runs = gen._tex.runs
        alone = [gen.render(5, i)[0] for i in range(n)]
    assert all(isinstance(s, Sample) for s in batch), batch
    assert runs < n  # pages sharing a template shared a TeX run
    if lang == "en":  # the batch mixed pages that fitted at once with pages trimmed in a second round
        assert {s.meta["sampled"]["compiles"] for s in batch} == {1, 2}
    for b, a in zip(batch, alone):
        assert (b.image, b.text, b.meta) == (a.image, a.text, a.meta)


# -- real LaTeX sources: parsed into blocks, re-typeset through the templates ----------------------------------

def _sources(tmp_path, long: bool = False):
    import hashlib

    from tests.gen_support import PAPER_EN, PAPER_ZH, tex_archive

    d = tmp_path / "sources"
    d.mkdir()
    en = PAPER_EN
    if long:  # the sections again and again: a paper of several pages
        body = en.split("\\section{Introduction}", 1)[1].split("\\bibliographystyle", 1)[0]
        en = en.replace(body, body * 6)
    (d / "a_paper.tar.gz").write_bytes(tex_archive({"paper/main.tex": en, "paper/README": "not tex"}))
    (d / "b_zh.tex").write_text(PAPER_ZH, encoding="utf-8")
    (d / "c_notes.tex").write_text("Just some notes, no document.\n")
    return d, {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir()}


def test_real_sources_become_pages_whose_target_is_their_text(tmp_path):
    d, sha = _sources(tmp_path)
    # lang stays at its default "en": a Chinese source is still set as Chinese (xelatex + xeCJK)
    with LatexPageGenerator(source=str(d), templates=["article_cm", "koma_twocol"]) as gen:
        items = list(gen.items(0, 0, 3))
        paper = gen._paper(0, 0)
        tex_words = None
        en = items[0]
        start, stop = en.meta["sampled"]["block_range"]
        with TexRenderer() as tex:
            pdf = tex.compile(group_source(gen._templates[paper.template], "en", [paper.blocks[start:stop]],
                                           paper.preamble)).pdf
        _, tex_words = _pdf_text(pdf)
    assert [type(i) for i in items] == [Sample, Sample, Rejected]
    en, zh, bad = items
    assert en.id == "latex_page-s0-000000000-p0000" and en.lang == "en"
    m = en.meta["sampled"]
    # lineage to the source paper: file, sha256, main file, the block range the page holds
    assert (m["file"], m["sha256"], m["main"]) == (str(d / "a_paper.tar.gz"), sha["a_paper.tar.gz"], "paper/main.tex")
    assert m["block_range"][0] == 0 and m["dropped"] == {"figure": 1, "missing_input": 1}
    text = en.text
    for part in ("# Sparse Tiling for Document Encoders", "## Introduction", "## Method", "### Results",
                 "[vary2023, nougat]", "as shown in Section 2", "\\(x\\in\\mathbb{R}^n\\)",  # macros expanded
                 "\\begin{aligned}\\mathcal{L}&=", "\\operatorname{Tr}(\\Sigma)", "Equation (1) is minimised",
                 "\\begin{tabular}{lcc}\n\\toprule", "- Fewer tokens per page."):
        assert part in text, part
    for gone in ("missing.pdf", "includegraphics", "a comment", "\\label", "\\cite", "\\norm", "bibliography"):
        assert gone not in text, gone
    # what TeX drew is the target's prose
    words = set(re.findall(r"[a-z]{4,}", tex_words.lower()))
    assert all(w in words for w in re.findall(r"[a-z]{4,}", _prose(text).lower()) if w != "textsc"), \
        set(re.findall(r"[a-z]{4,}", _prose(text).lower())) - words
    assert zh.lang == "zh" and zh.meta["sampled"]["engine"] == "xelatex"
    assert "## 引言" in zh.text and "\\(\\int_0^1x^2\\mathrm{d}x=\\frac{1}{3}\\)" in zh.text and "[vary]" in zh.text
    assert (bad.reason, bad.source) == ("bad_source", str(d / "c_notes.tex")) and "c_notes.tex" in bad.detail


def test_a_long_source_is_cut_into_consecutive_pages(tmp_path):
    d, _ = _sources(tmp_path, long=True)
    with LatexPageGenerator(lang="en", source=[str(d / "a_paper.tar.gz")], templates=["article_cm"],
                            max_pages=4) as gen:
        pages = list(gen.items(1, 0, 1))
        alone = gen.render(1, 0)
    assert all(isinstance(p, Sample) for p in pages) and len(pages) == 4  # stopped at max_pages
    ranges = [p.meta["sampled"]["block_range"] for p in pages]
    assert ranges[0][0] == 0 and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:])), ranges
    assert [p.id for p in pages] == [f"latex_page-s1-000000000-p{k:04d}" for k in range(4)]
    assert [(p.image, p.text) for p in pages] == [(p.image, p.text) for p in alone]


def test_a_paper_folder_is_one_source_with_its_inputs(tmp_path):
    import hashlib

    from generators.sources import list_sources

    papers = tmp_path / "papers"
    paper = papers / "d_folder"
    (paper / "sections").mkdir(parents=True)
    (paper / "main.tex").write_text("\\documentclass{article}\n\\begin{document}\n\\section{Overview}\n"
                                    "\\input{sections/intro}\n\\end{document}\n")
    (paper / "sections" / "intro.tex").write_text("The introduction lives in a file of its own.\n")
    (paper / "figure.pdf").write_bytes(b"%PDF-1.4 not a real figure")
    (papers / "notes.txt").write_text("not a source")
    # A folder of inputs lists the paper folder as one input; the paper folder itself is one input.
    assert list_sources(str(papers)) == [str(paper), str(papers / "notes.txt")]
    assert list_sources(str(paper)) == [str(paper)]
    with LatexPageGenerator(source=str(paper), templates=["article_cm"]) as gen:
        [page] = gen.render(0, 0)
    assert page.text == "## Overview\n\nThe introduction lives in a file of its own."
    sha = hashlib.sha256()
    for rel in ("main.tex", "sections/intro.tex"):
        sha.update(rel.encode() + b"\0" + (paper / rel).read_bytes() + b"\0")
    assert (page.meta["sampled"]["main"], page.meta["sampled"]["sha256"]) == ("main.tex", sha.hexdigest())


def test_sources_under_an_s3_prefix_come_through_the_input_files():
    from tests.gen_support import PAPER_ZH, tex_archive
    from tests.input_files import BlobFiles

    blobs = {"s3://bkt/papers/zh.tar.gz": tex_archive({"main.tex": PAPER_ZH}), "s3://bkt/papers/readme.md": b"# no"}
    with LatexPageGenerator(source="s3://bkt/papers/", files=BlobFiles(blobs), templates=["koma_twocol"]) as gen:
        items = list(gen.items(0, 0, 2))
    assert [type(i) for i in items] == [Rejected, Sample]
    assert items[0].reason == "bad_source" and "readme.md" in items[0].detail
    assert items[1].lang == "zh" and items[1].meta["sampled"]["file"] == "s3://bkt/papers/zh.tar.gz"
    assert items[1].text.startswith("## 引言")


def test_a_paper_folder_on_s3_renders_the_samples_it_renders_on_a_disk(tmp_path, s3_bucket):
    """A paper folder is read through the input files (`walk`, `open`): under an S3 prefix it is one input, alone or
    inside a folder of inputs, and gives the pages, the lineage hash and the input digest's changes a disk gives."""
    from generators.render_unit import build_generator, input_digest, render_rows
    from generators.sources import list_sources
    from storage import Location, StorageFiles
    from tests.gen_support import PAPER_EN, tex_archive

    files = {"p_one/main.tex": "\\documentclass{article}\n\\begin{document}\n\\section{Overview}\n\\input{sections/intro}\n"
                               "See \\cite{vary}.\n\\begin{figure}\\includegraphics{fig.png}\\end{figure}\n"
                               "\\bibliography{refs}\n\\end{document}\n",
             "p_one/sections/intro.tex": "The introduction lives in a file of its own, with $x^2+1$.\n",
             "p_one/refs.bib": "@article{vary, title={Vary}}\n", "p_one/fig.png": "\x89PNG not a real figure",
             "p_one/.notes.tex": "% a hidden part, read as any other\n",
             "notes.txt": "not a source"}
    local, remote = str(tmp_path / "papers"), f"s3://{s3_bucket}/papers"
    blobs = {rel: text.encode() for rel, text in files.items()} | {"arxiv.tar.gz": tex_archive({"main.tex": PAPER_EN})}
    for rel, data in blobs.items():
        for base in (local, remote):
            (Location.parse(base) / rel).write_bytes(data)

    def render(source: str, count: int) -> list[tuple]:
        params = {"source": source, "templates": ["article_cm"], "max_pages": 1}
        with build_generator("latex_page", params, StorageFiles()) as gen:
            out = render_rows(gen, 0, 0, count)
        assert not out.rejects or out.rejects == {"bad_source": 1}  # notes.txt
        named = (lambda meta: meta.replace(f'"{source}"', '"SOURCE"').replace(source.rstrip("/"), "SOURCE"))
        return [(r["id"], r["image"], r["text"], named(r["meta"])) for r in out.rows]

    # The folder of inputs: the paper subfolder is one input among the files, on either store.
    assert [n.removeprefix(local) for n in list_sources(local, StorageFiles())] == \
        [n.removeprefix(remote) for n in list_sources(remote + "/", StorageFiles())] == \
        ["/arxiv.tar.gz", "/notes.txt", "/p_one"]
    on_disk, on_s3 = render(local, 3), render(remote + "/", 3)
    assert len(on_disk) == 2 and on_disk == on_s3
    # The paper folder itself is one input, with the lineage hash of its .tex files on either store.
    on_disk, on_s3 = render(f"{local}/p_one", 1), render(f"{remote}/p_one/", 1)
    assert on_disk == on_s3 and '"main": "main.tex"' in on_s3[0][3]
    # A part of the paper changed on S3 is a new input digest (the folder's stat covers every file below it).
    digest = input_digest("latex_page", {"source": f"{remote}/p_one"}, StorageFiles())
    (Location.parse(remote) / "p_one/sections/intro.tex").write_bytes(b"Another introduction.\n")
    assert input_digest("latex_page", {"source": f"{remote}/p_one"}, StorageFiles()) != digest
    assert input_digest("latex_page", {"source": remote}, StorageFiles())["source"]["files"] == 3
