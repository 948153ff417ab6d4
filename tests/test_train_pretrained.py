"""Pretrained parts in the formats users have: tiny OPT, Qwen2 (non-default rope_theta, one kv head, tied
embeddings), CLIPVisionModel and SAM (transformers SamModel folder, Meta's checkpoint file) models built
with transformers and saved with save_pretrained (LLMs with their tokenizer) into folders, then loaded
through `python -m training train`. The checkpoint must hold exactly the saved tensors and every
architectural value of the saved configs; the tokenizer is the LLM's, grown by the image tokens whose
embedding rows start at the mean."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.train_support import short_texts, text_line_samples, write_dataset

REPO = Path(__file__).resolve().parents[1]
META_RENAMES = [("layers.", "blocks."), ("layer_norm1", "norm1"), ("layer_norm2", "norm2"), ("neck.conv1", "neck.0"),
                ("neck.layer_norm1", "neck.1"), ("neck.conv2", "neck.2"), ("neck.layer_norm2", "neck.3"),
                ("patch_embed.projection", "patch_embed.proj")]


def llm_tokenizer():
    """A byte-level BPE as an LLM folder carries it: <s> </s> <pad>, no image or chat tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(short_texts(16) * 4, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from transformers import (CLIPVisionConfig, CLIPVisionModel, OPTConfig, OPTForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM, SamConfig, SamModel)

    from training.vocab_net import VocabNet, VocabNetConfig

    root = tmp_path_factory.mktemp("pretrained")
    from training.vary_tiny import PRESETS

    tok = llm_tokenizer()
    base = len(tok)
    positions = PRESETS["tiny"]().max_positions  # as many as the tiny preset's: no interpolation to compare past
    torch.manual_seed(0)
    opt = OPTForCausalLM(OPTConfig(vocab_size=base, hidden_size=32, ffn_dim=48, num_hidden_layers=2,
                                   num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=positions,
                                   dropout=0.0, tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2))
    opt.save_pretrained(root / "opt")
    tok.save_pretrained(root / "opt")
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=base + 11, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=1, rope_theta=50000.0,
                                        rms_norm_eps=1e-5, tie_word_embeddings=True, max_position_embeddings=512))
    qwen.save_pretrained(root / "qwen")
    tok.save_pretrained(root / "qwen")
    CLIPVisionModel(CLIPVisionConfig(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=3,
                                     image_size=56, patch_size=14, projection_dim=32)).save_pretrained(root / "clip")
    SamModel(SamConfig(vision_config=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=2, image_size=256,
                                          patch_size=16, window_size=4, global_attn_indexes=[1], output_channels=32,
                                          mlp_dim=80))).save_pretrained(root / "sam-hf")
    meta_net = VocabNet(VocabNetConfig(image_size=256, hidden_size=48, num_layers=3, num_heads=3, window_size=4,
                                       global_attn_indexes=[2], neck_channels=32, conv_channels=[128, 256]))
    meta = {}
    for k, v in meta_net.sam.state_dict().items():
        for a, b in META_RENAMES:
            k = k.replace(a, b)
        meta["image_encoder." + k] = v.clone()
    torch.save(meta, root / "sam_vit_tiny.pth")
    data = write_dataset(root / "data", "lines", text_line_samples(short_texts(4)), shard_rows=4)
    return root, data, base


def train_cli(root: Path, stage: str, *args: str) -> subprocess.CompletedProcess:
    # lr 0: the optimiser step changes nothing, so the checkpoint holds what was loaded
    return subprocess.run([sys.executable, "-m", "training", "train", stage, "--preset", "tiny", "--steps", "1", "--lr", "0",
                           "--batch-size", "2", "--max-length", "200", "--deepspeed", "off", "--log-every", "0",
                           "--index-root", str(root / "idx"), "--json", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def _checkpoint(p: subprocess.CompletedProcess) -> Path:
    assert p.returncode == 0, p.stderr[-3000:]
    return Path(json.loads(p.stdout.strip().splitlines()[-1])["checkpoint"])


def test_vary_tiny_takes_opt_and_its_tokenizer_and_a_sam_model_folder(parts):
    from transformers import AutoTokenizer

    root, data, base = parts
    ckpt = _checkpoint(train_cli(root, "vocab", "--data", data, "--out", str(root / "tiny"),
                                 "--llm-path", str(root / "opt"), "--sam-checkpoint", str(root / "sam-hf")))
    got = load_file(str(ckpt / "model.safetensors"))
    config = json.loads((ckpt / "config.json").read_text())["config"]
    # the LLM's own tokenizer, grown by the image and chat tokens
    tok = AutoTokenizer.from_pretrained(str(ckpt / "tokenizer"))
    assert tok.convert_ids_to_tokens(list(range(base))) == llm_tokenizer().convert_ids_to_tokens(list(range(base)))
    added = {t: tok.convert_tokens_to_ids(t) for t in ("<img>", "</img>", "<imgpad>", "<|im_start|>", "<|im_end|>")}
    assert sorted(added.values()) == list(range(base, base + 5))
    # OPT: every saved tensor, the embeddings grown to a multiple of 64 with the new rows at the mean
    opt = load_file(str(root / "opt" / "model.safetensors"))
    emb = got["llm.model.decoder.embed_tokens.weight"]
    assert emb.shape[0] == 64 * -(-(base + 5) // 64)
    for k, v in opt.items():
        if k.endswith("embed_tokens.weight"):
            assert torch.equal(emb[:base], v), k
            assert torch.allclose(emb[base:], v.mean(dim=0).expand(emb.shape[0] - base, -1)), k
        else:
            assert torch.equal(got["llm." + k], v), k
    saved = json.loads((root / "opt" / "config.json").read_text())
    for key in ("hidden_size", "ffn_dim", "num_hidden_layers", "num_attention_heads", "word_embed_proj_dim",
                "do_layer_norm_before", "tie_word_embeddings", "activation_function"):
        assert config["llm"][key] == saved[key], key
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["tokenizer"] == str((root / "opt").resolve())
    assert state["pretrained"]["llm"]["mean_initialised"] == added
    # SAM from a transformers SamModel folder: its vision encoder, its architecture
    sam = load_file(str(root / "sam-hf" / "model.safetensors"))
    encoder = {k[len("vision_encoder."):]: v for k, v in sam.items() if k.startswith("vision_encoder.")}
    assert encoder and all(torch.equal(got["vocab.sam." + k], v) for k, v in encoder.items())
    v = json.loads((root / "sam-hf" / "config.json").read_text())["vision_config"]
    assert (config["vocab"]["hidden_size"], config["vocab"]["num_layers"], config["vocab"]["window_size"],
            config["vocab"]["global_attn_indexes"], config["vocab"]["neck_channels"], config["vocab"]["mlp_dim"]) == \
        (v["hidden_size"], v["num_hidden_layers"], v["window_size"], v["global_attn_indexes"], v["output_channels"], v["mlp_dim"])


def test_vary_base_takes_qwen2_config_from_its_folder_clip_and_meta_sam(parts):
    root, data, base = parts
    ckpt = _checkpoint(train_cli(root, "integrate", "--data", data, "--out", str(root / "base"),
                                 "--llm-path", str(root / "qwen"), "--clip-path", str(root / "clip"),
                                 "--sam-checkpoint", str(root / "sam_vit_tiny.pth")))
    got = load_file(str(ckpt / "model.safetensors"))
    config = json.loads((ckpt / "config.json").read_text())["config"]
    saved = json.loads((root / "qwen" / "config.json").read_text())
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "rms_norm_eps", "tie_word_embeddings", "max_position_embeddings", "rope_parameters", "vocab_size"):
        assert config["llm"][key] == saved[key], key
    assert config["llm"]["rope_parameters"]["rope_theta"] == 50000.0  # not the preset's 10000
    from training.modeling import load_model

    model = load_model(ckpt)
    assert model.llm.config.rope_parameters["rope_theta"] == 50000.0 and model.llm.config.num_key_value_heads == 1
    from transformers import AutoTokenizer

    base = len(AutoTokenizer.from_pretrained(str(root / "qwen")))  # as the folder's tokenizer loads (Qwen2's class)
    qwen = load_file(str(root / "qwen" / "model.safetensors"))
    added = list(range(base, base + 5))  # fit inside Qwen's padded rows: no resize, their rows at the mean
    for k, v in qwen.items():
        if k.endswith("embed_tokens.weight"):
            emb = got["llm." + k]
            keep = [i for i in range(v.shape[0]) if i not in added]
            assert emb.shape == v.shape and torch.equal(emb[keep], v[keep])
            assert torch.allclose(emb[added], v[:base].mean(dim=0).expand(5, -1))
        else:
            assert torch.equal(got["llm." + k], v), k
    clip = load_file(str(root / "clip" / "model.safetensors"))
    assert all(torch.equal(got["clip." + k], v) for k, v in clip.items())
    assert config["clip"]["hidden_size"] == 48 and config["clip"]["num_attention_heads"] == 3
    # SAM from Meta's file: its architecture read from the tensors' shapes
    meta = torch.load(root / "sam_vit_tiny.pth")
    assert got["vocab.sam.patch_embed.projection.weight"].shape == meta["image_encoder.patch_embed.proj.weight"].shape
    assert torch.equal(got["vocab.sam.layers.2.attn.rel_pos_h"], meta["image_encoder.blocks.2.attn.rel_pos_h"])
    assert (config["vocab"]["num_layers"], config["vocab"]["num_heads"], config["vocab"]["window_size"],
            config["vocab"]["global_attn_indexes"]) == (3, 3, 4, [2])
    assert (config["clip_proj_dim"], config["vocab_proj_dim"]) == (32, 32)  # the LLM's width, split


def test_a_tokenizer_that_does_not_fit_the_embeddings_is_one_line_naming_both_sizes(parts, tmp_path):
    from transformers import OPTConfig, OPTForCausalLM

    root, data, base = parts
    small = tmp_path / "small-opt"
    OPTForCausalLM(OPTConfig(vocab_size=base - 20, hidden_size=32, ffn_dim=48, num_hidden_layers=1, num_attention_heads=2,
                             word_embed_proj_dim=32, max_position_embeddings=1024)).save_pretrained(small)
    p = train_cli(root, "vocab", "--data", data, "--out", str(tmp_path / "run"), "--llm-path", str(small),
                  "--tokenizer", str(root / "opt"))
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert f"the tokenizer has {base} tokens but the LLM in {small} has {base - 20} embedding rows" in p.stderr
    p = train_cli(root, "vocab", "--data", data, "--out", str(tmp_path / "run"), "--llm-path", str(small))
    assert p.returncode == 1 and "has no tokenizer" in p.stderr and len(p.stderr.strip().splitlines()) == 1
