"""`train ... --dry-run`: the model built on the meta device (no memory, no weights read) to say, before
anyone rents GPUs, how many parameters it has, how many tokens a step takes and roughly how much memory
each GPU needs for the chosen ZeRO stage.

The memory model (bytes per GPU, N ranks, bf16 mixed precision with AdamW):
- weights: 2 per parameter (4 in fp32), divided by N under ZeRO-3;
- gradients: 2 per trainable parameter (4 in fp32), divided by N under ZeRO-2 and 3;
- optimiser: fp32 master copy + two moments = 12 per trainable parameter (8 in fp32, the weights being
  the master), divided by N under ZeRO-1 and up;
- activations at full length (an upper bound: most samples are shorter), per micro batch b and length s:
  each trainable transformer layer keeps ~34·b·s·h bytes in bf16 (Korthikanti et al., 2022, without the
  attention-score term that SDPA does not materialise), only its input (2·b·s·h) with gradient
  checkpointing plus one layer being recomputed; the LM head's logits take b·s·V·10 (bf16 logits, their
  fp32 copy for the loss and its gradient). Frozen towers run without grad and keep nothing.
It leaves out the CUDA context, allocator fragmentation and communication buckets: keep ~10-15% spare."""
from __future__ import annotations

from typing import Any

from training.config import TrainConfig

GIB = 2 ** 30


class _Vocabulary:
    """A stand-in tokenizer of a given size, for configs that name none (the preset's vocabulary)."""

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.size - 1


def _tokenizer(cfg: TrainConfig):
    from training import vary_base, vary_tiny
    from training.tokenizer import load_tokenizer

    path = cfg.tokenizer or cfg.llm_path
    if path:
        return load_tokenizer(path, with_base_size=True)
    preset = vary_tiny.PRESETS[cfg.preset]() if cfg.model == "vary_tiny" else vary_base.PRESETS[cfg.model][cfg.preset]()
    size = preset.llm["vocab_size"] if cfg.preset == "paper" else cfg.tokenizer_vocab_size
    return _Vocabulary(size), size


def _layer_activations(b: int, s: int, h: int, layers: int, checkpointing: bool) -> float:
    if checkpointing:
        return layers * 2 * b * s * h + 34 * b * s * h
    return layers * 34 * b * s * h


def estimate_memory(model, cfg: TrainConfig, world_size: int, zero: int, bf16: bool = True) -> dict[str, float]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n = max(1, world_size)
    weight_bytes, grad_bytes, optim_bytes = (2, 2, 12) if bf16 else (4, 4, 8)
    weights = total * weight_bytes / (n if zero >= 3 else 1)
    grads = trainable * grad_bytes / (n if zero >= 2 else 1)
    optimiser = trainable * optim_bytes / (n if zero >= 1 else 1)
    llm = model.llm.config
    b, s = cfg.batch_size, cfg.max_length
    acts = _layer_activations(b, s, llm.hidden_size, llm.num_hidden_layers, cfg.gradient_checkpointing)
    acts += b * s * llm.vocab_size * 10
    if cfg.model == "vary_tiny":  # the vocabulary network trains in stage 1: SAM's patch tokens are its sequence
        v = model.config.vocab
        grid = v.image_size // v.patch_size
        acts += _layer_activations(b, grid * grid, v.hidden_size, v.num_layers, cfg.gradient_checkpointing)
    parts = {"weights": weights, "gradients": grads, "optimizer": optimiser, "activations": acts}
    return {**{k: round(v / GIB, 2) for k, v in parts.items()}, "total": round(sum(parts.values()) / GIB, 2)}


def dry_run(cfg: TrainConfig, world_size: int = 1) -> dict[str, Any]:
    import torch

    from training.build import model_config
    from training.ds_config import zero_stage
    from training.modeling import model_classes

    cfg.validate()
    tok, base = _tokenizer(cfg)
    mcfg, _ = model_config(cfg, tok, base)
    with torch.device("meta"):
        model = model_classes()[cfg.model](mcfg)
    accum = cfg.accumulation(world_size)
    per_step = cfg.batch_size * world_size * accum
    steps = cfg.steps
    if steps is None:
        try:
            from training.run import training_rows

            steps = cfg.total_steps(world_size, training_rows(cfg))
        except Exception:  # manifests not reachable from here: the step count stays unknown
            steps = None
    zero = zero_stage(cfg)
    bf16 = cfg.precision != "fp32"
    return {"model": cfg.model, "preset": cfg.preset, "recipe": cfg.recipe, "world_size": world_size,
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "samples_per_step": per_step, "grad_accum": accum, "max_tokens_per_step": per_step * cfg.max_length,
            "steps": steps, "zero_stage": zero, "precision": "bf16" if bf16 else "fp32",
            "gradient_checkpointing": cfg.gradient_checkpointing,
            "memory_per_gpu_gib": estimate_memory(model, cfg, world_size, zero, bf16)}


def format_report(r: dict[str, Any]) -> str:
    m = r["memory_per_gpu_gib"]
    return "\n".join([
        f"{r['model']} ({r['preset']} preset{', recipe ' + r['recipe'] if r['recipe'] else ''}) on {r['world_size']} GPU(s)",
        f"  parameters       {r['parameters'] / 1e6:,.1f}M total, {r['trainable_parameters'] / 1e6:,.1f}M trainable",
        f"  per step         {r['samples_per_step']} samples ({r['grad_accum']} micro steps), "
        f"up to {r['max_tokens_per_step']:,} tokens; {r['steps'] if r['steps'] is not None else '?'} steps",
        f"  memory per GPU   ~{m['total']:.1f} GiB at ZeRO-{r['zero_stage']} {r['precision']}"
        f"{' + gradient checkpointing' if r['gradient_checkpointing'] else ''}: weights {m['weights']:.1f}, "
        f"gradients {m['gradients']:.1f}, optimizer {m['optimizer']:.1f}, activations {m['activations']:.1f} "
        f"(full-length samples; keep 10-15% spare)",
    ])
