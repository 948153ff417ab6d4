"""The training commands as a user runs them: `varyflow train vocab`, `varyflow eval --json` and
`varyflow ocr` in subprocesses from the repository, on rendered shards, with the tiny preset."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train_support import short_texts, text_line_samples, write_dataset

REPO = Path(__file__).resolve().parents[1]
METRICS = ("edit_distance", "f1", "precision", "recall", "bleu", "meteor")


def varyflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def assert_one_line_error(p: subprocess.CompletedProcess, *needles: str) -> None:
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert all(n in lines[0] for n in needles), lines[0]


HOLDOUT = 0.3  # holds out 2 of the 8 samples below


@pytest.fixture(scope="module")
def samples():
    return text_line_samples(short_texts(8))


@pytest.fixture(scope="module")
def trained(samples, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    manifest = write_dataset(root / "data", "cli", samples, shard_rows=2)
    out = root / "run"
    p = varyflow("train", "vocab", "--data", manifest, "--out", str(out), "--preset", "tiny", "--steps", "2",
                 "--batch-size", "2", "--deepspeed", "off", "--tokenizer-vocab-size", "300", "--max-length", "64",
                 "--log-every", "0", "--holdout", str(HOLDOUT), "--index-root", str(root / "lineage"), "--json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout.strip().splitlines()[-1])
    return root, manifest, out, result


def test_train_vocab_writes_a_checkpoint_with_its_lineage(trained):
    root, manifest, out, result = trained
    ckpt = Path(result["checkpoint"])
    assert ckpt.parent == out and ckpt.name == "checkpoint-000002"
    assert len(result["losses"]) == 2 and result["metrics"]["samples"] == 4 and result["metrics"]["skipped"] == 0
    assert (ckpt / "config.json").is_file() and (ckpt / "model.safetensors").is_file() and (ckpt / "tokenizer").is_dir()
    lineage = json.loads((ckpt / "lineage.json").read_text())
    assert lineage["stage"] == "vocab" and [m["uri"] for m in lineage["manifests"]] == [manifest]


def test_eval_json_prints_every_metric_on_the_held_out_rows_by_default(trained, samples):
    from training.split import in_holdout

    root, manifest, out, result = trained
    held = [s.id for s in samples if in_holdout(s.id, HOLDOUT)]
    assert 0 < len(held) < len(samples)
    assert result["metrics"]["samples"] == 4  # 2 steps × batch 2, from the training rows only
    p = varyflow("eval", "--checkpoint", result["checkpoint"], "--data", manifest, "--max-new-tokens", "6", "--json")
    assert p.returncode == 0, p.stderr
    m = json.loads(p.stdout)
    assert (m["split"], m["samples"], m["skipped"]) == ("heldout", len(held), 0)
    for k in METRICS:
        assert isinstance(m[k], float) and 0.0 <= m[k] <= 1.0, (k, m[k])
    # training rows only on request, and labelled so
    p = varyflow("eval", "--checkpoint", result["checkpoint"], "--data", manifest, "--max-new-tokens", "2",
                 "--split", "train", "--limit", "3")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "3 samples of TRAINING rows (seen in training) (0 skipped)"


def test_ocr_prints_one_decode_per_image_and_accepts_the_run_directory(trained, samples):
    root, manifest, out, result = trained
    images = []
    for i, s in enumerate(samples[:2]):
        images.append(root / f"page{i}.png")
        images[-1].write_bytes(s.image)
    p = varyflow("ocr", "--checkpoint", str(out), "--max-new-tokens", "6", *map(str, images))
    assert p.returncode == 0, p.stderr
    headers = [line for line in p.stdout.splitlines() if line.startswith("==> ")]
    assert headers == [f"==> {img} <==" for img in images]


def test_ocr_reports_a_bad_image_and_goes_on_with_the_rest(trained, samples):
    root, manifest, out, result = trained
    good, bad = root / "good.png", root / "garbage.png"
    good.write_bytes(samples[0].image)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    p = varyflow("ocr", "--checkpoint", result["checkpoint"], "--max-new-tokens", "4", str(bad), str(good))
    assert p.returncode == 1
    assert f"==> {good} <==" in p.stdout and str(bad) not in p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "not a decodable image" in lines[0], p.stderr


def test_errors_are_one_line_without_traceback(trained, tmp_path):
    root, manifest, out, result = trained
    ckpt = result["checkpoint"]
    image = tmp_path / "page.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    assert_one_line_error(varyflow("eval", "--checkpoint", str(tmp_path / "nope"), "--data", manifest),
                          "nope", "does not exist")
    assert_one_line_error(varyflow("ocr", "--checkpoint", str(tmp_path), str(image)),
                          str(tmp_path), "not a varyflow checkpoint")
    assert_one_line_error(varyflow("ocr", "--checkpoint", ckpt, str(tmp_path / "missing.png")),
                          "missing.png", "no such file")
    assert_one_line_error(varyflow("ocr", "--checkpoint", ckpt, str(image)), "page.png", "not a decodable image")
