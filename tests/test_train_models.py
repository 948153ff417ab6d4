"""Model construction: SAM weights from a local Meta-format checkpoint, OPT position interpolation."""
from __future__ import annotations

import pytest
import torch

from training.errors import TrainingError
from training.vary_tiny import OPT_TINY, interpolate_opt_positions
from training.vocab_net import PRESETS, VocabNet


def test_sam_weights_load_from_meta_checkpoint(tmp_path):
    src = VocabNet(PRESETS["tiny"])
    renames = [("layers.", "blocks."), ("layer_norm1", "norm1"), ("layer_norm2", "norm2"), ("neck.conv1", "neck.0"),
               ("neck.layer_norm1", "neck.1"), ("neck.conv2", "neck.2"), ("neck.layer_norm2", "neck.3"),
               ("patch_embed.projection", "patch_embed.proj")]
    meta = {}
    for k, v in src.sam.state_dict().items():
        for a, b in renames:
            k = k.replace(a, b)
        meta["image_encoder." + k] = v.clone()
    meta["mask_decoder.iou_token.weight"] = torch.zeros(1, 4)  # Meta files carry the decoder too
    torch.save(meta, tmp_path / "sam_vit_tiny.pth")
    dst = VocabNet(PRESETS["tiny"])
    dst.load_sam_weights(tmp_path / "sam_vit_tiny.pth")
    for k, v in src.sam.state_dict().items():
        assert torch.equal(v, dst.sam.state_dict()[k]), k
    torch.save({"image_encoder.pos_embed": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(TrainingError, match="not a SAM image encoder"):
        dst.load_sam_weights(tmp_path / "bad.pth")


def test_opt_positions_interpolated_keep_ends_and_offset():
    from transformers import OPTConfig, OPTForCausalLM

    m = OPTForCausalLM(OPTConfig(**dict(OPT_TINY, max_position_embeddings=64)))
    old = m.model.decoder.embed_positions.weight.detach().clone()
    interpolate_opt_positions(m, 128)
    new = m.model.decoder.embed_positions.weight.detach()
    assert new.shape == (130, old.shape[1])
    assert torch.equal(new[:2], old[:2])
    assert torch.allclose(new[2], old[2]) and torch.allclose(new[-1], old[-1])
    out = m(input_ids=torch.ones(1, 120, dtype=torch.long))  # beyond the old 64 positions
    assert out.logits.shape[1] == 120
