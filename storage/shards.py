"""Writing and reading single shards: Parquet bytes plus the sha256, size and row count that
manifests record. Names are deterministic per (dataset, shard index, shard fingerprint), so a retried
task overwrites its own shard and nothing else."""
from __future__ import annotations

import hashlib
import io
import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from storage.errors import NotFound, ShardCorrupt
from storage.location import LocalLocation, Location, S3Location
from storage.schema import PARQUET_COMPRESSION, check_table, rows_to_table

# MosaicML recommends 50-100 MB shards for streaming; 512 rendered 1024² pages land there.
DEFAULT_SHARD_ROWS = 512
# ~16 MB row groups keep a reader's working set small without many tiny reads.
DEFAULT_ROW_GROUP_ROWS = 128

# Hashing releases the GIL; one thread keeps chunk order, so it can run beside encoding and I/O.
_hash_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="varyflow-sha256")


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


def shard_name(index: int, shard_fingerprint: str) -> str:
    """A shard's file name: its index and the first 8 hex digits of its own fingerprint (not the dataset's)."""
    return f"shard-{index:06d}-{shard_fingerprint[:8]}.parquet"


class _HashingSink(io.RawIOBase):
    """A write-only file that hashes what passes through in a second thread while Parquet keeps
    encoding, so the sha256 costs almost no wall time on top of the write itself."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0
        self._pending: list[Future] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._pending.append(_hash_pool.submit(self.sha.update, chunk))
        self.out.write(chunk)
        self.size += len(chunk)
        return len(chunk)

    def hexdigest(self) -> str:
        for f in self._pending:
            f.result()
        return self.sha.hexdigest()


def encode_shard(table: pa.Table, out: BinaryIO, row_group_rows: int = DEFAULT_ROW_GROUP_ROWS) -> tuple[int, str]:
    """Write `table` as Parquet to `out`; return (bytes written, sha256)."""
    sink = _HashingSink(out)
    # Parquet issues many small writes (page headers); coalesce them before they cross into Python.
    buffered = pa.BufferedOutputStream(pa.PythonFile(sink, mode="w"), buffer_size=4 << 20)
    pq.write_table(
        table, buffered, row_group_size=row_group_rows, compression=PARQUET_COMPRESSION,
        use_dictionary=["kind", "lang", "prompt"], write_statistics=["id", "kind", "lang"],
    )
    buffered.close()
    return sink.size, sink.hexdigest()


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
    with location.open_write() as out:
        size, sha256 = encode_shard(table, out, row_group_rows)
    return ShardInfo(index=index, path=rel_path, rows=table.num_rows, bytes=size, sha256=sha256,
                     counts=_counts(table), rejects=dict(rejects or {}), uri=location.uri)


def read_shard_bytes(location: Location) -> bytes | pa.Buffer:
    """The whole shard: one ranged GET on S3; a zero-copy memory map locally (a Python read of tens
    of MB costs more than decoding it). Either supports the buffer protocol, so hashlib takes it."""
    if isinstance(location, S3Location):
        return location.read_bytes_pyarrow()
    if isinstance(location, LocalLocation):
        try:
            if location.path.stat().st_size == 0:
                return b""  # mmap refuses empty files; an empty shard is simply corrupt
            return pa.memory_map(str(location.path)).read_buffer()
        except FileNotFoundError:
            raise NotFound(f"{location.uri}: no such file") from None
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
    digest = _hash_pool.submit(lambda: hashlib.sha256(data).hexdigest())
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
