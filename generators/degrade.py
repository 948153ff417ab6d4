"""Seeded, optional image degradations (scan and photo artefacts), recorded op by op for meta.

`spec` is None/{} (nothing applied) or {"p": probability per op, "kinds": [subset of DEGRADATIONS]}.
Every parameter is drawn from the sample's rng and rounded *before* it is applied, so the recorded values
reproduce the image exactly.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from generators.base import GeneratorError

DEGRADATIONS = ("blur", "noise", "jpeg", "perspective", "shadow")


def check_spec(spec: dict | None) -> tuple[float, tuple[str, ...]]:
    """(p, kinds) of a spec, or GeneratorError naming what is wrong; generators call it at set-up."""
    if not spec:
        return 0.0, ()
    if not isinstance(spec, dict):
        raise GeneratorError(f"degradations must be a dict like {{'p': 0.5, 'kinds': [...]}}, not {spec!r}")
    unknown_keys = set(spec) - {"p", "kinds"}
    if unknown_keys:
        raise GeneratorError(f"unknown degradation settings {sorted(unknown_keys)}; expected 'p' and 'kinds'")
    p = float(spec.get("p", 0.5))
    if not 0.0 <= p <= 1.0:
        raise GeneratorError(f"degradation probability must lie in [0, 1], not {p}")
    kinds = tuple(spec.get("kinds", DEGRADATIONS))
    bad = [k for k in kinds if k not in DEGRADATIONS]
    if bad:
        raise GeneratorError(f"unknown degradations {bad}; known: {', '.join(DEGRADATIONS)}")
    return p, kinds


def degrade(img: Image.Image, rng: np.random.Generator, spec: dict | None) -> tuple[Image.Image, list[dict]]:
    """Apply each op of `spec["kinds"]` (in DEGRADATIONS order) with probability `spec["p"]`.

    Returns the new image (same mode and size) and the applied ops with their parameters."""
    p, kinds = check_spec(spec)
    applied: list[dict[str, Any]] = []
    for name in DEGRADATIONS:
        if name not in kinds:
            continue
        # One draw per candidate op whether or not it fires keeps later ops' streams stable.
        if rng.random() >= p:
            continue
        img, params = _OPS[name](img, rng)
        applied.append({"op": name, **params})
    return img, applied


def _blur(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    radius = round(float(rng.uniform(0.3, 1.6)), 3)
    return img.filter(ImageFilter.GaussianBlur(radius)), {"radius": radius}


def _noise(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    sigma = round(float(rng.uniform(3.0, 14.0)), 3)
    arr = np.asarray(img, dtype=np.float32)
    noisy = arr + rng.standard_normal(arr.shape, dtype=np.float32) * sigma
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), img.mode), {"sigma": sigma}


def _jpeg(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    quality = int(rng.integers(25, 86))
    buf = io.BytesIO()
    img.convert("L" if img.mode == "L" else "RGB").save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out.convert(img.mode), {"quality": quality}


def _perspective(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    w, h = img.size
    jitter = float(rng.uniform(0.01, 0.05))
    # Corner offsets as fractions of the size, pointing inwards so the page never leaves the frame.
    offs = np.round(rng.uniform(0.0, jitter, size=(4, 2)), 4)
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    sign = [(1, 1), (-1, 1), (-1, -1), (1, -1)]
    dst = [(x + sx * dx * w, y + sy * dy * h) for (x, y), (sx, sy), (dx, dy) in zip(src, sign, offs)]
    coeffs = _perspective_coeffs(dst, src)
    fill = 255 if img.mode == "L" else (255, 255, 255)
    out = img.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR, fillcolor=fill)
    return out, {"corners": offs.tolist()}


def _shadow(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    strength = round(float(rng.uniform(0.15, 0.5)), 3)
    angle = round(float(rng.uniform(0.0, 360.0)), 2)
    w, h = img.size
    t = np.deg2rad(angle)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (xx / w - 0.5) * np.cos(t) + (yy / h - 0.5) * np.sin(t)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    factor = 1.0 - strength * ramp  # darkest along the direction `angle` points to
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 3:
        factor = factor[..., None]
    return Image.fromarray(np.clip(arr * factor, 0, 255).astype(np.uint8), img.mode), {"strength": strength, "angle": angle}


def _perspective_coeffs(dst: list[tuple[float, float]], src: list[tuple[float, float]]) -> list[float]:
    """Coefficients PIL wants: for each output pixel (from `dst`), where to sample in the input (`src`)."""
    rows = []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.array(rows, dtype=np.float64)
    b = np.array([c for pt in src for c in pt], dtype=np.float64)
    return np.linalg.solve(a, b).tolist()


_OPS = {"blur": _blur, "noise": _noise, "jpeg": _jpeg, "perspective": _perspective, "shadow": _shadow}
