"""The tokenizer and model of a run, from a `TrainConfig`: presets say the family and the sizes of the
parts built from scratch; every pretrained part (SAM, CLIP, the LLM, a stage-1 checkpoint) brings its own
architecture and weights (training.pretrained)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.config import TrainConfig
from training.errors import TrainingError

BPE_SOURCE = "trained:byte-level-bpe"


@dataclass
class TokenizerChoice:
    tok: Any
    source: str  # where it came from (a folder, the LLM's folder, or the trained BPE); never a checkpoint of this run
    base_tokens: int  # its own vocabulary before the image/chat tokens were added


def build_tokenizer(cfg: TrainConfig, d, resume_dir: Path | None, resumed_source: str | None) -> TokenizerChoice:
    """Resuming: the checkpoint's copy (its recorded source is carried over). Otherwise `--tokenizer`,
    else the one saved with `--llm-path` (its ids are what the LLM's embeddings mean), else a byte-level
    BPE that rank 0 trains on the manifests and the other ranks load."""
    from training.checkpoint import TOKENIZER_DIR
    from training.tokenizer import load_tokenizer, manifest_texts, train_tokenizer

    if resume_dir is not None:
        tok, base = load_tokenizer(resume_dir / TOKENIZER_DIR, with_base_size=True)
        return TokenizerChoice(tok, resumed_source or str(resume_dir / TOKENIZER_DIR), base)
    if cfg.tokenizer:
        tok, base = load_tokenizer(cfg.tokenizer, with_base_size=True)
        return TokenizerChoice(tok, str(Path(cfg.tokenizer).resolve()), base)
    if cfg.llm_path:
        if not any((Path(cfg.llm_path) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
            raise TrainingError(f"the LLM folder {cfg.llm_path} has no tokenizer; give the one its embeddings were "
                                f"trained with (--tokenizer)")
        tok, base = load_tokenizer(cfg.llm_path, with_base_size=True)
        return TokenizerChoice(tok, str(Path(cfg.llm_path).resolve()), base)
    staging = Path(cfg.out) / ".tokenizer"
    if d.main:
        tok = train_tokenizer(manifest_texts(cfg.manifests), cfg.tokenizer_vocab_size)
        tok.save_pretrained(str(staging))
    d.barrier()
    tok = load_tokenizer(staging)
    return TokenizerChoice(tok, BPE_SOURCE, len(tok))


def model_config(cfg: TrainConfig, tok, base_tokens: int | None = None) -> tuple[Any, dict[str, Any]]:
    """The model's config (no weights yet) and what its pretrained parts will be read from."""
    from training import pretrained, vary_base, vary_tiny
    from training.modeling import config_from_dict, read_model_config
    from training.tokenizer import IMG_PAD
    from training.vocab_net import sam_source

    sources: dict[str, Any] = {}
    if cfg.model == "vary_tiny":
        mcfg = vary_tiny.PRESETS[cfg.preset]()
    else:
        mcfg = vary_base.PRESETS[cfg.model][cfg.preset]()
        mcfg.imgpad_token_id = tok.convert_tokens_to_ids(IMG_PAD)
        if cfg.init_from:
            model_type, stage1 = read_model_config(cfg.init_from)
            if model_type != "vary_tiny":
                raise TrainingError(f"--init-from must be a stage-1 (vary_tiny) checkpoint; {cfg.init_from} is {model_type}")
            mcfg.vocab = config_from_dict(vary_tiny.VaryTinyConfig, stage1).vocab  # its exact vocabulary network
            sources["stage1"] = cfg.init_from
        if cfg.clip_path:
            mcfg.clip = pretrained.clip_config(cfg.clip_path)
            sources["clip"] = cfg.clip_path
    if cfg.sam_checkpoint and "stage1" not in sources:
        mcfg.vocab, sources["sam"] = sam_source(cfg.sam_checkpoint, mcfg.vocab)
    released = Path(cfg.vary_checkpoint) / "config.json" if cfg.vary_checkpoint else None
    if released is not None and released.is_file():  # a released Vary folder: its LLM's architecture
        from training.vary_release import llm_config_of

        mcfg.llm = llm_config_of(json.loads(released.read_text()), cfg.model)
        sources["vary"] = cfg.vary_checkpoint
    elif cfg.vary_checkpoint:
        sources["vary"] = cfg.vary_checkpoint
    if cfg.llm_path:
        llm = pretrained.llm_config(cfg.llm_path, cfg.model)
        pretrained.check_vocabulary(base_tokens if base_tokens is not None else len(tok), llm["vocab_size"],
                                    str(Path(cfg.llm_path).resolve()))
        if cfg.model == "vary_tiny":  # OPT's learned positions are interpolated to the model's max_positions
            llm["max_position_embeddings"] = mcfg.max_positions
        mcfg.llm = llm
        sources["llm"] = cfg.llm_path
    elif not (released is not None and released.is_file()):
        mcfg.llm["vocab_size"] = pretrained.embedding_rows(len(tok))
    if cfg.model != "vary_tiny":
        width = mcfg.llm["hidden_size"]
        if mcfg.clip_proj_dim + mcfg.vocab_proj_dim != width:  # a pretrained LLM sets the width: split it evenly
            mcfg.clip_proj_dim, mcfg.vocab_proj_dim = width // 2, width - width // 2
    return mcfg, sources


def build_model(cfg: TrainConfig, tok, base_tokens: int | None = None) -> tuple[Any, dict[str, Any]]:
    """(model, what was loaded into it). The LLM's embeddings fit `tok` (see pretrained.fit_embeddings)."""
    from training import pretrained, vary_base, vary_tiny
    from training.modeling import load_model

    mcfg, sources = model_config(cfg, tok, base_tokens)
    klass = {"vary_tiny": vary_tiny.VaryTiny, "vary_base": vary_base.VaryBase, "vary_toy": vary_base.VaryToy}[cfg.model]
    model = klass(mcfg)
    loaded: dict[str, Any] = {}
    if "stage1" in sources:
        model.load_vocab_net(load_model(sources["stage1"]))
        loaded["vocab"] = str(Path(sources["stage1"]).resolve())
    elif "sam" in sources:
        model.vocab.load_sam_weights(cfg.sam_checkpoint, converted=sources["sam"])
        loaded["sam"] = str(Path(cfg.sam_checkpoint).resolve())
    if "clip" in sources:
        model.clip.load_state_dict(pretrained.load_clip_weights(sources["clip"]), strict=True)
        loaded["clip"] = str(Path(sources["clip"]).resolve())
    if "llm" in sources:
        llm = pretrained.load_llm_weights(sources["llm"], cfg.model)
        if cfg.model == "vary_tiny":
            vary_tiny.interpolate_opt_positions(llm, mcfg.max_positions)
        fitted = pretrained.fit_embeddings(llm, tok, base_tokens if base_tokens is not None else len(tok),
                                           str(Path(sources["llm"]).resolve()))
        mcfg.llm["vocab_size"] = fitted["rows_after"]
        if model.llm.get_input_embeddings().weight.shape[0] != fitted["rows_after"]:
            model.llm.resize_token_embeddings(fitted["rows_after"], mean_resizing=False)
        model.llm.load_state_dict(llm.state_dict(), strict=True)
        loaded["llm"] = fitted
    if "vary" in sources:  # a released Vary checkpoint: every tensor, strictly
        from training.vary_release import load_into

        loaded["vary"] = load_into(model, sources["vary"])
    if cfg.model != "vary_tiny":
        model.freeze_towers()
    return model, loaded

