"""Vary's new vocabulary network: a SAM ViTDet image encoder (transformers' SAM vision blocks) and two
strided convolutions that fold its 64×64×256 neck output into 256 tokens of width 1024 (the Vary paper, arXiv 2312.06109)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import SamVisionConfig
from transformers.models.sam.modeling_sam import SamVisionEncoder

from training.errors import TrainingError


@dataclass
class VocabNetConfig:
    image_size: int = 1024
    patch_size: int = 16
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    window_size: int = 14
    global_attn_indexes: list[int] = field(default_factory=lambda: [2, 5, 8, 11])
    neck_channels: int = 256
    conv_channels: list[int] = field(default_factory=lambda: [512, 1024])
    mlp_dim: int | None = None  # None: 4 × hidden_size (SAM's)

    @property
    def out_dim(self) -> int:
        return self.conv_channels[-1]

    @property
    def num_tokens(self) -> int:
        grid = self.image_size // self.patch_size
        for _ in self.conv_channels:
            grid = (grid + 1) // 2  # k3 s2 p1
        return grid * grid

    def sam_config(self) -> SamVisionConfig:
        return SamVisionConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            mlp_dim=self.mlp_dim or 4 * self.hidden_size,
            window_size=self.window_size,
            global_attn_indexes=list(self.global_attn_indexes),
            output_channels=self.neck_channels,
            initializer_range=0.02,  # the config's default (1e-10) leaves a from-scratch encoder constant
            attn_implementation="sdpa",
        )


PRESETS = {
    "paper": VocabNetConfig(),  # SAM ViTDet-B, ~80M parameters
    "tiny": VocabNetConfig(image_size=256, hidden_size=64, num_layers=2, num_heads=2, window_size=8,
                           global_attn_indexes=[1], neck_channels=64, conv_channels=[128, 256]),
}


class VocabNet(nn.Module):
    """pixels (B, 3, S, S), ImageNet-normalised -> tokens (B, num_tokens, out_dim)."""

    def __init__(self, config: VocabNetConfig):
        super().__init__()
        self.config = config
        self.sam = SamVisionEncoder(config.sam_config())
        convs: list[nn.Module] = []
        width = config.neck_channels
        for out in config.conv_channels:
            convs.append(nn.Conv2d(width, out, kernel_size=3, stride=2, padding=1, bias=False))
            width = out
        self.downsample = nn.Sequential(*convs)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        feats = self.sam(pixel_values=pixel_values).last_hidden_state  # (B, neck, G, G)
        feats = self.downsample(feats)
        return feats.flatten(2).transpose(1, 2)

    def load_sam_weights(self, path: str | Path, converted: dict[str, torch.Tensor] | None = None) -> None:
        """Load SAM image-encoder weights from a local file: Meta's `sam_vit_b_*.pth`, an HF SamModel
        directory / .safetensors (`vision_encoder.*`), or a bare encoder state dict. Strict: every encoder
        tensor must be present with the right shape, so a wrong file fails loudly instead of half-loading."""
        if converted is None:
            converted = convert_sam_state_dict(_read_state_dict(Path(path)))
        own = self.sam.state_dict()
        missing = sorted(set(own) - set(converted))
        if missing:
            raise TrainingError(f"{path}: not a SAM image encoder checkpoint (missing {', '.join(missing[:4])}…)")
        for k, v in converted.items():
            if k in own and own[k].shape != v.shape:
                raise TrainingError(f"{path}: {k} has shape {tuple(v.shape)}, the {self.config.hidden_size}-wide "
                                    f"encoder needs {tuple(own[k].shape)} (is it SAM-B at {self.config.image_size}²?)")
        self.sam.load_state_dict({k: converted[k] for k in own}, strict=True)


def sam_source(path: str | Path, base: VocabNetConfig) -> tuple[VocabNetConfig, dict[str, torch.Tensor]]:
    """The encoder saved at `path` as (its architecture on top of `base`'s convolutions, its weights in
    `SamVisionEncoder` names). An HF SamModel folder says its architecture in config.json; Meta's file
    only in its tensors' shapes: width from the patch embedding, depth from the blocks, grid from the
    absolute positions, window and global layers from the relative-position tables (2·window−1 rows for
    windowed blocks, 2·grid−1 for global ones), heads from width / the tables' head dimension."""
    import dataclasses

    path = Path(path)
    state = convert_sam_state_dict(_read_state_dict(path))
    if path.is_dir() and (path / "config.json").is_file():
        from transformers import SamConfig

        v = SamConfig.from_pretrained(str(path), local_files_only=True).vision_config
        return dataclasses.replace(base, image_size=v.image_size, patch_size=v.patch_size, hidden_size=v.hidden_size,
                                   num_layers=v.num_hidden_layers, num_heads=v.num_attention_heads,
                                   window_size=v.window_size, global_attn_indexes=list(v.global_attn_indexes),
                                   neck_channels=v.output_channels, mlp_dim=v.mlp_dim), state
    try:
        hidden, _, patch, _ = state["patch_embed.projection.weight"].shape
        grid = state["pos_embed"].shape[1]
        layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layers."))
        rel = [state[f"layers.{i}.attn.rel_pos_h"].shape for i in range(layers)]
        neck = state["neck.conv1.weight"].shape[0]
        mlp = state["layers.0.mlp.lin1.weight"].shape[0]
    except (KeyError, ValueError) as e:
        raise TrainingError(f"{path}: not a SAM image encoder checkpoint (cannot read its shape: {e})") from None
    head_dim = rel[0][1]
    global_layers = [i for i, shape in enumerate(rel) if shape[0] == 2 * grid - 1]
    windowed = [shape[0] for shape in rel if shape[0] != 2 * grid - 1]
    window = (windowed[0] + 1) // 2 if windowed else base.window_size
    return dataclasses.replace(base, image_size=grid * patch, patch_size=patch, hidden_size=hidden, num_layers=layers,
                               num_heads=hidden // head_dim, window_size=window, global_attn_indexes=global_layers,
                               neck_channels=neck, mlp_dim=mlp), state


_META_RENAMES = [
    (r"^blocks\.", "layers."),
    (r"\.norm1\.", ".layer_norm1."),
    (r"\.norm2\.", ".layer_norm2."),
    (r"^neck\.0\.", "neck.conv1."),
    (r"^neck\.1\.", "neck.layer_norm1."),
    (r"^neck\.2\.", "neck.conv2."),
    (r"^neck\.3\.", "neck.layer_norm2."),
    (r"^patch_embed\.proj\.", "patch_embed.projection."),
]


def convert_sam_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map Meta's / HF's / Vary's key names onto `SamVisionEncoder`'s."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in ("image_encoder.", "vision_encoder.", "model.vision_tower_high.", "vision_tower_high.", "sam."):
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        else:
            if any(key.startswith(p) for p in ("prompt_encoder.", "mask_decoder.", "shared_image_embedding.")):
                continue
        for pattern, repl in _META_RENAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin")) or sorted(path.glob("*.pth"))
        if not files:
            raise TrainingError(f"{path}: no .safetensors, .bin or .pth weights in this directory")
        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(_read_state_dict(f))
        return state
    if not path.is_file():
        raise TrainingError(f"SAM checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state
