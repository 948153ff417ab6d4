"""Errors the storage layer raises. Each message names the object it is about, so the CLI can print it
as one line."""


class StorageError(Exception):
    """Base class: an expected failure of a storage operation. `retryable`: whether trying again can help
    (a timeout, a 5xx, a throttled request); orchestration retries only those."""

    retryable = True


class LocationError(StorageError):
    """A location that cannot be used: unknown scheme, missing bucket, no credentials, denied access. No
    retry fixes these."""

    retryable = False


class EndpointUnreachable(LocationError):
    """The S3 endpoint did not answer (down, restarting, a network blip): worth retrying."""

    retryable = True


class NotFound(StorageError, FileNotFoundError):
    """The object does not exist."""


class CommitConflict(StorageError):
    """Another writer committed the same manifest version first (with other contents: see
    `DatasetWriter.commit`). Retrying would commit the next version behind the winner's back."""

    retryable = False


class ManifestError(StorageError):
    """A manifest that is missing, malformed, or not a varyflow manifest."""

    retryable = False


class ShardCorrupt(StorageError):
    """A shard whose bytes do not match the sha256 its manifest recorded, or that is missing."""
