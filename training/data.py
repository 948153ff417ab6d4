"""Rows from the storage reader -> model batches. Decoding, both image transforms, the two text layouts
(stage 1: image tokens then target; stage 2: Qwen chat template with `<img>` pads) and label masking live
here, plus the resumable stream that splits work by rank and DataLoader worker.

Images stay uint8 on the host (decoded, resized only when needed, collated into one preallocated uint8 batch)
and are normalised after the copy to the device by `model_inputs`, which training and inference both use:
float pages on the host cost more in fresh memory (page faults) than the decode itself (docs/training.md).

A row that cannot become an example (its image fails to decode, or its prompt leaves no room for the target
under `max_length`) is skipped and reported in the batch's `skipped` list; the stream goes on with the next
row. No row is ever substituted for another."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from training.errors import TrainingError
from training.modeling import DataSpec
from training.tokenizer import IM_END, IM_START, SYSTEM_PROMPT, special_ids

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class RowError(Exception):
    """A row that cannot become a training example; the message is the reason it was skipped."""


class DecodeError(RowError):
    pass


def decode_image(data: bytes | None) -> np.ndarray:
    """Encoded image -> HxWxC uint8 (C = 1 or 3). pyspng for PNG (the fastest decoder, docs/measured-figures.md), Pillow
    for everything else."""
    if not data:
        raise DecodeError("empty image")
    try:
        if data[:8] == PNG_MAGIC:
            import pyspng

            arr = pyspng.load(data)
        else:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                im = im.convert("L" if im.mode in ("L", "1", "I;16", "I") else "RGB")
                arr = np.asarray(im)
    except Exception as e:  # every decoder has its own exception types; the reason is what matters
        raise DecodeError(f"{type(e).__name__}: {e}") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DecodeError(f"unexpected image shape {arr.shape}")
    if arr.shape[2] == 4:  # drop alpha; rendered pages are opaque
        arr = arr[:, :, :3]
    elif arr.shape[2] == 2:
        arr = arr[:, :, :1]
    if arr.dtype != np.uint8:
        arr = (arr >> 8).astype(np.uint8) if arr.dtype == np.uint16 else arr.astype(np.uint8)
    return arr


def _resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    out = np.asarray(im.resize(size, Image.Resampling.BICUBIC))
    return out[:, :, None] if out.ndim == 2 else out


def sam_pixels(arr: np.ndarray, size: int) -> np.ndarray:
    """SAM branch, uint8: resized to size² only when it is not already (pages come pre-padded to a square
    by the generators, usually at the preset's size)."""
    if arr.shape[0] != size or arr.shape[1] != size:
        arr = _resize(arr, (size, size))
    return arr


def clip_pixels(arr: np.ndarray, size: int) -> np.ndarray:
    """CLIP's own geometry, uint8: bicubic resize of the short side to `size`, then the centre size² crop."""
    h, w = arr.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        arr = _resize(arr, (nw, nh))
    top, left = (nh - size) // 2, (nw - size) // 2
    return arr[top:top + size, left:left + size]


def stack_pixels(arrays: list[np.ndarray]) -> torch.Tensor:
    """Same-sized HxWxC uint8 images -> one (B, C, H, W) uint8 tensor, written in place. C is 1 when every
    image is grey (a grey page stays one plane until it is normalised) and 3 otherwise."""
    h, w = arrays[0].shape[:2]
    channels = max(a.shape[2] for a in arrays)
    out = torch.empty((len(arrays), channels, h, w), dtype=torch.uint8)
    dst = out.numpy()  # shares memory; numpy also reads Pillow's read-only arrays without a copy
    for i, a in enumerate(arrays):
        dst[i] = np.moveaxis(a, 2, 0)  # a grey plane broadcasts over the channels of a mixed batch
    return out


def normalise_pixels(pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(B, 1|3, H, W) uint8 -> (B, 3, H, W) float32 on the same device, (x/255 - mean)/std per channel; a
    grey plane is normalised once per output channel."""
    b, _, h, w = pixels.shape
    out = torch.empty((b, 3, h, w), dtype=torch.float32, device=pixels.device)
    out.copy_(pixels.expand(-1, 3, -1, -1))  # cast first: mixed uint8*float kernels are ~2x slower on CPU
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], dtype=torch.float32, device=pixels.device)
    shift = torch.tensor([m / s for m, s in zip(mean, std)], dtype=torch.float32, device=pixels.device)
    return out.mul_(scale.view(1, 3, 1, 1)).sub_(shift.view(1, 3, 1, 1))


# Which mean/std each image input of a Vary model takes.
PIXEL_NORMS = {"pixel_values": (IMAGENET_MEAN, IMAGENET_STD), "clip_values": (CLIP_MEAN, CLIP_STD)}


def model_inputs(batch: dict[str, Any], device: Any) -> dict[str, torch.Tensor]:
    """The one place a batch becomes model inputs, for training and inference alike: every tensor goes to
    `device`, and the uint8 images are normalised there (after the copy, so the host moves 1 byte per pixel
    and never allocates float pages)."""
    out = {}
    for k, v in batch.items():
        if not isinstance(v, torch.Tensor):
            continue
        v = v.to(device, non_blocking=True)
        if k in PIXEL_NORMS and v.dtype == torch.uint8:
            v = normalise_pixels(v, *PIXEL_NORMS[k])
        out[k] = v
    return out


def sam_transform(arr: np.ndarray, size: int) -> torch.Tensor:
    """One image as the SAM branch sees it: 3xSxS float32, ImageNet-normalised (the stream's path, unbatched)."""
    return normalise_pixels(stack_pixels([sam_pixels(arr, size)]), IMAGENET_MEAN, IMAGENET_STD)[0]


def clip_transform(arr: np.ndarray, size: int) -> torch.Tensor:
    """One image as the CLIP branch sees it: 3xSxS float32, CLIP-normalised (the stream's path, unbatched)."""
    return normalise_pixels(stack_pixels([clip_pixels(arr, size)]), CLIP_MEAN, CLIP_STD)[0]


# -- text layouts -----------------------------------------------------------------------------------
def _enc(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"] if text else []


def prompt_ids(tok, spec: DataSpec, prompt: str) -> list[int]:
    """The part of the sequence the model is given before the target (also the generation prefix)."""
    ids = special_ids(tok)
    if spec.layout == "opt":  # the image tokens are prepended inside the model; the text starts with BOS
        return [ids["bos"]]
    head = _enc(tok, f"{IM_START}system\n{SYSTEM_PROMPT}{IM_END}{IM_START}user\n")
    image = [ids["<img>"]] + [ids["<imgpad>"]] * spec.num_image_tokens + [ids["</img>"]]
    tail = _enc(tok, f"\n{prompt}{IM_END}{IM_START}assistant\n" if prompt else f"{IM_END}{IM_START}assistant\n")
    return head + image + tail


def stop_id(tok, spec: DataSpec) -> int:
    ids = special_ids(tok)
    return ids["eos"] if spec.layout == "opt" else ids[IM_END]


def target_room(spec: DataSpec, prefix_len: int, max_length: int) -> int:
    """How many target tokens (stop token included) fit after a `prefix_len`-token prompt under `max_length`."""
    return max_length - prefix_len - (spec.num_image_tokens if spec.layout == "opt" else 0)


def encode_example(tok, spec: DataSpec, prompt: str, target: str, max_length: int) -> tuple[list[int], list[int], bool]:
    """input_ids, labels (-100 everywhere but the target and its stop token), and whether it was truncated.

    A truncated target loses its stop token too (the text did not end there), so a model trained on
    truncated rows never learns where they end: runs are expected to report `truncated` == 0."""
    prefix = prompt_ids(tok, spec, prompt)
    target_ids = _enc(tok, target) + [stop_id(tok, spec)]
    room = target_room(spec, len(prefix), max_length)
    if room < 1:  # no label at all would make the loss NaN
        raise RowError(f"the prompt takes {max_length - room} of max_length {max_length} tokens, leaving no room "
                       f"for the target")
    truncated = len(target_ids) > room
    if truncated:
        target_ids = target_ids[:room]
    return prefix + target_ids, [-100] * len(prefix) + target_ids, truncated


def row_conversation(row: dict[str, Any]) -> list[dict[str, str]] | None:
    """The turns of a conversation row (`meta["conversations"]`, see storage.importers), else None."""
    import json

    meta = row.get("meta")
    if not meta:
        return None
    try:
        turns = (json.loads(meta) if isinstance(meta, str) else meta).get("conversations")
    except (ValueError, AttributeError):
        return None
    return turns if isinstance(turns, list) and turns else None


def encode_conversation(tok, spec: DataSpec, turns: list[dict[str, str]], max_length: int) -> tuple[list[int], list[int], bool]:
    """A multi-turn conversation in the chat template: labels on every assistant turn and its `<|im_end|>`,
    -100 on the system prompt, user turns and image tokens. The image goes where the first user turn says
    `<image>` (or first in it). A one-turn conversation encodes exactly as `encode_example`."""
    if spec.layout != "chat":
        raise RowError("conversations need a stage-2 (chat) model")
    ids = special_ids(tok)
    image = [ids["<img>"]] + [ids["<imgpad>"]] * spec.num_image_tokens + [ids["</img>"]]
    out = _enc(tok, f"{IM_START}system\n{SYSTEM_PROMPT}{IM_END}")
    labels = [-100] * len(out)
    placed = False
    for turn in turns:
        if turn["from"] == "human":
            value = turn["value"]
            if not placed:
                before, tag, after = value.partition("<image>")
                head, value = (before, after) if tag else ("", "\n" + value if value else "")
                part = _enc(tok, f"{IM_START}user\n{head}") + image + _enc(tok, f"{value}{IM_END}")
                placed = True
            else:
                part = _enc(tok, f"{IM_START}user\n{value.replace('<image>', '')}{IM_END}")
            out += part
            labels += [-100] * len(part)
        else:
            prefix = _enc(tok, f"{IM_START}assistant\n")
            answer = _enc(tok, turn["value"]) + [ids[IM_END]]
            out += prefix + answer
            labels += [-100] * len(prefix) + answer
    truncated = len(out) > max_length
    out, labels = out[:max_length], labels[:max_length]
    if all(x == -100 for x in labels):
        raise RowError(f"max_length {max_length} leaves no room for any assistant turn")
    return out, labels, truncated


@dataclass
class Example:
    id: str
    shard: str
    pixels: np.ndarray  # HxWxC uint8, SAM geometry; normalised on the device (`model_inputs`)
    clip_pixels: np.ndarray | None  # HxWxC uint8, CLIP geometry
    input_ids: list[int]
    labels: list[int]
    truncated: bool


def make_example(row: dict[str, Any], tok, spec: DataSpec, max_length: int) -> Example:
    image = row.get("image") or {}
    arr = decode_image(image.get("bytes") if isinstance(image, dict) else image)
    turns = row_conversation(row) if spec.layout == "chat" else None  # stage 1 reads the first answer (`text`)
    if turns:
        input_ids, labels, truncated = encode_conversation(tok, spec, turns, max_length)
    else:
        input_ids, labels, truncated = encode_example(tok, spec, row.get("prompt") or "", row.get("text") or "", max_length)
    return Example(
        id=row.get("id", ""), shard=row.get("_shard", ""), pixels=sam_pixels(arr, spec.image_size),
        clip_pixels=clip_pixels(arr, spec.clip_size) if spec.clip_size else None,
        input_ids=input_ids, labels=labels, truncated=truncated)


def collate(examples: list[Example], pad_id: int) -> dict[str, Any]:
    """Token tensors plus uint8 `pixel_values` (B, C, S, S) and `clip_values`; `model_inputs` normalises them."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    batch: dict[str, Any] = {"input_ids": ids, "labels": labels, "attention_mask": mask,
                             "pixel_values": stack_pixels([e.pixels for e in examples])}
    if examples[0].clip_pixels is not None:
        batch["clip_values"] = stack_pixels([e.clip_pixels for e in examples])
    return batch


# -- the stream -------------------------------------------------------------------------------------
class VaryStream(IterableDataset):
    """Endless batches for one rank: each DataLoader worker reads its own split of the manifests through
    `storage.StreamingReader`, epoch after epoch, and attaches its reader position to every batch.

    Resuming: the trainer records, per logical worker, the position after the last batch it consumed and
    how many batches it consumed. A DataLoader serves workers round-robin from worker 0, so on resume
    physical worker w plays logical worker (w + consumed) % num_workers and the order continues exactly."""

    def __init__(self, manifests: list[str], weights: list[float] | None, tokenizer, spec: DataSpec,
                 batch_size: int, max_length: int, seed: int, rank: int = 0, world_size: int = 1,
                 state: dict[str, Any] | None = None, shuffle: bool = True, holdout: float = 0.0):
        self.manifests, self.weights = list(manifests), weights
        self.holdout = holdout  # rows of the held-out split (training.split) are never yielded
        self.tok, self.spec = tokenizer, spec
        self.batch_size, self.max_length = batch_size, max_length
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.state = state or {}
        # Every row would be skipped (and the endless stream would never yield) if the fixed template
        # alone leaves no room; that is a configuration error, not bad input.
        room = target_room(spec, len(prompt_ids(tokenizer, spec, "")), max_length)
        if room < 1:
            raise TrainingError(f"max_length {max_length} leaves no room for a target: the {spec.layout} template "
                                f"and image tokens take {max_length - room}")

    def _reader(self, logical: int, num_workers: int):
        from storage import StreamingReader

        return StreamingReader(self.manifests, weights=self.weights, seed=self.seed, shuffle=self.shuffle,
                               rank=self.rank, world_size=self.world_size, worker_id=logical,
                               num_workers=num_workers)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        num_workers, physical = (info.num_workers, info.id) if info else (1, 0)
        saved = self.state.get("workers", {})
        if saved and self.state.get("num_workers") != num_workers:
            raise TrainingError(f"resuming with {num_workers} data workers per rank; the checkpoint used "
                               f"{self.state.get('num_workers')}")
        logical = (physical + int(self.state.get("batches", 0))) % num_workers
        position = saved.get(str(logical))
        reader = self._reader(logical, num_workers)
        if position:
            reader.load_state_dict(position)
        if len(reader) == 0:
            raise TrainingError(f"rank {self.rank} data worker {logical} has no rows to read: the manifests hold "
                                f"fewer rows than ranks × workers")
        pending: list[Example] = []
        skipped: list[dict[str, str]] = []
        truncated = 0
        from training.split import in_holdout

        whole_pass = not position  # a resumed reader's first pass is the rest of an epoch, possibly empty
        while True:  # the reader moves itself to the next epoch after a full pass
            used = 0
            for row in reader:
                if in_holdout(row.get("id", ""), self.holdout):
                    continue
                used += 1
                try:
                    ex = make_example(row, self.tok, self.spec, self.max_length)
                except RowError as e:
                    skipped.append({"id": str(row.get("id", "")), "shard": str(row.get("_shard", "")), "reason": str(e)})
                    continue
                truncated += ex.truncated
                pending.append(ex)
                if len(pending) == self.batch_size:
                    batch = collate(pending, self.tok.pad_token_id)
                    batch.update(ids=[e.id for e in pending], shards=sorted({e.shard for e in pending}),
                                 skipped=skipped, truncated=truncated, logical_worker=logical,
                                 position=reader.state_dict())
                    yield batch
                    pending, skipped, truncated = [], [], 0
            if not used and whole_pass:  # a whole pass with nothing to train on would loop forever
                raise TrainingError(f"rank {self.rank} data worker {logical} read no training rows in a whole pass "
                                    f"(all {len(reader)} are held out at holdout {self.holdout})")
            whole_pass = True


def make_loader(stream: VaryStream, num_workers: int) -> DataLoader:
    # batch_size=None: the stream yields whole batches, so each batch comes from one worker and carries
    # that worker's reader position.
    return DataLoader(stream, batch_size=None, num_workers=num_workers, persistent_workers=False,
                      prefetch_factor=2 if num_workers else None)
