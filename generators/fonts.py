"""Fonts the renderers use, and coverage checks made before rendering so no sample shows tofu.

A font is named by family ("DejaVu Serif"), by language ("en", "zh"), by a reportlab/PDF base-14 name
("Helvetica", "Times-Roman", "Courier"; these have no file, their repertoire is WinAnsi), or by a path.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading

from generators.base import GeneratorError, Reject

# family -> (fontconfig pattern, Debian path used when fontconfig is absent, Debian package)
FAMILIES: dict[str, tuple[str, str, str]] = {
    "DejaVu Sans": ("DejaVu Sans:style=Book", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "fonts-dejavu-core"),
    "DejaVu Sans Bold": ("DejaVu Sans:style=Bold", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "fonts-dejavu-core"),
    "DejaVu Serif": ("DejaVu Serif:style=Book", "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf", "fonts-dejavu-core"),
    "DejaVu Serif Bold": ("DejaVu Serif:style=Bold", "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf", "fonts-dejavu-core"),
    "DejaVu Sans Mono": ("DejaVu Sans Mono:style=Book", "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", "fonts-dejavu-core"),
    "WenQuanYi Micro Hei": ("WenQuanYi Micro Hei", "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "fonts-wqy-microhei"),
}
LANG_FONTS = {"en": "DejaVu Sans", "zh": "WenQuanYi Micro Hei"}
BASE14 = ("Helvetica", "Helvetica-Bold", "Times-Roman", "Times-Bold", "Courier", "Courier-Bold")

_cmap_lock = threading.Lock()
_cmaps: dict[str, frozenset[int]] = {}


@functools.lru_cache(maxsize=None)
def font_path(family_or_lang: str) -> str:
    """The file of a family (or of a language's default family). Fontconfig is asked first and its
    answer accepted only when it is the family asked for (fc-match always returns *some* font)."""
    name = LANG_FONTS.get(family_or_lang, family_or_lang)
    if os.path.isfile(name):
        return name
    if name not in FAMILIES:
        raise GeneratorError(f"unknown font {family_or_lang!r}; known: {', '.join([*FAMILIES, *LANG_FONTS])}")
    pattern, fallback, package = FAMILIES[name]
    family = pattern.split(":")[0]
    if shutil.which("fc-match"):
        try:
            out = subprocess.run(["fc-match", "-f", "%{file}\n%{family}", pattern], capture_output=True,
                                 text=True, timeout=10, check=True).stdout
            path, families = (out.split("\n", 1) + [""])[:2]
            if os.path.isfile(path) and family in families.split(","):
                return path
        except (subprocess.SubprocessError, OSError):
            pass
    if os.path.isfile(fallback):
        return fallback
    raise GeneratorError(f"font {name!r} not installed; install the Debian package {package}")


def charset(font: str) -> frozenset[int]:
    """Code points `font` can draw (its best cmap; WinAnsi for base-14 fonts), cached per process."""
    with _cmap_lock:
        if font in _cmaps:
            return _cmaps[font]
    if font in BASE14:
        chars = frozenset(c for c in range(0x20, 0x2400) if _winansi(chr(c)))
    else:
        from fontTools.ttLib import TTFont

        path = font_path(font)
        try:
            tt = TTFont(path, fontNumber=0, lazy=True)
            chars = frozenset(tt.getBestCmap() or {})
            tt.close()
        except Exception as e:  # fontTools raises many types for broken files
            raise GeneratorError(f"cannot read font {path}: {e}") from e
    with _cmap_lock:
        _cmaps[font] = chars
    return chars


def missing_glyphs(text: str, font: str) -> set[str]:
    """Characters of `text` (whitespace aside) that `font` has no glyph for."""
    cs = charset(font)
    return {ch for ch in set(text) if not ch.isspace() and ord(ch) not in cs}


def require_coverage(text: str, font: str) -> None:
    """Raise Reject("font_coverage") naming the characters `font` cannot draw."""
    missing = missing_glyphs(text, font)
    if missing:
        shown = "".join(sorted(missing)[:20])
        codes = ", ".join(f"U+{ord(c):04X}" for c in sorted(missing)[:20])
        raise Reject("font_coverage", f"{font} cannot draw {len(missing)} character(s): {shown!r} ({codes})")


def _winansi(ch: str) -> bool:
    try:
        ch.encode("cp1252")
        return True
    except UnicodeEncodeError:
        return False
