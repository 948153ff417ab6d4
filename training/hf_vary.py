"""The transformers face of a varyflow checkpoint: copied beside the weights (with the model files it
imports, relatively) so that `AutoModel.from_pretrained(folder, trust_remote_code=True)` builds the same
model in any process that has torch and transformers, without varyflow installed. The folder's
config.json is varyflow's own ({"model_type", "config"}) plus `auto_map`; this config class keeps both."""
from __future__ import annotations

from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedModel

from training.modeling import config_from_dict, model_classes


class VaryConfig(PretrainedConfig):
    model_type = "vary"

    def __init__(self, config: dict[str, Any] | None = None, vary_model_type: str = "vary_tiny", **kwargs: Any):
        kind = kwargs.pop("model_type", None)  # varyflow's "vary_tiny" / "vary_base" / "vary_toy"
        self.vary_model_type = kind if kind in model_classes() else vary_model_type
        self.vary = dict(config or {})
        super().__init__(**kwargs)


class VaryForOCR(PreTrainedModel):
    """The varyflow model's modules under their own names (so the weights file loads as saved);
    `forward` returns next-token logits at the text positions."""

    config_class = VaryConfig
    base_model_prefix = ""
    main_input_name = "pixel_values"

    def __init__(self, config: VaryConfig):
        super().__init__(config)
        klass = model_classes()[config.vary_model_type]
        inner = klass(config_from_dict(klass.config_class, config.vary))
        for name, child in inner.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "_vary", inner)  # the same modules, reachable without registering them twice
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        pass  # every tensor comes from the checkpoint

    @property
    def vary(self):
        return self._vary

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                clip_values: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {} if clip_values is None else {"clip_values": clip_values}
        return self._vary.logits(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask, **extra)
