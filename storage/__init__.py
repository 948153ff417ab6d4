"""Bytes, shards, manifests and lineage on a local directory or S3. Knows nothing of generators."""
from storage.errors import CommitConflict, LocationError, ManifestError, NotFound, ShardCorrupt, StorageError
from storage.location import Location, StorageFiles, default_root, is_remote, is_uri
from storage.manifest import DatasetWriter, Manifest, latest_manifest, list_datasets, read_manifest
from storage.reader import StreamingReader
from storage.schema import SHARD_SCHEMA
from storage.shards import DEFAULT_ROW_GROUP_ROWS, DEFAULT_SHARD_ROWS, ShardInfo, verify_shard

__all__ = [
    "CommitConflict", "DEFAULT_ROW_GROUP_ROWS", "DEFAULT_SHARD_ROWS", "DatasetWriter", "Location", "LocationError",
    "Manifest", "ManifestError", "NotFound", "SHARD_SCHEMA", "ShardCorrupt", "ShardInfo", "StorageError",
    "StorageFiles", "StreamingReader", "default_root", "is_remote", "is_uri", "latest_manifest", "list_datasets", "read_manifest", "verify_shard",
]
