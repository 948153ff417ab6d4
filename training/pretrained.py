"""Pretrained parts from local folders: their architecture comes from the folder (config.json, or the
shapes of Meta's SAM file), never from a preset, so a loaded model is the saved one, field for field; and
the LLM's embeddings are fitted to the run's tokenizer (image tokens added, new rows = mean of the
pretrained rows). Nothing is downloaded."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.errors import TrainingError

# Bookkeeping keys of a transformers config that say nothing about the architecture.
_NOT_ARCHITECTURE = {"transformers_version", "architectures", "dtype", "torch_dtype", "id2label", "label2id",
                     "_name_or_path", "model_type", "auto_map", "output_hidden_states", "output_attentions",
                     "return_dict", "problem_type", "chunk_size_feed_forward", "is_encoder_decoder",
                     "_attn_implementation_autoset"}
LLM_FAMILIES = {"vary_tiny": ("opt",), "vary_base": ("qwen2",), "vary_toy": ("qwen2",)}


def architecture(config: Any) -> dict[str, Any]:
    """A transformers config as the keyword arguments that rebuild it (every architectural field)."""
    return {k: v for k, v in config.to_dict().items() if k not in _NOT_ARCHITECTURE}


def _folder(path: str, what: str) -> Path:
    p = Path(path)
    if not (p / "config.json").is_file():
        raise TrainingError(f"{what} {path} is not a local model folder (no config.json); nothing is downloaded")
    return p


def llm_config(path: str, model: str) -> dict[str, Any]:
    """The LLM architecture saved in `path`, checked to be the family `model` is built on."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(_folder(path, "LLM")), local_files_only=True)
    if config.model_type not in LLM_FAMILIES[model]:
        raise TrainingError(f"{path} holds a {config.model_type} model; {model} is built on "
                            f"{' or '.join(LLM_FAMILIES[model])}")
    return architecture(config)


def clip_config(path: str) -> dict[str, Any]:
    """The CLIP vision tower saved in `path` (a CLIPVisionModel or a whole CLIPModel folder)."""
    from transformers import CLIPVisionConfig

    return architecture(CLIPVisionConfig.from_pretrained(str(_folder(path, "CLIP")), local_files_only=True))


def load_llm_weights(path: str, model: str) -> nn.Module:
    from transformers import OPTForCausalLM, Qwen2ForCausalLM

    klass = OPTForCausalLM if model == "vary_tiny" else Qwen2ForCausalLM
    return klass.from_pretrained(path, dtype=torch.float32, local_files_only=True)


def load_clip_weights(path: str) -> dict[str, torch.Tensor]:
    from transformers import CLIPVisionModel

    return CLIPVisionModel.from_pretrained(path, dtype=torch.float32, local_files_only=True).state_dict()


# -- embeddings and tokenizer ------------------------------------------------------------------------
def embedding_rows(tokens: int, multiple: int = 64) -> int:
    return -(-tokens // multiple) * multiple


def check_vocabulary(base_tokens: int, rows: int, source: str) -> None:
    if base_tokens > rows:
        raise TrainingError(f"the tokenizer has {base_tokens} tokens but the LLM in {source} has {rows} embedding rows")


def fit_embeddings(llm: nn.Module, tok, base_tokens: int, source: str) -> dict[str, Any]:
    """Make `llm`'s embeddings hold every id of `tok`: a tokenizer whose own vocabulary (`base_tokens`,
    before the image/chat tokens were added) does not fit the pretrained rows is an error; rows are
    added for ids beyond them, and every added token's row (input and output) starts at the mean of the
    pretrained vocabulary's rows. Returns what was done, for the checkpoint."""
    emb = llm.get_input_embeddings().weight
    rows = emb.shape[0]
    check_vocabulary(base_tokens, rows, source)
    added = list(range(base_tokens, len(tok)))
    new_rows = rows if len(tok) <= rows else embedding_rows(len(tok))
    if new_rows != rows:
        llm.resize_token_embeddings(new_rows, mean_resizing=False)
    with torch.no_grad():
        tables = [llm.get_input_embeddings().weight]
        out = llm.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != tables[0].data_ptr():
            tables.append(out.weight)
        for table in tables:
            mean = table[:base_tokens].mean(dim=0)
            for i in added:
                table[i] = mean
            if new_rows > rows:
                table[rows:] = mean  # the rows resizing created, also those no id reaches yet
    return {"source": source, "rows_before": rows, "rows_after": new_rows, "tokenizer_tokens": len(tok),
            "mean_initialised": {tok.convert_ids_to_tokens(i): i for i in added}}
