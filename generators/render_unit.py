"""The render unit: what a dataset render is (`RenderSpec`) and how one of its shards is made (`run_shard`).

A render of `count` samples of one kind is cut into shards of `shard_rows` consecutive sample indices: shard k
holds indices [k*R, (k+1)*R), so any shard can be made alone, in any process, and a rerun after a crash makes
exactly the shards that are missing. Everything a sample is a function of (kind, generator version, params,
seed, shard size, the digest of the input files) is in the spec and in its fingerprint; the spec's facts are
what a manifest records, so a committed dataset can be rendered again from its manifest alone.

This module imports neither storage nor Prefect: the shard writer and the input files are handed in as
objects of the small structural types below (`ShardWriter`; `generators.sources.InputFiles`), which storage's
`DatasetWriter` and `StorageFiles` satisfy. The render flow maps `run_shard` over the shards; `reproduce`, the
benchmarks and a plain Python loop call it the same way:

    spec = RenderSpec.of("document", count=1000, seed=0, shard_rows=512)
    writer = storage.DatasetWriter(root, "document", spec.fingerprint)
    shards = [run_shard(spec, k, writer, storage.StorageFiles()).info for k in range(spec.num_shards)]
    writer.commit(shards, spec.to_facts())
"""
from __future__ import annotations

import base64
import hashlib
import io
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Protocol

from generators.base import Generator, Rejected, params_fingerprint
from generators.sources import InputFiles, listed_inputs

# A shard keeps at most this many reject examples (id, reason, detail, source); the counts keep every reject.
MAX_REJECT_EXAMPLES = 20
# Stats of a listing's names run this many at a time (on S3 each one not in the listing is a HEAD: a round trip).
STAT_THREADS = 16
# What a manifest's facts must hold for its render to be made again (`RenderSpec.from_facts`).
SPEC_FACTS = ("kind", "params", "seed", "count", "shard_rows", "fingerprint")

Progress = Callable[[int], None]  # told how many sample indices of a range are done so far


class ShardRange(NamedTuple):
    index: int
    start: int  # first sample index
    stop: int  # one past the last

    def parts(self, n: int) -> list[tuple[int, int]]:
        """The range cut into `n` consecutive, near-equal pieces (fewer when it holds fewer indices): rendered
        apart (`render_rows`) and merged in order (`Rows.merge`), they give the shard's rows."""
        bounds = [self.start + (self.stop - self.start) * i // n for i in range(n + 1)]
        return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


@dataclass(frozen=True)
class RenderSpec:
    """One dataset render, typed. Build it with `of` (the kind's current generator version) or `from_facts`
    (what a manifest recorded). `fingerprint`, computed when not given, is what every sample of the dataset is a
    function of. Not the count: growing a dataset keeps its fingerprint, so the shards already written are reused
    (see `shard_fingerprint`)."""

    kind: str
    version: str
    params: Mapping[str, Any] = field(hash=False)
    seed: int
    count: int
    shard_rows: int
    inputs: Mapping[str, Any] = field(default_factory=dict, hash=False)  # digest of the input files
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count must be at least 1, got {self.count}")
        if self.shard_rows < 1:
            raise ValueError(f"shard rows must be at least 1, got {self.shard_rows}")
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", params_fingerprint(
                {"kind": self.kind, "version": self.version, "params": dict(self.params), "seed": self.seed,
                 "shard_rows": self.shard_rows, "inputs": dict(self.inputs)}))

    @classmethod
    def of(cls, kind: str, *, count: int, seed: int = 0, shard_rows: int, params: Mapping[str, Any] | None = None,
           inputs: Mapping[str, Any] | None = None) -> "RenderSpec":
        from generators import generator_class

        return cls(kind, generator_class(kind).version, dict(params or {}), seed, count, shard_rows, dict(inputs or {}))

    @property
    def num_shards(self) -> int:
        return -(-self.count // self.shard_rows)

    def shards(self) -> list[ShardRange]:
        return [self.shard(k) for k in range(self.num_shards)]

    def shard(self, index: int) -> ShardRange:
        if not 0 <= index < self.num_shards:
            raise IndexError(f"shard {index} of a render with {self.num_shards} shards")
        start = index * self.shard_rows
        return ShardRange(index, start, min(start + self.shard_rows, self.count))

    def shard_fingerprint(self, index: int) -> str:
        """A shard's identity: the dataset fingerprint and its index range. A full shard keeps it when the count
        grows; the old last, partial shard covers another range then, so it is written anew, never reused."""
        _, start, stop = self.shard(index)
        return hashlib.sha256(f"{self.fingerprint}:{start}:{stop}".encode()).hexdigest()

    def to_facts(self) -> dict[str, Any]:
        """What a manifest records of the render (the flow adds the outcome: rejects, packages, the run)."""
        return {"kind": self.kind, "generator_version": self.version, "params": dict(self.params), "seed": self.seed,
                "count": self.count, "shard_rows": self.shard_rows, "inputs": dict(self.inputs),
                "fingerprint": self.fingerprint}

    @classmethod
    def from_facts(cls, facts: Mapping[str, Any], where: str = "manifest") -> "RenderSpec":
        """The spec a manifest's facts record; a ValueError naming `where` and what is missing when it was not
        written by a render. The recorded fingerprint is kept as it is (shard names carry it)."""
        missing = [k for k in SPEC_FACTS if k not in facts]
        if missing:
            raise ValueError(f"{where} does not record {', '.join(missing)}; it was not written by the render flow")
        return cls(facts["kind"], str(facts.get("generator_version", "")), dict(facts["params"]), int(facts["seed"]),
                   int(facts["count"]), int(facts["shard_rows"]), dict(facts.get("inputs") or {}), facts["fingerprint"])


class ShardWriter(Protocol):
    """Where shards go (storage's `DatasetWriter`): a shard is named by its index and shard fingerprint."""

    def existing_shard(self, index: int, *, shard_fingerprint: str) -> Any | None: ...

    def write_shard(self, index: int, rows: list[dict[str, Any]], rejects: Mapping[str, int] | None = None, *,
                    shard_fingerprint: str) -> Any: ...


@dataclass
class Rows:
    """What rendering an index range gives: rows in index order, rejects by reason, examples, gallery."""

    rows: list[dict[str, Any]]
    rejects: dict[str, int]
    examples: list[dict[str, str]]
    gallery: list[dict[str, str]]

    @classmethod
    def merge(cls, pieces: list["Rows"], gallery: int) -> "Rows":
        """Consecutive ranges as one: the rows of the whole range in index order."""
        rejects: Counter[str] = Counter()
        for piece in pieces:
            rejects.update(piece.rejects)
        return cls([r for p in pieces for r in p.rows], dict(rejects),
                   [e for p in pieces for e in p.examples][:MAX_REJECT_EXAMPLES],
                   [g for p in pieces for g in p.gallery][:gallery])


@dataclass
class ShardResult:
    index: int
    info: Any  # what the writer returned (storage.ShardInfo)
    reused: bool
    seconds: float = 0.0
    rejects: dict[str, int] = field(default_factory=dict)
    reject_examples: list[dict[str, str]] = field(default_factory=list)
    gallery: list[dict[str, str]] = field(default_factory=list)


def input_params(kind: str) -> tuple[str, ...]:
    """The parameters of `kind` that name input files (its class says: `Generator.input_params`)."""
    from generators import generator_class

    return generator_class(kind).input_params


def build_generator(kind: str, params: Mapping[str, Any], files: InputFiles | None = None) -> Generator:
    """The generator of `kind` with `params`, handed `files` when its params name input files."""
    from generators import generator_class

    kwargs = dict(params)
    if files is not None and any(kwargs.get(p) for p in input_params(kind)):
        kwargs["files"] = files
    return generator_class(kind)(**kwargs)


# -- the digest of a render's input files (`RenderSpec.inputs`) -------------------------------------------------
# A generator records only the *name* of its source folder or corpus, so a folder that gained a file (which shifts
# every later sample index onto another file) or a corpus edited in place would otherwise look like the same render,
# and the old shards would be reused. The digest is made before the shards start, through the same `InputFiles`.

def input_digest(kind: str, params: Mapping[str, Any], files: InputFiles) -> dict[str, Any]:
    """{"source": ..., "corpus": {lang or "": ...}, "records": {lang or "": ...}} for the input parameters `params`
    sets; {} when it sets none. The `source` of a kind whose sample index is an input file (its class sets
    `lists_source`: pdf, negative, latex_page), and any folder, is digested by its listing (`listing_digest`); a
    file by its bytes; a corpus as `_file_digest` says."""
    from generators import generator_class

    out: dict[str, Any] = {}
    source = params.get("source")
    if source:
        lists = generator_class(kind).lists_source or (isinstance(source, str) and files.is_folder(source))
        out["source"] = listing_digest(source, files) if lists else hashlib.sha256(files.read(source)).hexdigest()
    for name in ("corpus", "records"):  # a text corpus; chart records
        spec = params.get(name)
        if spec:
            specs = spec if isinstance(spec, dict) else {"": spec}
            out[name] = {lang: _file_digest(s, files) for lang, s in sorted(specs.items()) if s}
    return out


def _file_digest(spec: str, files: InputFiles) -> Any:
    """A small corpus file by its bytes; a folder or prefix of corpus files (or one large .jsonl/.parquet file:
    web-scale text is not read whole for a fingerprint) by its listing. `spec#column` names the column; the
    column is in the params already."""
    path = spec.partition("#")[0]
    if files.is_folder(path):
        return listing_digest(path, files)
    if path.rsplit("/", 1)[-1].lower().endswith((".jsonl", ".parquet")):
        return listing_digest([path], files)
    return hashlib.sha256(files.read(path)).hexdigest()


def listing_digest(source: Any, files: InputFiles) -> dict[str, Any]:
    """The files `source` stands for (`list_sources`' rules) and a digest of what each one is now (`files.stat`; a
    paper's folder, one input, is asked for by its name ending in "/": a store without folders cannot tell)."""
    names, folders = listed_inputs(source, files)
    with ThreadPoolExecutor(max_workers=STAT_THREADS) as pool:
        stats = list(pool.map(files.stat, [f"{n}/" if n in folders else n for n in names]))
    sha = hashlib.sha256()
    for name, stat in zip(names, stats):
        sha.update(f"{name}\t{stat or 'missing'}\n".encode())  # a missing file: the generator rejects it per sample
    return {"files": len(names), "sha256": sha.hexdigest()}


def count_within_inputs(count: int, inputs: Mapping[str, Any], source: Any) -> tuple[int, str | None]:
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


def render_rows(gen: Generator, seed: int, start: int, stop: int, gallery: int = 0,
                progress: Progress | None = None) -> Rows:
    """Generator -> rows for indices [start, stop), rejects counted by reason, the first `gallery` samples as
    thumbnails. `progress(n)` is told how many indices are done so far (samples and rejects alike)."""
    rows: list[dict[str, Any]] = []
    rejects: Counter[str] = Counter()
    examples: list[dict[str, str]] = []
    shown: list[dict[str, str]] = []
    for item in _counted(gen.items(seed, start, stop), start, stop, progress):
        if isinstance(item, Rejected):
            rejects[item.reason] += 1
            if len(examples) < MAX_REJECT_EXAMPLES:
                examples.append({"id": item.id, "reason": item.reason, "detail": item.detail, "source": item.source})
        else:
            rows.append(item.to_row())
            if len(shown) < gallery:
                shown.append({"id": item.id, "lang": item.lang, "text": item.text, "thumb": thumbnail_data_uri(item.image)})
    return Rows(rows, dict(rejects), examples, shown)


def _counted(items: Iterator[Any], start: int, stop: int, progress: Progress | None) -> Iterator[Any]:
    if progress is None:
        yield from items
        return
    done, last = 0, None
    for item in items:
        yield item
        # A PDF yields one item per page: count an index once, when its first item arrives.
        index = _index_of(item.id, start)
        if index != last:
            done, last = done + 1, index
            progress(done)
    if done != stop - start:
        progress(stop - start)


def _index_of(sample_id: str, default: int) -> int:
    """The sample index in a generator id (`kind-s{seed}-{index:09d}[suffix]`)."""
    try:
        return int(sample_id.split("-s", 1)[1].split("-", 1)[1][:9])
    except (IndexError, ValueError):
        return default


def thumbnail_data_uri(image: bytes, size: int = 192) -> str:
    """A small PNG data URI of an encoded image, for a run's gallery (a UI cannot reach the data's storage)."""
    from PIL import Image

    img = Image.open(io.BytesIO(image))
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.convert("L" if img.mode in ("L", "1") else "RGB").save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def existing_shard(spec: RenderSpec, index: int, writer: ShardWriter) -> ShardResult | None:
    """Shard `index` as written earlier, whole and matching its hash; None when it must be made."""
    found = writer.existing_shard(index, shard_fingerprint=spec.shard_fingerprint(index))
    return None if found is None else ShardResult(index, found, reused=True, rejects=dict(found.rejects))


def write_rows(spec: RenderSpec, index: int, writer: ShardWriter, rendered: Rows, started: float) -> ShardResult:
    """`rendered` (the rows of shard `index`) written as that shard."""
    info = writer.write_shard(index, rendered.rows, rendered.rejects, shard_fingerprint=spec.shard_fingerprint(index))
    return ShardResult(index, info, reused=False, seconds=time.perf_counter() - started, rejects=rendered.rejects,
                       reject_examples=rendered.examples, gallery=rendered.gallery)


def run_shard(spec: RenderSpec, index: int, writer: ShardWriter, files: InputFiles | None = None, *, generator: Generator | None = None,
              gallery: int = 0, progress: Progress | None = None) -> ShardResult:
    """Shard `index` of `spec`: the one `writer` holds already when it is whole, else rendered and written.
    `files` (an `InputFiles`) is where the generator reads its inputs; `generator`, one built for this spec's kind
    and params to reuse (a worker keeps its Chromium or TeX for the next shard), else a fresh one is built and
    closed. The same spec and index give the same bytes, wherever this runs."""
    _, start, stop = spec.shard(index)
    found = existing_shard(spec, index, writer)
    if found is not None:
        if progress is not None:
            progress(stop - start)
        return found
    started = time.perf_counter()
    if generator is not None:
        rendered = render_rows(generator, spec.seed, start, stop, gallery, progress)
    else:
        with build_generator(spec.kind, spec.params, files) as fresh:
            rendered = render_rows(fresh, spec.seed, start, stop, gallery, progress)
    return write_rows(spec, index, writer, rendered, started)
