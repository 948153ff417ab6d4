"""The papers' training recipes as named configs (Vary, arXiv 2312.06109, and Vary-toy, arXiv 2401.12503;
the table is in docs/training.md). A recipe fills every option the user does not set; `--steps` given
by the user replaces the recipe's epochs."""
from __future__ import annotations

from typing import Any

from training.errors import TrainingError

_COMMON = dict(preset="paper", warmup_ratio=0.03, weight_decay=0.0, max_length=4096, precision="bf16",
               deepspeed="zero2")

RECIPES: dict[str, dict[str, Any]] = {
    # stage 1: everything trainable, per-device batch 16, global 512, 3 epochs
    "vary-tiny": dict(_COMMON, stage="vocab", model="vary_tiny", global_batch=512, batch_size=16, epochs=3.0, lr=5e-5),
    # stage 2: towers frozen; per-device 4 with gradient checkpointing
    "vary-base-pretrain": dict(_COMMON, stage="integrate", model="vary_base", global_batch=256, batch_size=4,
                               gradient_checkpointing=True, epochs=1.0, lr=5e-5),
    "vary-base-sft": dict(_COMMON, stage="integrate", model="vary_base", global_batch=256, batch_size=4,
                          gradient_checkpointing=True, epochs=1.0, lr=1e-5),
    "vary-toy-pretrain": dict(_COMMON, stage="integrate", model="vary_toy", global_batch=512, batch_size=8,
                              gradient_checkpointing=True, epochs=1.0, lr=5e-5),
    "vary-toy-sft": dict(_COMMON, stage="integrate", model="vary_toy", global_batch=512, batch_size=8,
                         gradient_checkpointing=True, epochs=1.0, lr=2e-5),
}


def apply_recipe(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """`given` completed from the recipe `name`: keys in `given` (not null) win. A stage or model that contradicts
    the recipe is an error (a Vary-tiny recipe cannot train Vary-base)."""
    if name not in RECIPES:
        raise TrainingError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    for key in ("stage", "model"):
        if key in given and given[key] != recipe[key]:
            raise TrainingError(f"recipe {name} trains {key} {recipe[key]!r}, not {given[key]!r}")
    out = dict(given)
    for key, value in recipe.items():
        if key == "epochs" and given.get("steps") is not None:
            continue  # the user's step count replaces the recipe's epochs
        if key == "global_batch" and given.get("grad_accum") is not None:
            continue
        if out.get(key) is None:  # null in a config file means "not set here"
            out[key] = value
    return out
