"""The work of one shard, without Prefect: generator -> rows -> one Parquet shard.

A render task runs these functions inline (thread, Dask or Ray workers) or hands them to the local worker pool
(`flows.runners.LocalPool`), whose processes import no Prefect and keep each generator they built for the next shard
(a Chromium or a TeX work dir starts once per process, not once per shard). This module must stay importable
without Prefect: pool workers import it.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

MAX_REJECT_EXAMPLES = 20

# Built generators of this process, by (kind, params, input digest); closed when the process exits.
_GENERATORS: dict[str, Any] = {}
# Parameters that name input files (flows.inputs digests them): a generator built on them is reused only for the
# same digest, so a folder that gained a file, or a corpus edited in place, gets a new one.
_FILE_PARAMS = ("source", "corpus", "records")


@dataclass
class ShardResult:
    index: int
    info: Any  # storage.ShardInfo
    reused: bool
    seconds: float = 0.0
    rejects: dict[str, int] = field(default_factory=dict)
    reject_examples: list[dict[str, str]] = field(default_factory=list)
    gallery: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Rows:
    """What rendering an index range gives: rows in index order, rejects by reason, examples, gallery."""

    rows: list[dict[str, Any]]
    rejects: dict[str, int]
    examples: list[dict[str, str]]
    gallery: list[dict[str, str]]

    def __iter__(self):  # (rows, rejects, examples, gallery), as render_shard_rows always returned
        return iter((self.rows, self.rejects, self.examples, self.gallery))


def cached_generator(kind: str, params: dict[str, Any], inputs: dict[str, Any] | None = None) -> Any:
    """This process's generator for (kind, params, `inputs`: the render's `flows.inputs.input_digest`), built on
    first use; None when `params` name input files and no digest is given (build a fresh one then). Pool workers
    render many shards; the generators are pure per index, so reusing one gives the bytes a fresh one would."""
    from multiprocessing.util import Finalize

    from flows.common import generator_params
    from generators import get_generator

    if inputs is None and any(params.get(p) for p in _FILE_PARAMS):
        return None
    key = json.dumps([kind, params, inputs or {}], sort_keys=True, default=str)
    gen = _GENERATORS.get(key)
    if gen is None:
        gen = _GENERATORS[key] = get_generator(kind, **generator_params(kind, params))
        # Runs as a pool worker exits (multiprocessing's exit handler), so its Chromium or TeX dir goes too.
        Finalize(gen, gen.close, exitpriority=10)
    return gen


def close_generators() -> None:
    while _GENERATORS:
        _, gen = _GENERATORS.popitem()
        gen.close()


def render_rows(gen: Any, kind: str, seed: int, start: int, stop: int, gallery: int = 0,
                progress: Callable[[int], None] | None = None) -> Rows:
    """Generator -> rows for indices [start, stop), rejects counted by reason. The only place flows touch samples.
    `progress(n)` is told how many indices are done so far (samples and rejects alike)."""
    from flows.common import thumbnail_data_uri
    from generators.base import Rejected

    rows: list[dict[str, Any]] = []
    rejects: Counter[str] = Counter()
    examples: list[dict[str, str]] = []
    shown: list[dict[str, str]] = []
    done = 0
    last: int | None = None
    for item in gen.items(seed, start, stop):
        if isinstance(item, Rejected):
            rejects[item.reason] += 1
            if len(examples) < MAX_REJECT_EXAMPLES:
                examples.append({"id": item.id, "reason": item.reason, "detail": item.detail, "source": item.source})
        else:
            rows.append(item.to_row())
            if len(shown) < gallery:
                shown.append({"id": item.id, "lang": item.lang, "text": item.text, "thumb": thumbnail_data_uri(item.image)})
        if progress is not None:
            # A PDF yields one item per page: count an index once, when its first item arrives.
            index = _index_of(item.id, start)
            if index != last:
                done, last = done + 1, index
                progress(done)
    if progress is not None and done != stop - start:
        progress(stop - start)
    return Rows(rows, dict(rejects), examples, shown)


def _index_of(sample_id: str, default: int) -> int:
    """The sample index in a generator id (`kind-s{seed}-{index:09d}[suffix]`)."""
    try:
        return int(sample_id.split("-s", 1)[1].split("-", 1)[1][:9])
    except (IndexError, ValueError):
        return default


def write_shard(root: str, dataset: str, shard_fingerprint: str, index: int, rendered: Rows, started: float) -> ShardResult:
    from storage import DatasetWriter

    info = DatasetWriter(root, dataset, shard_fingerprint).write_shard(index, rendered.rows, rejects=rendered.rejects)
    return ShardResult(index, info, reused=False, seconds=time.perf_counter() - started, rejects=rendered.rejects,
                       reject_examples=rendered.examples, gallery=rendered.gallery)


def existing_shard(root: str, dataset: str, shard_fingerprint: str, index: int) -> ShardResult | None:
    from storage import DatasetWriter

    existing = DatasetWriter(root, dataset, shard_fingerprint).existing_shard(index)
    if existing is None:
        return None
    return ShardResult(index, existing, reused=True, rejects=dict(existing.rejects))


def _rendered(kind: str, params: dict[str, Any], seed: int, start: int, stop: int, gallery: int,
              progress: Callable[[int], None] | None, reuse: bool, inputs: dict[str, Any] | None) -> Rows:
    gen = cached_generator(kind, params, inputs) if reuse else None
    if gen is not None:
        return render_rows(gen, kind, seed, start, stop, gallery, progress)
    from flows.common import generator_params
    from generators import get_generator

    with get_generator(kind, **generator_params(kind, params)) as fresh:
        return render_rows(fresh, kind, seed, start, stop, gallery, progress)


def shard_job(kind: str, params: dict[str, Any], seed: int, root: str, dataset: str, shard_fingerprint: str, index: int,
              start: int, stop: int, gallery: int = 0, progress: Callable[[int], None] | None = None,
              reuse_generator: bool = False, inputs: dict[str, Any] | None = None) -> ShardResult:
    """One whole shard: reuse it when already written whole, else render and write it. `reuse_generator` (pool
    workers) keeps the generator for the next shard of the same kind, params and input digest."""
    found = existing_shard(root, dataset, shard_fingerprint, index)
    if found is not None:
        if progress is not None:
            progress(stop - start)
        return found
    t0 = time.perf_counter()
    rendered = _rendered(kind, params, seed, start, stop, gallery, progress, reuse_generator, inputs)
    return write_shard(root, dataset, shard_fingerprint, index, rendered, t0)


def rows_job(kind: str, params: dict[str, Any], seed: int, start: int, stop: int, gallery: int = 0,
             progress: Callable[[int], None] | None = None, inputs: dict[str, Any] | None = None) -> Rows:
    """Part of a shard (a small render split across workers): its rows, for the caller to write as one shard."""
    return _rendered(kind, params, seed, start, stop, gallery, progress, True, inputs)
