"""Checkpoint folders of a run: `checkpoint-NNNNNN/` under `--out`, written into a hidden folder and
renamed when complete (a kill while saving leaves the previous one the newest), found again for resuming,
and pruned. What a rank saves for itself (reader position, counts, RNG) is per rank; the model,
tokenizer, trainer_state.json and lineage once, by rank 0."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_NAME = "trainer_state.json"
TOKENIZER_DIR = "tokenizer"  # inside each checkpoint: AutoTokenizer.from_pretrained(checkpoint / "tokenizer")


def complete_checkpoints(out: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first (a complete one has its trainer state)."""
    return sorted(p for p in Path(out).glob("checkpoint-*") if (p / STATE_NAME).is_file())


def latest_checkpoint(out: Path) -> Path | None:
    found = complete_checkpoints(out)
    return found[-1] if found else None


def prune(out: Path, keep: int) -> None:
    if keep <= 0:
        return
    for old in complete_checkpoints(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class Progress:
    """Where a rank is: counters it saves per rank and the totals rank 0 records."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    shards_read: set[str] = field(default_factory=set)
    skipped: list[dict[str, str]] = field(default_factory=list)
    truncated: int = 0
    samples: int = 0
    data_state: dict[str, Any] = field(default_factory=dict)

    def rank_counts(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "truncated": self.truncated, "samples": self.samples}


def read_state(ckpt: Path) -> dict[str, Any]:
    return json.loads((Path(ckpt) / STATE_NAME).read_text())


def load_progress(ckpt: Path, rank: int, main: bool) -> Progress:
    """This rank's progress at `ckpt`: the shared step and losses, and its own counts and reader position."""
    state = read_state(ckpt)
    mine = ckpt / f"counts-rank{rank}.json"
    if mine.is_file():  # each rank goes on from its own counts; the totals would be summed again at the next save
        counts = json.loads(mine.read_text())
    else:  # a checkpoint from before per-rank counts: rank 0 carries the totals, so sums stay right
        counts = state if main else {"skipped": [], "truncated": 0, "samples": 0}
    return Progress(step=state["step"], losses=list(state["losses"]), shards_read=set(state["shards_read"]),
                    skipped=list(counts["skipped"]), truncated=int(counts["truncated"]), samples=int(counts["samples"]),
                    data_state=json.loads((ckpt / f"data-rank{rank}.json").read_text()))


def staging_dir(out: Path, step: int) -> tuple[Path, Path]:
    return out / f".tmp-checkpoint-{step:06d}", out / f"checkpoint-{step:06d}"


def write_rank_files(tmp: Path, rank: int, progress: Progress) -> None:
    import torch

    from training.distributed import rng_state

    (tmp / f"data-rank{rank}.json").write_text(json.dumps(progress.data_state))
    (tmp / f"counts-rank{rank}.json").write_text(json.dumps(progress.rank_counts()))
    torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")


def load_rng(ckpt: Path, rank: int) -> None:
    import torch

    from training.distributed import set_rng_state

    set_rng_state(torch.load(ckpt / f"rng-rank{rank}.pt", weights_only=False))


def publish(tmp: Path, final: Path) -> None:
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
