"""Where bytes live: a local directory or an S3 prefix, behind one small interface.

S3 writes, conditional puts and listings go through boto3; Parquet reads through pyarrow's S3
filesystem. Both take the endpoint from the standard AWS settings (AWS_ENDPOINT_URL_S3 /
AWS_ENDPOINT_URL) or an explicit `endpoint_url`, so AWS, MinIO, R2 and Ceph all work. Credentials come
only from the standard AWS chain and never appear in a URI, a log line or a record.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import io
import os
import posixpath
import tempfile
import threading
from pathlib import Path
from contextlib import contextmanager
from typing import Any, BinaryIO, ContextManager, Iterator
from urllib.parse import urlparse

from storage.errors import CommitConflict, EndpointUnreachable, LocationError, NotFound, StorageError

DEFAULT_ROOT = "./varyflow-data"


def default_root() -> str:
    """The storage root when none is given: $VARYFLOW_ROOT, else ./varyflow-data."""
    return os.environ.get("VARYFLOW_ROOT", DEFAULT_ROOT)


def is_uri(name: str) -> bool:
    """True when `name` is written as a URI (`s3://b/k`, `https://…`, `file:///x`) rather than a plain path.
    The one place the project tells the two apart by spelling."""
    return "://" in name


def is_remote(name: str) -> bool:
    """True when `name` addresses bytes behind a network scheme (`s3://…`): a URI that is not `file://`."""
    return is_uri(name) and not name.startswith("file://")


class Location:
    """A file-like object address (`/data/x`, `s3://bucket/prefix/x`). Immutable; `/` joins."""

    uri: str

    @staticmethod
    def parse(uri: "str | os.PathLike[str] | Location", endpoint_url: str | None = None) -> "Location":
        if isinstance(uri, Location):
            return uri
        text = os.fspath(uri)
        parsed = urlparse(text)
        if parsed.scheme == "s3":
            if not parsed.netloc:
                raise LocationError(f"{text}: an S3 location needs a bucket (s3://bucket/prefix)")
            return S3Location(parsed.netloc, parsed.path.lstrip("/"), endpoint_url)
        if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and text[1:2] == ":"):
            path = parsed.path if parsed.scheme == "file" else text
            return LocalLocation(Path(path).expanduser().absolute())
        raise LocationError(f"{text}: unknown scheme {parsed.scheme!r} (use a local path or s3://bucket/prefix)")

    def __truediv__(self, part: str) -> "Location":
        raise NotImplementedError

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    @property
    def name(self) -> str:
        return posixpath.basename(self.uri.rstrip("/"))

    # Interface -------------------------------------------------------------------------------
    def read_bytes(self) -> bytes: ...
    def write_bytes(self, data: bytes | memoryview) -> None: ...
    def put_if_absent(self, data: bytes) -> None: ...
    def open_write(self) -> ContextManager[BinaryIO]:
        """A file to stream into; the object appears whole when the block exits, or not at all."""
        ...
    def exists(self) -> bool: ...
    def size(self) -> int: ...
    def etag(self) -> str | None: ...
    def delete(self) -> None: ...
    def list(self) -> list["Location"]: ...  # direct and nested objects under this prefix, sorted
    def listing(self) -> dict[str, tuple[int, str | None]]: ...  # {uri: (size, ETag or None)}, one listing, no HEADs
    def stat(self) -> tuple[int, str | None] | None: ...  # (size, ETag or None) in one request; None if absent
    def probe(self) -> None: ...  # raise a one-line StorageError now if this root cannot be written under

    def relative_to(self, base: "Location") -> str:
        prefix = base.uri.rstrip("/") + "/"
        if not self.uri.startswith(prefix):
            raise ValueError(f"{self.uri} is not under {base.uri}")
        return self.uri[len(prefix):]

    @property
    def parent(self) -> "Location": ...


class LocalLocation(Location):
    def __init__(self, path: Path):
        self.path = path
        self.uri = str(path)

    def __truediv__(self, part: str) -> "LocalLocation":
        return LocalLocation(self.path / part)

    @property
    def parent(self) -> "LocalLocation":
        return LocalLocation(self.path.parent)

    def read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{self.uri}: no such file") from None
        except IsADirectoryError:
            raise NotFound(f"{self.uri}: is a directory, not a file") from None

    def _temp(self) -> tuple[int, str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)

    def write_bytes(self, data: bytes | memoryview) -> None:
        # Write beside the target and rename: a reader or a killed writer never sees half a file.
        fd, tmp = self._temp()
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    @contextmanager
    def open_write(self) -> Iterator[BinaryIO]:
        fd, tmp = self._temp()
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
            os.replace(tmp, self.path)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def put_if_absent(self, data: bytes) -> None:
        fd, tmp = self._temp()
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            # link() fails when the name exists: the local equivalent of If-None-Match: *.
            os.link(tmp, self.path)
        except FileExistsError:
            raise CommitConflict(f"{self.uri} already exists (another writer committed it first)") from None
        finally:
            _unlink_quietly(tmp)

    def exists(self) -> bool:
        return self.path.is_file()

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            raise NotFound(f"{self.uri}: no such file") from None

    def etag(self) -> str | None:
        return None

    def stat(self) -> tuple[int, str | None] | None:
        try:
            return self.path.stat().st_size, None
        except FileNotFoundError:
            return None

    def delete(self) -> None:
        _unlink_quietly(str(self.path))

    def probe(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".varyflow-probe-", suffix=".tmp")
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise LocationError(f"{self.uri}: cannot write there ({e.strerror or e})") from None

    def list(self) -> list["Location"]:
        return [LocalLocation(Path(uri)) for uri in self.listing()]

    def listing(self) -> dict[str, tuple[int, str | None]]:
        if not self.path.is_dir():
            return {}
        return {str(p): (p.stat().st_size, None) for p in sorted(self.path.rglob("*"))
                if p.is_file() and not p.name.endswith(".tmp")}


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def s3_endpoint(explicit: str | None = None) -> str | None:
    return explicit or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


@functools.lru_cache(maxsize=16)
def _boto3_client(endpoint_url: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # boto3 clients are thread-safe; one per endpoint is reused by every Location.
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        config=Config(retries={"max_attempts": 8, "mode": "adaptive"}, max_pool_connections=32),
    )


_pa_lock = threading.Lock()
_pa_filesystems: dict[str | None, Any] = {}


def _pyarrow_s3(endpoint_url: str | None) -> Any:
    """pyarrow's S3 filesystem for reads. pyarrow ignores AWS_ENDPOINT_URL, so pass it explicitly."""
    with _pa_lock:
        fs = _pa_filesystems.get(endpoint_url)
        if fs is None:
            from pyarrow import fs as pafs

            kwargs: dict[str, Any] = {"region": _boto3_client(endpoint_url).meta.region_name or "us-east-1"}
            if endpoint_url:
                parsed = urlparse(endpoint_url)
                kwargs["endpoint_override"] = parsed.netloc or parsed.path
                kwargs["scheme"] = parsed.scheme or "https"
            creds = _boto3_client(endpoint_url)._request_signer._credentials
            if creds is not None:
                # Same chain as boto3 (env, profile, role); handed over in memory, never written anywhere.
                frozen = creds.get_frozen_credentials()
                kwargs.update(access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token)
            fs = pafs.S3FileSystem(**kwargs)
            if not _pa_filesystems:
                # Exit handlers run last-registered first, so this runs before pyarrow's own S3 finalizer
                # (registered when pyarrow.fs was imported): a filesystem still alive then can make the AWS SDK
                # abort the process at exit ("terminate called without an active exception", exit -6).
                atexit.register(_drop_pyarrow_filesystems)
            _pa_filesystems[endpoint_url] = fs
        return fs


def _drop_pyarrow_filesystems() -> None:
    import gc

    with _pa_lock:
        _pa_filesystems.clear()
    gc.collect()


class S3Location(Location):
    def __init__(self, bucket: str, key: str, endpoint_url: str | None = None):
        self.bucket = bucket
        self.key = key
        self.endpoint_url = s3_endpoint(endpoint_url)
        self.uri = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"

    def __truediv__(self, part: str) -> "S3Location":
        key = posixpath.join(self.key, part) if self.key else part.lstrip("/")
        return S3Location(self.bucket, posixpath.normpath(key), self.endpoint_url)

    @property
    def parent(self) -> "S3Location":
        return S3Location(self.bucket, posixpath.dirname(self.key.rstrip("/")), self.endpoint_url)

    @property
    def client(self) -> Any:
        return _boto3_client(self.endpoint_url)

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, EndpointConnectionError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except NoCredentialsError:
            raise LocationError(f"{self.uri}: no AWS credentials found (standard chain: environment, ~/.aws, instance role)") from None
        except EndpointConnectionError as e:
            raise EndpointUnreachable(f"{self.uri}: cannot reach the S3 endpoint ({e})") from None
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                raise LocationError(f"{self.uri}: bucket {self.bucket!r} does not exist") from None
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                raise NotFound(f"{self.uri}: no such object") from None
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                raise CommitConflict(f"{self.uri} already exists (another writer committed it first)") from None
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403") or status == 403:
                raise LocationError(f"{self.uri}: access denied ({code}) while trying to {what}") from None
            raise StorageError(f"{self.uri}: S3 {what} failed: {code or status}") from None
        except BotoCoreError as e:
            raise StorageError(f"{self.uri}: S3 {what} failed: {e}") from None

    def read_bytes(self) -> bytes:
        resp = self._call("get", self.client.get_object, Key=self.key)
        return resp["Body"].read()

    def read_bytes_pyarrow(self) -> bytes:
        """Whole-object read through pyarrow's S3 filesystem (the Parquet read path)."""
        try:
            # A random-access file reads the object in one ranged GET; open_input_stream's small
            # sequential reads are ~50x slower against S3.
            with _pyarrow_s3(self.endpoint_url).open_input_file(f"{self.bucket}/{self.key}") as f:
                return f.read()
        except FileNotFoundError:
            raise NotFound(f"{self.uri}: no such object") from None
        except OSError as e:
            raise StorageError(f"{self.uri}: S3 read failed: {' '.join(str(e).split())}") from None

    def write_bytes(self, data: bytes | memoryview) -> None:
        self._call("put", self.client.put_object, Key=self.key, Body=bytes(data) if isinstance(data, memoryview) else data)

    @contextmanager
    def open_write(self) -> Iterator[BinaryIO]:
        # Shards are tens of MB: buffer in memory, then one PUT (S3 objects appear atomically).
        buf = io.BytesIO()
        yield buf
        buf.seek(0)
        self._call("put", self.client.put_object, Key=self.key, Body=buf)

    def put_if_absent(self, data: bytes) -> None:
        # If-None-Match: * makes S3 refuse the put when the key exists: two writers never both commit.
        self._call("conditional put", self.client.put_object, Key=self.key, Body=data, IfNoneMatch="*")

    def _head(self) -> dict[str, Any] | None:
        try:
            return self._call("head", self.client.head_object, Key=self.key)
        except NotFound:
            return None

    def exists(self) -> bool:
        return self._head() is not None

    def size(self) -> int:
        head = self._head()
        if head is None:
            raise NotFound(f"{self.uri}: no such object")
        return int(head["ContentLength"])

    def etag(self) -> str | None:
        head = self._head()
        return head["ETag"].strip('"') if head else None

    def stat(self) -> tuple[int, str | None] | None:
        head = self._head()
        return (int(head["ContentLength"]), head["ETag"].strip('"')) if head else None

    def delete(self) -> None:
        self._call("delete", self.client.delete_object, Key=self.key)

    def probe(self) -> None:
        # One listing request of one key: a missing bucket, absent credentials or a denial surface now,
        # as one-line LocationErrors, without writing anything.
        self._call("list", self.client.list_objects_v2, Prefix=self.key, MaxKeys=1)

    def any_below(self) -> bool:
        """Whether some object lies under this prefix (one request)."""
        prefix = self.key.rstrip("/") + "/" if self.key else ""
        return bool(self._call("list", self.client.list_objects_v2, Prefix=prefix, MaxKeys=1).get("Contents"))

    def list(self) -> list["Location"]:
        root = f"s3://{self.bucket}/"
        return [S3Location(self.bucket, uri[len(root):], self.endpoint_url) for uri in self.listing()]

    def listing(self) -> dict[str, tuple[int, str | None]]:
        prefix = self.key.rstrip("/") + "/" if self.key else ""
        out: dict[str, tuple[int, str | None]] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            resp = self._call("list", self.client.list_objects_v2, **kwargs)
            for obj in resp.get("Contents", []):
                out[f"s3://{self.bucket}/{obj['Key']}"] = (int(obj["Size"]), obj["ETag"].strip('"'))
            if not resp.get("IsTruncated"):
                break
            token = resp["NextContinuationToken"]
        return dict(sorted(out.items()))



class StorageFiles:
    """Input files by name, local paths and `s3://` names alike: what generators read their inputs through
    (`generators.sources.InputFiles`, a structural protocol this class satisfies without importing generators).
    Which names are remote, and how a folder or a prefix is listed, is decided here and nowhere else. A missing
    file raises `NotFound` (a FileNotFoundError).

    A listing remembers the size and ETag of each object it saw, so a `stat` of a listed name costs no request
    (a remote folder of 10,000 PDFs is digested with one listing, not 10,000 HEADs), and a prefix is listed once;
    use a fresh instance for an answer as of now."""

    def __init__(self) -> None:
        self._listed: dict[str, str] = {}  # an object's stat ("size\tETag") as its prefix's listing gave it
        self._listings: dict[str, list[str]] = {}  # a prefix's objects, listed once per instance

    def is_folder(self, name: str) -> bool:
        """A local directory; a remote name ending in "/", or one that some objects lie under (one listing request
        of one key: no HEAD, so digesting a prefix still costs one listing)."""
        path = _local_path(name)
        if path is not None:
            return path.is_dir()
        return name.endswith("/") or Location.parse(name).any_below()

    def list(self, folder: str) -> list[str]:
        """The names in `folder`, sorted. Locally: its direct entries that are not hidden, a subfolder's name ending
        in "/" (a caller may take one as a single input: a LaTeX paper's folder), each as `folder` spells it joined
        with the entry's name. Under a remote prefix, where folders do not exist: every object."""
        path = _local_folder(folder)
        if path is not None:
            return sorted(f"{p}/" if p.is_dir() else str(p) for p in path.iterdir()
                          if not p.name.startswith(".") and (p.is_file() or p.is_dir()))
        return list(self._objects(Location.parse(folder)))

    def walk(self, folder: str) -> tuple[str, list[str]]:
        """`folder`'s name as this store spells it (no trailing "/"; a local path as `pathlib` writes it) and every
        file below it at any depth, as paths relative to it ("/"-separated), sorted by (folder, name): a folder's
        files, then its subfolders' in name order. Locally that is what `os.walk` finds: hidden files too, a link
        to a file as a file, a link to a folder not entered, a broken link kept (its `stat` is None). Under a prefix:
        every object. What a paper folder is made of (`generators.tex_source.read_tex_folder`) and what its `stat`
        digests, alike on a disk and on S3."""
        path = _local_folder(folder)
        if path is not None:
            return str(path), _walk_local(path)
        loc = Location.parse(folder)
        name = loc.uri.rstrip("/")
        rels = [uri[len(name) + 1:] for uri in self._objects(loc)]
        rels = [r for r in rels if r and not r.endswith("/")]  # a console's "folder" marker is no file
        if not rels:
            raise NotFound(f"{folder}: no objects under this prefix")
        return name, sorted(rels, key=_walk_order)

    def _objects(self, loc: Location) -> list[str]:
        """The objects under a prefix, listed once per instance (a prefix inside one listed already is taken from
        that listing: the papers of a prefix of papers cost no listing each); their stats kept for `stat`."""
        if loc.uri not in self._listings:
            below = loc.uri.rstrip("/") + "/"
            outer = next((objects for uri, objects in self._listings.items() if below.startswith(uri.rstrip("/") + "/")),
                         None)
            if outer is not None:
                self._listings[loc.uri] = [uri for uri in outer if uri.startswith(below)]
            else:
                listing = loc.listing()
                self._listed.update((uri, f"{size}\t{etag}") for uri, (size, etag) in listing.items())
                self._listings[loc.uri] = list(listing)
        return self._listings[loc.uri]

    def stat(self, name: str) -> str | None:
        """A short text that changes when the file does, None when there is none: size and modification time
        (ns) of a local file (a copy that resets the time only costs a re-render); size and ETag of an object;
        for a folder taken as one input (a LaTeX paper's: a local directory, or a remote name ending in "/"), a
        digest over each file `walk` finds and its stat."""
        if name in self._listed:
            return self._listed[name]
        path = _local_path(name)
        if path is not None and not path.is_dir():
            return _local_stat(path)
        if path is None and not name.endswith("/"):
            head = Location.parse(name).stat()
            return None if head is None else f"{head[0]}\t{head[1]}"
        try:
            folder, rels = self.walk(name)
        except NotFound:
            return None
        return hashlib.sha256("".join(f"{rel}\t{self.stat(f'{folder}/{rel}') or 'missing'}\n"
                                      for rel in rels).encode()).hexdigest()

    def size(self, name: str) -> int:
        return Location.parse(name).size()

    def read(self, name: str) -> bytes:
        return Location.parse(name).read_bytes()

    def open(self, name: str) -> BinaryIO:
        """A file to read: streamed from a local disk; an object is fetched whole (one GET)."""
        path = _local_path(name)
        if path is None:
            return io.BytesIO(Location.parse(name).read_bytes())
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise NotFound(f"{name}: no such file") from None
        except IsADirectoryError:
            raise NotFound(f"{name}: is a directory, not a file") from None

    def resolve(self, name: str, list_file: str) -> str:
        """`name` as written in the list file `list_file`: a URI or an absolute path as it is, else in the list's folder."""
        if is_uri(name) or os.path.isabs(name):
            return name
        path = _local_path(list_file)
        return f"{list_file.rsplit('/', 1)[0] if path is None else path.parent}/{name}"


def _local_path(name: str) -> Path | None:
    """The path of a local name as written (relative stays relative: names of inputs are recorded as given), None
    for a remote one."""
    if is_remote(name):
        return None
    return Path(urlparse(name).path if name.startswith("file://") else name)


def _local_folder(name: str) -> Path | None:
    """The local folder `name` names (NotFound when it is none), None for a remote name."""
    path = _local_path(name)
    if path is not None and not path.is_dir():
        raise NotFound(f"{name}: no such folder")
    return path


def _local_stat(path: Path) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}\t{st.st_mtime_ns}"


def _walk_local(path: Path) -> list[str]:
    """The files below a local folder as `StorageFiles.walk` says (`os.walk`'s order of folders sorted)."""
    out: list[str] = []
    for root, _, names in sorted(os.walk(path)):
        rel = os.path.relpath(root, path).replace(os.sep, "/")
        out += [n if rel == "." else f"{rel}/{n}" for n in sorted(names)]
    return out


def _walk_order(rel: str) -> tuple[str, str]:
    """(folder, name): the order `os.walk`'s sorted folders give, for names listed by an object store."""
    folder, _, name = rel.rpartition("/")
    return folder, name
