"""Errors the storage layer raises. Each message names the object it is about, so the CLI can print it
as one line."""


class StorageError(Exception):
    """Base class: an expected failure of a storage operation."""


class LocationError(StorageError):
    """A location that cannot be used: unknown scheme, missing bucket, no credentials, denied access."""


class NotFound(StorageError, FileNotFoundError):
    """The object does not exist."""


class CommitConflict(StorageError):
    """Another writer committed the same manifest version first."""


class ManifestError(StorageError):
    """A manifest that is missing, malformed, or not a varyflow manifest."""


class ShardCorrupt(StorageError):
    """A shard whose bytes do not match the sha256 its manifest recorded, or that is missing."""
