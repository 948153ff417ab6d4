"""The OCR metrics of the Vary and GOT tables, per sample, then averaged.

Units: words for English (and anything not Chinese), characters for Chinese (`lang` "zh").
- edit distance: Levenshtein distance over characters / max(len(pred), len(ref)); 0 is perfect.
- precision / recall / F1: bag-of-units overlap (multiset intersection), as in Vary/Nougat.
- BLEU: BLEU-4 with uniform weights, brevity penalty, and +1 smoothing of the 2..4-gram precisions
  (Lin & Och 2004) so short texts do not score zero.
- METEOR, simplified: exact unigram matches only (no stems, synonyms or paraphrases), aligned
  greedily left to right; Fmean = 10PR/(R+9P); penalty = 0.5 × (chunks/matches)³; score = Fmean × (1 − penalty).
  It is lower than full METEOR on texts with paraphrase; it is exact for verbatim OCR.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Iterable


def units(text: str, lang: str) -> list[str]:
    if lang.startswith("zh"):
        return [c for c in text if not c.isspace()]
    return re.findall(r"\S+", text)


def levenshtein(a: str | list[str], b: str | list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def edit_distance(pred: str, ref: str) -> float:
    n = max(len(pred), len(ref))
    return levenshtein(pred, ref) / n if n else 0.0


def cer(pred: str, ref: str) -> float:
    """Character error rate: edits per reference character."""
    return levenshtein(pred, ref) / max(1, len(ref))


def prf(pred: list[str], ref: list[str]) -> tuple[float, float, float]:
    if not pred and not ref:
        return 1.0, 1.0, 1.0
    common = sum((Counter(pred) & Counter(ref)).values())
    p = common / len(pred) if pred else 0.0
    r = common / len(ref) if ref else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def bleu(pred: list[str], ref: list[str], max_n: int = 4) -> float:
    if not pred or not ref:
        return float(pred == ref)
    logs = []
    for n in range(1, max_n + 1):
        p_ngrams = Counter(tuple(pred[i:i + n]) for i in range(len(pred) - n + 1))
        r_ngrams = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
        match, total = sum((p_ngrams & r_ngrams).values()), sum(p_ngrams.values())
        if n > 1:
            match, total = match + 1, total + 1
        if match == 0 or total == 0:
            return 0.0
        logs.append(math.log(match / total))
    bp = 1.0 if len(pred) > len(ref) else math.exp(1 - len(ref) / len(pred))
    return bp * math.exp(sum(logs) / max_n)


def meteor(pred: list[str], ref: list[str]) -> float:
    used = [False] * len(ref)
    alignment: list[int] = []  # ref index matched by each matched pred unit, in pred order
    for tok in pred:
        for j, r in enumerate(ref):
            if not used[j] and r == tok:
                used[j] = True
                alignment.append(j)
                break
    m = len(alignment)
    if m == 0:
        return 0.0
    p, r = m / len(pred), m / len(ref)
    fmean = 10 * p * r / (r + 9 * p)
    chunks = 1 + sum(1 for a, b in zip(alignment, alignment[1:]) if b != a + 1)
    return fmean * (1 - 0.5 * (chunks / m) ** 3)


def score(pred: str, ref: str, lang: str) -> dict[str, float]:
    pu, ru = units(pred, lang), units(ref, lang)
    p, r, f = prf(pu, ru)
    return {"edit_distance": edit_distance(pred, ref), "cer": cer(pred, ref), "precision": p, "recall": r,
            "f1": f, "bleu": bleu(pu, ru), "meteor": meteor(pu, ru)}


def average(scores: Iterable[dict[str, float]]) -> dict[str, float]:
    scores = list(scores)
    if not scores:
        return {}
    return {k: sum(s[k] for s in scores) / len(scores) for k in scores[0]}
