"""Shared generator helpers: corpora, font coverage, degradations, reading order."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from generators.base import GeneratorError, Reject
from generators.corpus import DATA_DIR, Corpus, pick_lang
from generators.degrade import DEGRADATIONS, degrade
from generators.fonts import font_path, missing_glyphs, require_coverage
from generators.pages import order_blocks


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_builtin_corpus_is_substantial_and_draws_deterministically(lang):
    raw = (DATA_DIR / f"corpus_{lang}.txt").read_bytes()
    assert len(raw) >= 30_000, "the shipped corpus should be large enough to vary pages"
    c = Corpus.load(None, lang)
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    draw = lambda r: (c.sentence(r), c.sentences(r, 3), c.paragraph(r, 80, 300), c.words(r, 5), c.title(r, 4))
    assert draw(a) == draw(b)
    rng = np.random.default_rng(1)
    for _ in range(50):
        p = c.paragraph(rng, 80, 300)
        assert 0 < len(p) <= 300
        t = c.title(rng, max_words=4)
        assert t and (len(t.split()) <= 4 if lang == "en" else len(t) <= 8)
    assert len(c.words(rng, 7)) == 7


def test_builtin_chinese_corpus_is_fully_drawable_by_wqy_and_english_by_every_en_font():
    zh = (DATA_DIR / "corpus_zh.txt").read_text("utf-8")
    assert missing_glyphs(zh, "WenQuanYi Micro Hei") == set()
    en = (DATA_DIR / "corpus_en.txt").read_text("utf-8")
    for font in ("DejaVu Sans", "DejaVu Serif", "Helvetica", "Times-Roman", "Courier"):
        assert missing_glyphs(en, font) == set(), font


def test_paragraph_cut_never_splits_a_word():
    c = Corpus(["Alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu."], "en")
    rng = np.random.default_rng(0)
    for limit in range(5, 60, 3):
        p = c.paragraph(rng, 1, limit)
        assert len(p) <= limit
        assert all(w.strip(".") in c.sentences_[0] .replace(".", "").split() for w in p.split())


def test_user_corpora_txt_jsonl_parquet_and_remote_input_files(tmp_path):
    from tests.input_files import BlobFiles

    (tmp_path / "c.txt").write_text("Quartz clocks drift slowly. Atomic clocks barely drift.\n\nTides follow the moon.\n")
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in ["Owls hunt at night.", "Bats too."]))
    pq.write_table(pa.table({"text": ["Parquet holds columns.", "Rows live in groups."]}), tmp_path / "c.parquet")
    assert Corpus.load(str(tmp_path / "c.txt"), "en").sentences_ == [
        "Quartz clocks drift slowly.", "Atomic clocks barely drift.", "Tides follow the moon."]
    assert Corpus.load(str(tmp_path / "c.jsonl"), "en").sentences_ == ["Owls hunt at night.", "Bats too."]
    assert Corpus.load(str(tmp_path / "c.parquet"), "en").sentences_ == ["Parquet holds columns.", "Rows live in groups."]
    blobs = {"s3://bucket/corpora/zh.jsonl": json.dumps({"text": "潮汐随月亮变化。海水每天涨落两次。"}).encode()}
    files = BlobFiles(blobs)
    zh = Corpus.load("s3://bucket/corpora/zh.jsonl", "zh", files=files)
    assert zh.sentences_ == ["潮汐随月亮变化。", "海水每天涨落两次。"] and files.calls == [("read", "s3://bucket/corpora/zh.jsonl")]
    with pytest.raises(GeneratorError, match="not found: s3://bucket/corpora/zh.jsonl"):
        Corpus.load("s3://bucket/corpora/zh.jsonl", "zh")  # this machine's files, without a store
    with pytest.raises(GeneratorError, match="not found"):
        Corpus.load(str(tmp_path / "missing.txt"), "en")
    (tmp_path / "bad.jsonl").write_text('{"body": "no text field"}\n')
    with pytest.raises(GeneratorError, match="line 1"):
        Corpus.load(str(tmp_path / "bad.jsonl"), "en")


def test_pick_lang():
    rng = np.random.default_rng(3)
    assert {pick_lang(rng, "mixed") for _ in range(40)} == {"en", "zh"}
    assert pick_lang(rng, "zh") == "zh"
    with pytest.raises(GeneratorError):
        pick_lang(rng, "fr")


def test_fonts_resolve_and_coverage_names_missing_characters():
    assert font_path("zh").endswith("wqy-microhei.ttc")
    assert font_path("DejaVu Serif").endswith("DejaVuSerif.ttf")
    with pytest.raises(GeneratorError, match="unknown font"):
        font_path("Comic Sans MS")
    assert missing_glyphs("tab\tnew\nline 中文", "en") == {"中", "文"}
    assert missing_glyphs("中文 abc", "zh") == set()
    assert missing_glyphs("naïve €", "Helvetica") == set() and missing_glyphs("Ω", "Helvetica") == {"Ω"}
    with pytest.raises(Reject) as e:
        require_coverage("hello 𠀀", "zh")  # CJK Extension B, beyond WQY Micro Hei
    assert e.value.reason == "font_coverage" and "𠀀" in e.value.detail and "U+20000" in e.value.detail
    require_coverage("hello 世界", "zh")


def _page_image() -> Image.Image:
    img = Image.new("L", (256, 256), 255)
    d = ImageDraw.Draw(img)
    for y in range(20, 240, 16):
        d.line([(20, y), (236, y)], fill=0, width=3)
    return img


def test_degrade_is_seeded_recorded_and_optional():
    img = _page_image()
    out0, ops0 = degrade(img, np.random.default_rng(5), None)
    assert ops0 == [] and out0.tobytes() == img.tobytes()
    out1, ops1 = degrade(img, np.random.default_rng(5), {"p": 1.0})
    out2, ops2 = degrade(img, np.random.default_rng(5), {"p": 1.0})
    assert [o["op"] for o in ops1] == list(DEGRADATIONS)
    assert ops1 == ops2 and out1.tobytes() == out2.tobytes()
    assert out1.size == img.size and out1.mode == img.mode and out1.tobytes() != img.tobytes()
    assert all(len(o) > 1 for o in ops1), "every op records its sampled parameters"
    only_blur, ops = degrade(img, np.random.default_rng(5), {"p": 1.0, "kinds": ["blur"]})
    assert [o["op"] for o in ops] == ["blur"]
    rgb, ops = degrade(img.convert("RGB"), np.random.default_rng(9), {"p": 1.0, "kinds": ["noise", "jpeg"]})
    assert rgb.mode == "RGB" and len(ops) == 2
    with pytest.raises(GeneratorError, match="unknown degradations"):
        degrade(img, np.random.default_rng(0), {"p": 1.0, "kinds": ["sepia"]})


def test_order_blocks_reads_columns_between_full_width_blocks():
    boxes = [
        (300, 700, 550, 760),  # 0 right column, lower
        (50, 50, 550, 80),  # 1 title across both columns
        (50, 100, 290, 300),  # 2 left column, top
        (300, 100, 550, 300),  # 3 right column, top
        (50, 320, 290, 690),  # 4 left column, lower
        (50, 800, 550, 830),  # 5 footer across
    ]
    assert order_blocks(boxes, 600) == [1, 2, 4, 3, 0, 5]
    single = [(50, 300, 500, 320), (50, 100, 500, 200)]
    assert order_blocks(single, 600) == [1, 0]


def test_random_streams_depend_on_the_kind():
    from generators import get_generator
    from generators.base import sample_rng

    # Same kind, seed, index and stream: the same numbers; another kind: others.
    draw = lambda kind: sample_rng(0, 1, kind=kind).integers(2**62, size=4).tolist()
    assert draw("chart") == draw("chart")
    assert len({tuple(draw(k)) for k in ("chart", "echart", "document", "latex_page", "table", "formula")}) == 6
    # chart and echart sample their data by one function; the pipeline renders both at seed 0. They must not
    # hold the same charts (no browser starts: draw() only samples).
    with get_generator("chart", lang="mixed") as chart, get_generator("echart", lang="mixed") as echart:
        a = [chart.draw(0, i)[3] for i in range(8)]
        b = [echart.draw(0, i)[3] for i in range(8)]
    assert not {x.target() for x in a} & {x.target() for x in b}


def test_an_exception_in_one_sample_is_that_samples_reject_and_the_run_goes_on():
    from generators.base import Generator, Rejected, Sample

    class Fragile(Generator):
        kind = "fragile"

        def make(self, seed, index, prepared):
            if index == 1:
                raise ValueError("Expected '}' at position 7")  # e.g. a parser inside a renderer
            if index == 3:
                raise Reject("blank", "no ink")
            return [Sample(f"fragile-{index}", b"", 1, 1, self.kind, "en", "", str(index))]

    items = list(Fragile().items(0, 0, 5))
    assert [type(i) for i in items] == [Sample, Rejected, Sample, Rejected, Sample]
    assert (items[1].reason, items[1].detail) == ("render_error", "ValueError: Expected '}' at position 7")
    assert items[1].id == "fragile-s0-000000001"
    assert (items[3].reason, items[3].detail) == ("blank", "no ink")

    class Broken(Generator):
        kind = "broken"

        def make(self, seed, index, prepared):
            raise GeneratorError("pdflatex not found")  # set-up: every sample would fail alike

    with pytest.raises(GeneratorError, match="pdflatex not found"):
        list(Broken().items(0, 0, 2))



def test_render_and_items_follow_from_the_batch_hook():
    from generators import KINDS, generator_class
    from generators.base import Generator, Rejected, Sample

    class Batched(Generator):
        kind = "batched"
        batch = 3

        def __init__(self):
            super().__init__()
            self.runs: list[list[int]] = []

        def prepare(self, seed, indices):
            self.runs.append(indices)
            return self.each(indices, lambda i: self.draw(i))

        def draw(self, index):
            if index == 4:
                raise Reject("blank", "no ink")
            return index * 10

        def make(self, seed, index, prepared):
            if index == 5:  # a two-page source: one page made, one failed alone
                return [self.page(seed, index, "-p0000"), self.rejected(seed, index, Reject("no_text"), "-p0001")]
            return [self.page(seed, index, "", str(prepared))]

        def page(self, seed, index, suffix, text="page"):
            return Sample(f"batched-s{seed}-{index:09d}{suffix}", b"", 1, 1, self.kind, "en", "", text)

    gen = Batched()
    items = list(gen.items(0, 2, 8))
    assert gen.runs == [[2, 3, 4], [5, 6, 7]]  # `batch` indices prepared together
    assert [i.id for i in items] == ["batched-s0-000000002", "batched-s0-000000003", "batched-s0-000000004",
                                     "batched-s0-000000005-p0000", "batched-s0-000000005-p0001",
                                     "batched-s0-000000006", "batched-s0-000000007"]
    assert [type(i) for i in items] == [Sample, Sample, Rejected, Sample, Rejected, Sample, Sample]
    assert (items[0].text, items[2].reason, items[4].reason) == ("20", "blank", "no_text")
    # render: the same samples; a page that failed alone is left out; a whole index's reject is raised
    assert gen.render(0, 3) == [items[1]] and gen.render(0, 5) == [items[3]]
    with pytest.raises(Reject, match="blank"):
        gen.render(0, 4)
    # No kind writes `render` or `items` by hand: both follow from prepare/make for every kind.
    for kind in KINDS:
        cls = generator_class(kind)
        assert (cls.render, cls.items, cls.render_batch) == (Generator.render, Generator.items, Generator.render_batch), kind


def test_corpus_from_a_folder_or_prefix_of_parquet_and_jsonl_with_a_named_column(tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    # Two Parquet shards (several row groups each) and a JSON-lines shard, text in a column named "content".
    pq.write_table(pa.table({"content": [f"Shard one holds row {i}." for i in range(6)], "url": ["u"] * 6}),
                   web / "part-0.parquet", row_group_size=2)
    pq.write_table(pa.table({"content": ["Shard two opens here.", None, "Shard two ends here."]}), web / "part-1.parquet")
    (web / "part-2.jsonl").write_text("\n".join(json.dumps({"content": t, "id": 1}) for t in ["Lines stream too."]))
    (web / "README.md").write_text("not a corpus file")
    c = Corpus.load(f"{web}#content", "en")
    assert c.sentences_ == [*(f"Shard one holds row {i}." for i in range(6)), "Shard two opens here.",
                            "Shard two ends here.", "Lines stream too."]
    # Read as a stream up to a size: a web-scale prefix is never read whole.
    assert Corpus.load(f"{web}#content", "en", max_chars=44).sentences_ == ["Shard one holds row 0.", "Shard one holds row 1."]
    with pytest.raises(GeneratorError, match=r"no column 'text' \(columns: content, url\)"):
        Corpus.load(str(web / "part-0.parquet"), "en")

    # The same from an s3:// prefix, through the caller's input files: listed once, each file read once.
    from tests.input_files import BlobFiles

    blobs = {f"s3://bkt/web/{p.name}": p.read_bytes() for p in web.iterdir()}
    files = BlobFiles(blobs)
    remote = Corpus.load("s3://bkt/web/#content", "en", files=files)
    assert remote.sentences_ == c.sentences_
    assert files.calls == [("list", "s3://bkt/web/"), *(("read", f"s3://bkt/web/part-{i}.{s}")
                                                          for i, s in enumerate(("parquet", "parquet", "jsonl")))]

    # Every kind that takes a corpus takes this one.
    from generators.document import DocumentGenerator

    with DocumentGenerator(corpus=f"{web}#content") as gen:
        _, target, _, _ = gen.typeset(0, 0)
    assert "Shard" in target


def test_the_sample_tail_keeps_renderer_png_and_detects_gray():
    """`finish_sample` is every kind's tail: a renderer's PNG is kept byte for byte unless a degradation
    applies; an image without colour is stored as one channel and says so in meta."""
    import io

    from generators.base import Generator, encode_png

    class Tail(Generator):
        kind = "tail"
        prompt = "p"


    gen = Tail()
    page = Image.new("RGB", (40, 30), "white")
    ImageDraw.Draw(page).rectangle((5, 5, 30, 20), fill=(20, 20, 20))
    png = encode_png(page)
    kept = gen.finish_sample(0, 0, png, np.random.default_rng(0), lang="en", text="t", sampled={}, min_ink=None)
    assert (kept.image, kept.width, kept.height) == (png, 40, 30)
    assert kept.meta["sampled"]["degradations"] == []
    degraded = gen.finish_sample(0, 0, png, np.random.default_rng(0), lang="en", text="t", sampled={}, min_ink=None,
                                 degradations={"p": 1.0, "kinds": ["noise"]})
    assert degraded.image != png and degraded.meta["sampled"]["degradations"][0]["op"] == "noise"

    gray = gen.finish_sample(0, 1, page, np.random.default_rng(0), lang="en", text="t", sampled={}, size=64,
                             grayscale="detect")
    assert Image.open(io.BytesIO(gray.image)).mode == "L" and gray.meta["sampled"]["grayscale"] is True
    assert (gray.width, gray.height, gray.id) == (64, 64, "tail-s0-000000001")
    ImageDraw.Draw(page).rectangle((0, 0, 3, 3), fill=(200, 0, 0))
    colour = gen.finish_sample(0, 2, page, np.random.default_rng(0), lang="en", text="t", sampled={},
                               grayscale="detect", suffix="-p0001")
    assert Image.open(io.BytesIO(colour.image)).mode == "RGB" and colour.meta["sampled"]["grayscale"] is False
    assert colour.id == "tail-s0-000000002-p0001"
    with pytest.raises(Reject, match="ink"):
        gen.finish_sample(0, 3, Image.new("RGB", (40, 30), "white"), np.random.default_rng(0), lang="en", text="t",
                          sampled={})
