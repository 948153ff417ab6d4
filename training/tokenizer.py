"""The tokenizer of a run: a local one the user downloaded (OPT's, Qwen's) with the image and chat
special tokens added, or a byte-level BPE trained offline on the manifests' text. Either way it is saved
inside every checkpoint, so a checkpoint decodes with exactly the tokenizer it was trained with."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Iterator

from training.errors import TrainingError

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
IMG_START, IMG_END, IMG_PAD = "<img>", "</img>", "<imgpad>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
IMAGE_TOKENS = [IMG_START, IMG_END, IMG_PAD, IM_START, IM_END]
SYSTEM_PROMPT = "You should follow the instructions carefully and explain your answers in detail."


def load_tokenizer(path: str | Path, with_base_size: bool = False):
    """A tokenizer from a local directory, with the image/chat special tokens present and a pad token
    (and, with `with_base_size`, how many tokens it had before they were added)."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.exists():
        raise TrainingError(f"tokenizer {path} does not exist (give a local directory; nothing is downloaded)")
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    base = len(tok)
    missing = [t for t in IMAGE_TOKENS if t not in tok.get_vocab()]
    if missing:
        tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    if tok.eos_token is None:
        raise TrainingError(f"tokenizer {path} has no end-of-sequence token")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return (tok, base) if with_base_size else tok


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE with the special tokens reserved first (ids 0..7), so every text is encodable."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS, *IMAGE_TOKENS]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(_with_template_words(texts), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=IMAGE_TOKENS)


def _with_template_words(texts: Iterable[str]) -> Iterator[str]:
    yield SYSTEM_PROMPT
    yield "user\nassistant\n"
    yield from texts


def manifest_texts(manifests: list[str]) -> Iterator[str]:
    """Targets and prompts of every row, reading only those two columns of each shard."""
    import pyarrow.parquet as pq
    from storage import Location, read_manifest

    for uri in manifests:
        for shard in read_manifest(uri).shards:
            table = pq.read_table(io.BytesIO(Location.parse(shard.uri).read_bytes()), columns=["prompt", "text"])
            seen_prompts: set[str] = set()
            for prompt, text in zip(table.column("prompt").to_pylist(), table.column("text").to_pylist()):
                if prompt and prompt not in seen_prompts:
                    seen_prompts.add(prompt)
                    yield prompt
                if text:
                    yield text


def special_ids(tok) -> dict[str, int]:
    ids = {t: tok.convert_tokens_to_ids(t) for t in IMAGE_TOKENS}
    ids["eos"] = tok.eos_token_id
    ids["pad"] = tok.pad_token_id
    ids["bos"] = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    return ids
