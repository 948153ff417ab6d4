"""The render flow: one parameterised flow for every generator kind, one task per shard.

Shard k holds sample indices [k*R, (k+1)*R), so any shard can be rendered alone and a rerun after a crash
renders exactly the shards that are missing. The manifest commit is the last task: readers never see a
dataset version whose shards are not all written.
"""
from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import Counter
from typing import Any, Callable

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed
from prefect.runtime import deployment as runtime_deployment
from prefect.runtime import flow_run as runtime_flow_run
from prefect.tasks import exponential_backoff

from flows.common import (
    api_url_exported,
    artifact_key,
    default_root,
    generator_params,
    location_markdown,
    md_cell,
    package_versions,
    root_tag,
    storage_errors_for_inputs,
)
from flows.checks import check_reject_rate, check_render
from flows.inputs import count_within_inputs, input_digest
from flows.runners import active_local_pool, make_task_runner
from flows.shardwork import MAX_REJECT_EXAMPLES, Rows, ShardResult, existing_shard, rows_job, shard_job, write_shard
from storage import DEFAULT_SHARD_ROWS  # one default for every writer (storage/shards.py says why 512)

# Called as listener(kind, done, count) as sample indices are rendered (at most every 0.2 s per worker, and as
# each shard ends); the CLI's progress bar. Reused shards count as done.
PROGRESS_LISTENERS: list[Callable[[str, int, int], None]] = []


def shard_ranges(count: int, shard_rows: int) -> list[tuple[int, int, int]]:
    """(shard index, first sample index, stop) for `count` samples in shards of `shard_rows`."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if shard_rows < 1:
        raise ValueError(f"shard rows must be at least 1, got {shard_rows}")
    return [(k, start, min(start + shard_rows, count)) for k, start in enumerate(range(0, count, shard_rows))]


def render_fingerprint(kind: str, params: dict[str, Any], seed: int, shard_rows: int,
                       inputs: dict[str, Any] | None = None) -> str:
    """What every sample of a dataset is a function of: kind, generator version, params, seed, shard size and
    the digest of its input files (`input_digest`). Not the count: growing a dataset keeps its fingerprint,
    so the shards already written are reused (see `shard_fingerprint`)."""
    from generators import generator_class
    from generators.base import params_fingerprint

    version = generator_class(kind).version
    return params_fingerprint(
        {"kind": kind, "version": version, "params": params, "seed": seed, "shard_rows": shard_rows, "inputs": inputs or {}}
    )


def shard_fingerprint(fingerprint: str, start: int, stop: int) -> str:
    """A shard's identity: the dataset fingerprint and its index range. A full shard keeps it when the count
    grows; the old last, partial shard covers another range then, so it is written anew, never reused."""
    return hashlib.sha256(f"{fingerprint}:{start}:{stop}".encode()).hexdigest()


def _storage_failure(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what a retry can fix: storage hiccups (timeouts, 5xx), not a missing bucket, denied access,
    a lost commit race or a broken generator."""
    from storage.errors import StorageError

    try:
        state.result(raise_on_failure=True)
    except StorageError as e:
        return e.retryable
    except Exception:
        return False
    return False


def render_shard_rows(kind: str, params: dict[str, Any], seed: int, start: int, stop: int, gallery: int = 0) -> Rows:
    """Generator -> rows, with rejects counted by reason (`flows.shardwork.render_rows` with a fresh generator);
    unpacks as (rows, rejects, examples, gallery)."""
    from generators import get_generator

    from flows.shardwork import render_rows

    with get_generator(kind, **generator_params(kind, params)) as gen:
        return render_rows(gen, kind, seed, start, stop, gallery)


class _Progress:
    """Sample indices done per shard of one render, fed by its shard tasks (and the pool's reader thread)."""

    def __init__(self, kind: str, count: int):
        self.kind, self.count = kind, count
        self.done: dict[int, int] = {}
        self._lock = threading.Lock()

    def update(self, index: int, n: int) -> None:
        with self._lock:
            if n <= self.done.get(index, 0):
                return
            self.done[index] = n
            total = sum(self.done.values())
        _notify(self.kind, min(total, self.count), self.count)

    def finish(self, index: int, n: int) -> None:
        self.update(index, n)


# Each render flow's progress, by flow run id, so its shard tasks (threads of this process) can report to it.
_PROGRESS: dict[str, _Progress] = {}


def _progress_of_run() -> _Progress | None:
    return _PROGRESS.get(str(runtime_flow_run.id)) if PROGRESS_LISTENERS else None


# The flow reaches _PROGRESS through these: Dask pickles the flow function by value with the globals it names,
# and a _Progress holds a lock.
def _track_progress(kind: str, count: int) -> _Progress:
    progress = _PROGRESS[str(runtime_flow_run.id)] = _Progress(kind, count)
    return progress


def _untrack_progress() -> None:
    _PROGRESS.pop(str(runtime_flow_run.id), None)


def _render_split(pool: Any, kind: str, params: dict[str, Any], seed: int, root: str, dataset: str, shard_fp: str,
                  index: int, start: int, stop: int, gallery: int, parts: int, progress: _Progress | None,
                  inputs: dict[str, Any] | None) -> ShardResult:
    """One shard rendered as `parts` index ranges on as many workers, written here as one shard: the same rows in
    the same order, so the same bytes as rendering it whole (a small render uses every worker asked for)."""
    found = existing_shard(root, dataset, shard_fp, index)
    if found is not None:
        return found
    t0 = time.perf_counter()
    bounds = [start + (stop - start) * i // parts for i in range(parts + 1)]
    spans = [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
    done = [0] * len(spans)

    def reporter(i: int) -> Callable[[int], None] | None:
        if progress is None:
            return None

        def report(n: int) -> None:
            done[i] = n
            progress.update(index, sum(done))
        return report

    futures = [pool.submit(rows_job, kind, params, seed, a, b, gallery if i == 0 else 0, inputs=inputs, progress=reporter(i))
               for i, (a, b) in enumerate(spans)]
    pieces = [f.result() for f in futures]
    rejects: Counter[str] = Counter()
    for piece in pieces:
        rejects.update(piece.rejects)
    merged = Rows([r for p in pieces for r in p.rows], dict(rejects),
                  [e for p in pieces for e in p.examples][:MAX_REJECT_EXAMPLES], [g for p in pieces for g in p.gallery][:gallery])
    return write_shard(root, dataset, shard_fp, index, merged, t0)


@task(
    name="render-shard",
    task_run_name="render {kind} shard {index}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=1),
    retry_condition_fn=_storage_failure,
)
@storage_errors_for_inputs
def render_shard(
    kind: str,
    params: dict[str, Any],
    seed: int,
    root: str,
    dataset: str,
    fingerprint: str,
    index: int,
    start: int,
    stop: int,
    gallery: int = 0,
    parts: int = 1,
    inputs: dict[str, Any] | None = None,
) -> ShardResult:
    """Inline where the task runs (threads, Dask, Ray), or in the local pool under the `process` runner, then split
    into `parts` index ranges when the render has fewer shards than workers (same bytes either way)."""
    logger = get_run_logger()
    shard_fp = shard_fingerprint(fingerprint, start, stop)
    progress = _progress_of_run()
    report = (lambda n: progress.update(index, n)) if progress is not None else None
    pool = active_local_pool()
    if pool is None:
        result = shard_job(kind, params, seed, root, dataset, shard_fp, index, start, stop, gallery, report)
    elif parts > 1:
        result = _render_split(pool, kind, params, seed, root, dataset, shard_fp, index, start, stop, gallery, parts, progress,
                               inputs)
    else:
        result = pool.submit(shard_job, kind, params, seed, root, dataset, shard_fp, index, start, stop, gallery,
                             reuse_generator=True, inputs=inputs, progress=report).result()
    if result.reused:
        logger.info("shard %d of %s already written (%d rows); not rendered again", index, dataset, result.info.rows)
        return result
    for ex in result.reject_examples:
        logger.warning("rejected %s: %s %s", ex["id"], ex["reason"], ex["detail"])
    logger.info("shard %d of %s: %d rows, %d rejects in %.1f s", index, dataset, result.info.rows,
                sum(result.rejects.values()), result.seconds)
    return result


@task(
    name="commit-manifest",
    task_run_name="commit {dataset} manifest",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=1),
    retry_condition_fn=_storage_failure,
)
def commit_manifest(root: str, dataset: str, fingerprint: str, shards: list[Any], facts: dict[str, Any]) -> str:
    from storage import DatasetWriter

    return DatasetWriter(root, dataset, fingerprint).commit(shards, facts)


def _committed(root: str, dataset: str, fingerprint: str, count: int):
    """The newest manifest of `dataset` when it already holds exactly this render; a rerun then does nothing."""
    from storage import read_manifest
    from storage.manifest import latest_manifest

    uri = latest_manifest(root, dataset)
    if uri is None:
        return None
    manifest = read_manifest(uri)
    same = manifest.facts.get("fingerprint") == fingerprint and manifest.facts.get("count") == count
    return manifest if same else None


def _render_run_name() -> str:
    p = runtime_flow_run.parameters
    return f"render-{p.get('dataset') or p['kind']}-{p['count']}x-seed{p.get('seed', 0)}"


@flow(name="render", flow_run_name=_render_run_name, log_prints=True)
def render(
    kind: str,
    count: int,
    seed: int = 0,
    out: str | None = None,
    dataset: str | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    params: dict[str, Any] | None = None,
    workers: int = 2,
    runner: str = "process",
    runner_address: str | None = None,
    gallery: int = 6,
    max_reject_rate: float | None = None,
) -> dict[str, Any]:
    """Render `count` samples of `kind` into a new version of `dataset` (default: the kind) under `out`.
    `max_reject_rate` (0-1): when more of the sample indices than that were rejected, the run fails without
    committing and names its top reject reasons.

    Returns {"dataset", "manifest", "rows", "shards", "rejects", "reused", "samples_per_s"}.
    """
    logger = get_run_logger()
    root = out or default_root()
    dataset = dataset or kind
    params = dict(params or {})
    check_render(kind, params, root, list_source=False)  # unknown params, no source, unwritable root: fail now
    inputs = input_digest(kind, params)
    count, note = count_within_inputs(count, inputs, params.get("source"))
    if note:
        logger.warning(note)
    ranges = shard_ranges(count, shard_rows)
    fingerprint = render_fingerprint(kind, params, seed, shard_rows, inputs)

    done = _committed(root, dataset, fingerprint, count)
    if done is not None:
        logger.info("%s already holds this render (%s); nothing to do", dataset, done.uri)
        result = _summary(dataset, done.uri, done.shards, done.facts.get("rejects", {}), reused=len(done.shards), rate=0.0)
        _notify(kind, count, count)
        return result

    progress_id = create_progress_artifact(0.0, key=artifact_key("render", dataset, root_tag(root), "progress"),
                                           description=f"shards of {dataset} written under {root}")
    t0 = time.perf_counter()
    results: list[ShardResult] = []
    task_runner = make_task_runner(runner, workers, runner_address)
    # Fewer shards than workers (a small render): each shard's index range is split across the workers.
    parts = math.ceil(workers / len(ranges)) if runner == "process" and len(ranges) < workers else 1
    progress = _track_progress(kind, count)
    try:
        with api_url_exported(), task_runner:
            futures = [
                task_runner.submit(
                    render_shard,
                    parameters=dict(kind=kind, params=params, seed=seed, root=root, dataset=dataset, fingerprint=fingerprint,
                                    index=k, start=start, stop=stop, gallery=gallery if k == 0 else 0, parts=parts,
                                    inputs=inputs),
                )
                for k, start, stop in ranges
            ]
            for fut in as_completed(futures):
                results.append(fut.result())
                rows_done = sum(r.info.rows for r in results)
                _, start, stop = ranges[results[-1].index]
                progress.finish(results[-1].index, stop - start)
                update_progress_artifact(progress_id, 100.0 * len(results) / len(ranges),
                                         description=f"{len(results)}/{len(ranges)} shards, {rows_done} rows")
    finally:
        _untrack_progress()
    elapsed = time.perf_counter() - t0

    results.sort(key=lambda r: r.index)
    rejects: Counter[str] = Counter()
    for r in results:
        rejects.update(r.rejects)
    rendered = [r for r in results if not r.reused]
    rate = sum(r.info.rows for r in rendered) / elapsed if rendered and elapsed > 0 else 0.0
    facts = {
        "kind": kind,
        "generator_version": _generator_version(kind),
        "params": params,
        "seed": seed,
        "count": count,
        "shard_rows": shard_rows,
        "inputs": inputs,
        "fingerprint": fingerprint,
        "rejects": dict(rejects),
        "reject_examples": [ex for r in results for ex in r.reject_examples][:MAX_REJECT_EXAMPLES],
        "packages": package_versions(),
        "flow_run_id": str(runtime_flow_run.id) if runtime_flow_run.id else None,
        "deployment": runtime_deployment.name,
    }
    check_reject_rate(dataset, sum(r.info.rows for r in results), rejects, max_reject_rate)
    manifest_uri = commit_manifest(root, dataset, fingerprint, [r.info for r in results], facts)
    result = _summary(dataset, manifest_uri, [r.info for r in results], dict(rejects), reused=len(results) - len(rendered), rate=rate)
    logger.info("committed %s: %d rows in %d shards (%d reused), %d rejects, %.1f samples/s",
                manifest_uri, result["rows"], result["shards"], result["reused"], sum(rejects.values()), rate)
    _publish(kind, dataset, result, [g for r in results for g in r.gallery], elapsed, root, results)
    return result


def _generator_version(kind: str) -> str:
    from generators import generator_class

    return generator_class(kind).version


def _summary(dataset: str, manifest: str, shards: list[Any], rejects: dict[str, int], reused: int, rate: float) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "manifest": manifest,
        "rows": sum(s.rows for s in shards),
        "shards": len(shards),
        "rejects": rejects,
        "reused": reused,
        "samples_per_s": round(rate, 2),
    }


def _notify(kind: str, done: int, total: int) -> None:
    for listener in list(PROGRESS_LISTENERS):
        listener(kind, done, total)


def _publish(kind: str, dataset: str, result: dict[str, Any], gallery: list[dict[str, str]], elapsed: float,
             root: str, shards: list[ShardResult]) -> None:
    """What the UI shows on the run: stats, the shards, the rejected inputs and why, a gallery and where the
    manifest is. Keys are scoped by dataset and storage root (`root_tag`)."""
    scope = ("render", dataset, root_tag(root))
    stats = [
        {"measure": "rows", "value": result["rows"]},
        {"measure": "shards", "value": result["shards"]},
        {"measure": "shards reused", "value": result["reused"]},
        {"measure": "rejects", "value": sum(result["rejects"].values())},
        *({"measure": f"rejects: {reason}", "value": n} for reason, n in sorted(result["rejects"].items())),
        {"measure": "seconds", "value": round(elapsed, 2)},
        {"measure": "samples/s", "value": result["samples_per_s"]},
    ]
    create_table_artifact(stats, key=artifact_key(*scope, "stats"), description=f"{kind} render statistics")
    create_table_artifact([{"index": r.index, "rows": r.info.rows, "rejects": sum(r.rejects.values()),
                            "seconds": round(r.seconds, 2), "reused": r.reused, "sha256": r.info.sha256}
                           for r in sorted(shards, key=lambda r: r.index)],
                          key=artifact_key(*scope, "shards"), description=f"shards of {dataset} in this version")
    examples = [ex for r in shards for ex in r.reject_examples][:MAX_REJECT_EXAMPLES]
    if examples:
        create_table_artifact([{k: ex.get(k, "") for k in ("id", "reason", "detail", "source")} for ex in examples],
                              key=artifact_key(*scope, "rejects"),
                              description=f"rejected inputs of {dataset} and why (first {MAX_REJECT_EXAMPLES}; counts in stats)")
    if gallery:
        lines = [f"# {kind} samples", "", "| image | target |", "|---|---|"]
        lines += [f"| ![{g['id']}]({g['thumb']}) | `{md_cell(g['id'], 40)}` {md_cell(g['text'])} |" for g in gallery]
        create_markdown_artifact("\n".join(lines), key=artifact_key(*scope, "gallery"), description=f"{kind} sample gallery")
    create_markdown_artifact(location_markdown(f"manifest of {dataset}", result["manifest"],
                                               f"`varyflow data show {result['manifest']}`"),
                             key=artifact_key(*scope, "manifest"), description=f"manifest of {dataset}")


def run_render(**kwargs: Any) -> dict[str, Any]:
    """Run the render flow in this process (the CLI and the pipeline use it)."""
    return render(**kwargs)
