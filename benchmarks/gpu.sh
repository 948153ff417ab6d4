#!/usr/bin/env bash
# ONE script for a lent H100/H200: Vary-tiny (paper preset) and Vary-toy step time, tokens/s, bf16 MFU
# and peak memory, in well under 8 minutes. Not run in this project yet (no device was lent); see
# docs/training.md. Usage: bash benchmarks/gpu.sh   (writes $OUT/gpu.json when $OUT is set)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
timeout 450 "$PY" - <<'PYEOF'
import json, os, time, torch
from training.vary_tiny import PRESETS as TINY, VaryTiny
from training.vary_base import PRESETS as BASE, VaryToy
assert torch.cuda.is_available(), "needs a GPU"
dev = torch.device("cuda")
torch.backends.cuda.matmul.allow_tf32 = True
PEAK = {"H100": 989e12, "H200": 989e12}  # dense bf16 FLOP/s (SXM)
name = torch.cuda.get_device_name()
peak = next((v for k, v in PEAK.items() if k in name), 989e12)

def bench(label, model, batch, text_len, n_img, extra, steps=8, warm=3):
    model.to(dev, dtype=torch.bfloat16).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
    size = model.config.vocab.image_size
    V = model.llm.config.vocab_size
    px = torch.randn(batch, 3, size, size, device=dev, dtype=torch.bfloat16)
    ids = torch.randint(10, V - 10, (batch, text_len), device=dev)
    kw = dict(pixel_values=px, input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids.clone())
    kw.update(extra(batch, ids))
    torch.cuda.reset_peak_memory_stats()
    for i in range(warm + steps):
        if i == warm:
            torch.cuda.synchronize(); t = time.perf_counter()
        loss = model(**kw); loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    tokens = batch * (text_len + (n_img if label == "vary_tiny" else 0))
    n_train = sum(p.numel() for p in params)
    n_frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    flops = 6 * n_train * tokens + 2 * n_frozen * batch * n_img  # frozen towers: forward only (approx.)
    r = {"model": label, "device": name, "batch": batch, "seq": tokens // batch, "step_s": dt,
         "tokens_per_s": tokens / dt, "mfu_bf16": flops / dt / peak,
         "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30, "trainable_params": n_train}
    print(json.dumps(r)); del opt; model.cpu(); torch.cuda.empty_cache()
    return r

out = []
cfg = TINY["paper"](); cfg.llm["vocab_size"] = 50304
m = VaryTiny(cfg); m.enable_gradient_checkpointing() if os.environ.get("GC") else None
out.append(bench("vary_tiny", m, 16, 1024, 256, lambda b, ids: {}))
del m
cfg = BASE["vary_toy"]["paper"](); cfg.llm["vocab_size"] = 151936; cfg.imgpad_token_id = 5
m = VaryToy(cfg); m.enable_gradient_checkpointing()
def toy_extra(b, ids):
    ids[:, 1:257] = 5  # 256 <imgpad> positions
    return {"clip_values": torch.randn(b, 3, 224, 224, device=dev, dtype=torch.bfloat16)}
out.append(bench("vary_toy", m, 4, 2048, 256, toy_extra))
if os.environ.get("OUT"):
    open(os.path.join(os.environ["OUT"], "gpu.json"), "w").write(json.dumps(out, indent=1))
PYEOF
