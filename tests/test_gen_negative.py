"""`negative`: natural images with one of Vary's fixed sentences as the target."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generators import get_generator
from generators.base import NEGATIVE_SENTENCES, Rejected, Sample


def _photo(seed: int, size: tuple[int, int]) -> Image.Image:
    """A smooth colourful field with grain: photo-like content without shipping photos."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(xx * 6 + seed), np.cos(yy * 5), np.sin((xx + yy) * 4)], -1) * 100 + 128
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8), "RGB")


@pytest.fixture()
def photo_dir(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    _photo(1, (640, 480)).save(d / "a_landscape.jpg", quality=90)
    _photo(2, (300, 500)).save(d / "b_portrait.png")
    (d / "c_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    good = (d / "a_landscape.jpg").read_bytes()
    (d / "d_truncated.jpg").write_bytes(good[:200])
    _photo(3, (200, 200)).convert("L").save(d / "e_gray.png")
    return d


def test_images_become_padded_samples_and_bad_files_are_rejected(photo_dir: Path):
    gen = get_generator("negative", source=str(photo_dir))
    results = list(gen.items(0, 0, len(gen)))
    kinds = [(type(r).__name__, getattr(r, "reason", None)) for r in results]
    assert kinds == [("Sample", None), ("Sample", None), ("Rejected", "corrupt_image"),
                     ("Rejected", "corrupt_image"), ("Sample", None)]
    assert "c_broken.jpg" in results[2].detail and results[3].source.endswith("d_truncated.jpg")
    land = results[0]
    assert land.text in NEGATIVE_SENTENCES and land.meta["sampled"]["sentence"] == land.text
    img = Image.open(io.BytesIO(land.image))
    assert img.size == (1024, 1024) and img.mode == "RGB"
    arr = np.asarray(img)
    # 640x480 fits as 1024x768: white bands top and bottom, picture in between (aspect kept)
    assert (arr[:120] == 255).all() and (arr[-120:] == 255).all() and arr[140:880].std() > 10
    assert land.meta["sampled"]["original_size"] == [640, 480]
    assert Image.open(io.BytesIO(results[4].image)).mode == "L"


def test_sentences_vary_with_the_seed_and_repeat_with_it(photo_dir: Path):
    names = [str(photo_dir / "a_landscape.jpg")] * 8
    gen = get_generator("negative", source=names, lang="mixed", degradations={"p": 0.5})
    first = list(gen.items(5, 0, 8))
    again = list(get_generator("negative", source=names, lang="mixed", degradations={"p": 0.5}).items(5, 0, 8))
    assert [(s.image, s.text, json.dumps(s.meta)) for s in first] == [(s.image, s.text, json.dumps(s.meta)) for s in again]
    assert len({s.text for s in first}) > 1 and {s.lang for s in first} == {"en", "zh"}
    custom = get_generator("negative", source=names[:1], sentences=["Just a photo."], prompt="Describe.")
    [s] = custom.render(0, 0)
    assert s.text == "Just a photo." and s.prompt == "Describe."


def test_remote_names_are_read_through_the_injected_input_files(photo_dir: Path):
    from tests.input_files import BlobFiles

    blobs = {"s3://bkt/photos/p.png": (photo_dir / "b_portrait.png").read_bytes()}
    gen = get_generator("negative", source="s3://bkt/photos/", files=BlobFiles(blobs))
    [s] = gen.render(0, 0)
    assert isinstance(s, Sample) and s.meta["sampled"]["file"] == "s3://bkt/photos/p.png"
    assert s.meta["params"]["source"] == "s3://bkt/photos/"
    [r] = list(gen.items(0, 1, 2))
    assert isinstance(r, Rejected) and r.reason == "no_such_file"
