"""Pure renderers: parameters + seed + index -> image-text samples. See `generators.base`."""
from __future__ import annotations

import importlib
from typing import Any

from generators.base import Generator, GeneratorError, Reject, Rejected, Sample

# kind -> "module:Class"; imported lazily so `varyflow data show` never pays for matplotlib or Chromium.
KINDS: dict[str, str] = {
    "pdf": "generators.pdf:PdfGenerator",
    "document": "generators.document:DocumentGenerator",
    "chart": "generators.chart:ChartGenerator",
    "echart": "generators.echart:EChartGenerator",
    "formula": "generators.formula:FormulaGenerator",
    "table": "generators.table:TableGenerator",
    "latex_page": "generators.latex_page:LatexPageGenerator",
    "negative": "generators.negative:NegativeGenerator",
}


def generator_class(kind: str) -> type[Generator]:
    try:
        module, cls = KINDS[kind].split(":")
    except KeyError:
        raise GeneratorError(f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}") from None
    return getattr(importlib.import_module(module), cls)


def get_generator(kind: str, **params: Any) -> Generator:
    return generator_class(kind)(**params)


__all__ = ["KINDS", "Generator", "GeneratorError", "Reject", "Rejected", "Sample", "generator_class", "get_generator"]
