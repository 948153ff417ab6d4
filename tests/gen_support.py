"""Helpers the generator tests share."""
from __future__ import annotations

from generators.base import Sample


def first_sample(gen, seed: int = 7, start: int = 0, tries: int = 6) -> Sample:
    """The first accepted sample of a run of indices (a seed's first index may be a reject)."""
    for item in gen.items(seed, start, start + tries):
        if isinstance(item, Sample):
            return item
    raise AssertionError("no sample in a row of indices")
