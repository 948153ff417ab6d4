"""The render flow: one parameterised flow for every generator kind, one task per shard.

It reads top to bottom: the request is validated into a `RenderSpec` (`generators.render_unit`: what every sample
is a function of, its shards and their fingerprints), the spec's shards are mapped over the task runner (each task
runs the unit's `run_shard`, with storage's writer and input files), the manifest is committed last (readers never
see a dataset version whose shards are not all written), and the run's artifacts are published. A rerun after a
crash renders exactly the shards that are missing.
"""
from __future__ import annotations

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
    location_markdown,
    md_cell,
    package_versions,
    root_tag,
    storage_errors_for_inputs,
)
from flows.checks import check_reject_rate, check_render
from flows.runners import active_local_pool, make_task_runner, split_parts
from flows.shardwork import rows_job, shard_job, writer_for
from generators.render_unit import (MAX_REJECT_EXAMPLES, RenderSpec, Rows, ShardResult, count_within_inputs, existing_shard,
                                    input_digest, write_rows)
from storage import DEFAULT_SHARD_ROWS, StorageFiles  # one default for every writer (storage/shards.py says why 512)

# Called as listener(kind, done, count) as sample indices are rendered (at most every 0.2 s per worker, and as
# each shard ends); the CLI's progress bar. Reused shards count as done.
PROGRESS_LISTENERS: list[Callable[[str, int, int], None]] = []


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


def _render_split(pool: Any, spec: RenderSpec, root: str, dataset: str, index: int, gallery: int, parts: int,
                  progress: _Progress | None) -> ShardResult:
    """One shard rendered as `parts` index ranges on as many workers, written here as one shard: the same rows in
    the same order, so the same bytes as rendering it whole (a small render uses every worker asked for)."""
    writer = writer_for(root, dataset, spec)
    found = existing_shard(spec, index, writer)
    if found is not None:
        return found
    t0 = time.perf_counter()
    spans = spec.shard(index).parts(parts)
    done = [0] * len(spans)

    def reporter(i: int) -> Callable[[int], None] | None:
        if progress is None:
            return None

        def report(n: int) -> None:
            done[i] = n
            progress.update(index, sum(done))
        return report

    futures = [pool.submit(rows_job, spec.kind, dict(spec.params), spec.seed, a, b, gallery if i == 0 else 0,
                           inputs=dict(spec.inputs), progress=reporter(i))
               for i, (a, b) in enumerate(spans)]
    return write_rows(spec, index, writer, Rows.merge([f.result() for f in futures], gallery), t0)


@task(
    name="render-shard",
    task_run_name="render {spec.kind} shard {index}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=1),
    retry_condition_fn=_storage_failure,
)
@storage_errors_for_inputs
def render_shard(spec: RenderSpec, root: str, dataset: str, index: int, gallery: int = 0, parts: int = 1) -> ShardResult:
    """Shard `index` of `spec` (`run_shard`): inline where the task runs (threads, Dask, Ray), or in the local pool
    under the `process` runner, then split into `parts` index ranges when the render has fewer shards than workers
    (same bytes either way)."""
    progress = _progress_of_run()
    report = (lambda n: progress.update(index, n)) if progress is not None else None
    pool = active_local_pool()
    _, start, stop = spec.shard(index)
    if pool is None:
        result = shard_job(spec, root, dataset, index, gallery, report)
    elif parts > 1 or pool.has_ahead(rows_job, spec.kind, dict(spec.params), spec.seed, start, stop, gallery,
                                     inputs=dict(spec.inputs)):  # CLI head start
        result = _render_split(pool, spec, root, dataset, index, gallery, parts, progress)
    else:
        result = pool.submit(shard_job, spec, root, dataset, index, gallery, reuse_generator=True, progress=report).result()
    _log_shard(result, dataset)
    return result


def _log_shard(result: ShardResult, dataset: str) -> None:
    logger = get_run_logger()
    if result.reused:
        logger.info("shard %d of %s already written (%d rows); not rendered again", result.index, dataset, result.info.rows)
        return
    for ex in result.reject_examples:
        logger.warning("rejected %s: %s %s", ex["id"], ex["reason"], ex["detail"])
    logger.info("shard %d of %s: %d rows, %d rejects in %.1f s", result.index, dataset, result.info.rows,
                sum(result.rejects.values()), result.seconds)


@task(
    name="commit-manifest",
    task_run_name="commit {dataset} manifest",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=1),
    retry_condition_fn=_storage_failure,
)
def commit_manifest(root: str, dataset: str, spec: RenderSpec, shards: list[Any], facts: dict[str, Any]) -> str:
    return writer_for(root, dataset, spec).commit(shards, facts)


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
    root, dataset = out or default_root(), dataset or kind
    spec = _validated_spec(kind, count, seed, shard_rows, dict(params or {}), root)
    done = _committed(root, dataset, spec)
    if done is not None:
        return _already_committed(spec, dataset, done)
    results, elapsed = _render_shards(spec, root, dataset, workers, runner, runner_address, gallery)
    result = _commit(spec, root, dataset, results, elapsed, max_reject_rate)
    _publish(kind, dataset, result, [g for r in results for g in r.gallery], elapsed, root, results)
    return result


def _validated_spec(kind: str, count: int, seed: int, shard_rows: int, params: dict[str, Any], root: str) -> RenderSpec:
    """The render asked for, checked before any work starts (unknown params, no source, an unwritable root), with
    the digest of its input files and its count capped to them (one sample index per file for pdf, negative)."""
    check_render(kind, params, root, list_source=False)  # the digest lists the source anyway
    inputs = input_digest(kind, params, StorageFiles())
    count, note = count_within_inputs(count, inputs, params.get("source"))
    if note:
        get_run_logger().warning(note)
    return RenderSpec.of(kind, count=count, seed=seed, shard_rows=shard_rows, params=params, inputs=inputs)


def _committed(root: str, dataset: str, spec: RenderSpec):
    """The newest manifest of `dataset` when it already holds exactly this render; a rerun then does nothing."""
    from storage import read_manifest
    from storage.manifest import latest_manifest

    uri = latest_manifest(root, dataset)
    if uri is None:
        return None
    manifest = read_manifest(uri)
    try:
        recorded = RenderSpec.from_facts(manifest.facts, manifest.uri)
    except ValueError:  # written by something else (an import): not this render
        return None
    return manifest if (recorded.fingerprint, recorded.count) == (spec.fingerprint, spec.count) else None


def _already_committed(spec: RenderSpec, dataset: str, done: Any) -> dict[str, Any]:
    get_run_logger().info("%s already holds this render (%s); nothing to do", dataset, done.uri)
    result = _summary(dataset, done.uri, done.shards, done.facts.get("rejects", {}), reused=len(done.shards), rate=0.0)
    _notify(spec.kind, spec.count, spec.count)
    return result


def _render_shards(spec: RenderSpec, root: str, dataset: str, workers: int, runner: str, runner_address: str | None,
                   gallery: int) -> tuple[list[ShardResult], float]:
    """Every shard of `spec`, one `render_shard` task each, by index; and the seconds they took."""
    shards = spec.shards()
    progress_id = create_progress_artifact(0.0, key=artifact_key("render", dataset, root_tag(root), "progress"),
                                           description=f"shards of {dataset} written under {root}")
    task_runner = make_task_runner(runner, workers, runner_address)
    # Fewer shards than workers (a small render): each shard's index range is split across the workers.
    parts = split_parts(len(shards), max(stop - start for _, start, stop in shards), workers) if runner == "process" else 1
    results: list[ShardResult] = []
    t0 = time.perf_counter()
    progress = _track_progress(spec.kind, spec.count)
    try:
        with api_url_exported(), task_runner:
            futures = [task_runner.submit(render_shard, parameters=dict(
                           spec=spec, root=root, dataset=dataset, index=k, gallery=gallery if k == 0 else 0, parts=parts))
                       for k, _, _ in shards]
            for fut in as_completed(futures):
                results.append(fut.result())
                _, start, stop = shards[results[-1].index]
                progress.finish(results[-1].index, stop - start)
                update_progress_artifact(progress_id, 100.0 * len(results) / len(shards),
                                         description=f"{len(results)}/{len(shards)} shards, "
                                                     f"{sum(r.info.rows for r in results)} rows")
    finally:
        _untrack_progress()
    return sorted(results, key=lambda r: r.index), time.perf_counter() - t0


def _commit(spec: RenderSpec, root: str, dataset: str, results: list[ShardResult], elapsed: float,
            max_reject_rate: float | None) -> dict[str, Any]:
    """The manifest of the shards, committed unless too many samples were rejected; the flow's summary."""
    rejects: Counter[str] = Counter()
    for r in results:
        rejects.update(r.rejects)
    rendered = [r for r in results if not r.reused]
    rate = sum(r.info.rows for r in rendered) / elapsed if rendered and elapsed > 0 else 0.0
    check_reject_rate(dataset, sum(r.info.rows for r in results), rejects, max_reject_rate)
    facts = {
        **spec.to_facts(),
        "rejects": dict(rejects),
        "reject_examples": [ex for r in results for ex in r.reject_examples][:MAX_REJECT_EXAMPLES],
        "packages": package_versions(),
        "flow_run_id": str(runtime_flow_run.id) if runtime_flow_run.id else None,
        "deployment": runtime_deployment.name,
    }
    manifest_uri = commit_manifest(root, dataset, spec, [r.info for r in results], facts)
    result = _summary(dataset, manifest_uri, [r.info for r in results], dict(rejects), reused=len(results) - len(rendered), rate=rate)
    get_run_logger().info("committed %s: %d rows in %d shards (%d reused), %d rejects, %.1f samples/s",
                          manifest_uri, result["rows"], result["shards"], result["reused"], sum(rejects.values()), rate)
    return result


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
