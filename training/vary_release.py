"""Vary's released checkpoints (Vary-tiny on OPT, Vary-base on Qwen-7B, Vary-toy on Qwen-1.8B) as
varyflow models: their state-dict names mapped onto ours, Qwen-1's fused attention and MLP converted to
the Qwen2 layout the trainer uses. Every key must be mapped or be a known buffer — a key left over is an
error, so no part (the two convolutions after SAM, a projector) silently stays random.

Names, from the released model code (github.com/Ucas-HaoranWei/Vary, Vary-toy):
- Vary-tiny: `model.vision_tower.*` (Meta's SAM ViT-B + `net_2`, `net_3`), `model.mm_projector.*`,
  `model.decoder.*` (OPT), `lm_head.weight`.
- Vary-base / Vary-toy: `transformer.vision_tower.*` (CLIPVisionModel), `transformer.vision_tower_high.*`
  (SAM + `net_2`, `net_3`), `transformer.mm_projector.*` (CLIP side), `transformer.mm_projector_vary.*`
  (SAM side), Qwen-1: `transformer.wte`, `transformer.h.N.{ln_1, attn.c_attn, attn.c_proj, ln_2,
  mlp.w1, mlp.w2, mlp.c_proj}`, `transformer.ln_f`, `lm_head`.
Qwen-1's MLP is c_proj(w1(x) * silu(w2(x))): w2 is Qwen2's gate_proj, w1 its up_proj, c_proj its
down_proj; c_attn is q, k and v stacked along the output dimension."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from training.errors import TrainingError
from training.vocab_net import convert_sam_state_dict

# Buffers a released file may carry that hold no weights (recomputed by the model).
_BUFFERS = re.compile(r"(rotary_emb\.inv_freq|\.attn\.bias|\.attn\.masked_bias|position_ids)$")


def _sam(prefix: str, state: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> list[str]:
    taken = [k for k in state if k.startswith(prefix)]
    encoder = {}
    for key in taken:
        rest = key[len(prefix):]
        if rest in ("net_2.weight", "net_3.weight"):
            out[f"vocab.downsample.{0 if rest.startswith('net_2') else 1}.weight"] = state[key]
        else:
            encoder[rest] = state[key]
    out.update({"vocab.sam." + k: v for k, v in convert_sam_state_dict(encoder).items()})
    return taken


def _qwen1_layer(rest: str, value: torch.Tensor, out: dict[str, torch.Tensor]) -> bool:
    m = re.fullmatch(r"h\.(\d+)\.(.+)", rest)
    if not m:
        return False
    i, part = m.groups()
    base = f"llm.model.layers.{i}."
    simple = {"ln_1.weight": "input_layernorm.weight", "ln_2.weight": "post_attention_layernorm.weight",
              "attn.c_proj.weight": "self_attn.o_proj.weight", "mlp.w1.weight": "mlp.up_proj.weight",
              "mlp.w2.weight": "mlp.gate_proj.weight", "mlp.c_proj.weight": "mlp.down_proj.weight"}
    if part in simple:
        out[base + simple[part]] = value
        return True
    fused = re.fullmatch(r"attn\.c_attn\.(weight|bias)", part)
    if fused:
        q, k, v = value.chunk(3, dim=0)
        for name, t in zip(("q_proj", "k_proj", "v_proj"), (q, k, v)):
            out[f"{base}self_attn.{name}.{fused.group(1)}"] = t.contiguous()
        return True
    return False


def map_state_dict(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor]]:
    """(family, state dict in varyflow names): family "opt" (Vary-tiny) or "qwen" (Vary-base / -toy)."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = {k for k in state if _BUFFERS.search(k)}
    if any(k.startswith("model.decoder.") for k in state):
        family = "opt"
        used.update(_sam("model.vision_tower.", state, out))
        for key, value in state.items():
            if key.startswith("model.mm_projector."):
                out["proj." + key[len("model.mm_projector."):]] = value
            elif key.startswith("model.decoder."):
                out["llm." + key] = value
            elif key == "lm_head.weight":
                out["llm.lm_head.weight"] = value
            else:
                continue
            used.add(key)
    elif any(k.startswith("transformer.") for k in state):
        family = "qwen"
        used.update(_sam("transformer.vision_tower_high.", state, out))
        for key, value in state.items():
            if key in used:
                continue
            rest = key[len("transformer."):] if key.startswith("transformer.") else None
            if rest is not None and rest.startswith("vision_tower."):
                out["clip." + rest[len("vision_tower."):]] = value
            elif rest is not None and rest.startswith("mm_projector_vary."):
                out["vocab_proj." + rest[len("mm_projector_vary."):]] = value
            elif rest is not None and rest.startswith("mm_projector."):
                out["clip_proj." + rest[len("mm_projector."):]] = value
            elif rest == "wte.weight":
                out["llm.model.embed_tokens.weight"] = value
            elif rest == "ln_f.weight":
                out["llm.model.norm.weight"] = value
            elif key == "lm_head.weight":
                out["llm.lm_head.weight"] = value
            elif not (rest is not None and _qwen1_layer(rest, value, out)):
                continue
            used.add(key)
    else:
        raise TrainingError("not a released Vary checkpoint: no model.decoder.* (Vary-tiny) or transformer.* "
                            "(Vary-base / Vary-toy) keys")
    left = sorted(set(state) - used)
    if left:
        raise TrainingError(f"{len(left)} keys of the Vary checkpoint are not mapped (e.g. {', '.join(left[:3])}); "
                            f"refusing to leave those parts random")
    return family, out


def qwen1_to_qwen2_config(config: dict[str, Any]) -> dict[str, Any]:
    """A Qwen-1 config.json (model_type "qwen" / Vary's "vary") as Qwen2Config keyword arguments."""
    try:
        return dict(vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
                    intermediate_size=config["intermediate_size"] // 2,  # Qwen-1 counts w1 and w2 together
                    num_hidden_layers=config["num_hidden_layers"], num_attention_heads=config["num_attention_heads"],
                    num_key_value_heads=config["num_attention_heads"],
                    max_position_embeddings=config.get("seq_length", config.get("max_position_embeddings", 8192)),
                    rope_theta=float(config.get("rotary_emb_base", 10000.0)),
                    rms_norm_eps=config.get("layer_norm_epsilon", 1e-6),
                    tie_word_embeddings=config.get("tie_word_embeddings", False))
    except KeyError as e:
        raise TrainingError(f"Qwen-1 config without {e}") from None


def llm_config_of(config: dict[str, Any], model: str) -> dict[str, Any]:
    """The LLM architecture of a released Vary folder's config.json (OPT fields for Vary-tiny, Qwen-1's
    for Vary-base / Vary-toy)."""
    if model == "vary_tiny":
        from transformers import OPTConfig

        from training.pretrained import architecture

        known = set(OPTConfig().to_dict())
        return architecture(OPTConfig(**{k: v for k, v in config.items() if k in known and k != "model_type"}))
    return qwen1_to_qwen2_config(config)


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a released checkpoint folder (*.safetensors or *.bin shards) or single file."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    if not files:
        raise TrainingError(f"{path}: no .safetensors or .bin weights")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(str(f)))
        else:
            state.update(torch.load(str(f), map_location="cpu", weights_only=True))
    return state


def load_into(model: torch.nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a released checkpoint into `model` strictly (every tensor of the model, the right shapes)."""
    family, mapped = map_state_dict(read_checkpoint(path))
    own = model.state_dict()
    tied = model.llm.config.tie_word_embeddings  # a tied lm_head is the embeddings, stored once
    missing = sorted(k for k in set(own) - set(mapped) if not (tied and k.endswith("lm_head.weight")))
    extra = sorted(set(mapped) - set(own))
    if missing or extra:
        raise TrainingError(f"{path} does not fit the {type(model).__name__} being built (missing {missing[:3]}, "
                            f"unexpected {extra[:3]}); is it the same model and size?")
    for k, v in mapped.items():
        if own[k].shape != v.shape:
            raise TrainingError(f"{path}: {k} has shape {tuple(v.shape)}, the model needs {tuple(own[k].shape)}")
    model.load_state_dict(mapped, strict=False)
    return {"source": str(Path(path).resolve()), "family": family, "tensors": len(mapped)}
