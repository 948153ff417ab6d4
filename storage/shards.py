"""Writing and reading single shards: Parquet bytes plus the sha256, size and row count that
manifests record. Names are deterministic per (dataset, shard index, fingerprint), so a retried
task overwrites its own shard and nothing else."""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from storage.errors import NotFound, ShardCorrupt
from storage.location import Location, S3Location
from storage.schema import PARQUET_COMPRESSION, check_table, rows_to_table

# MosaicML recommends 50-100 MB shards for streaming; 512 rendered 1024² pages land there.
DEFAULT_SHARD_ROWS = 512
# ~16 MB row groups keep a reader's working set small without many tiny reads.
DEFAULT_ROW_GROUP_ROWS = 128

# Hashing and I/O both release the GIL; overlapping them keeps the sha256 nearly free.
_io_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="varyflow-io")


@dataclass
class ShardInfo:
    index: int
    path: str  # relative to the dataset directory, as manifests store it
    rows: int
    bytes: int
    sha256: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # {"kind": {...}, "lang": {...}}
    rejects: dict[str, int] = field(default_factory=dict)  # reason -> count
    uri: str = ""  # absolute location, filled in when resolved against a dataset

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("uri")
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any], base: Location | None = None) -> "ShardInfo":
        info = cls(**{k: d[k] for k in ("index", "path", "rows", "bytes", "sha256")},
                   counts=dict(d.get("counts", {})), rejects=dict(d.get("rejects", {})))
        if base is not None:
            info.uri = (base / info.path).uri
        return info


def shard_name(index: int, fingerprint: str) -> str:
    return f"shard-{index:06d}-{fingerprint[:8]}.parquet"


def encode_shard(table: pa.Table, row_group_rows: int = DEFAULT_ROW_GROUP_ROWS) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pq.write_table(
        table, sink, row_group_size=row_group_rows, compression=PARQUET_COMPRESSION,
        use_dictionary=["kind", "lang", "prompt"], write_statistics=["id", "kind", "lang"],
        # Byte-identical output for identical rows: no creation time in the footer.
        store_schema=True,
    )
    return sink.getvalue()


def _counts(table: pa.Table) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for col in ("kind", "lang"):
        vc = table.column(col).value_counts()
        out[col] = {str(v["values"]): int(v["counts"]) for v in vc.to_pylist()}
    return out


def write_shard(location: Location, rows: Iterable[Mapping[str, Any]] | pa.Table, *, index: int,
                rel_path: str, rejects: Mapping[str, int] | None = None,
                row_group_rows: int = DEFAULT_ROW_GROUP_ROWS) -> ShardInfo:
    """Encode rows as one Parquet shard at `location` and return what a manifest records of it."""
    table = check_table(rows) if isinstance(rows, pa.Table) else rows_to_table(list(rows))
    ids = table.column("id")
    if len(pa.compute.unique(ids)) != len(ids):
        raise ValueError(f"{location.uri}: duplicate sample ids in one shard")
    buf = encode_shard(table, row_group_rows)
    view = memoryview(buf)
    digest = _io_pool.submit(lambda: hashlib.sha256(view).hexdigest())
    location.write_bytes(view)
    return ShardInfo(index=index, path=rel_path, rows=table.num_rows, bytes=buf.size, sha256=digest.result(),
                     counts=_counts(table), rejects=dict(rejects or {}), uri=location.uri)


def read_shard_bytes(location: Location) -> bytes:
    if isinstance(location, S3Location):
        return location.read_bytes_pyarrow()
    return location.read_bytes()


def read_verified(shard: ShardInfo, columns: list[str] | None = None, verify: bool = True) -> pa.Table:
    """Read a whole shard, check its sha256 against the manifest, and decode it. The hash runs in a
    second thread while Parquet decodes, so verification costs little wall time."""
    loc = Location.parse(shard.uri)
    try:
        data = read_shard_bytes(loc)
    except NotFound:
        raise ShardCorrupt(f"shard {shard.uri} is missing") from None
    if not verify:
        try:
            return pq.read_table(pa.BufferReader(data), columns=columns)
        except (pa.ArrowInvalid, OSError) as e:
            raise ShardCorrupt(f"shard {shard.uri} cannot be decoded: {e}") from None
    digest = _io_pool.submit(lambda: hashlib.sha256(data).hexdigest())
    try:
        table = pq.read_table(pa.BufferReader(data), columns=columns)
        decode_error = None
    except (pa.ArrowInvalid, OSError) as e:
        table, decode_error = None, e
    actual = digest.result()
    if actual != shard.sha256 or len(data) != shard.bytes:
        raise ShardCorrupt(f"shard {shard.uri} is corrupt: sha256 {actual[:12]}… != recorded {shard.sha256[:12]}… "
                           f"({len(data)} bytes, recorded {shard.bytes})")
    if table is None:
        raise ShardCorrupt(f"shard {shard.uri} cannot be decoded: {decode_error}")
    return table


def verify_shard(shard: ShardInfo) -> str | None:
    """None when the shard exists and matches its hash; else the reason, naming the shard."""
    loc = Location.parse(shard.uri)
    try:
        data = read_shard_bytes(loc)
    except NotFound:
        return f"missing: {shard.uri}"
    actual = hashlib.sha256(data).hexdigest()
    if actual != shard.sha256:
        return f"corrupt: {shard.uri} (sha256 {actual[:12]}… != {shard.sha256[:12]}…)"
    return None


def sidecar_json(info: ShardInfo) -> bytes:
    return json.dumps(info.to_json(), sort_keys=True).encode()
