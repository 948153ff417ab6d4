"""A row whose image cannot be decoded is skipped, counted by id and reason, and never replaced by another
sample; and the Vary/GOT metrics on small strings worked out by hand."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from storage import StreamingReader
from tests.train_support import short_texts, text_line_samples, tiny_config, write_dataset
from training.metrics import bleu, edit_distance, meteor, score, units
from training.modeling import DataSpec
from training.run import train


@pytest.fixture(scope="module")
def with_corrupt(tmp_path_factory):
    """Three good rows and one whose PNG is cut in half, all in one shard, corrupt row second."""
    good = text_line_samples(short_texts(3))
    corrupt = dict(good[0].to_row(), id="corrupt-row")
    corrupt["image"] = dict(corrupt["image"], bytes=good[0].image[:len(good[0].image) // 2])
    rows = [good[0].to_row(), corrupt, good[1].to_row(), good[2].to_row()]
    manifest = write_dataset(tmp_path_factory.mktemp("corrupt"), "corrupt", [], shard_rows=4, extra_rows=rows)
    return manifest, [r["id"] for r in rows]


def test_stream_skips_and_counts_a_corrupt_row_without_substituting(with_corrupt):
    from training.data import VaryStream
    from training.tokenizer import train_tokenizer

    manifest, ids = with_corrupt
    tok = train_tokenizer(short_texts(3), 300)
    spec = DataSpec(layout="opt", image_size=256, clip_size=None, num_image_tokens=16)
    stream = iter(VaryStream([manifest], None, tok, spec, batch_size=2, max_length=64, seed=0, shuffle=False))
    first, second = next(stream), next(stream)
    order = [r["id"] for r in StreamingReader([manifest], shuffle=False)]
    assert order == ids
    # the corrupt row's place goes to the next real row; nothing is repeated or invented
    assert first["ids"] == [ids[0], ids[2]] and first["pixel_values"].shape[0] == 2
    assert [s["id"] for s in first["skipped"]] == ["corrupt-row"]
    assert "could not decode" in first["skipped"][0]["reason"]
    assert second["ids"][0] == ids[3] and "corrupt-row" not in second["ids"] and second["skipped"] == []


def test_training_records_the_skip_in_metrics_state_and_lineage(with_corrupt, tmp_path):
    manifest, ids = with_corrupt
    # one batch of 4 good rows needs the whole first epoch (3 good + the corrupt one) and a row of the next;
    # the reader, with the run's seed, says how often the corrupt row comes up on the way
    cfg = tiny_config(manifest, tmp_path / "run", steps=1, batch_size=4)
    reader, met, good = StreamingReader([manifest], seed=cfg.seed), 0, 0
    while good < 4:
        for row in reader:
            met += row["id"] == "corrupt-row"
            good += row["id"] != "corrupt-row"
            if good == 4:
                break
    assert met >= 1
    r = train(cfg)
    assert r.metrics["skipped"] == met and r.metrics["samples"] == 4
    assert [s["id"] for s in r.metrics["skipped_rows"]] == ["corrupt-row"] * met
    assert all("could not decode" in s["reason"] for s in r.metrics["skipped_rows"])
    state = json.loads((Path(r.checkpoint) / "trainer_state.json").read_text())
    assert [s["id"] for s in state["skipped"]] == ["corrupt-row"] * met and state["samples"] == 4
    assert r.lineage["metrics"]["skipped"] == met and r.lineage["metrics"]["samples"] == 4


def _reference_float(arr, size: int, mean, std, crop: bool):
    """The pre-uint8 float path, written out independently: PIL bicubic resize (SAM: to size², CLIP: short side
    to size then the centre crop), then (x/255 - mean)/std in float64, grey broadcast to 3 channels."""
    from PIL import Image

    h, w = arr.shape[:2]
    if crop:
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    else:
        nh, nw = size, size
    if (nh, nw) != (h, w):
        im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).resize((nw, nh), Image.Resampling.BICUBIC)
        arr = np.asarray(im).reshape(nh, nw, -1)
    top, left = (nh - size) // 2, (nw - size) // 2
    arr = arr[top:top + size, left:left + size].astype(np.float64)
    arr = np.broadcast_to(arr, (size, size, 3))
    return torch.from_numpy(((arr / 255.0 - np.array(mean)) / np.array(std)).transpose(2, 0, 1).copy())


def test_uint8_batches_normalised_on_the_device_match_the_float_path():
    """Batches leave the loader as uint8 (1 byte per pixel, grey pages one plane) and `model_inputs`, used by
    training and decoding alike, normalises them to what the model was always given."""
    from training.data import (CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, collate, decode_image,
                               make_example, model_inputs)
    from training.tokenizer import train_tokenizer
    from PIL import Image

    from generators.base import encode_png

    rng = np.random.default_rng(0)
    grey = text_line_samples(short_texts(1))[0]  # a real 256² grey PNG: no resize on the SAM branch
    rgb = rng.integers(0, 256, size=(200, 300, 3), dtype=np.uint8)  # non-square colour: both branches resize
    rows = [grey.to_row(), dict(grey.to_row(), id="rgb", image={"bytes": encode_png(Image.fromarray(rgb))})]
    tok = train_tokenizer(short_texts(3), 300)
    spec = DataSpec(layout="chat", image_size=256, clip_size=56, num_image_tokens=16)
    examples = [make_example(r, tok, spec, 200) for r in rows]

    grey_only = collate(examples[:1], tok.pad_token_id)
    assert grey_only["pixel_values"].dtype == torch.uint8 and grey_only["pixel_values"].shape == (1, 1, 256, 256)
    batch = collate(examples, tok.pad_token_id)
    assert batch["pixel_values"].dtype == torch.uint8 and batch["pixel_values"].shape == (2, 3, 256, 256)
    assert batch["clip_values"].dtype == torch.uint8 and batch["clip_values"].shape == (2, 3, 56, 56)

    for b in (grey_only, batch):
        got = model_inputs(b, torch.device("cpu"))
        assert got["pixel_values"].dtype == torch.float32 and got["input_ids"].dtype == torch.long
        for i, row in enumerate(rows[:b["pixel_values"].shape[0]]):
            arr = decode_image(row["image"]["bytes"])
            sam = _reference_float(arr, 256, IMAGENET_MEAN, IMAGENET_STD, crop=False)
            clip = _reference_float(arr, 56, CLIP_MEAN, CLIP_STD, crop=True)
            assert (got["pixel_values"][i].double() - sam).abs().max() < 1e-5
            assert (got["clip_values"][i].double() - clip).abs().max() < 1e-5


def test_a_run_that_truncates_targets_warns_with_the_count(with_corrupt, tmp_path, caplog):
    # the tiny preset's 16 image tokens + BOS leave one token of a 18-token max_length: every target is cut
    r = train(tiny_config(with_corrupt[0], tmp_path / "run", steps=1, batch_size=2, max_length=18))
    assert r.metrics["truncated"] == 2
    warned = [m for m in caplog.messages if "truncated" in m]
    assert len(warned) == 1 and "2 training rows" in warned[0] and "--max-length 18" in warned[0]


def test_metrics_on_hand_computed_strings():
    # "kitten" -> "sitting": 3 edits over the longer length 7
    assert edit_distance("kitten", "sitting") == pytest.approx(3 / 7)
    assert edit_distance("", "") == 0.0 and edit_distance("abc", "") == 1.0

    # English counts words: 3 of 3 predicted words are right, 3 of 4 reference words found
    s = score("the cat sat", "the cat sat down", "en")
    assert (s["precision"], s["recall"]) == pytest.approx((1.0, 3 / 4))
    assert s["f1"] == pytest.approx(2 * 1.0 * 0.75 / 1.75)  # 6/7
    assert s["edit_distance"] == pytest.approx(5 / 16)  # " down" missing, longer string has 16 chars

    # Chinese counts characters: 我 and 爱 of 4 each match; as one English "word" nothing would
    zh = score("我爱北京", "我爱上海", "zh")
    assert units("我爱 北京", "zh") == ["我", "爱", "北", "京"]
    assert (zh["precision"], zh["recall"], zh["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert score("我爱北京", "我爱上海", "en")["f1"] == 0.0

    # BLEU: an exact copy scores 1; a prefix matches every n-gram but pays the brevity penalty exp(1 - 5/4)
    ref = "a b c d e".split()
    assert bleu(ref, ref) == pytest.approx(1.0)
    assert bleu("a b c d".split(), ref) == pytest.approx(math.exp(1 - 5 / 4))
    assert bleu("x y z w".split(), ref) == 0.0

    # METEOR (exact matches): a copy of 3 words is one chunk, penalty 0.5 * (1/3)^3
    assert meteor("a b c".split(), "a b c".split()) == pytest.approx(1 - 0.5 / 27)
    # reversed order: 3 matches in 3 chunks, penalty 0.5
    assert meteor("c b a".split(), "a b c".split()) == pytest.approx(0.5)
