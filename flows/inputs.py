"""Digests of the input files a render reads, for its fingerprint.

A generator records only the *name* of its source folder or corpus, so a folder that gained a file (which
shifts every later sample index onto another file) or a corpus edited in place would otherwise look like
the same render, and the old shards would be reused. The digest is computed here, in the orchestration
layer, before the shard tasks start: generators stay free of storage.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flows.common import read_location

# HEAD requests for a remote listing run this many at a time (each one is a round trip, not CPU work).
REMOTE_STAT_THREADS = 16


def input_digest(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """{"source": ..., "corpus": {lang or "": sha256}, "records": {lang or "": sha256}} for the file parameters
    `params` names; {} when it names none. A `source` of a kind that lists folders (its generator takes a `lister`: pdf, negative) is
    digested by its sorted listing (names, sizes and, locally, modification times; on S3 the ETag); any
    other file parameter (a formula list, a corpus) by its bytes."""
    import inspect

    from generators import generator_class

    out: dict[str, Any] = {}
    if params.get("source"):
        lists_folders = "lister" in inspect.signature(generator_class(kind).__init__).parameters
        source = params["source"]
        folder = isinstance(source, str) and os.path.isdir(source.removeprefix("file://"))  # e.g. formula's .tex folder
        out["source"] = listing_digest(source) if lists_folders or folder else hashlib.sha256(read_location(source)).hexdigest()
    for name in ("corpus", "records"):  # a text corpus; chart records
        spec = params.get(name)
        if spec:
            specs = spec if isinstance(spec, dict) else {"": spec}
            out[name] = {lang: _corpus_digest(s) for lang, s in sorted(specs.items()) if s}
    return out


def _corpus_digest(spec: str) -> Any:
    """A small corpus file by its bytes; a folder or prefix of corpus files (or one large .jsonl/.parquet
    file: web-scale text is not read whole for a fingerprint) by its listing, as `listing_digest` does.
    `spec#column` names the column; the column is in the params already."""
    from generators.sources import is_remote

    path = spec.partition("#")[0]
    base = path.rsplit("/", 1)[-1].lower()
    if path.endswith("/") or os.path.isdir(path.removeprefix("file://")) or (is_remote(path) and "." not in base):
        return listing_digest(path)
    if base.endswith((".jsonl", ".parquet")):
        return listing_digest([path])
    return hashlib.sha256(read_location(path)).hexdigest()


def listing_digest(source: Any) -> dict[str, Any]:
    """The files `source` stands for (the generator's own listing rules) and a digest of what each one is now.
    A remote prefix is listed once and its sizes and ETags come with the listing; only names that come from
    elsewhere (a .txt list, a list of names) cost a HEAD each."""
    from generators.sources import is_remote, list_sources
    from storage import Location

    listed: dict[str, tuple[int, str | None]] = {}

    def lister(prefix: str) -> list[str]:
        listed.update(Location.parse(prefix).listing())
        return list(listed)

    names = list_sources(source, read_location, lister)
    remote = [n for n in names if is_remote(n) and n not in listed]
    with ThreadPoolExecutor(max_workers=REMOTE_STAT_THREADS) as pool:
        stats = dict(zip(remote, pool.map(_remote_stat, remote)))
    stats.update((name, f"{size}\t{etag}") for name, (size, etag) in listed.items())
    sha = hashlib.sha256()
    for name in names:
        sha.update(f"{name}\t{stats[name] if name in stats else _local_stat(name)}\n".encode())
    return {"files": len(names), "sha256": sha.hexdigest()}


def _local_stat(name: str) -> str:
    # The modification time catches a file rewritten at the same size; a copy that resets it only costs a re-render.
    path = name.removeprefix("file://")
    if os.path.isdir(path):  # a LaTeX paper folder is one input: every file in it counts
        entries = (os.path.join(root, n) for root, _, names in sorted(os.walk(path)) for n in sorted(names))
        return hashlib.sha256("".join(f"{os.path.relpath(f, path)}\t{_local_stat(f)}\n" for f in entries).encode()).hexdigest()
    try:
        st = os.stat(name.removeprefix("file://"))
    except OSError:
        return "missing"  # the generator rejects it, per sample, with the reason
    return f"{st.st_size}\t{st.st_mtime_ns}"


def _remote_stat(name: str) -> str:
    from storage import Location

    head = Location.parse(name).stat()
    return "missing" if head is None else f"{head[0]}\t{head[1]}"


def count_within_inputs(count: int, inputs: dict[str, Any], source: Any) -> tuple[int, str | None]:
    """The number of sample indices to render and, when it differs from `count`, a note saying why.

    A kind whose sample index is an input file (pdf, negative: their `inputs["source"]` is a listing digest)
    has one index per file; indices beyond them would each be a `no_such_file` reject, and rejects are for
    bad inputs. So a count beyond the files renders each file once, and says so."""
    listing = inputs.get("source")
    files = listing.get("files") if isinstance(listing, dict) else None
    if files is None or count <= files:
        return count, None
    if files == 0:
        raise ValueError(f"source {source} holds no input files")
    return files, f"count {count} is more than the {files} input files of {source}: each file is rendered once"
