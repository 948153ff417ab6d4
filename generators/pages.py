"""PDF page helpers shared by every kind that goes through a PDF (pdf, document, TeX pages):
rasterise a page straight to the square input size, and read its text in reading order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from generators.base import fit_and_pad, is_grayscale

# Ligatures expanded ("ﬁ" -> "fi"), whitespace kept, text outside the page dropped; no de-hyphenation:
# the target keeps the hyphen the image shows.
TEXT_FLAGS = 2 | 64  # TEXT_PRESERVE_WHITESPACE | TEXT_MEDIABOX_CLIP
_SPACE = re.compile(r"\s")
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\u3000-\u303f]")
# Closing marks that kinsoku line breaking may hang past a column's right edge (full-width forms).
_HANGING = "，。、；：！？」』）》〉】〕〗〙〛”’．］｝"
_HANGING_AT_LINE_END = re.compile(f"[{_HANGING}][ \\t]*$", re.M)


def rasterise_page(page: Any, size: int | None = None, *, dpi: float | None = None, gray: bool | None = True,
                   fill: int = 255) -> tuple[Image.Image, bool]:
    """A PDF page as a PIL image, and whether it is grayscale: the one rasteriser of every kind that goes
    through a PDF. `page` is a pymupdf Page or a DisplayList made from one.

    `size`: rendered straight at the scale that fits a size×size square (no resampling pass), the pixel a
    rounding may add cropped, then padded with `fill`. `dpi` (instead of `size`): rendered at that
    resolution, as is (formula and table crops). `gray=True` renders one channel (TeX output and our own
    documents have no colour); `gray=None` renders in colour and keeps one channel when the page has no
    colour (PNG encoding then costs half). A colour render costs about what a gray one does (MuPDF's time
    goes into glyphs, not pixels); a second, small render to probe for colour measured no cheaper than
    scanning the full one."""
    import pymupdf

    if (size is None) == (dpi is None):
        raise ValueError("rasterise_page takes exactly one of size and dpi")
    rect = page.rect
    zoom = size / max(rect.width, rect.height) if size else dpi / 72.0
    cs = pymupdf.csGRAY if gray else pymupdf.csRGB
    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=cs, alpha=False)
    if gray:
        img = Image.frombuffer("L", (pix.width, pix.height), pix.samples, "raw", "L", 0, 1)
        is_gray = True
    else:
        arr = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width, 3)
        is_gray = gray is None and is_grayscale(arr)
        img = Image.fromarray(np.ascontiguousarray(arr[..., 0]) if is_gray else arr, "L" if is_gray else "RGB")
    if not size:
        return img, is_gray
    if img.size[0] > size or img.size[1] > size:  # rounding up by a pixel
        img = img.crop((0, 0, min(size, img.size[0]), min(size, img.size[1])))
    return fit_and_pad(img, size, fill), is_gray


@dataclass(frozen=True)
class PageText:
    """A page's text in reading order and what says whether it can be read once the page is 1024²."""

    text: str
    chars: int  # non-space characters
    glyph_pt: float  # the font size most of the characters have (character-weighted median), in points


def reading_order_text(page: Any) -> str:
    """`page_text(page).text`."""
    return page_text(page).text


def page_text(page: Any) -> PageText:
    """The page's text in reading order: blocks grouped into columns (found from gaps in the blocks'
    horizontal coverage), columns read left to right within each band between full-width blocks and
    rows across the columns (an author grid, a table astride the gutter; read left to right).
    Lines of a block are joined with a space (none between CJK characters or after a line-end
    hyphen); blocks are separated by a blank line. Within a block, a run of lines set in another font
    size or weight (a heading MuPDF put in its paragraph's block) is a block of its own. The text is
    normalised by `normalize_text` (NFC, spacing accents recombined, ligatures as letters)."""
    textpage = page.get_textpage(flags=TEXT_FLAGS)
    blocks, lines = [], []
    for b in textpage.extractDICT()["blocks"]:
        if b.get("type") == 0:
            texts = [_line_text(ln) for ln in b["lines"]]
            if any(t.strip() for t in texts):
                blocks.append(b)
                lines.append(texts)
    boxes = [tuple(b["bbox"]) for b in blocks]
    if any(_HANGING_AT_LINE_END.search(t) for texts in lines for t in texts):
        boxes = _without_hanging_marks(blocks, [b["number"] for b in blocks], boxes)
    ordered = order_blocks(boxes, page.rect.width)
    parts = [t for i in ordered for t in _block_parts(blocks[i], lines[i])]
    sizes: list[tuple[float, int]] = [(sp["size"], len(sp["text"]) - sp["text"].count(" "))
                                      for b in blocks for ln in b["lines"] for sp in ln["spans"]]
    return PageText(normalize_text("\n\n".join(parts)), sum(n for _, n in sizes), _weighted_median(sizes))


def _line_text(line: dict) -> str:
    return "".join(sp["text"] for sp in line["spans"])


def _line_font(line: dict) -> tuple[float, bool]:
    """(size, bold) of the most characters of a line."""
    weight: dict[tuple[float, bool], int] = {}
    for sp in line["spans"]:
        n = len(sp["text"].strip())
        if n:
            key = (round(sp["size"], 1), bool(sp["flags"] & 16) or "bold" in sp["font"].lower())
            weight[key] = weight.get(key, 0) + n
    return max(weight, key=lambda k: (weight[k], k)) if weight else (0.0, False)


def _block_parts(block: dict, texts: list[str]) -> list[str]:
    """The texts of a block (`texts`: its lines'), split where the lines change font size (by over a
    tenth) or weight."""
    if len({(sp["size"], sp["flags"], sp["font"]) for ln in block["lines"] for sp in ln["spans"]}) == 1:
        return [t for t in (join_lines("\n".join(texts)),) if t]  # one font throughout: most blocks
    runs: list[list[str]] = []
    last: tuple[float, bool] | None = None
    for line, text in zip(block["lines"], texts):
        if not text.strip():
            continue
        font = _line_font(line)
        if last is None or abs(font[0] - last[0]) > 0.1 * max(font[0], last[0]) or font[1] != last[1]:
            runs.append([])
        runs[-1].append(text)
        last = font
    return [t for t in (join_lines("\n".join(r)) for r in runs) if t]


def _weighted_median(pairs: list[tuple[float, int]]) -> float:
    pairs = sorted(p for p in pairs if p[1] > 0)
    total = sum(n for _, n in pairs)
    seen = 0
    for value, n in pairs:
        seen += n
        if 2 * seen >= total:
            return float(value)
    return 0.0


# Spacing accents as older TeX PDFs extract them (OT1 `\\"u` is a diaeresis glyph, then the letter) and
# the combining mark each stands for. "`" (U+0060) is a grave accent only inside a word: elsewhere it is
# a backquote. A cedilla or ogonek comes before its letter too (TeX), or after it.
_SPACING_ACCENTS = {
    "\u00a8": "\u0308", "\u00b4": "\u0301", "\u02c6": "\u0302", "\u02dc": "\u0303", "\u00af": "\u0304",
    "\u02d8": "\u0306", "\u02d9": "\u0307", "\u02da": "\u030a", "\u02dd": "\u030b", "\u02c7": "\u030c",
    "`": "\u0300", "\u00b8": "\u0327", "\u02db": "\u0328",
}
_BELOW = {"\u00b8": "\u0327", "\u02db": "\u0328"}
_ACCENT_THEN_LETTER = re.compile("(?P<pre>\\w?)(?P<acc>[" + "".join(_SPACING_ACCENTS) + "])(?P<letter>[^\\W\\d_])")
_LETTER_THEN_BELOW = re.compile("(?P<letter>[^\\W\\d_])(?P<acc>[" + "".join(_BELOW) + "])")
_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                            "\ufb05": "st", "\ufb06": "st"})
# Any character the accent rules act on: most pages have none, and one scan for them is cheap.
_ACCENT_CHARS = re.compile("[" + "".join(_SPACING_ACCENTS) + "".join(_BELOW) + "]")


def _compose(letter: str, mark: str) -> str | None:
    """The one precomposed character of `letter` + combining `mark`, or None."""
    import unicodedata

    composed = unicodedata.normalize("NFC", ("i" if letter == "\u0131" else letter) + mark)  # \"\i: dotless i
    return composed if len(composed) == 1 else None


def normalize_text(text: str) -> str:
    """Text as a reader types it: ligatures as their letters, a spacing accent before a letter (TeX's
    OT1 accents extract as "f\u00a8ur") joined with it ("f\u00fcr") where Unicode has the accented
    letter, and NFC (decomposed letters composed)."""
    import unicodedata

    text = text.translate(_LIGATURES)

    def above(m: re.Match) -> str:
        if m.group("acc") == "`" and not m.group("pre"):
            return m.group(0)
        composed = _compose(m.group("letter"), _SPACING_ACCENTS[m.group("acc")])
        return m.group("pre") + composed if composed else m.group(0)

    def below(m: re.Match) -> str:
        return _compose(m.group("letter"), _BELOW[m.group("acc")]) or m.group(0)

    if _ACCENT_CHARS.search(text):
        text = _LETTER_THEN_BELOW.sub(below, _ACCENT_THEN_LETTER.sub(above, text))
    if unicodedata.is_normalized("NFC", text):
        return text
    return unicodedata.normalize("NFC", text)


def _without_hanging_marks(dict_blocks: list[dict], numbers: list[int],
                           boxes: list[tuple[float, float, float, float]]) -> list[tuple[float, float, float, float]]:
    """`boxes` with each right edge pulled in past closing marks that hang at a line end.

    Kinsoku line breaking lets a closing mark (，。」) that would start a line hang past the column
    edge instead. Its advance box reaches up to about a font size into the gutter, its ink far less,
    so a reader still sees the gap; measured by advance boxes the gap can shrink below what
    `_find_gutters` needs. Dropping the mark's advance (one em: these marks are full-width) from its
    line gives the column edge back. `dict_blocks` is the same text page's extractDICT()["blocks"];
    `numbers` the block number of each box."""
    right: dict[int, float] = {}
    for db in dict_blocks:
        if db.get("type") != 0:
            continue
        edges = []
        for line in db["lines"]:
            spans = [s for s in line["spans"] if s["text"].strip()]
            if not spans:
                continue
            last = spans[-1]
            x1 = max(s["bbox"][2] for s in spans)
            text = last["text"].rstrip()
            # ” and ’ close Latin quotes too, where they are narrow: trimmed only after CJK text.
            if text[-1] in _HANGING and (text[-1] not in "”’" or len(text) > 1 and _CJK.match(text[-2])):
                x1 = max(line["bbox"][0], x1 - last["size"])
            edges.append(x1)
        if edges:
            right[db["number"]] = max(edges)
    return [(x0, y0, min(x1, right.get(n, x1)), y1) for (x0, y0, x1, y1), n in zip(boxes, numbers)]


def order_blocks(boxes: list[tuple[float, float, float, float]], page_width: float) -> list[int]:
    """Indices of `boxes` (x0, y0, x1, y1) in reading order."""
    if not boxes:
        return []
    gutters = _find_gutters(boxes, page_width)
    if not gutters:
        return sorted(range(len(boxes)), key=lambda i: (round(boxes[i][1], 1), boxes[i][0]))
    edges = [-np.inf, *gutters, np.inf]

    def column_of(b: tuple[float, float, float, float]) -> int | None:
        for c in range(len(edges) - 1):
            if b[0] >= edges[c] - 2 and b[2] <= edges[c + 1] + 2:
                return c
        return None  # crosses a gutter: a full-width block (title, wide figure caption)

    cols = [column_of(b) for b in boxes]

    left, right = min(b[0] for b in boxes), max(b[2] for b in boxes)

    def ends_column(i: int) -> bool:
        # The lone last line of the middle of three columns is centred and below every other column,
        # yet it is column text: it starts where the block above it in its column starts and is no
        # further from it than that column's blocks are from each other (or than its own height).
        # A page number is centred, not aligned, and set apart. Only the bottom is judged so: above
        # the columns, a centred block is a title far more often than a column's first line.
        x0, y0, x1, y1 = boxes[i]
        same = sorted((boxes[j] for j in range(len(boxes)) if j != i and cols[j] == cols[i]), key=lambda b: b[1])
        above = [b for b in same if b[3] <= y0 + 1]
        if not above or abs(above[-1][0] - x0) > 1.5:
            return False
        gaps = [b[1] - a[3] for a, b in zip(same, same[1:])]
        return y0 - above[-1][3] <= max([y1 - y0, *gaps]) + 1

    def breaks_band(i: int) -> bool:
        # A block inside one column still spans the page when it is centred on the text area and sits
        # wholly above or below the text of every other column: a title over three columns, a footer.
        if cols[i] is None:
            return True
        x0, y0, x1, y1 = boxes[i]
        if abs((x0 + x1) / 2 - (left + right) / 2) > 0.08 * (right - left) or ends_column(i):
            return False
        for c in set(cols) - {cols[i], None}:
            others = [boxes[j] for j in range(len(boxes)) if cols[j] == c]
            if not (all(o[1] >= y1 - 1 for o in others) or all(o[3] <= y0 + 1 for o in others)):
                return False
        return True

    # A block across a gutter with blocks beside it is a row (an author grid, a table row whose middle
    # cell straddles the gutter): it and the blocks level with it are read as one band, left to right.
    rows = _rows(boxes, [i for i, near in enumerate(_beside_another(boxes)) if near and cols[i] is None])
    in_row = {i for row in rows for i in row}
    units = sorted([*([i] for i in range(len(boxes)) if i not in in_row and breaks_band(i)), *rows],
                   key=lambda u: min(boxes[i][1] for i in u))
    separate = in_row.union(*units)
    out: list[int] = []
    placed: set[int] = set()
    band_top = -np.inf
    for unit in [*units, None]:
        band_bottom = min(boxes[i][1] for i in unit) if unit is not None else np.inf
        band = [i for i, b in enumerate(boxes) if i not in placed and i not in separate and band_top <= b[1] < band_bottom]
        band.sort(key=lambda i: (cols[i], boxes[i][1], boxes[i][0]))
        out.extend(band)
        placed.update(band)
        if unit is not None:
            out.extend(unit)
            placed.update(unit)
            band_top = band_bottom
    out.extend(i for i in range(len(boxes)) if i not in placed)  # defensive: never lose a block
    return out


def _rows(boxes: list[tuple[float, float, float, float]], crossing: list[int]) -> list[list[int]]:
    """Rows around the blocks in `crossing`, each in reading order. A row is the crossing blocks that
    overlap vertically (by more than a point) and every block that lies within their height, give or
    take half of it: column text beside a short crossing heading reaches far beyond it and stays in
    its column. Within a row, blocks stacked over each other (an author's name over the affiliation,
    split by MuPDF into two blocks) are read together, the stacks left to right."""
    rows: list[list[int]] = []
    for group in _strips_of(boxes, crossing):
        top, bottom = min(boxes[i][1] for i in group), max(boxes[i][3] for i in group)
        tol = 0.5 * (bottom - top)
        members = [j for j, b in enumerate(boxes) if b[1] >= top - tol and b[3] <= bottom + tol
                   and min(b[3], bottom) - max(b[1], top) > 1]
        stacks: list[list[int]] = []
        for j in sorted(members, key=lambda j: boxes[j][0]):
            for st in stacks:
                if any(min(boxes[j][2], boxes[k][2]) - max(boxes[j][0], boxes[k][0]) > 0 for k in st):
                    st.append(j)
                    break
            else:
                stacks.append([j])
        rows.append([j for st in stacks for j in sorted(st, key=lambda j: boxes[j][1])])
    # Rows that came to share a block are one row.
    merged: list[list[int]] = []
    for row in rows:
        if merged and set(row) & set(merged[-1]):
            merged[-1] = [*merged[-1], *(j for j in row if j not in merged[-1])]
        else:
            merged.append(row)
    return merged


def _strips_of(boxes: list[tuple[float, float, float, float]], indices: list[int]) -> list[list[int]]:
    """`indices` of `boxes` split into runs that overlap vertically (by more than a point), top down."""
    groups: list[list[int]] = []
    bottom = -np.inf
    for i in sorted(indices, key=lambda i: boxes[i][1]):
        if groups and boxes[i][1] < bottom - 1:
            groups[-1].append(i)
            bottom = max(bottom, boxes[i][3])
        else:
            groups.append([i])
            bottom = boxes[i][3]
    return groups


def _find_gutters(boxes: list[tuple[float, float, float, float]], page_width: float) -> list[float]:
    """x positions of vertical gaps between text columns. Only blocks with another block beside them
    count: a block alone in its horizontal strip (a title, a caption or figure across the columns, a
    footer, an indented quotation on a one-column page) says nothing about whether there are columns
    above or below it, however tall it is.

    The rest is judged strip by strip (a strip: blocks joined by overlapping vertically). Within a
    strip, coverage is weighted by block height, so one short centred heading bridging a gutter beside
    column text does not hide it. Across strips, each strip votes with its height: a row of blocks
    across the gutter (an author grid under a title, a table whose middle cells straddle the gutter)
    is a short strip of its own and cannot hide the gutter of the tall column strips around it."""
    x0 = min(b[0] for b in boxes)
    x1 = max(b[2] for b in boxes)
    width = x1 - x0
    if width <= 0:
        return []
    has_neighbour = _beside_another(boxes)
    narrow = [b for b, near in zip(boxes, has_neighbour) if near and (b[2] - b[0]) < 0.6 * width]
    if len(narrow) < 2:
        return []
    n = int(np.ceil(width)) + 1
    against = np.zeros(n, dtype=np.float64)
    total = 0.0
    for strip in ([narrow[i] for i in g] for g in _strips_of(narrow, list(range(len(narrow))))):
        cover = np.zeros(n, dtype=np.float64)
        for b in strip:
            cover[int(b[0] - x0): int(np.ceil(b[2] - x0)) + 1] += b[3] - b[1]
        height = max(b[3] for b in strip) - min(b[1] for b in strip)
        against += height * (cover > 0.03 * sum(b[3] - b[1] for b in strip))
        total += height
    empty = against <= total / 3
    gutters: list[float] = []
    margin = int(0.1 * width)
    run_start = None
    for x in range(margin, n - margin + 1):
        e = x < n - margin and empty[x]
        if e and run_start is None:
            run_start = x
        elif not e and run_start is not None:
            if x - run_start >= min(8.0, 0.015 * page_width):
                mid = x0 + (run_start + x) / 2
                left = [b for b in narrow if b[2] <= mid]
                right = [b for b in narrow if b[0] >= mid]
                if left and right:
                    gutters.append(mid)
            run_start = None
    return gutters


def _beside_another(boxes: list[tuple[float, float, float, float]]) -> list[bool]:
    """For each box, whether some other box sits beside it: overlapping it vertically (by more than a
    point, so stacked lines whose boxes touch do not count) and clear of it horizontally."""
    b = np.asarray(boxes, dtype=np.float64)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    overlap = np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :]) > 1
    np.fill_diagonal(overlap, False)
    # 1 pt of slack: boxes of neighbouring columns may touch across a narrow gutter.
    apart = (x1[None, :] <= x0[:, None] + 1) | (x0[None, :] >= x1[:, None] - 1)
    return (overlap & apart).any(axis=1).tolist()


def join_lines(block_text: str) -> str:
    lines = [ln.strip() for ln in block_text.splitlines()]
    out = ""
    for ln in lines:
        if not ln:
            continue
        if not out:
            out = ln
        elif out.endswith("-") and len(out) > 1 and out[-2].isalpha() or _CJK.match(out[-1]) and _CJK.match(ln[0]):
            out += ln
        else:
            out += " " + ln
    return " ".join(out.split(" ")) if out else ""


def text_lang(text: str) -> str:
    """'zh' when CJK characters make up a fifth or more of the non-space text, else 'en'."""
    chars = len(text) - len(_SPACE.findall(text))
    if not chars:
        return "en"
    return "zh" if len(_CJK.findall(text)) >= 0.2 * chars else "en"
