"""Checkpoints the ecosystem opens: `AutoModel.from_pretrained(folder, trust_remote_code=True)` in a fresh
process (outside the repository, the model code taken from the folder) gives the logits varyflow's own
loader gives, for a training checkpoint and for the inference-only folder `varyflow export` writes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from tests.train_support import short_texts, text_line_samples, tiny_config, write_dataset

REPO = Path(__file__).resolve().parents[1]

FRESH = """
import sys, torch
from transformers import AutoModel
io = torch.load(sys.argv[2])
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(pixel_values=io["pixel_values"], input_ids=io["input_ids"], clip_values=io.get("clip_values"))
assert "training" not in sys.modules, "the folder's own code must be enough"
torch.save(logits, sys.argv[3])
"""


def test_checkpoint_and_export_open_with_automodel_in_a_fresh_process(tmp_path):
    from training.modeling import load_model
    from training.run import train

    manifest = write_dataset(tmp_path / "data", "lines", text_line_samples(short_texts(4)), shard_rows=4)
    ckpt = Path(train(tiny_config(manifest, tmp_path / "run", stage="integrate", model="vary_base", steps=1,
                                  batch_size=2, max_length=160)).checkpoint)
    out = tmp_path / "exported"
    p = subprocess.run([sys.executable, "-m", "flows.cli", "export", str(ckpt), "--out", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    names = {f.name for f in out.iterdir()}
    assert {"config.json", "model.safetensors", "hf_vary.py", "tokenizer.json", "tokenizer"} <= names
    assert not names & {"optimizer.pt", "scheduler.pt", "trainer_state.json", "deepspeed"} and \
        not any(n.startswith(("rng-", "data-", "counts-")) for n in names)

    torch.manual_seed(0)
    model = load_model(ckpt).eval()
    spec = model.data_spec()
    io = {"pixel_values": torch.randn(1, 3, spec.image_size, spec.image_size),
          "clip_values": torch.randn(1, 3, spec.clip_size, spec.clip_size),
          "input_ids": torch.tensor([[20, 21] + [model.config.imgpad_token_id] * spec.num_image_tokens + [30, 31]])}
    with torch.no_grad():
        expected = model.logits(attention_mask=torch.ones_like(io["input_ids"]), **io)
    torch.save(io, tmp_path / "io.pt")
    for folder in (ckpt, out):
        got = tmp_path / f"{folder.name}.pt"
        run = subprocess.run([sys.executable, "-c", FRESH, str(folder), str(tmp_path / "io.pt"), str(got)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        # equal up to float reduction order: a fresh process may split matmuls over another number of threads
        torch.testing.assert_close(torch.load(got), expected, rtol=1e-5, atol=1e-5, msg=lambda m: f"{folder}: {m}")
