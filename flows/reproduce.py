"""`varyflow reproduce CHECKPOINT`: re-render every shard a checkpoint was trained on and compare hashes.

Each manifest records its render's `RenderSpec` as facts (`generators.render_unit`: kind, version, parameters,
seed, count, shard size, input digest, fingerprint), and shard k always covers the same sample indices, so a shard
can be rendered again alone. Same package versions -> the same bytes; a mismatch names the shard and the versions then
and now.
"""
from __future__ import annotations

import tempfile
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.common import api_url_exported, artifact_key, package_versions
from flows.render import render_shard
from flows.runners import make_task_runner
from generators.render_unit import RenderSpec


def _plan(checkpoint: str) -> list[dict[str, Any]]:
    """Per lineage shard: where it came from and what to render."""
    from storage import read_manifest
    from storage.lineage import read_lineage

    record = read_lineage(checkpoint)
    manifests = {m["uri"]: read_manifest(m["uri"]) for m in record.get("manifests", [])}
    plan = []
    for shard in record.get("shards", []):
        manifest = manifests.get(shard["manifest"]) or read_manifest(shard["manifest"])
        spec = RenderSpec.from_facts(manifest.facts, manifest.uri)
        info = next(s for s in manifest.shards if s.uri == shard["uri"])
        plan.append({"uri": shard["uri"], "sha256": shard["sha256"], "dataset": manifest.dataset, "index": info.index,
                     "spec": spec, "facts": manifest.facts})
    return plan


@flow(name="reproduce", flow_run_name="reproduce-{checkpoint}")
def reproduce_flow(checkpoint: str, out: str, workers: int = 2) -> dict[str, Any]:
    logger = get_run_logger()
    plan = _plan(checkpoint)
    now = package_versions()
    # Spawned workers would each start a temporary Prefect server without the API URL exported.
    with api_url_exported(), make_task_runner("process", workers) as runner:
        futures = [
            runner.submit(render_shard, parameters=dict(spec=p["spec"], root=out, dataset=p["dataset"], index=p["index"]))
            for p in plan
        ]
        results = [f.result() for f in futures]
    shards = []
    for p, r in zip(plan, results):
        match = r.info.sha256 == p["sha256"]
        entry = {"uri": p["uri"], "dataset": p["dataset"], "index": p["index"], "sha256": p["sha256"],
                 "reproduced": r.info.uri, "reproduced_sha256": r.info.sha256, "match": match}
        if not match:
            then = p["facts"].get("packages", {})
            entry["package_changes"] = {k: [then.get(k), now.get(k)] for k in set(then) | set(now) if then.get(k) != now.get(k)}
            entry["inputs_changed"] = _inputs_changed(p["facts"])
            logger.warning("shard %s differs (packages changed: %s; input files changed: %s)", p["uri"],
                           entry["package_changes"] or "none", entry["inputs_changed"])
        shards.append(entry)
    create_table_artifact([{k: s[k] for k in ("dataset", "index", "match", "sha256", "reproduced_sha256")} for s in shards],
                          key=artifact_key("reproduce"), description=f"re-rendered shards of {checkpoint}")
    return {"checkpoint": checkpoint, "out": out, "shards": shards, "matched": sum(s["match"] for s in shards)}


def _inputs_changed(facts: dict[str, Any]) -> bool | None:
    """Whether the input files a render read (its recorded digest) differ now; None when it recorded none."""
    from generators import GeneratorError
    from generators.render_unit import input_digest
    from storage import StorageFiles
    from storage.errors import StorageError

    if "inputs" not in facts:
        return None
    try:
        spec = RenderSpec.from_facts(facts)
        return input_digest(spec.kind, spec.params, StorageFiles()) != spec.inputs
    except (GeneratorError, StorageError, OSError, ValueError):  # a source that no longer lists or reads has changed too
        return True


def reproduce(checkpoint: str, out: str | None = None, workers: int = 2) -> dict[str, Any]:
    """Re-render into `out` (default: a fresh temporary directory); never into the original root, where
    the existing shards would simply be found and nothing re-rendered."""
    from storage import Location

    plan_roots = {Location.parse(p["uri"]).uri.split("/datasets/")[0] for p in _plan(checkpoint)}
    if out is None:
        out = tempfile.mkdtemp(prefix="varyflow-reproduce-")
    elif Location.parse(out).uri in plan_roots:
        raise ValueError(f"--out {out} is the checkpoint's own data root; give another location to re-render into")
    return reproduce_flow(checkpoint=checkpoint, out=out, workers=workers)
