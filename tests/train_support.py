"""Shared set-up of the training tests (no tests here): rendered samples written through the real
storage layer, and tiny-preset training configs."""
from __future__ import annotations

import hashlib
from pathlib import Path

from generators.base import Sample, encode_png, sample_id
from storage import DatasetWriter
from training.config import TrainConfig

WORDS = ("ink", "page", "scan", "line", "text", "font", "word", "glyph", "paper", "serif", "comma", "table",
         "chart", "title", "index", "draft", "proof", "margin", "column", "layout")


def short_texts(n: int, seed: int = 0) -> list[str]:
    """n distinct two-word targets, short enough for a tiny model to memorise quickly on CPU."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        t = " ".join(rng.choice(WORDS, size=2, replace=False))
        if t not in out:
            out.append(t)
    return out


def text_line_samples(texts: list[str], size: int = 256, lang: str = "en") -> list[Sample]:
    """One PIL-drawn image per text: the text in a large font on a white square (grayscale PNG)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", size // 4)
    out = []
    for i, text in enumerate(texts):
        img = Image.new("L", (size, size), 255)
        draw = ImageDraw.Draw(img)
        for k, word in enumerate(text.split()):  # one word per line, large, so images differ widely
            draw.text((size // 32, size // 16 + k * size // 2), word, fill=0, font=font)
        sid = sample_id("textline", 0, i)
        out.append(Sample(sid, encode_png(img), size, size, "textline", lang,
                          "Provide the OCR results of this image.", text, {"index": i}))
    return out


def document_samples(n: int, size: int = 256, seed: int = 0) -> list[Sample]:
    """Real rendered pages from the `document` generator (English)."""
    from generators import Sample as S, get_generator

    with get_generator("document", lang="en", size=size) as g:
        out = [s for s in g.items(seed, 0, n) if isinstance(s, S)]
    assert out, "the document generator rendered nothing"
    return out


def write_dataset(root: Path, name: str, samples: list[Sample], shard_rows: int, extra_rows: list[dict] = ()) -> str:
    """Commit `samples` as shards of `shard_rows` rows; return the manifest URI."""
    fp = hashlib.sha256(name.encode()).hexdigest()[:16]
    w = DatasetWriter(str(root), name, fp)
    rows = [s.to_row() for s in samples] + list(extra_rows)
    shards = [w.write_shard(i, rows[k:k + shard_rows]) for i, k in enumerate(range(0, len(rows), shard_rows))]
    return w.commit(shards, {"test": name})


def tiny_config(manifest: str | list[str], out: Path, **kw) -> TrainConfig:
    base = dict(stage="vocab", model="vary_tiny", preset="tiny", manifests=[manifest] if isinstance(manifest, str) else manifest,
                out=str(out), steps=4, batch_size=4, lr=3e-3, warmup_ratio=0.0, seed=0, deepspeed=False,
                tokenizer_vocab_size=300, max_length=64, log_every=0, index_root=str(out.parent / "lineage-root"))
    base.update(kw)
    return TrainConfig(**base)
