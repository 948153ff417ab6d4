"""The contract every generator follows: parameters + seed + index range -> samples or rejects.

Generators are pure: they never touch storage or Prefect. Whatever writes their output (the
storage layer, driven by a flow or the CLI) sees only `Sample` and `Rejected` values.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

PROMPT_OCR = "Provide the OCR results of this image."
PROMPT_MARKDOWN = "Convert the image to markdown/latex format."
PROMPT_CHART = "Convert the chart to a python-dict of its data."
NEGATIVE_SENTENCES = (
    "It's an image of nature.",
    "Here's a nature picture.",
    "This is a natural image.",
    "It's a picture of a natural scene.",
)


@dataclass(frozen=True)
class Sample:
    """One image-text pair. Field names match the shard schema (storage.schema)."""

    id: str
    image: bytes  # encoded PNG (or JPEG when a degradation asks for it)
    width: int
    height: int
    kind: str
    lang: str
    prompt: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "image": {"bytes": self.image, "path": f"{self.id}.png"},
            "width": self.width,
            "height": self.height,
            "kind": self.kind,
            "lang": self.lang,
            "prompt": self.prompt,
            "text": self.text,
            "meta": json.dumps(self.meta, sort_keys=True, ensure_ascii=False),
        }


@dataclass(frozen=True)
class Rejected:
    """A sample that could not be made, with a short machine-readable reason and a detail for humans."""

    id: str
    kind: str
    reason: str  # e.g. "font_coverage", "blank", "overflow", "compile_error", "timeout", "corrupt_pdf"
    detail: str = ""
    source: str = ""  # the input it came from (file, corpus line), when there is one


class Reject(Exception):
    """Raised inside a generator for one bad sample; the driver turns it into `Rejected`."""

    def __init__(self, reason: str, detail: str = "", source: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.source = source


class GeneratorError(Exception):
    """A problem with the generator's set-up (missing tool, bad parameter), not with one sample."""


def as_reject(error: Exception) -> Reject:
    """What an exception raised while making one sample means for that sample. A `Reject` is itself; any
    other exception (a renderer's parser choking on hostile text, a library bug on odd data) is the
    sample's `render_error`, named with its type and message, so it never ends the run. Only a
    `GeneratorError` (a set-up problem: every sample would fail alike) is raised again."""
    if isinstance(error, GeneratorError):
        raise error
    if isinstance(error, Reject):
        return error
    return Reject("render_error", f"{type(error).__name__}: {error}"[:500])


def kind_key(kind: str) -> int:
    """A stable 64-bit number for a kind's name (sha256, so it never changes with Python's hash seed)."""
    return int.from_bytes(hashlib.sha256(kind.encode("utf-8")).digest()[:8], "little")


def sample_rng(seed: int, index: int, stream: int = 0, *, kind: str) -> np.random.Generator:
    """The random stream of one sample of `kind`: independent of every other index, so any shard can be
    re-rendered alone and yields the same bytes, and of every other kind, so two kinds rendered at one
    seed (the pipeline renders all at seed 0) never draw the same numbers — `chart` and `echart` sample
    their data by one function and would otherwise hold the same charts."""
    return np.random.default_rng([kind_key(kind), int(seed), int(index), int(stream)])


def sample_id(kind: str, seed: int, index: int, suffix: str = "") -> str:
    return f"{kind}-s{seed}-{index:09d}{suffix}"


def params_fingerprint(params: dict[str, Any]) -> str:
    blob = json.dumps(params, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


class Generator:
    """Base class. Subclasses set `kind` and `version`, take their parameters as keyword arguments
    (recorded verbatim in every sample's meta) and implement `make(seed, index, prepared)`; a kind whose
    renderer works faster on many samples at once (one TeX run, one screenshot) also implements
    `prepare(seed, indices)` and sets `batch`. Both public ways in follow from that pair, so a kind never
    writes them: `items(seed, start, stop)` (every sample and reject of an index range, in order) and
    `render(seed, index)` (the samples of one index, or its `Reject` raised).

    Heavy resources (a browser, a TeX work dir) are opened lazily and released by `close()`; use the
    generator as a context manager.
    """

    kind: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    # Parameters that name input files: when one is set, a driver hands the generator a `files` argument, the
    # `generators.sources.InputFiles` those names are read through (storage's in a render).
    input_params: ClassVar[tuple[str, ...]] = ()
    # Whether `source` is a set of input files, one per sample index (a folder, list or prefix, listed).
    lists_source: ClassVar[bool] = False
    # Whether the kind renders nothing without a source (its sample index is an input file; latex_page lists its
    # source too, but can take its text from a corpus instead).
    requires_source: ClassVar[bool] = False
    # The input files the kind can use, by suffix (empty: any); a source with none of them would make only rejects.
    source_suffixes: ClassVar[tuple[str, ...]] = ()
    batch: int = 1  # indices one `prepare` call takes; kinds that batch set it from their `batch` parameter

    def __init__(self, **params: Any):
        self.params = params

    # -- the hook pair a kind implements -------------------------------------------------------------
    def prepare(self, seed: int, indices: list[int]) -> dict[int, Any]:
        """The work a run of indices shares (a TeX run, a screenshot): for each index what `make` needs,
        or the exception that index failed with (the others go on). Default: nothing shared."""
        return dict.fromkeys(indices)

    def make(self, seed: int, index: int, prepared: Any) -> list[Sample | Rejected]:
        """The outcomes of one index from what `prepare` gave it: usually one sample; a multi-page source
        yields a sample per page and a `Rejected` (id suffixed) for a page that failed alone. Raises
        (`Reject`, or any exception: see `as_reject`) when the whole index fails."""
        raise NotImplementedError

    # -- what callers use -------------------------------------------------------------------------------
    def render(self, seed: int, index: int) -> list[Sample]:
        """The samples of one index (pages that failed alone are left out: `items()` counts them); raises
        the index's `Reject` when it fails whole. The same bytes as `items()` gives for that index."""
        return [s for s in self._outcomes(seed, index, self.prepare(seed, [index])[index]) if isinstance(s, Sample)]

    def items(self, seed: int, start: int, stop: int) -> Iterator[Sample | Rejected]:
        """Samples and rejects for indices [start, stop), in order, prepared `batch` indices at a time. One
        bad index never stops the rest."""
        for lo in range(start, stop, self.batch):
            yield from self.render_batch(seed, list(range(lo, min(stop, lo + self.batch))))

    def render_batch(self, seed: int, indices: list[int]) -> Iterator[Sample | Rejected]:
        """Samples and rejects of `indices`, prepared together, in order."""
        prepared = self.prepare(seed, indices)
        for index in indices:
            try:
                out = self._outcomes(seed, index, prepared[index])
            except Exception as e:
                yield self.rejected(seed, index, e)
                continue
            yield from out

    def _outcomes(self, seed: int, index: int, prepared: Any) -> list[Sample | Rejected]:
        if isinstance(prepared, Exception):
            raise prepared
        return list(self.make(seed, index, prepared))

    @staticmethod
    def each(indices: list[int], draw: Callable[[int], Any]) -> dict[int, Any]:
        """`draw(index)` of every index, for `prepare`; an index whose draw raises holds its `Reject` instead
        (`as_reject`: a `GeneratorError` still ends the run)."""
        out: dict[int, Any] = {}
        for index in indices:
            try:
                out[index] = draw(index)
            except Exception as e:
                out[index] = as_reject(e)
        return out

    @staticmethod
    def pending(prepared: dict[int, Any]) -> list[int]:
        """The indices of `prepared` (in order) that have not failed."""
        return [i for i, v in prepared.items() if not isinstance(v, Exception)]

    @staticmethod
    def with_shots(drawn: dict[int, Any], shots: dict[int, Any]) -> dict[int, Any]:
        """`drawn` (dataclasses with a `shot` field) with what a batched renderer made of each index: its
        output as the `shot`, or the `Reject` it returned for that index."""
        for index, shot in shots.items():
            drawn[index] = shot if isinstance(shot, Reject) else dataclasses.replace(drawn[index], shot=shot)
        return drawn

    def rng(self, seed: int, index: int, stream: int = 0) -> np.random.Generator:
        """`sample_rng` of this generator's kind."""
        return sample_rng(seed, index, stream, kind=self.kind)

    def rejected(self, seed: int, index: int, error: Exception, suffix: str = "") -> Rejected:
        """The `Rejected` of one index that raised `error` (see `as_reject`)."""
        r = as_reject(error)
        return Rejected(sample_id(self.kind, seed, index, suffix), self.kind, r.reason, r.detail, r.source)

    def base_meta(self, seed: int, index: int, **sampled: Any) -> dict[str, Any]:
        return {
            "generator": self.kind,
            "version": self.version,
            "seed": seed,
            "index": index,
            "params": self.params,
            "sampled": sampled,
        }

    def finish_sample(self, seed: int, index: int, img: Any, rng: np.random.Generator, *, lang: str, text: str,
                      sampled: dict[str, Any], size: int | None = None, degradations: dict | None = None,
                      min_ink: float | None = 0.002, grayscale: bool | str | None = None, suffix: str = "") -> Sample:
        """The one tail of every rendered sample: blank check, fit-and-pad to `size`, the seeded degradations
        (drawn from `rng`, recorded in meta), PNG encoding. Subclasses set `self.prompt`.

        `img`: a PIL image, or the PNG bytes a renderer returned at the final size, which are kept as they are
        unless a degradation applies (no decode/re-encode). `min_ink`: the least ink fraction; None when the
        caller has checked already (on a cheaper reduction, or in the renderer; required for PNG bytes).
        `grayscale`: how the PNG is encoded — True one channel, None by the image's mode, "detect" one channel
        when the finished image has no colour (recorded in meta as `grayscale`). `suffix`: of the sample id
        (a page of a multi-page source)."""
        from generators.degrade import degrade

        sid = sample_id(self.kind, seed, index, suffix)
        if isinstance(img, bytes):
            if min_ink is not None or size or grayscale is not None:
                raise ValueError("PNG bytes are finished as they are: min_ink=None, no size, no grayscale")
            png, applied = img, []
            if degradations:
                degraded, applied = degrade(decode_png(png), rng, degradations)
                if applied:
                    png = encode_png(degraded)
            width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk: PNG's first
            return Sample(sid, png, width, height, self.kind, lang, self.prompt, text,
                          self.base_meta(seed, index, **sampled, degradations=applied))
        if min_ink is not None:
            check_not_blank(img, min_ink)
        if size:
            img = fit_and_pad(img, size)
        img, applied = degrade(img, rng, degradations)
        if grayscale == "detect":
            grayscale = is_grayscale(img)
            sampled = dict(sampled, grayscale=grayscale)
        meta = self.base_meta(seed, index, **sampled, degradations=applied)
        return Sample(sid, encode_png(img, 1, grayscale=grayscale), img.size[0], img.size[1], self.kind, lang,
                      self.prompt, text, meta)

    def close(self) -> None:
        pass

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OwnsRenderers:
    """Mixin (before `Generator` in the bases) for generators that open a `TexRenderer` (`_tex`) and/or a
    `BrowserRenderer` (`_browser`) lazily, each with the generator's `timeout_s`: `tex()` / `browser()` open
    it on first use, `close()` releases whichever is open (not one a caller lent, named in `_shared`); the
    next sample reopens it. It is part of the
    generator life cycle (`Generator.close`, `with gen:`), so it lives beside `Generator`."""

    _browser: Any = None
    _tex: Any = None
    _shared: frozenset[str] = frozenset()  # renderers a caller lent (e.g. one browser for several generators)
    timeout_s: float

    def tex(self) -> Any:
        """The generator's `TexRenderer` (one private work dir), opened on first use."""
        if self._tex is None:
            from generators.tex import TexRenderer

            self._tex = TexRenderer(timeout_s=self.timeout_s)
        return self._tex

    def browser(self) -> Any:
        """The generator's `BrowserRenderer` (one offline Chromium), opened on first use."""
        if self._browser is None:
            from generators.browser import BrowserRenderer

            self._browser = BrowserRenderer(timeout_s=self.timeout_s)
        return self._browser

    def close(self) -> None:
        for attr in ("_browser", "_tex"):
            renderer = getattr(self, attr)
            if renderer is not None and attr not in self._shared:
                renderer.close()
                setattr(self, attr, None)


def encode_png(img: Any, compress_level: int = 1, grayscale: bool | None = None) -> bytes:
    """Encode a PIL image as PNG. Level 1 costs little size on rendered pages and is ~2x faster than
    Pillow's default (docs/measured-figures.md); grayscale halves the work again when the content has no colour."""
    if grayscale is None:
        grayscale = img.mode in ("L", "1")
    if grayscale and img.mode != "L":
        img = img.convert("L")
    elif not grayscale and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def decode_png(png: bytes, mode: str = "RGB") -> Any:
    """A PIL image in `mode` of PNG bytes a renderer returned. pyspng decodes ~1.5x faster than Pillow
    (docs/measured-figures.md); the pixels are the same, Pillow is the fallback."""
    from PIL import Image

    try:
        import pyspng
    except ImportError:
        img = Image.open(io.BytesIO(png))
    else:
        arr = pyspng.load(png)
        img = Image.fromarray(np.ascontiguousarray(arr[..., :3]) if arr.ndim == 3 else arr)
    return img if img.mode == mode else img.convert(mode)


def is_grayscale(img: Any, tolerance: int = 2) -> bool:
    """True when no pixel has channels more than `tolerance` apart: the content carries no colour worth
    keeping, and one channel is stored (PNG encoding then costs half). The one colour check of every kind.
    `img`: a PIL image, or an H×W×3 uint8 array (a rendered page's pixmap, without a PIL copy)."""
    if isinstance(img, np.ndarray):
        return _no_colour(img, tolerance)
    if img.mode in ("L", "1"):
        return True
    if img.mode != "RGB":
        img = img.convert("RGB")
    # When the channel means of an 8×8 block differ by more than the tolerance (+1 for rounding), some
    # pixel in it does: a colour photo is settled on an image 64× smaller; only gray-looking ones pay for
    # the full scan.
    if not _no_colour(np.asarray(img.reduce(8)), tolerance + 1):
        return False
    return _no_colour(np.asarray(img), tolerance)


def _no_colour(arr: np.ndarray, tolerance: int) -> bool:
    """True when no pixel of an H×W×3 uint8 array has channels more than `tolerance` apart."""
    # In uint8 without a widened copy of the image. Gray content rendered to RGB has exactly equal
    # channels: test that first (half the cost), the tolerance after.
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    if bool((r == g).all() and (g == b).all()):
        return True
    return bool((np.maximum(r, g) - np.minimum(r, g)).max() <= tolerance
                and (np.maximum(g, b) - np.minimum(g, b)).max() <= tolerance)


def fit_and_pad(img: Any, size: int = 1024, fill: int | tuple[int, int, int] = 255) -> Any:
    """Scale to fit a size×size square keeping the aspect ratio, then pad; how every kind reaches the
    encoder's input size without distorting glyphs."""
    from PIL import Image

    w, h = img.size
    scale = min(size / w, size / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.LANCZOS)
    if (nw, nh) == (size, size):
        return img
    canvas = Image.new(img.mode, (size, size), fill if img.mode != "RGB" or isinstance(fill, tuple) else (fill,) * 3)
    canvas.paste(img, ((size - nw) // 2, (size - nh) // 2))
    return canvas


def check_not_blank(img: Any, min_ink_fraction: float = 0.002) -> None:
    """Reject images with almost no ink: a failed render that looks like success
    (invalid LaTeX renders a blank white page; docs/measured-figures.md)."""
    # The median and the ink count both come from the 256-bin histogram: same result as on the
    # pixels (even counts average the two middle values), ~8x cheaper on a page.
    hist = np.asarray((img if img.mode == "L" else img.convert("L")).histogram(), dtype=np.int64)
    n = int(hist.sum())
    cum = np.cumsum(hist)
    background = (int(np.searchsorted(cum, (n - 1) // 2 + 1)) + int(np.searchsorted(cum, n // 2 + 1))) / 2
    ink = hist[np.abs(np.arange(256) - background) > 40].sum() / n
    if ink < min_ink_fraction:
        raise Reject("blank", f"ink fraction {ink:.4f} < {min_ink_fraction}")
