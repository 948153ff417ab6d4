"""Vary-tiny (stage 1, "vocabulary generation"): vocabulary network -> Linear(1024->768) -> OPT-125M.
The image tokens come first, then the target; there is no text prompt (the Vary paper, arXiv 2312.06109)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import OPTConfig, OPTForCausalLM

from training.modeling import VaryModel, DataSpec
from training.vocab_net import PRESETS as VOCAB_PRESETS, VocabNet, VocabNetConfig

OPT_125M = dict(vocab_size=50272, hidden_size=768, ffn_dim=3072, num_hidden_layers=12, num_attention_heads=12,
                word_embed_proj_dim=768, max_position_embeddings=2048, dropout=0.1, attention_dropout=0.0,
                do_layer_norm_before=True, enable_bias=True, tie_word_embeddings=True)
OPT_TINY = dict(vocab_size=512, hidden_size=128, ffn_dim=512, num_hidden_layers=2, num_attention_heads=4,
                word_embed_proj_dim=128, max_position_embeddings=512, dropout=0.0, attention_dropout=0.0,
                do_layer_norm_before=True, enable_bias=True, tie_word_embeddings=True)


@dataclass
class VaryTinyConfig:
    vocab: VocabNetConfig = field(default_factory=VocabNetConfig)
    llm: dict[str, Any] = field(default_factory=lambda: dict(OPT_125M))  # OPTConfig keyword arguments
    max_positions: int = 4096  # OPT's learned positions are interpolated up to this many


PRESETS = {
    "paper": lambda: VaryTinyConfig(vocab=VOCAB_PRESETS["paper"], llm=dict(OPT_125M), max_positions=4096),
    "tiny": lambda: VaryTinyConfig(vocab=VOCAB_PRESETS["tiny"], llm=dict(OPT_TINY), max_positions=2048),
}


class VaryTiny(VaryModel):
    model_type = "vary_tiny"
    config_class = VaryTinyConfig

    def __init__(self, config: VaryTinyConfig):
        super().__init__()
        self.config = config
        self.vocab = VocabNet(config.vocab)
        llm_cfg = dict(config.llm, max_position_embeddings=config.max_positions)
        self.llm = OPTForCausalLM(OPTConfig(**llm_cfg))
        self.proj = nn.Linear(config.vocab.out_dim, self.llm.config.word_embed_proj_dim)

    def data_spec(self) -> DataSpec:
        return DataSpec(layout="opt", image_size=self.config.vocab.image_size, clip_size=None,
                        num_image_tokens=self.config.vocab.num_tokens)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]  # all of it (Vary-tiny trains every part)

    def enable_gradient_checkpointing(self) -> None:
        kw = {"gradient_checkpointing_kwargs": {"use_reentrant": False}}
        self.llm.gradient_checkpointing_enable(**kw)
        self.vocab.sam.gradient_checkpointing_enable(**kw)

    # -- forward / generate -----------------------------------------------------------------------
    def _prefix(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        image = self.proj(self.vocab(pixel_values.to(self.proj.weight.dtype)))
        text = self.llm.get_input_embeddings()(input_ids)
        embeds = torch.cat([image, text.to(image.dtype)], dim=1)
        ones = attention_mask.new_ones(image.shape[:2])
        return embeds, torch.cat([ones, attention_mask], dim=1), image.shape[1]

    def logits(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               **_: Any) -> torch.Tensor:
        """Next-token logits at the text positions (the image positions come first and are dropped)."""
        embeds, mask, n_img = self._prefix(pixel_values, input_ids, attention_mask)
        return self.llm(inputs_embeds=embeds, attention_mask=mask).logits[:, n_img:]

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        embeds, mask, n_img = self._prefix(pixel_values, input_ids, attention_mask)
        hidden = self.llm.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        return labelled_lm_loss(hidden[:, n_img:], self.llm.lm_head, labels)

    @torch.no_grad()
    def generate(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 max_new_tokens: int, eos_token_id: int, pad_token_id: int, **_: Any) -> torch.Tensor:
        embeds, mask, _ = self._prefix(pixel_values, input_ids, attention_mask)
        return self.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, num_beams=1, eos_token_id=eos_token_id, pad_token_id=pad_token_id)


def labelled_lm_loss(hidden: torch.Tensor, lm_head: nn.Module, labels: torch.Tensor | None) -> torch.Tensor:
    """`causal_lm_loss` with the LM head applied only where a label is: prompts, image pads and padding
    need no logits, and the logits (batch × length × vocabulary, in fp32 for the loss) are the largest
    activation of a training step — with Qwen's 152k-token vocabulary most of the memory."""
    if labels is None:
        raise ValueError("labels are required for the loss")
    targets = labels[:, 1:]
    keep = targets != -100
    logits = lm_head(hidden[:, :-1][keep]).float()
    return F.cross_entropy(logits, targets[keep])


def causal_lm_loss(text_logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Mean next-token loss over the positions whose label is not -100. The logit at text position t
    predicts token t+1; the last image position predicts text token 0, which is always a fixed start
    token and masked, so it is left out."""
    if labels is None:
        raise ValueError("labels are required for the loss")
    shift_logits = text_logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100)


def interpolate_opt_positions(model: OPTForCausalLM, n_positions: int) -> None:
    """Resize OPT's learned position table to `n_positions` by linear interpolation along the position
    axis. OPT keeps two offset rows in front of the table; they are carried over untouched."""
    emb = model.model.decoder.embed_positions
    old = emb.weight.data
    offset = getattr(emb, "offset", 2)
    n_old = old.shape[0] - offset
    if n_old == n_positions:
        return
    table = old[offset:].T.unsqueeze(0)  # (1, dim, n_old)
    new = F.interpolate(table.float(), size=n_positions, mode="linear", align_corners=True)[0].T.to(old.dtype)
    emb.weight = nn.Parameter(torch.cat([old[:offset], new], dim=0))
    emb.num_embeddings = n_positions + offset
    model.config.max_position_embeddings = n_positions
