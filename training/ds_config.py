"""A DeepSpeed config file with Vary's "auto" values filled the way the HF Trainer fills them."""
from __future__ import annotations

import json
from typing import Any

from training.config import TrainConfig
from training.errors import TrainingError


def resolve_ds_config(cfg: TrainConfig, world_size: int, grad_accum: int, hidden: int, bf16: bool) -> dict[str, Any]:
    raw = json.loads(cfg.deepspeed_config_path().read_text())
    auto = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": cfg.batch_size * grad_accum * world_size,
        "gradient_clipping": cfg.max_grad_norm,
        "reduce_bucket_size": hidden * hidden,
        "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
        "stage3_param_persistence_threshold": 10 * hidden,
    }

    def fill(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: fill(v, k) for k, v in node.items()}
        if node == "auto":
            if key == "enabled":
                return bf16
            if key not in auto:
                raise TrainingError(f"DeepSpeed config: no value for \"auto\" key {key!r}")
            return auto[key]
        return node

    out = fill(raw)
    out.setdefault("bf16", {})["enabled"] = bf16
    out.pop("fp16", None)  # fp16 loss scaling failed for Vary's users; bf16 or fp32 only
    return out


def zero_stage(cfg: TrainConfig) -> int:
    """The ZeRO stage the run's DeepSpeed config asks for (0 without DeepSpeed)."""
    path = cfg.deepspeed_config_path()
    if path is None:
        return 0
    return int(json.loads(path.read_text()).get("zero_optimization", {}).get("stage", 0))
