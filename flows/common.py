"""Small helpers the flows share: where data lives, input outages, artifact keys and pictures."""
from __future__ import annotations

import base64
import contextlib
import os
import re
from importlib import metadata
from typing import Any, Iterator

# Distributions whose versions decide whether a re-render is byte-identical.
TRACKED_PACKAGES = ("varyflow", "pillow", "numpy", "pyarrow", "pymupdf", "matplotlib", "reportlab", "latex2mathml", "prefect")


def default_root() -> str:
    from storage import default_root as storage_root

    return storage_root()


class InputUnavailable(BaseException):
    """Storage failed while a generator read one of its input files (an S3 outage, a timeout, a denial).

    Generators turn any exception of their input files into a per-sample `unreadable` reject, which is right for a
    file that is broken or gone, and wrong for storage that is down: an outage would be committed into a
    dataset version as rejects. So this one is a BaseException, which the generators' `except Exception`
    lets through; `storage_errors_for_inputs` turns it back into the StorageError it carries at the task's
    edge, where Prefect retries it (when retryable) and otherwise fails the task, before the shard is written."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process pools
        return (InputUnavailable, (self.error,))


def storage_errors_for_inputs(fn: Any) -> Any:
    """Decorator for task functions that render: an `InputUnavailable` leaves them as its StorageError."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputUnavailable as e:
            raise e.error from None

    return wrapper


def artifact_key(*parts: object) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    key = "-".join(str(p) for p in parts if p not in (None, ""))
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", key.lower())).strip("-")[:100]


def root_tag(root: str) -> str:
    """A short, stable name for a storage root in artifact keys: its last path part and a hash of the whole
    URI (`data-3fa2c1`), so the same dataset under another root (an ad-hoc render into a temporary folder)
    never becomes the latest artifact of the nightly one."""
    import hashlib

    from storage import Location

    uri = Location.parse(root).uri.rstrip("/")
    return f"{uri.rsplit('/', 1)[-1] or 'root'}-{hashlib.sha256(uri.encode()).hexdigest()[:6]}"


def location_markdown(title: str, uri: str, hint: str = "") -> str:
    """A storage location as an artifact can show it: as text to copy (a browser opens neither file:// nor
    s3:// links); an http(s) URL stays a link."""
    shown = f"[{uri}]({uri})" if uri.startswith(("http://", "https://")) else f"`{uri}`"
    return f"**{title}**: {shown}" + (f"\n\n{hint}" if hint else "")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def md_cell(text: str, limit: int = 160) -> str:
    """Text made safe for one markdown table cell: one line, pipes escaped, cut to a readable length."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


@contextlib.contextmanager
def api_url_exported() -> Iterator[str | None]:
    """Export the API this process talks to as PREFECT_API_URL while a process pool runs.

    Spawned task workers read settings from the environment; without this, under Prefect's ephemeral API
    every worker would start a temporary server of its own (seconds each, and a second database)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        url = str(client.api_url).rstrip("/") if client.api_url else None
    with exported_env("PREFECT_API_URL", url if url and url.startswith("http") else None):
        yield url


@contextlib.contextmanager
def exported_env(name: str, value: str | None) -> Iterator[None]:
    """Set an environment variable for the block (None leaves it as it is), then restore it."""
    before = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
