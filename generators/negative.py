"""`negative`: natural images whose target is one of Vary's fixed "this is a picture" sentences, so the
model learns not to hallucinate text where there is none."""
from __future__ import annotations

import io
from typing import Any, Sequence

from generators.base import NEGATIVE_SENTENCES, PROMPT_OCR, Generator, GeneratorError, Reject, Sample, fit_and_pad
from generators.corpus import pick_lang
from generators.degrade import check_spec
from generators.sources import FileSourced, InputFiles, SourceFiles, describe_source

# Decoding bombs: a small file can claim a huge canvas; refuse before Pillow allocates it.
MAX_PIXELS = 80_000_000


class NegativeGenerator(FileSourced, Generator):
    """Params: source (folder, list of names, or .txt list file, read through `files`: see
    `generators.sources`), size (1024), lang ('en' | 'zh' | 'mixed': recorded label; the sentences
    are Vary's English ones), sentences (override NEGATIVE_SENTENCES), max_bytes, degradations, prompt."""

    kind = "negative"
    version = "2"
    input_params = ("source",)
    lists_source = True
    requires_source = True
    source_suffixes = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")

    def __init__(self, source: str | Sequence[str] | None = None, size: int = 1024, lang: str = "en",
                 sentences: Sequence[str] = NEGATIVE_SENTENCES, max_bytes: int = 32 * 2**20,
                 degradations: dict | None = None, prompt: str = PROMPT_OCR,
                 files: InputFiles | None = None):
        super().__init__(source=describe_source(source), size=size, lang=lang, sentences=list(sentences),
                         max_bytes=max_bytes, degradations=degradations, prompt=prompt)
        if lang not in ("en", "zh", "mixed"):
            raise GeneratorError(f"lang must be 'en', 'zh' or 'mixed', not {lang!r}")
        if not sentences:
            raise GeneratorError("sentences must not be empty")
        check_spec(degradations)
        self.size, self.lang, self.sentences = int(size), lang, tuple(sentences)
        self.max_bytes, self.degradations, self.prompt = int(max_bytes), degradations, prompt
        self.sources = SourceFiles(source, files)

    def make(self, seed: int, index: int, prepared: None = None) -> list[Sample]:
        from PIL import Image, ImageOps, UnidentifiedImageError

        name = self.sources.name(index)
        data = self.sources.read(name, self.max_bytes)
        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise Reject("too_large", f"{name}: {im.width}x{im.height} pixels", source=name)
                im = ImageOps.exif_transpose(im)  # photos store their rotation in EXIF
                im.load()
                img = im.convert("RGB")
        except Reject:
            raise
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            # Pillow names an unknown format by the buffer object's address: not a detail that repeats.
            why = "not an image format Pillow reads" if isinstance(e, UnidentifiedImageError) else f"{type(e).__name__}: {e}"
            raise Reject("corrupt_image", f"{name}: {why}", source=name) from None
        rng = self.rng(seed, index)
        lang = pick_lang(rng, self.lang)
        sentence = self.sentences[int(rng.integers(len(self.sentences)))]
        original = img.size
        img = fit_and_pad(img, self.size, fill=(255, 255, 255))
        # Photos: no blank check (a dark or plain photo is a fine negative); one channel when it has no colour.
        sampled = {"file": name, "lang": lang, "sentence": sentence, "original_size": list(original)}
        return [self.finish_sample(seed, index, img, rng, lang=lang, text=sentence, sampled=sampled,
                                   degradations=self.degradations, min_ink=None, grayscale="detect")]
