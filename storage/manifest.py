"""Datasets and their committed versions.

A dataset version exists only once its manifest is written, and the manifest is written last, after
every shard it lists has landed. The write is put-if-absent (S3 `If-None-Match: *`, a hard link
locally), so two writers can never both commit one version. Readers read manifests, never list
shard prefixes: a shard that no committed manifest names does not exist for them.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import pyarrow as pa

from storage.errors import CommitConflict, ManifestError, NotFound, StorageError
from storage.location import Location
from storage.redact import redact
from storage.shards import (DEFAULT_ROW_GROUP_ROWS, ShardInfo, read_shard_bytes, shard_name, sidecar_json,
                            write_shard)

FORMAT = "varyflow.manifest/1"
# Per-shard sidecars of unfinished work (resume after a crash), beside shards/ rather than in it.
SIDECAR_DIR = "shard-meta"
_VERSION_RE = re.compile(r"^v(\d{6,})\.json$")


@dataclass
class Manifest:
    uri: str
    sha256: str
    dataset: str
    version: int
    shards: list[ShardInfo]
    facts: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    rejects: dict[str, int] = field(default_factory=dict)
    created: float = 0.0

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    def summary(self) -> dict[str, Any]:
        return {
            "manifest": self.uri, "sha256": self.sha256, "dataset": self.dataset, "version": self.version,
            "rows": self.rows, "bytes": self.bytes, "shards": len(self.shards), "counts": self.counts,
            "rejects": self.rejects, "facts": self.facts, "created": self.created,
        }


def dataset_location(root: str | Location, dataset: str) -> Location:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", dataset):
        raise ValueError(f"dataset name {dataset!r}: use letters, digits, '.', '_' and '-'")
    return Location.parse(root) / "datasets" / dataset


def _merge_counts(shards: Iterable[ShardInfo]) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    counts: dict[str, Counter] = {"kind": Counter(), "lang": Counter()}
    rejects: Counter = Counter()
    for s in shards:
        for col, vals in s.counts.items():
            counts.setdefault(col, Counter()).update(vals)
        rejects.update(s.rejects)
    return {k: dict(sorted(v.items())) for k, v in counts.items()}, dict(sorted(rejects.items()))


def parse_manifest(uri: str, data: bytes) -> Manifest:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{uri}: not a valid manifest (malformed JSON: {e.msg if hasattr(e, 'msg') else e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ManifestError(f"{uri}: not a varyflow manifest (format {doc.get('format') if isinstance(doc, dict) else None!r})")
    base = Location.parse(uri).parent.parent  # manifests/vNNNNNN.json -> the dataset directory
    try:
        shards = [ShardInfo.from_json(s, base) for s in doc["shards"]]
        return Manifest(uri=uri, sha256=hashlib.sha256(data).hexdigest(), dataset=doc["dataset"],
                        version=int(doc["version"]), shards=shards, facts=doc.get("facts", {}),
                        counts=doc.get("counts", {}), rejects=doc.get("rejects", {}), created=doc.get("created", 0.0))
    except (KeyError, TypeError, ValueError) as e:
        raise ManifestError(f"{uri}: malformed manifest ({type(e).__name__}: {e})") from None


def read_manifest(uri: str | Location) -> Manifest:
    """Load a committed manifest. A dataset directory (or `s3://…/datasets/NAME`) means its newest version."""
    loc = Location.parse(uri)
    if not loc.uri.endswith(".json"):
        latest = latest_manifest_in(loc)
        if latest is None:
            raise ManifestError(f"{loc.uri}: no committed manifest (is it a dataset directory or a manifest .json?)")
        loc = Location.parse(latest)
    try:
        data = loc.read_bytes()
    except NotFound:
        raise ManifestError(f"{loc.uri}: manifest not found") from None
    return parse_manifest(loc.uri, data)


def manifest_versions(dataset_dir: Location) -> list[tuple[int, Location]]:
    out = []
    for loc in (dataset_dir / "manifests").list():
        m = _VERSION_RE.match(loc.name)
        if m:
            out.append((int(m.group(1)), loc))
    return sorted(out, key=lambda t: t[0])


def latest_manifest_in(dataset_dir: str | Location) -> str | None:
    versions = manifest_versions(Location.parse(dataset_dir))
    return versions[-1][1].uri if versions else None


def latest_manifest(root: str | Location, dataset: str) -> str | None:
    return latest_manifest_in(dataset_location(root, dataset))


def list_datasets(root: str | Location) -> list[str]:
    base = Location.parse(root) / "datasets"
    names = {loc.relative_to(base).split("/")[0] for loc in base.list() if "/manifests/" in loc.uri}
    return sorted(names)


# Facts that say who committed, not what: two identical renders differ only in these.
RUN_FACTS = ("flow_run_id", "deployment")


def _recipe(facts: Mapping[str, Any] | None) -> str:
    kept = {k: v for k, v in redact(dict(facts or {})).items() if k not in RUN_FACTS}
    return json.dumps(kept, sort_keys=True, default=str)


def same_contents(manifest: Manifest, shards: Iterable[ShardInfo], facts: Mapping[str, Any] | None) -> bool:
    """Whether committing `shards` with `facts` would write what `manifest` already holds (shard names carry
    the content fingerprint; the sha256 says the bytes are the same)."""
    mine = sorted((s.path, s.sha256, s.rows) for s in shards)
    theirs = sorted((s.path, s.sha256, s.rows) for s in manifest.shards)
    return mine == theirs and _recipe(manifest.facts) == _recipe(facts)


def _check_fingerprint(fingerprint: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{8,}", fingerprint):
        raise ValueError(f"fingerprint must be a hex digest, got {fingerprint!r}")
    return fingerprint


class DatasetWriter:
    """Writes shards of one dataset and commits versions of it.

    Two fingerprints, each named for what it identifies. `dataset_fingerprint`: the recipe of the whole dataset
    (generator, parameters, seed, inputs), recorded in the manifest a commit writes. `shard_fingerprint` (per
    shard, given to `write_shard` / `existing_shard`): the recipe of one shard, the first 8 hex digits of which are
    part of its file name, so a run with other parameters can never overwrite a shard an older manifest names. A
    dataset whose shards share one recipe (an import, a test) may leave it out: the dataset's is used.
    """

    def __init__(self, root: str | Location, dataset: str, dataset_fingerprint: str,
                 row_group_rows: int = DEFAULT_ROW_GROUP_ROWS):
        _check_fingerprint(dataset_fingerprint)
        self.dataset = dataset
        self.dir = dataset_location(root, dataset)
        self.dataset_fingerprint = dataset_fingerprint
        self.row_group_rows = row_group_rows

    def _shard_name(self, index: int, shard_fingerprint: str | None) -> str:
        return shard_name(index, _check_fingerprint(shard_fingerprint or self.dataset_fingerprint))

    def shard_path(self, index: int, shard_fingerprint: str | None = None) -> str:
        return f"shards/{self._shard_name(index, shard_fingerprint)}"

    def sidecar_path(self, index: int, shard_fingerprint: str | None = None) -> str:
        """Where a shard's sidecar (what a manifest records of it) lives: outside shards/, which holds Parquet
        files only, so `load_dataset("parquet", data_dir=...)`, pyarrow datasets, duckdb and polars read it."""
        return f"{SIDECAR_DIR}/{self._shard_name(index, shard_fingerprint)}.json"

    def write_shard(self, index: int, rows: Iterable[Mapping[str, Any]] | pa.Table,
                    rejects: Mapping[str, int] | None = None, *, shard_fingerprint: str | None = None) -> ShardInfo:
        rel = self.shard_path(index, shard_fingerprint)
        info = write_shard(self.dir / rel, rows, index=index, rel_path=rel, rejects=rejects,
                           row_group_rows=self.row_group_rows)
        # The sidecar lands after the shard: its presence says the shard is whole.
        (self.dir / self.sidecar_path(index, shard_fingerprint)).write_bytes(sidecar_json(info))
        return info

    def existing_shard(self, index: int, verify: bool = True, *, shard_fingerprint: str | None = None) -> ShardInfo | None:
        """The shard written earlier for this index (same shard fingerprint) if it is whole and matches its
        recorded hash; None when it must be (re)written. Lets a rerun after a crash skip finished work."""
        rel = self.shard_path(index, shard_fingerprint)
        info = None
        # the sidecar's place, then where datasets written before kept it (beside the shard)
        for side in (self.sidecar_path(index, shard_fingerprint), f"{rel}.json"):
            try:
                info = ShardInfo.from_json(json.loads((self.dir / side).read_bytes()), self.dir)
                break
            except (NotFound, ValueError, KeyError, TypeError):
                continue
        if info is None:
            return None
        if verify:
            try:
                data = read_shard_bytes(self.dir / rel)
            except NotFound:
                return None
            if len(data) != info.bytes or hashlib.sha256(data).hexdigest() != info.sha256:
                return None
        return info

    def latest(self) -> Manifest | None:
        uri = latest_manifest_in(self.dir)
        return read_manifest(uri) if uri else None

    def commit(self, shards: list[ShardInfo], facts: Mapping[str, Any] | None = None,
               version: int | None = None) -> str:
        """Commit a new version listing `shards` (old versions' shards may be listed again to grow a
        dataset). Every shard must already exist with its recorded size. Returns the manifest URI.

        A commit whose shards and recipe equal the newest version's is a no-op that returns that version:
        two identical renders started at once both end with the one version, neither with an error. Writers
        racing with different contents keep the put-if-absent rule: one wins, the other gets CommitConflict."""
        versions = manifest_versions(self.dir) if version is None else []
        if versions:
            newest = read_manifest(versions[-1][1])
            if same_contents(newest, shards, facts):
                return newest.uri
        if version is None:
            version = versions[-1][0] + 1 if versions else 1
        seen: set[str] = set()
        for s in shards:
            if s.path in seen:
                raise ValueError(f"shard {s.path} listed twice")
            seen.add(s.path)
            loc = self.dir / s.path
            if not loc.exists() or loc.size() != s.bytes:
                raise StorageError(f"cannot commit {self.dataset} v{version}: shard {loc.uri} has not landed")
        counts, rejects = _merge_counts(shards)
        doc = {
            "format": FORMAT,
            "dataset": self.dataset,
            "version": version,
            "created": time.time(),
            "fingerprint": self.dataset_fingerprint,
            "rows": sum(s.rows for s in shards),
            "bytes": sum(s.bytes for s in shards),
            "counts": counts,
            "rejects": rejects,
            "facts": redact(dict(facts or {})),
            "shards": [s.to_json() for s in sorted(shards, key=lambda s: (s.path))],
        }
        target = self.dir / "manifests" / f"v{version:06d}.json"
        try:
            target.put_if_absent(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False).encode())
        except CommitConflict:
            winner = read_manifest(target)
            if same_contents(winner, shards, facts):
                return winner.uri  # an identical render committed it first: that version is ours too
            raise CommitConflict(f"dataset {self.dataset} version {version} was already committed by another writer "
                                 f"({target.uri}); nothing was changed by this commit") from None
        from storage.card import write_card  # the card reads manifests: imported here, not at module level

        write_card(self.dir)  # README.md with the Hugging Face header, one config per committed version
        return target.uri
