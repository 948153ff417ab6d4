"""Vary-base / Vary-toy (stage 2, "vocabulary integration"): a CLIP-L/14 tower (224², hidden state -2,
CLS dropped) beside the stage-1 vocabulary network, each projected by its own Linear and concatenated on
channels to the LLM width; the features overwrite the `<imgpad>` embeddings of
`<img>` + N × `<imgpad>` + `</img>` in a Qwen2-architecture LLM. Both towers are frozen (the Vary paper, arXiv 2312.06109)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, Qwen2Config, Qwen2ForCausalLM

from training.errors import TrainingError
from training.modeling import DataSpec, VaryModel
from training.vary_tiny import labelled_lm_loss
from training.vocab_net import PRESETS as VOCAB_PRESETS, VocabNet, VocabNetConfig

CLIP_L14 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
CLIP_TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                 image_size=56, patch_size=14, projection_dim=64, hidden_act="quick_gelu")
QWEN_7B = dict(vocab_size=151936, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=8192,
               rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)
QWEN_1_8B = dict(QWEN_7B, hidden_size=2048, intermediate_size=5504, num_hidden_layers=24,
                 num_attention_heads=16, num_key_value_heads=16)
QWEN_TINY = dict(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                 rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)


@dataclass
class VaryBaseConfig:
    vocab: VocabNetConfig = field(default_factory=VocabNetConfig)
    clip: dict[str, Any] = field(default_factory=lambda: dict(CLIP_L14))  # CLIPVisionConfig kwargs
    llm: dict[str, Any] = field(default_factory=lambda: dict(QWEN_7B))  # Qwen2Config kwargs
    clip_proj_dim: int = 2048  # Vary-base: 2048 + 2048 = 4096; Vary-toy: 1024 + 1024 = 2048
    vocab_proj_dim: int = 2048
    clip_layer: int = -2
    imgpad_token_id: int = -1  # set from the tokenizer when the model is built


PRESETS = {
    "vary_base": {
        "paper": lambda: VaryBaseConfig(VOCAB_PRESETS["paper"], dict(CLIP_L14), dict(QWEN_7B), 2048, 2048),
        "tiny": lambda: VaryBaseConfig(VOCAB_PRESETS["tiny"], dict(CLIP_TINY), dict(QWEN_TINY), 64, 64),
    },
    "vary_toy": {
        "paper": lambda: VaryBaseConfig(VOCAB_PRESETS["paper"], dict(CLIP_L14), dict(QWEN_1_8B), 1024, 1024),
        "tiny": lambda: VaryBaseConfig(VOCAB_PRESETS["tiny"], dict(CLIP_TINY), dict(QWEN_TINY), 64, 64),
    },
}


class VaryBase(VaryModel):
    model_type = "vary_base"
    config_class = VaryBaseConfig

    def __init__(self, config: VaryBaseConfig):
        super().__init__()
        if config.clip_proj_dim + config.vocab_proj_dim != config.llm["hidden_size"]:
            raise TrainingError(f"projections {config.clip_proj_dim}+{config.vocab_proj_dim} do not add up to the "
                                f"LLM width {config.llm['hidden_size']}")
        self.config = config
        self.clip = CLIPVisionModel(CLIPVisionConfig(**config.clip))
        self.vocab = VocabNet(config.vocab)
        clip_grid = config.clip["image_size"] // config.clip["patch_size"]
        if clip_grid * clip_grid != config.vocab.num_tokens:
            raise TrainingError(f"CLIP gives {clip_grid ** 2} tokens, the vocabulary network {config.vocab.num_tokens}")
        self.clip_proj = nn.Linear(config.clip["hidden_size"], config.clip_proj_dim)
        self.vocab_proj = nn.Linear(config.vocab.out_dim, config.vocab_proj_dim)
        self.llm = Qwen2ForCausalLM(Qwen2Config(**config.llm))
        self.freeze_towers()

    def freeze_towers(self) -> None:
        for tower in (self.clip, self.vocab):
            tower.requires_grad_(False)
            tower.eval()

    def train(self, mode: bool = True) -> "VaryBase":
        super().train(mode)
        self.clip.eval()  # frozen towers never switch to training behaviour
        self.vocab.eval()
        return self

    # -- construction from local pretrained parts (training.build) ------------------------------
    def load_vocab_net(self, stage1: VaryModel) -> None:
        """Take the vocabulary network of a stage-1 (Vary-tiny) checkpoint, bit for bit."""
        self.vocab.load_state_dict(stage1.vocab.state_dict(), strict=True)
        self.freeze_towers()

    def data_spec(self) -> DataSpec:
        return DataSpec(layout="chat", image_size=self.config.vocab.image_size,
                        clip_size=self.config.clip["image_size"], num_image_tokens=self.config.vocab.num_tokens)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]  # projections + LLM

    def enable_gradient_checkpointing(self) -> None:
        self.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # -- forward / generate -----------------------------------------------------------------------
    def image_features(self, pixel_values: torch.Tensor, clip_values: torch.Tensor) -> torch.Tensor:
        dtype = self.clip_proj.weight.dtype
        with torch.no_grad():
            clip = self.clip(pixel_values=clip_values.to(dtype), output_hidden_states=True)
            clip_tokens = clip.hidden_states[self.config.clip_layer][:, 1:]
            vocab_tokens = self.vocab(pixel_values.to(dtype))
        return torch.cat([self.clip_proj(clip_tokens), self.vocab_proj(vocab_tokens)], dim=-1)

    def _embeds(self, pixel_values, clip_values, input_ids):
        embeds = self.llm.get_input_embeddings()(input_ids)
        feats = self.image_features(pixel_values, clip_values).to(embeds.dtype)
        pads = input_ids == self.config.imgpad_token_id
        if int(pads.sum()) != feats.shape[0] * feats.shape[1]:
            raise TrainingError(f"{int(pads.sum())} <imgpad> tokens for {feats.shape[0]}×{feats.shape[1]} image features")
        return embeds.masked_scatter(pads.unsqueeze(-1), feats.reshape(-1, feats.shape[-1]))

    def logits(self, pixel_values: torch.Tensor, clip_values: torch.Tensor, input_ids: torch.Tensor,
               attention_mask: torch.Tensor, **_: Any) -> torch.Tensor:
        embeds = self._embeds(pixel_values, clip_values, input_ids)
        return self.llm(inputs_embeds=embeds, attention_mask=attention_mask).logits

    def forward(self, pixel_values: torch.Tensor, clip_values: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, labels: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        embeds = self._embeds(pixel_values, clip_values, input_ids)
        hidden = self.llm.model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        return labelled_lm_loss(hidden, self.llm.lm_head, labels)

    @torch.no_grad()
    def generate(self, pixel_values: torch.Tensor, clip_values: torch.Tensor, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor, max_new_tokens: int, eos_token_id: int, pad_token_id: int,
                 **_: Any) -> torch.Tensor:
        embeds = self._embeds(pixel_values, clip_values, input_ids)
        return self.llm.generate(inputs_embeds=embeds, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, num_beams=1, eos_token_id=eos_token_id, pad_token_id=pad_token_id)


class VaryToy(VaryBase):
    """Vary-toy: the same wiring with a 1.8B-class LLM and two Linear(1024->1024)."""

    model_type = "vary_toy"
