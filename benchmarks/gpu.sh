#!/usr/bin/env bash
# ONE script for a lent GPU machine: the real training path (training.run.Trainer: DeepSpeed ZeRO-2, bf16
# with fp32 master weights, our data layout and loss) for Vary-tiny and Vary-toy at paper size on in-memory
# batches, printing step time, tokens/s, MFU and peak memory as JSON (and $OUT/gpu.json when $OUT is set).
#
# Needs CUDA torch and transformers; nothing is downloaded. DeepSpeed, when the machine lacks it, is
# installed from wheels carried along ($WHEELHOUSE: a folder holding a deepspeed wheel or sdist, e.g.
# made elsewhere with `pip download deepspeed --no-deps -d wheels`); without either, the run says so
# ("zero": null) and measures the plain-torch path (fp32 weights, bf16 autocast) instead.
# FLOPs per sample: training.flops (vision towers per image on their own tokens, attention included);
# peaks: training.flops.PEAK_BF16 — an unknown GPU is refused, not taken for an H100.
#
# Usage: bash benchmarks/gpu.sh            (well under 8 minutes on one H100/H200)
#        SMOKE=1 bash benchmarks/gpu.sh    (tiny presets on the CPU: checks the script, measures nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import deepspeed" 2>/dev/null && [ -n "${WHEELHOUSE:-}" ] && [ -d "$WHEELHOUSE" ]; then
  DS_BUILD_OPS=0 "$PY" -m pip install --quiet --no-index --find-links "$WHEELHOUSE" deepspeed >&2 || \
    echo "gpu.sh: deepspeed did not install from $WHEELHOUSE; measuring plain torch" >&2
fi
timeout 450 "$PY" - <<'PYEOF'
import json, os, tempfile, time

import torch

from training.config import TrainConfig
from training.dry_run import _Vocabulary
from training.flops import peak_bf16, sample_flops
import training.build as build

smoke = os.environ.get("SMOKE") == "1"
if not smoke and not torch.cuda.is_available():
    raise SystemExit("gpu.sh: no CUDA device (SMOKE=1 checks the script on the CPU)")
device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
peak = None if smoke else peak_bf16(device_name)  # refuses a GPU it has no datasheet peak for
try:
    import deepspeed  # noqa: F401
    zero = "zero2"
except Exception:
    zero = None
os.environ.setdefault("MASTER_PORT", "29611")

# (label, stage, model, per-device batch, text positions, gradient checkpointing); paper presets.
CASES = [("vary_tiny", "vocab", "vary_tiny", 16, 1024, False),
         ("vary_toy", "integrate", "vary_toy", 8, 2048, True)]
VOCAB = {"vary_tiny": 50272, "vary_toy": 151936}  # OPT-125M's and Qwen's embedding rows


def batch_for(model, b: int, text: int, vocab: int, dev) -> dict:
    """Full-length synthetic samples in the trainer's own layout (uint8 pages, every text position labelled)."""
    spec = model.data_spec()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, vocab - 10, (b, text), generator=g)
    labels = ids.clone()
    if spec.layout == "chat":  # <img> + pads + </img> inside the text, as the chat template puts them
        pad = model.config.imgpad_token_id
        ids[:, 1:1 + spec.num_image_tokens] = pad
        labels[:, :2 + spec.num_image_tokens] = -100
    out = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids),
           "pixel_values": torch.randint(0, 256, (b, 3, spec.image_size, spec.image_size), dtype=torch.uint8, generator=g)}
    if spec.clip_size:
        out["clip_values"] = torch.randint(0, 256, (b, 3, spec.clip_size, spec.clip_size), dtype=torch.uint8, generator=g)
    return out


results = []
for label, stage, model_name, b, text, checkpointing in CASES:
    if smoke:
        b, text = 2, 64
    vocab = 320 if smoke else VOCAB[model_name]
    # The trainer's tokenizer only sizes the embeddings here: batches are made in memory.
    build.build_tokenizer = lambda cfg, d, resume_dir, resumed: build.TokenizerChoice(_Vocabulary(vocab), "benchmark", vocab)
    out = tempfile.mkdtemp(prefix=f"gpu-{label}-")
    cfg = TrainConfig(stage=stage, model=model_name, preset="tiny" if smoke else "paper", manifests=["in-memory"],
                      out=out, steps=10_000, batch_size=b, lr=1e-5, warmup_ratio=0.0, deepspeed=zero or "off",
                      precision="fp32" if smoke else "bf16", gradient_checkpointing=checkpointing,
                      allow_random_init=True, save_every=0, save_every_minutes=0, holdout=0.0, max_length=text + 512)
    from training.run import Trainer

    t_build = time.perf_counter()
    trainer = Trainer(cfg)
    built_s = time.perf_counter() - t_build
    batch = batch_for(trainer.model, b, text, vocab, trainer.d.device)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    warm, steps = (1, 2) if smoke else (3, 8)
    for i in range(warm + steps):
        if i == warm:
            sync()
            t0 = time.perf_counter()
        loss = trainer.train_step([batch])
    sync()
    step_s = (time.perf_counter() - t0) / steps
    f = sample_flops(trainer.model, text_tokens=text, labelled=int((batch["labels"][:, 1:] != -100).sum()) // b)
    llm_tokens = b * (text + (trainer.model.data_spec().num_image_tokens if stage == "vocab" else 0))
    r = {"model": label, "device": device_name, "zero": 2 if zero else None, "precision": cfg.precision,
         "batch_per_gpu": b, "text_positions": text, "gradient_checkpointing": checkpointing,
         "build_s": round(built_s, 1), "step_s": round(step_s, 4), "llm_tokens_per_s": round(llm_tokens / step_s),
         "images_per_s": round(b / step_s, 2), "tflop_per_sample": round(f.training / 1e12, 3),
         "mfu_bf16": None if peak is None else round(f.training * b / step_s / peak, 4),
         "peak_bf16_tflops": None if peak is None else peak / 1e12, "final_loss": round(loss, 4),
         "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
         "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)}
    print(json.dumps(r), flush=True)
    results.append(r)
    del trainer, batch
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
if os.environ.get("OUT"):
    with open(os.path.join(os.environ["OUT"], "gpu.json"), "w") as fh:
        json.dump(results, fh, indent=1)
PYEOF
