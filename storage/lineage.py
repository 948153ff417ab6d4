"""Lineage: which shards built a checkpoint, and which checkpoints a shard went into.

Each checkpoint gets a `lineage.json` beside it, and the storage root keeps an index so both
questions are answered by reading a handful of small objects:
    lineage/by-checkpoint/<key(checkpoint)>.json          the full record
    lineage/by-shard/<key(shard)>/<key(checkpoint)>.json  one pointer per (shard, checkpoint)
Credentials never enter a record: secret-looking config keys and URI userinfo are redacted.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from storage.errors import NotFound, StorageError
from storage.location import Location, S3Location, default_root
from storage.manifest import Manifest, read_manifest
from storage.redact import redact

FORMAT = "varyflow.lineage/1"
def key(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:24]


def config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(redact(config), sort_keys=True, default=str).encode()).hexdigest()


def code_version() -> dict[str, Any]:
    """The git commit of the code that is running, and whether its tree had uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {"git_commit": None, "dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                capture_output=True, text=True, timeout=10)
        return {"git_commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"git_commit": None, "dirty": None}


def _index_root(index_root: str | Location | None, manifests: Sequence[str] = ()) -> Location:
    """The given index root; else the one storage root the manifests live under (<root>/datasets/<name>/
    manifests/v.json), so data kept elsewhere never puts a lineage index in the current directory; else the
    default root."""
    if index_root is not None:
        return Location.parse(index_root)
    roots = {Location.parse(m).parent.parent.parent.parent.uri for m in manifests if "/datasets/" in Location.parse(m).uri}
    return Location.parse(roots.pop() if len(roots) == 1 else default_root())


def record_checkpoint(checkpoint: str | Location, *, stage: str, manifests: Sequence[str | Manifest],
                      parents: Sequence[str] = (), config: Mapping[str, Any] | None = None,
                      metrics: Mapping[str, Any] | None = None, flow_run_id: str | None = None,
                      deployment: str | None = None, index_root: str | Location | None = None,
                      shards_read: Sequence[str] | None = None,
                      extra: Mapping[str, Any] | None = None,
                      orchestrator: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the lineage record of a checkpoint beside it and into the index; return the record.

    `shards_read` narrows the record to the shards training actually consumed (a short run may stop
    before it reaches every shard of its manifests); each must belong to one of the manifests.
    `orchestrator` is whoever started the run, as it describes itself (kept as given); a Prefect one's
    `flow_run_id` / `deployment` also fill the `prefect` part."""
    ckpt = Location.parse(checkpoint)
    loaded = [m if isinstance(m, Manifest) else read_manifest(m) for m in manifests]
    wanted = None if shards_read is None else {Location.parse(u).uri for u in shards_read}
    known = {s.uri for m in loaded for s in m.shards}
    if wanted is not None and not wanted <= known:
        raise StorageError(f"shards read but in none of the manifests: {sorted(wanted - known)[:3]}")
    shards = []
    for m in loaded:
        for s in m.shards:
            if wanted is not None and s.uri not in wanted:
                continue
            loc = Location.parse(s.uri)
            shards.append({"uri": s.uri, "sha256": s.sha256, "bytes": s.bytes, "rows": s.rows,
                           "manifest": m.uri, **({"etag": loc.etag()} if isinstance(loc, S3Location) else {})})
    cfg = redact(dict(config or {}))
    record = {
        "format": FORMAT,
        "checkpoint": ckpt.uri,
        "stage": stage,
        "created": time.time(),
        "parents": [Location.parse(p).uri for p in parents],
        "manifests": [{"uri": m.uri, "sha256": m.sha256, "dataset": m.dataset, "version": m.version,
                       "rows": m.rows} for m in loaded],
        "shards": shards,
        "code": code_version(),
        "config": cfg,
        "config_hash": config_hash(cfg),
        "prefect": {"flow_run_id": flow_run_id or (orchestrator or {}).get("flow_run_id"),
                    "deployment": deployment or (orchestrator or {}).get("deployment")},
        "orchestrator": redact(dict(orchestrator or {})),
        "metrics": dict(metrics or {}),
        **redact(dict(extra or {})),
    }
    _write(ckpt, record, _index_root(index_root, [m.uri for m in loaded]))
    return record


def _write(ckpt: Location, record: dict[str, Any], root: Location) -> None:
    body = json.dumps(record, indent=1, sort_keys=True, default=str).encode()
    (ckpt / "lineage.json").write_bytes(body)
    index = root / "lineage"
    (index / "by-checkpoint" / f"{key(ckpt.uri)}.json").write_bytes(body)
    pointer = json.dumps({"checkpoint": ckpt.uri, "stage": record["stage"], "created": record["created"]}).encode()
    for s in record["shards"]:
        (index / "by-shard" / key(s["uri"]) / f"{key(ckpt.uri)}.json").write_bytes(pointer)


def read_lineage(checkpoint: str | Location) -> dict[str, Any]:
    ckpt = Location.parse(checkpoint)
    try:
        data = (ckpt / "lineage.json").read_bytes()
    except NotFound:
        raise StorageError(f"{ckpt.uri}: no lineage record (lineage.json) beside this checkpoint") from None
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise StorageError(f"{ckpt.uri}/lineage.json: malformed ({e.msg})") from None


def update_metrics(checkpoint: str | Location, metrics: Mapping[str, Any],
                   index_root: str | Location | None = None) -> dict[str, Any]:
    """Add metrics (e.g. evaluation after training) to an existing record, beside and in the index."""
    ckpt = Location.parse(checkpoint)
    record = read_lineage(ckpt)
    record["metrics"] = {**record.get("metrics", {}), **dict(metrics)}
    _write(ckpt, record, _index_root(index_root, [m["uri"] for m in record.get("manifests", [])]))
    return record


def shards_of(checkpoint: str | Location) -> list[dict[str, Any]]:
    return read_lineage(checkpoint)["shards"]


def checkpoints_of(shard_uri: str, index_root: str | Location | None = None) -> list[dict[str, Any]]:
    """Every checkpoint trained on the shard, oldest first."""
    folder = _index_root(index_root, [shard_uri]) / "lineage" / "by-shard" / key(Location.parse(shard_uri).uri)
    out = [json.loads(loc.read_bytes()) for loc in folder.list() if loc.name.endswith(".json")]
    return sorted(out, key=lambda r: r.get("created", 0))


def all_checkpoints(index_root: str | Location | None = None) -> list[dict[str, Any]]:
    """Every indexed checkpoint record, oldest first (for `varyflow retrain`)."""
    folder = _index_root(index_root) / "lineage" / "by-checkpoint"
    out = [json.loads(loc.read_bytes()) for loc in folder.list() if loc.name.endswith(".json")]
    return sorted(out, key=lambda r: r.get("created", 0))
