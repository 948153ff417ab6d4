"""Conversations (Vary's SFT data, the LLaVA format): `varyflow data import` turns records + an image folder
into shards of the usual schema, bad records rejected with reasons; the trainer learns from every
assistant turn and nothing else."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from storage import StreamingReader
from tests.train_support import short_texts, text_line_samples
from training.data import encode_example
from training.data import encode_conversation, make_example
from training.modeling import DataSpec
from training.tokenizer import train_tokenizer

REPO = Path(__file__).resolve().parents[1]
CHAT = DataSpec(layout="chat", image_size=256, clip_size=56, num_image_tokens=16)
TURNS = [{"from": "human", "value": "<image>\nWhat is written?"}, {"from": "gpt", "value": "word font"},
         {"from": "human", "value": "And the first word?"}, {"from": "gpt", "value": "word"}]


def _tok():
    return train_tokenizer(short_texts(16) + ["What is written? And the first word?"], 300)


def test_every_assistant_turn_is_learned_and_nothing_else():
    tok = _tok()
    ids, labels, truncated = encode_conversation(tok, CHAT, TURNS, max_length=400)
    assert not truncated and len(ids) == len(labels)
    learned, run = [], []
    for i, lab in zip(ids, labels):  # the labelled stretches, in order
        if lab != -100:
            assert lab == i
            run.append(i)
        elif run:
            learned.append(run)
            run = []
    if run:
        learned.append(run)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert [tok.decode(r[:-1]) for r in learned] == ["word font", "word"] and all(r[-1] == im_end for r in learned)
    assert ids.count(tok.convert_tokens_to_ids("<imgpad>")) == 16  # one image, where the first turn put it
    # one exchange encodes exactly as the single-turn layout the decoder prompts with
    one = encode_conversation(tok, CHAT, TURNS[:2], max_length=400)
    assert one == encode_example(tok, CHAT, "What is written?", "word font", max_length=400)


def test_import_commits_conversations_and_rejects_bad_records(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    pages = text_line_samples(short_texts(2))
    for i, s in enumerate(pages):
        (images / f"p{i}.png").write_bytes(s.image)
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    records = [{"id": "a", "image": "p0.png", "conversations": TURNS},
               {"id": "b", "image": "p1.png", "conversations": TURNS[:2]},
               {"id": "c", "image": "missing.png", "conversations": TURNS},
               {"id": "d", "image": "p0.png", "conversations": [{"from": "human", "value": "hi"}]},
               {"id": "e", "image": "broken.png", "conversations": TURNS}]
    (tmp_path / "sft.json").write_text(json.dumps(records))
    p = subprocess.run([sys.executable, "-m", "flows.cli", "data", "import", str(tmp_path / "sft.json"), "--images",
                        str(images), "--dataset", "sft", "--out", str(tmp_path / "root")],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("2 conversations -> ") and "image not found: 1" in p.stdout
    assert "no assistant (gpt) turn: 1" in p.stdout and "unreadable image" in p.stdout
    manifest = p.stdout.split(" -> ")[1].split(" (")[0]
    rows = list(StreamingReader([manifest], shuffle=False))
    assert [r["text"] for r in rows] == ["word font", "word font"] and rows[0]["prompt"] == "What is written?"
    assert json.loads(rows[0]["meta"])["conversations"] == TURNS and rows[0]["kind"] == "conversation"
    # the trainer's example from a stored row learns both answers
    tok = _tok()
    ex = make_example(rows[0], tok, CHAT, max_length=400)
    assert ex.labels == encode_conversation(tok, CHAT, TURNS, 400)[1]
