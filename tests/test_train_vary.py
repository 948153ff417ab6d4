"""Training on CPU with the tiny preset: loss, proof of wiring (overfit + greedy decode), stage-2 tower
freezing, exact resume after a kill, two DeepSpeed ranks, and lineage."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from storage import StreamingReader, read_manifest
from tests.train_support import document_samples, short_texts, text_line_samples, tiny_config, write_dataset
from training.data import RowError, VaryStream, encode_example, prompt_ids, stop_id
from training.errors import TrainingError
from training.evaluate import decode, evaluate
from training.modeling import DataSpec
from training.build import build_model
from training.run import train
from training.tokenizer import train_tokenizer

REPO = Path(__file__).resolve().parents[1]
PY = str(REPO / ".venv" / "bin" / "python")


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    return write_dataset(root, "docs", document_samples(16, size=256), shard_rows=2)


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    root = tmp_path_factory.mktemp("lines")
    return write_dataset(root, "lines", text_line_samples(short_texts(16)), shard_rows=8)


@pytest.fixture(scope="module")
def stage1(lines, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1") / "run"
    # holdout 0: every one of the 16 lines is trained on (the point is memorising them)
    return train(tiny_config(lines, out, steps=100, batch_size=16, lr=1e-3, warmup_ratio=0.05, holdout=0.0))


def test_loss_falls_and_lineage_lists_exactly_the_shards_read(docs, tmp_path):
    cfg = tiny_config(docs, tmp_path / "run", steps=6, batch_size=2, lr=1e-3)
    r = train(cfg)
    assert sum(r.losses[-2:]) < sum(r.losses[:2]) - 0.5, r.losses  # well beyond step-to-step noise
    expected = set()
    for i, row in enumerate(StreamingReader([docs], seed=cfg.seed)):
        if i == 12:
            break
        expected.add(row["_shard"])
    lineage = json.loads((Path(r.checkpoint) / "lineage.json").read_text())
    assert len(expected) < 8  # the run stopped before reading every shard
    assert {s["uri"] for s in lineage["shards"]} == expected
    from storage.lineage import checkpoints_of

    unread = {s.uri for s in read_manifest(docs).shards} - expected
    assert unread and all(checkpoints_of(u, cfg.index_root) == [] for u in unread)
    assert lineage["stage"] == "vocab" and lineage["tokenizer"]["files"] == str(Path(r.checkpoint) / "tokenizer")


def test_vary_tiny_overfits_until_greedy_decoding_reproduces(stage1, lines):
    m = evaluate(stage1.checkpoint, [lines], split="train")  # memorising its training rows proves the wiring
    assert m["samples"] == 16 and m["skipped"] == 0
    assert m["cer"] <= 0.05, m


def test_vary_base_loads_stage1_vocab_keeps_towers_and_overfits(stage1, lines, tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from training.vary_base import CLIP_TINY

    torch.manual_seed(1)
    CLIPVisionModel(CLIPVisionConfig(**CLIP_TINY)).save_pretrained(tmp_path / "clip")
    # The chat template with this 300-token BPE takes ~122 tokens before the target: max_length must leave
    # room for the whole target and its <|im_end|>, or the model never learns where to stop.
    cfg = tiny_config(lines, tmp_path / "run", stage="integrate", model="vary_base", steps=70, batch_size=16,
                      lr=3e-3, warmup_ratio=0.05, max_length=160, init_from=stage1.checkpoint, holdout=0.0,
                      clip_path=str(tmp_path / "clip"))
    r = train(cfg)
    assert r.metrics["truncated"] == 0
    before, after = load_file(str(Path(stage1.checkpoint) / "model.safetensors")), load_file(str(Path(r.checkpoint) / "model.safetensors"))
    vocab = [k for k in before if k.startswith("vocab.")]
    assert vocab and all(torch.equal(before[k], after[k]) for k in vocab)
    clip = load_file(str(tmp_path / "clip" / "model.safetensors"))
    assert clip and all(torch.equal(v, after["clip." + k]) for k, v in clip.items())
    assert str(Path(stage1.checkpoint).resolve()) in json.loads((Path(r.checkpoint) / "lineage.json").read_text())["parents"][0]
    m = evaluate(r.checkpoint, [lines], split="train")
    assert m["cer"] <= 0.05, m


@pytest.fixture(scope="module")
def bpe():
    return train_tokenizer(short_texts(16) + ["Provide the OCR results of this image."], 300)


CHAT = DataSpec(layout="chat", image_size=256, clip_size=56, num_image_tokens=16)


def test_chat_layout_trains_on_the_decode_prompt_then_the_whole_target_and_its_stop(bpe):
    prompt, target = "Provide the OCR results of this image.", "word font"
    prefix = prompt_ids(bpe, CHAT, prompt)
    ids, labels, truncated = encode_example(bpe, CHAT, prompt, target, max_length=len(prefix) + 32)
    assert not truncated and ids[:len(prefix)] == prefix  # decoding starts from exactly what training saw
    assert labels[:len(prefix)] == [-100] * len(prefix) and labels[len(prefix):] == ids[len(prefix):]
    assert ids[-1] == stop_id(bpe, CHAT) == bpe.convert_tokens_to_ids("<|im_end|>")
    assert bpe.decode(ids[len(prefix):-1]) == target


def test_target_cut_by_max_length_is_flagged_and_a_prompt_with_no_room_is_refused(bpe, lines):
    prompt = "Provide the OCR results of this image."
    n = len(prompt_ids(bpe, CHAT, prompt))
    ids, labels, truncated = encode_example(bpe, CHAT, prompt, "word font", max_length=n + 2)
    assert truncated and len(ids) == n + 2 and stop_id(bpe, CHAT) not in ids[n:] and labels[n:] == ids[n:]
    with pytest.raises(RowError, match="no room for the target"):
        encode_example(bpe, CHAT, prompt, "word font", max_length=n)
    with pytest.raises(TrainingError, match="max_length 64 leaves no room"):
        VaryStream([lines], None, bpe, CHAT, batch_size=2, max_length=64, seed=0)


def _greedy_without_cache(model, pixel_values, clip_values, ids: list[int], stop: int, n: int) -> list[int]:
    """The oracle: each next token from a full forward pass over everything so far (image features
    written over the pads every time), no KV cache."""
    out: list[int] = []
    for _ in range(n):
        x = torch.tensor([ids + out])
        embeds = model._embeds(pixel_values, clip_values, x)
        out.append(int(model.llm(inputs_embeds=embeds, attention_mask=torch.ones_like(x)).logits[0, -1].argmax()))
        if out[-1] == stop:
            break
    return out


def test_vary_base_cached_greedy_decode_matches_a_full_forward_per_token(bpe, tmp_path):
    from training.data import clip_transform, decode_image, sam_transform

    torch.manual_seed(4)  # this untrained model continues with a 5-token run then a cycle, and follows positions
    model = build_model(tiny_config("unused", tmp_path / "run", stage="integrate", model="vary_base"), bpe)[0].eval()
    spec = model.data_spec()
    sample = text_line_samples(["word font"])[0]
    arr = decode_image(sample.image)
    pv, cv = sam_transform(arr, spec.image_size)[None], clip_transform(arr, spec.clip_size)[None]
    with torch.no_grad():
        expected = _greedy_without_cache(model, pv, cv, prompt_ids(bpe, spec, sample.prompt), stop_id(bpe, spec), 12)
    assert len(set(expected)) > 1  # a varied continuation, so a position or cache slip would show
    got = decode(model, bpe, sample.image, sample.prompt, max_new_tokens=12)
    assert got == bpe.decode(expected, skip_special_tokens=True)


def _cli(out: Path, manifest: str, steps: int, *extra: str) -> list[str]:
    return ["train", "vocab", "--data", manifest, "--out", str(out), "--preset", "tiny", "--steps", str(steps),
            "--batch-size", "2", "--lr", "1e-3", "--warmup-ratio", "0.1", "--tokenizer-vocab-size", "300",
            "--max-length", "48", "--index-root", str(out.parent / "idx"), "--json", *extra]


def test_killed_run_resumes_with_identical_losses(docs, tmp_path):
    steps = 10  # 8 batches per epoch: the kill lands mid-epoch, the run crosses into epoch 2
    whole = train(tiny_config(docs, tmp_path / "whole", steps=steps, batch_size=2, lr=1e-3, warmup_ratio=0.1,
                              max_length=48, save_every=3))
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([PY, "-m", "training", *_cli(out, docs, steps, "--save-every", "3", "--log-every", "1",
                                                         "--deepspeed", "off")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("step 5/"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / f"checkpoint-{steps:06d}").exists()
    resumed = subprocess.run([PY, "-m", "training", *_cli(out, docs, steps, "--save-every", "3", "--deepspeed", "off")],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    losses = json.loads(resumed.stdout.strip().splitlines()[-1])["losses"]
    assert losses == whole.losses
    # it says where it went on from, and lineage keeps that checkpoint as a parent; the tokenizer's source
    # is where it came from, not the intermediate checkpoint's copy that pruning may delete
    assert f"resumed from {out / 'checkpoint-000003'} at step 3" in resumed.stdout.splitlines()
    record = json.loads((out / f"checkpoint-{steps:06d}" / "lineage.json").read_text())
    assert str(out / "checkpoint-000003") in record["parents"]
    assert record["tokenizer"]["source"] == "trained:byte-level-bpe"


def test_two_deepspeed_cpu_ranks_write_one_checkpoint_and_resume_with_exact_counts(docs, tmp_path):
    # ZeRO-3: the weights are partitioned across the ranks and consolidated into one saved model.
    out = tmp_path / "ds"
    env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONUNBUFFERED="1")
    launcher = str(REPO / ".venv" / "bin" / "deepspeed")

    def launch(steps: int) -> None:
        run = subprocess.run([launcher, "--num_gpus", "2", "--master_port", "29533", "--module", "training",
                              *_cli(out, docs, steps, "--deepspeed", "zero3")],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
        assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])

    launch(2)
    ckpt = out / "checkpoint-000002"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and len(state["losses"]) == 2 and state["samples"] == 2 * 2 * 2
    assert all((ckpt / f"data-rank{r}.json").is_file() for r in (0, 1))  # each rank's reader position
    assert (ckpt / "deepspeed").is_dir()
    from training.modeling import load_model

    model = load_model(ckpt)  # one set of weights, consolidated from the partitions, loadable without DeepSpeed
    assert sum(p.numel() for p in model.parameters()) > 0
    assert all(p.numel() > 0 for p in model.parameters())  # no empty ZeRO-3 placeholders were saved
    expected = set()
    for rank in (0, 1):
        for i, row in enumerate(StreamingReader([docs], rank=rank, world_size=2)):
            if i == 4:  # 2 steps × batch 2 on each rank
                break
            expected.add(row["_shard"])
    assert set(state["shards_read"]) == expected

    # Resumed to step 4, the run counts what both ranks read once: the totals saved at step 2 are not
    # loaded into every rank and summed again.
    launch(4)
    state = json.loads((out / "checkpoint-000004" / "trainer_state.json").read_text())
    assert len(state["losses"]) == 4 and state["samples"] == 2 * 4 * 2
    lineage_doc = json.loads((out / "checkpoint-000004" / "lineage.json").read_text())
    assert lineage_doc["metrics"]["samples"] == 16
