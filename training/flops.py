"""FLOPs of one training sample, counted per part from the model's config (for MFU in benchmarks/gpu.sh).

A matrix product of (m×k)·(k×n) is 2·m·k·n FLOPs; a training step costs 3× the forward pass of a trained
part (forward + backward for activations and weights) and 1× for a frozen tower (forward only, no grad).
Every part is counted on its own sequence: the SAM encoder on its 64×64 = 4096 patch tokens per image
(windowed blocks attend within 14×14 windows, global blocks across all 4096), CLIP on its 257 tokens,
the LLM on the text sequence; attention's two products (scores and the weighted sum) are 4·n²·d per
layer (full, as Megatron counts; causal kernels skip about half). Norms, biases, activations and softmax
are left out (< 1%). `tests/test_train_flops.py` checks the count against torch's FLOP counter."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class SampleFlops:
    vision_forward: float  # all vision towers, one image
    llm_forward: float  # projections + LLM over `text_tokens` positions
    trained_vision: bool  # stage 1 trains the vocabulary network; stage 2 keeps the towers frozen

    @property
    def training(self) -> float:
        return 3 * self.llm_forward + (3 if self.trained_vision else 1) * self.vision_forward


def _conv(c_in: int, c_out: int, k: int, positions: int) -> float:
    return 2.0 * c_in * c_out * k * k * positions


def sam_forward(v: Any) -> float:
    """The vocabulary network (SAM ViTDet + neck + the two strided convolutions) on one image."""
    grid = v.image_size // v.patch_size
    n = grid * grid
    h, mlp = v.hidden_size, (v.mlp_dim or 4 * v.hidden_size)
    flops = _conv(3, h, v.patch_size, n)  # patch embedding
    windows = (-(-grid // v.window_size)) ** 2  # padded to whole windows
    w_tokens = v.window_size * v.window_size
    head_dim = h // v.num_heads
    for layer in range(v.num_layers):
        tokens = n if layer in v.global_attn_indexes else windows * w_tokens
        flops += 2.0 * tokens * (4 * h * h + 2 * h * mlp)  # qkv, proj, mlp
        seq, groups = (n, 1) if layer in v.global_attn_indexes else (w_tokens, windows)
        flops += groups * 4.0 * seq * seq * h  # scores and weighted sum
        side = grid if layer in v.global_attn_indexes else v.window_size
        flops += groups * 2.0 * 2 * seq * side * head_dim * v.num_heads  # decomposed relative positions (h and w)
    flops += _conv(h, v.neck_channels, 1, n) + _conv(v.neck_channels, v.neck_channels, 3, n)
    width, side = v.neck_channels, grid
    for out in v.conv_channels:
        side = (side + 1) // 2
        flops += _conv(width, out, 3, side * side)
        width = out
    return flops


def clip_forward(c: dict[str, Any], layers_used: int | None = None) -> float:
    """CLIP's vision transformer on one image, up to the layer whose hidden state Vary takes."""
    grid = c["image_size"] // c["patch_size"]
    n = grid * grid + 1  # + CLS
    h, ffn = c["hidden_size"], c["intermediate_size"]
    layers = c["num_hidden_layers"] if layers_used is None else layers_used
    return _conv(3, h, c["patch_size"], grid * grid) + layers * (2.0 * n * (4 * h * h + 2 * h * ffn) + 4.0 * n * n * h)


def llm_forward(llm: Any, tokens: int, labelled: int | None = None) -> float:
    """A decoder (OPT or Qwen2 config) over `tokens` positions, the LM head over `labelled` of them."""
    h, layers, vocab = llm.hidden_size, llm.num_hidden_layers, llm.vocab_size
    heads = llm.num_attention_heads
    kv = getattr(llm, "num_key_value_heads", None) or heads
    head_dim = h // heads
    attn_params = 2 * h * h + 2 * h * kv * head_dim  # q, o and the (grouped) k, v
    if hasattr(llm, "ffn_dim"):  # OPT: fc1, fc2
        mlp_params = 2 * h * llm.ffn_dim
    else:  # Qwen2 / LLaMA: gate, up, down
        mlp_params = 3 * h * llm.intermediate_size
    per_layer = 2.0 * tokens * (attn_params + mlp_params) + 4.0 * tokens * tokens * h
    head = 2.0 * (tokens if labelled is None else labelled) * h * vocab
    return layers * per_layer + head


def sample_flops(model: Any, text_tokens: int, labelled: int | None = None) -> SampleFlops:
    """One sample of `model` (VaryTiny / VaryBase / VaryToy) with `text_tokens` LLM positions; for
    Vary-tiny the image tokens are added to the LLM's sequence."""
    cfg = model.config
    vision = sam_forward(cfg.vocab)
    n_img = cfg.vocab.num_tokens
    if model.model_type == "vary_tiny":
        proj = 2.0 * n_img * cfg.vocab.out_dim * model.llm.config.word_embed_proj_dim
        return SampleFlops(vision, proj + llm_forward(model.llm.config, n_img + text_tokens, labelled), True)
    layers_used = cfg.clip["num_hidden_layers"] + 1 + cfg.clip_layer if cfg.clip_layer < 0 else cfg.clip_layer
    vision += clip_forward(cfg.clip, layers_used)
    proj = 2.0 * n_img * (cfg.clip["hidden_size"] * cfg.clip_proj_dim + cfg.vocab.out_dim * cfg.vocab_proj_dim)
    return SampleFlops(vision, proj + llm_forward(model.llm.config, text_tokens, labelled), False)


# Dense bf16 tensor-core peaks (FLOP/s, without sparsity) from the vendors' datasheets. A GPU not named
# here is refused rather than guessed: MFU against the wrong peak is a wrong number.
PEAK_BF16 = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 80GB HBM3": 989e12,  # the SXM part's device name
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "L4": 121e12,
    "B200": 2250e12,
}


def peak_bf16(device_name: str) -> float:
    """The peak for a CUDA device name (e.g. "NVIDIA H200"); a ValueError naming the device otherwise."""
    for key in sorted(PEAK_BF16, key=len, reverse=True):  # the most specific name first
        if key in device_name:
            return PEAK_BF16[key]
    raise ValueError(f"no bf16 peak known for {device_name!r}; add it to training.flops.PEAK_BF16 from its datasheet")
