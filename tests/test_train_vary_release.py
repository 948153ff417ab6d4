"""Vary's released checkpoints: a tiny state dict built with the released code's key names (SAM tower with
net_2/net_3, CLIP tower, the two projectors, Qwen-1's fused c_attn and w1/w2/c_proj MLP) maps onto
varyflow's Vary-toy exactly, loads through the trainer's model building, and a key left unmapped is an
error."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from tests.train_support import short_texts, tiny_config
from training.errors import TrainingError
from training.tokenizer import train_tokenizer
from training.vary_base import PRESETS, QWEN_TINY, VaryToy
from training.vary_release import map_state_dict

META = [("layers.", "blocks."), ("layer_norm1", "norm1"), ("layer_norm2", "norm2"), ("neck.conv1", "neck.0"),
        ("neck.layer_norm1", "neck.1"), ("neck.conv2", "neck.2"), ("neck.layer_norm2", "neck.3"),
        ("patch_embed.projection", "patch_embed.proj")]
QWEN1_TINY = {"model_type": "vary", "vocab_size": 320, "hidden_size": 128, "intermediate_size": 512,
              "num_hidden_layers": 2, "num_attention_heads": 4, "seq_length": 2048, "rotary_emb_base": 10000,
              "layer_norm_epsilon": 1e-6, "kv_channels": 32}


def released_names(model: VaryToy) -> dict[str, torch.Tensor]:
    """The model's tensors under the names Vary-toy's code gives them (written out here, independently)."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("clip."):
            out["transformer.vision_tower." + k[5:]] = v
        elif k.startswith("vocab.downsample."):
            out[f"transformer.vision_tower_high.net_{2 + int(k.split('.')[2])}.weight"] = v
        elif k.startswith("vocab.sam."):
            name = k[len("vocab.sam."):]
            for a, b in META:
                name = name.replace(a, b)
            out["transformer.vision_tower_high." + name] = v
        elif k.startswith("clip_proj."):
            out["transformer.mm_projector." + k[len("clip_proj."):]] = v
        elif k.startswith("vocab_proj."):
            out["transformer.mm_projector_vary." + k[len("vocab_proj."):]] = v
    sd, n = model.state_dict(), QWEN1_TINY["num_hidden_layers"]
    out["transformer.wte.weight"] = sd["llm.model.embed_tokens.weight"]
    out["transformer.ln_f.weight"] = sd["llm.model.norm.weight"]
    out["lm_head.weight"] = sd["llm.lm_head.weight"]
    for i in range(n):
        p = f"llm.model.layers.{i}."
        h = f"transformer.h.{i}."
        out[h + "ln_1.weight"] = sd[p + "input_layernorm.weight"]
        out[h + "ln_2.weight"] = sd[p + "post_attention_layernorm.weight"]
        for kind in ("weight", "bias"):
            out[h + f"attn.c_attn.{kind}"] = torch.cat([sd[p + f"self_attn.{x}_proj.{kind}"] for x in "qkv"])
        out[h + "attn.c_proj.weight"] = sd[p + "self_attn.o_proj.weight"]
        out[h + "mlp.w1.weight"] = sd[p + "mlp.up_proj.weight"]
        out[h + "mlp.w2.weight"] = sd[p + "mlp.gate_proj.weight"]
        out[h + "mlp.c_proj.weight"] = sd[p + "mlp.down_proj.weight"]
    out["transformer.rotary_emb.inv_freq"] = torch.zeros(16)  # a buffer released files carry
    return {k: v.clone() for k, v in out.items()}


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(3)
    cfg = PRESETS["vary_toy"]["tiny"]()
    cfg.llm = dict(QWEN_TINY, vocab_size=320, num_key_value_heads=4, intermediate_size=256)  # Qwen-1: no GQA
    return VaryToy(cfg)


def test_released_vary_toy_names_map_onto_every_tensor(toy):
    family, mapped = map_state_dict(released_names(toy))
    own = toy.state_dict()
    assert family == "qwen" and set(mapped) == set(own)
    assert all(torch.equal(mapped[k], own[k]) for k in own)


def test_a_key_left_unmapped_is_an_error(toy, tmp_path):
    state = released_names(toy)
    state["transformer.visual_extra.weight"] = torch.zeros(2)
    with pytest.raises(TrainingError, match=r"1 keys of the Vary checkpoint are not mapped \(e.g. transformer.visual_extra"):
        map_state_dict(state)
    state = released_names(toy)
    del state["transformer.vision_tower_high.net_3.weight"]  # the second conv would stay random
    from training.vary_release import load_into

    save_file(state, str(tmp_path / "vary.safetensors"))
    with pytest.raises(TrainingError, match=r"missing \['vocab.downsample.1.weight'\]"):
        load_into(toy, tmp_path / "vary.safetensors")


def test_a_released_folder_loads_through_the_trainers_model_building(toy, tmp_path):
    from training.build import build_model

    folder = tmp_path / "Vary-toy"
    folder.mkdir()
    save_file(released_names(toy), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(QWEN1_TINY))
    tok = train_tokenizer(short_texts(16), 300)
    cfg = tiny_config("unused", tmp_path / "run", stage="integrate", model="vary_toy", vary_checkpoint=str(folder))
    model, loaded = build_model(cfg, tok)
    assert loaded["vary"]["family"] == "qwen" and model.config.llm["rope_theta"] == 10000.0
    own = toy.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in model.state_dict().items())
