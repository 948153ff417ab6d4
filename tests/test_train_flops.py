"""The FLOP count behind benchmarks/gpu.sh's MFU, checked against torch's FLOP counter on the tiny
models run with eager attention (so the attention products are real matmuls the counter sees), and the
GPU peak table that refuses devices it does not know."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from training.flops import clip_forward, llm_forward, peak_bf16, sam_forward, sample_flops


def counted(fn) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def eager(module: torch.nn.Module) -> torch.nn.Module:
    module.set_attn_implementation("eager")
    return module


def test_each_part_counts_what_torch_counts_attention_included():
    from training.vary_base import PRESETS as BASE, VaryToy
    from training.vary_tiny import PRESETS as TINY, VaryTiny

    torch.manual_seed(0)
    cfg = TINY["tiny"]()
    cfg.llm["vocab_size"] = 320
    tiny = VaryTiny(cfg).eval()
    ids = torch.randint(0, 300, (1, 40))
    opt = eager(tiny.llm)
    assert counted(lambda: opt(input_ids=ids)) == pytest.approx(llm_forward(opt.config, 40), rel=1e-3)
    from transformers.models.sam.modeling_sam import SamVisionEncoder

    sam_config = cfg.vocab.sam_config()
    sam_config._attn_implementation = "eager"
    tiny.vocab.sam = SamVisionEncoder(sam_config).eval()
    measured = counted(lambda: tiny.vocab(torch.randn(1, 3, 256, 256)))
    # within 1%: the decomposed relative-position einsums are counted by shape here, by kernel there
    assert measured == pytest.approx(sam_forward(cfg.vocab), rel=0.01)

    cfg = BASE["vary_toy"]["tiny"]()
    cfg.llm["vocab_size"] = 320
    toy = VaryToy(cfg).eval()
    clip = eager(toy.clip)
    assert counted(lambda: clip(pixel_values=torch.randn(1, 3, 56, 56))) == pytest.approx(clip_forward(cfg.clip), rel=1e-3)
    qwen = eager(toy.llm)
    assert counted(lambda: qwen(input_ids=ids)) == pytest.approx(llm_forward(qwen.config, 40), rel=1e-3)


def test_paper_vary_tiny_sample_is_about_four_teraflops_and_the_towers_are_counted_per_image():
    from training.vary_tiny import PRESETS, VaryTiny

    with torch.device("meta"):
        model = VaryTiny(PRESETS["paper"]())
    s = sample_flops(model, text_tokens=1024)
    # SAM-B on 4096 patch tokens dominates: trained (3x), more than the whole OPT-125M pass
    assert 0.9e12 < s.vision_forward < 1.2e12 and s.vision_forward > s.llm_forward
    assert 3.5e12 < s.training < 4.5e12


def test_unknown_gpus_are_refused_not_taken_for_an_h100():
    assert peak_bf16("NVIDIA H200") == 989e12 and peak_bf16("NVIDIA H100 PCIe") == 756e12
    assert peak_bf16("NVIDIA A100-SXM4-80GB") == 312e12
    with pytest.raises(ValueError, match="no bf16 peak known for 'NVIDIA GeForce RTX 4090'"):
        peak_bf16("NVIDIA GeForce RTX 4090")
