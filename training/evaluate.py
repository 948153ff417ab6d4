"""Greedy decoding of a checkpoint and the Vary/GOT metrics over a manifest (see `training.metrics`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from training.errors import TrainingError


def load_checkpoint(checkpoint: str):
    """(model, tokenizer) from a checkpoint directory, on CPU or the first GPU, in eval mode."""
    # Checked before torch imports (seconds of CPU), so a mistyped path fails at once.
    if not Path(checkpoint).is_dir():
        raise TrainingError(f"checkpoint {checkpoint} does not exist")
    from training.distributed import setup_environment

    setup_environment()
    import torch

    from training.modeling import load_model
    from training.tokenizer import load_tokenizer

    model = load_model(checkpoint)
    from training.checkpoint import TOKENIZER_DIR

    tok = load_tokenizer(Path(checkpoint) / TOKENIZER_DIR)
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return model, tok


def decode(model, tok, image: bytes, prompt: str = "", max_new_tokens: int = 512) -> str:
    """Greedy OCR of one encoded image. Raises `data.DecodeError` when the image cannot be decoded."""
    import torch

    from training.data import clip_pixels, decode_image, model_inputs, prompt_ids, sam_pixels, stack_pixels, stop_id

    spec = model.data_spec()
    device = next(model.parameters()).device
    arr = decode_image(image)
    ids = torch.tensor([prompt_ids(tok, spec, prompt)])
    batch: dict[str, Any] = {"pixel_values": stack_pixels([sam_pixels(arr, spec.image_size)]),
                             "input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if spec.clip_size:
        batch["clip_values"] = stack_pixels([clip_pixels(arr, spec.clip_size)])
    kwargs = model_inputs(batch, device)  # the trainer's own normalisation
    room = getattr(model.llm.config, "max_position_embeddings", 4096) - ids.shape[1] - \
        (spec.num_image_tokens if spec.layout == "opt" else 0)
    out = model.generate(**kwargs, max_new_tokens=max(1, min(max_new_tokens, room)),
                         eos_token_id=stop_id(tok, spec), pad_token_id=tok.pad_token_id)
    return tok.decode(out[0], skip_special_tokens=True)


SPLITS = {"heldout": "held-out rows (never trained on)", "train": "TRAINING rows (seen in training)",
          "all": "all rows"}


def checkpoint_holdout(checkpoint: str) -> float:
    """The held-out fraction the checkpoint was trained with (0 for checkpoints from before the split)."""
    import json

    from training.checkpoint import STATE_NAME

    state = Path(checkpoint) / STATE_NAME
    if not state.is_file():
        return 0.0
    return float(json.loads(state.read_text()).get("train_config", {}).get("holdout", 0.0))


def evaluate(checkpoint: str, manifests: list[str], limit: int | None = None, max_new_tokens: int = 512,
             model_and_tokenizer: tuple[Any, Any] | None = None, split: str = "heldout") -> dict[str, Any]:
    """Decode the rows of `split` (in stored order, up to `limit`) and average the metrics; rows whose
    image fails to decode are counted in `skipped`, never scored and never replaced.

    `heldout` (default): the rows the checkpoint's training never read (training.split); `train`: its
    training rows, only on request, and labelled so; `all`: every row, for a test set of its own."""
    from storage import StreamingReader

    from training.metrics import average, score
    from training.split import in_holdout

    if split not in SPLITS:
        raise TrainingError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    model, tok = model_and_tokenizer or load_checkpoint(checkpoint)
    from training.data import DecodeError  # imports torch: after the checkpoint is known to exist
    fraction = checkpoint_holdout(checkpoint)
    if split == "heldout" and fraction <= 0.0:
        raise TrainingError(f"{checkpoint} was trained with no held-out split (holdout 0); evaluate a test set of "
                            f"its own with --split all, or its training rows with --split train")
    wanted = {"heldout": lambda i: in_holdout(i, fraction), "train": lambda i: not in_holdout(i, fraction),
              "all": lambda i: True}[split]
    reader = (row for row in StreamingReader(list(manifests), shuffle=False) if wanted(row.get("id", "")))
    scores, skipped = [], []
    per_lang: dict[str, list[dict[str, float]]] = {}
    for i, row in enumerate(_limit(reader, limit)):
        try:
            pred = decode(model, tok, (row.get("image") or {}).get("bytes"), row.get("prompt") or "", max_new_tokens)
        except DecodeError as e:
            skipped.append({"id": row.get("id"), "reason": str(e)})
            continue
        s = score(pred, row.get("text") or "", row.get("lang") or "en")
        scores.append(s)
        per_lang.setdefault(row.get("lang") or "en", []).append(s)
    return {"checkpoint": str(checkpoint), "manifests": list(manifests), "split": split,
            "split_label": SPLITS[split], "holdout": fraction, "samples": len(scores),
            "skipped": len(skipped), "skipped_rows": skipped, **average(scores),
            "by_lang": {k: {"samples": len(v), **average(v)} for k, v in per_lang.items()}}


def _limit(rows: Iterable[dict[str, Any]], limit: int | None):
    for i, row in enumerate(rows):
        if limit is not None and i >= limit:
            return
        yield row
