"""Streaming reads of committed datasets for training.

Order is a pure function of (seed, epoch): shards are permuted, then rows within each shard. The
epoch's global sequence is cut into one contiguous, equal-length range per split (rank × data-loader
worker; the remainder is dropped so every rank takes the same number of steps), so each split reads
only about 1/splits of the shards. Only one shard is in memory at a time, so memory is flat in the
dataset's size. The position is a few integers: `load_state_dict` resumes with exactly the rows not
yet yielded, skipping whole shards by their recorded row counts without reading them.
"""
from __future__ import annotations

import bisect
from typing import Any, Iterator, Sequence

import numpy as np

from storage.manifest import Manifest, read_manifest
from storage.shards import ShardInfo, read_verified

_CHUNK = 256  # rows materialised as Python dicts at a time
_MIX_BLOCK = 1024  # mixture choices drawn per block, so resuming never replays the whole epoch


class _Source:
    """The shards of one mixture component (one or more manifests, concatenated)."""

    def __init__(self, shards: list[ShardInfo], seed: int, shuffle: bool, split: int, n_splits: int, tag: int):
        if not shards:
            raise ValueError("no shards to read")
        self.shards = shards
        self.seed, self.shuffle, self.split, self.n_splits, self.tag = seed, shuffle, split, n_splits, tag
        self.total = sum(s.rows for s in shards)
        self.length = self.total // n_splits

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.tag, *key])

    def rows(self, epoch: int, start: int, reader: "StreamingReader") -> Iterator[dict[str, Any]]:
        """This split's rows of `epoch`, from split-local position `start` on."""
        order = self._rng(epoch).permutation(len(self.shards)) if self.shuffle else np.arange(len(self.shards))
        sizes = [self.shards[i].rows for i in order]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        lo, hi = self.split * self.length + start, (self.split + 1) * self.length
        j = max(0, bisect.bisect_right(offsets.tolist(), lo) - 1)
        while lo < hi and j < len(order):
            shard_pos = int(order[j])
            shard = self.shards[shard_pos]
            a, b = lo - int(offsets[j]), min(hi, int(offsets[j + 1])) - int(offsets[j])
            if a < b:
                table = reader._load(shard)
                if table.num_rows != shard.rows:
                    from storage.errors import ShardCorrupt

                    raise ShardCorrupt(f"shard {shard.uri} has {table.num_rows} rows, manifest says {shard.rows}")
                perm = self._rng(epoch, shard_pos, 1).permutation(shard.rows) if self.shuffle else np.arange(shard.rows)
                for c in range(a, b, _CHUNK):
                    idx = perm[c:min(b, c + _CHUNK)]
                    for row in table.take(idx).to_pylist():
                        row["_shard"] = shard.uri
                        yield row
                del table
                lo = int(offsets[j]) + b
            j += 1


class StreamingReader:
    """Iterate the rows of committed manifests; optionally a weighted mixture of them.

    Without `weights` all manifests form one dataset and an epoch visits each row once (per split,
    remainder dropped). With `weights`, each manifest is a component drawn with that probability; a
    component that runs out starts its next cycle, and an epoch is `samples_per_epoch` rows (default:
    the components' total) divided among the splits.
    """

    def __init__(self, manifests: str | Manifest | Sequence[str | Manifest], weights: Sequence[float] | None = None, *,
                 seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1, worker_id: int = 0,
                 num_workers: int = 1, epoch: int = 0, columns: list[str] | None = None,
                 samples_per_epoch: int | None = None, verify: bool = True):
        if isinstance(manifests, (str, Manifest)):
            manifests = [manifests]
        self.manifests = [m if isinstance(m, Manifest) else read_manifest(m) for m in manifests]
        if not (0 <= rank < world_size and 0 <= worker_id < num_workers):
            raise ValueError(f"bad split: rank {rank}/{world_size}, worker {worker_id}/{num_workers}")
        n_splits = world_size * num_workers
        split = rank * num_workers + worker_id
        self.columns, self.verify = columns, verify
        self.seed = seed
        self._verified: set[str] = set()
        if weights is None:
            shards = [s for m in self.manifests for s in m.shards]
            self.sources = [_Source(shards, seed, shuffle, split, n_splits, tag=0)]
            self.weights = None
            self.epoch_length = self.sources[0].length
        else:
            if len(weights) != len(self.manifests) or any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError("weights: one non-negative weight per manifest, not all zero")
            self.sources = [_Source(m.shards, seed, shuffle, split, n_splits, tag=i + 1) for i, m in enumerate(self.manifests)]
            total = float(sum(weights))
            self.weights = np.array([w / total for w in weights])
            total_rows = samples_per_epoch if samples_per_epoch is not None else sum(s.total for s in self.sources)
            self.epoch_length = total_rows // n_splits
        self._state: dict[str, Any] = self._fresh_state(epoch)

    # Position ---------------------------------------------------------------------------------
    def _fresh_state(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "yielded": 0, "sources": [[0, 0] for _ in self.sources]}  # per source: [cycle, pos]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._state["epoch"], "yielded": self._state["yielded"],
                "sources": [list(s) for s in self._state["sources"]], "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed", self.seed) != self.seed or len(state["sources"]) != len(self.sources):
            raise ValueError("reader state belongs to a different reader configuration")
        self._state = {"epoch": int(state["epoch"]), "yielded": int(state["yielded"]),
                       "sources": [[int(c), int(p)] for c, p in state["sources"]]}

    def set_epoch(self, epoch: int) -> None:
        self._state = self._fresh_state(epoch)

    @property
    def epoch(self) -> int:
        return self._state["epoch"]

    def __len__(self) -> int:
        return self.epoch_length

    # Reading ----------------------------------------------------------------------------------
    def _load(self, shard: ShardInfo):
        verify = self.verify and shard.uri not in self._verified
        table = read_verified(shard, self.columns, verify=verify)
        self._verified.add(shard.uri)
        return table

    def __iter__(self) -> Iterator[dict[str, Any]]:
        st = self._state
        if self.weights is None:
            for row in self.sources[0].rows(st["epoch"], st["yielded"], self):
                st["yielded"] += 1
                st["sources"][0][1] = st["yielded"]
                yield row
        else:
            yield from self._iter_mixture(st)
        if st["yielded"] >= self.epoch_length:
            self._state = self._fresh_state(st["epoch"] + 1)

    def _iter_mixture(self, st: dict[str, Any]) -> Iterator[dict[str, Any]]:
        streams: dict[int, Iterator[dict[str, Any]]] = {}

        def next_row(i: int) -> dict[str, Any]:
            src, pos = self.sources[i], st["sources"][i]
            while True:
                if i not in streams:
                    # A component's cycle c of mixture epoch e is its own epoch (e, c) in the order.
                    streams[i] = src.rows(st["epoch"] * 1_000_003 + pos[0], pos[1], self)
                row = next(streams[i], None)
                if row is not None:
                    pos[1] += 1
                    return row
                if pos[1] == 0:
                    raise ValueError(f"mixture component {i} has no rows for this split")
                pos[0], pos[1] = pos[0] + 1, 0
                del streams[i]

        while st["yielded"] < self.epoch_length:
            block, offset = divmod(st["yielded"], _MIX_BLOCK)
            rng = np.random.default_rng([self.seed, st["epoch"], block, 7])
            choices = rng.choice(len(self.sources), size=_MIX_BLOCK, p=self.weights)
            for k in range(offset, min(_MIX_BLOCK, self.epoch_length - block * _MIX_BLOCK)):
                row = next_row(int(choices[k]))
                st["yielded"] += 1
                yield row
