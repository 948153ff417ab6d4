"""The local pool's side of rendering: jobs a pool worker runs, and the generators it keeps between them.

The work itself is the render unit's (`generators.render_unit.run_shard`); this module adds what a long-lived
worker process needs around it: storage's writer and input files, and one generator per (kind, params, input
digest) kept for the next shard (a Chromium or a TeX work dir starts once per process, not once per shard).
A render task runs `shard_job` inline (thread, Dask or Ray workers) or hands it to `flows.runners.LocalPool`,
whose processes import no Prefect: neither may this module.
"""
from __future__ import annotations

import json
from typing import Any

from flows.common import InputUnavailable
from generators.render_unit import (Progress, RenderSpec, Rows, ShardResult, build_generator, input_params, render_rows,
                                    run_shard)
from storage import DatasetWriter, StorageFiles
from storage.errors import NotFound, StorageError

# Built generators of this process, by (kind, params, input digest); closed when the process exits.
_GENERATORS: dict[str, Any] = {}


class TaskInputFiles(StorageFiles):
    """storage's input files as a render task hands them to generators: a storage outage (S3 down, a timeout, a
    denial) leaves the generator as an `InputUnavailable`, so the task fails or retries instead of committing the
    outage as rejects; only a missing file is the sample's problem."""

    def is_folder(self, name: str) -> bool:
        return _available(super().is_folder, name)

    def list(self, folder: str) -> list[str]:
        return _available(super().list, folder)

    def walk(self, folder: str) -> tuple[str, list[str]]:
        return _available(super().walk, folder)

    def read(self, name: str) -> bytes:
        return _available(super().read, name)

    def open(self, name: str) -> Any:
        return _available(super().open, name)


def _available(fn: Any, name: str) -> Any:
    try:
        return fn(name)
    except NotFound:
        raise
    except StorageError as e:
        raise InputUnavailable(e) from None


def input_files() -> TaskInputFiles:
    return TaskInputFiles()


def cached_generator(kind: str, params: dict[str, Any], inputs: dict[str, Any] | None = None) -> Any:
    """This process's generator for (kind, params, `inputs`: the render's input digest), built on first use; None
    when `params` name input files and no digest is given (build a fresh one then). Pool workers render many
    shards; the generators are pure per index, so reusing one gives the bytes a fresh one would. A folder that
    gained a file, or a corpus edited in place, has another digest, so it gets a new generator."""
    from multiprocessing.util import Finalize

    if inputs is None and any(params.get(p) for p in input_params(kind)):
        return None
    key = json.dumps([kind, params, inputs or {}], sort_keys=True, default=str)
    gen = _GENERATORS.get(key)
    if gen is None:
        gen = _GENERATORS[key] = build_generator(kind, params, input_files())
        # Runs as a pool worker exits (multiprocessing's exit handler), so its Chromium or TeX dir goes too.
        Finalize(gen, gen.close, exitpriority=10)
    return gen


def close_generators() -> None:
    while _GENERATORS:
        _, gen = _GENERATORS.popitem()
        gen.close()


def writer_for(root: str, dataset: str, spec: RenderSpec) -> DatasetWriter:
    return DatasetWriter(root, dataset, spec.fingerprint)


def shard_job(spec: RenderSpec, root: str, dataset: str, index: int, gallery: int = 0, progress: Progress | None = None,
              reuse_generator: bool = False) -> ShardResult:
    """Shard `index` of `spec` under `root`/`dataset` (`run_shard` with storage's writer and input files).
    `reuse_generator` (pool workers) keeps the generator for the next shard of the same kind, params and inputs."""
    gen = cached_generator(spec.kind, dict(spec.params), dict(spec.inputs)) if reuse_generator else None
    return run_shard(spec, index, writer_for(root, dataset, spec), input_files(), generator=gen, gallery=gallery,
                     progress=progress)


def rows_job(kind: str, params: dict[str, Any], seed: int, start: int, stop: int, gallery: int = 0,
             progress: Progress | None = None, inputs: dict[str, Any] | None = None) -> Rows:
    """Part of a shard (a small render split across workers, or a CLI head start): its rows, for the caller to
    write as one shard. Plain arguments, so a job started ahead is found again by its call."""
    gen = cached_generator(kind, params, inputs)
    if gen is not None:
        return render_rows(gen, seed, start, stop, gallery, progress)
    with build_generator(kind, params, input_files()) as fresh:
        return render_rows(fresh, seed, start, stop, gallery, progress)
