"""Text corpora the generators draw titles, sentences and paragraphs from.

Built-in corpora (original prose, licence-clean) ship in `generators/data/corpus_<lang>.txt`, one paragraph
per line, so every kind works offline. A user corpus is a .txt (one paragraph per line), .jsonl or .parquet
file, or a folder / prefix of .jsonl and .parquet files, local or remote, with its text in a named column
(`spec#column`, default "text"), read as a stream up to a bounded size (`Corpus.load`) through the caller's
`InputFiles` (`generators.sources`: storage's in a render, local paths and s3:// names alike), which keeps this
module free of the storage layer.
"""
from __future__ import annotations

import io
import json
import re
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from generators.base import GeneratorError
from generators.sources import InputFiles, LocalFiles, input_files, setup_read

DATA_DIR = Path(__file__).parent / "data"
LANGS = ("en", "zh")

_EN_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_ZH_SENTENCE_END = re.compile(r"(?<=[。！？])")
# Clause punctuation: Chinese "words" and titles are cut between these.
_ZH_CLAUSE_SPLIT = re.compile(r"[，。、；：！？“”‘’（）《》,.;:!?()\s]+")
_EN_WORD_STRIP = "\"'()[],.;:!?"

# A corpus holds at most this much text (characters): a web-scale source is read only this far.
MAX_CORPUS_CHARS = 20_000_000

_cache: dict[tuple[str, str, str, int, str], "Corpus"] = {}
_cache_lock = threading.Lock()


class Corpus:
    """Sentences of one language, kept in their original order so a drawn paragraph reads coherently."""

    def __init__(self, paragraphs: list[str], lang: str, source: str = "builtin"):
        if lang not in LANGS:
            raise GeneratorError(f"corpus language must be one of {LANGS}, not {lang!r}")
        self.lang = lang
        self.source = source
        self.sentences_: list[str] = []
        for p in paragraphs:
            p = " ".join(p.split()) if lang == "en" else "".join(p.split())
            if p:
                self.sentences_.extend(s for s in _split_sentences(p, lang) if s)
        if not self.sentences_:
            raise GeneratorError(f"corpus {source!r} holds no text")
        self._words = self._build_words()

    # -- loading -----------------------------------------------------------------------------------
    @classmethod
    def load(cls, spec: str | None, lang: str, files: InputFiles | None = None,
             max_chars: int = MAX_CORPUS_CHARS) -> "Corpus":
        """The built-in corpus of `lang` when `spec` is None, else the corpus `spec` names: a .txt, .jsonl or
        .parquet file, or a folder / `s3://` prefix of .jsonl and .parquet files (web-scale text as users
        hold it), optionally with `#column` naming the text column (default "text"). Files are read in
        sorted order as a stream (Parquet by row group, JSON lines by line) until `max_chars` characters
        of text are in: the corpus is the same on every run and its size is bounded, however large the
        source. Files are read through `files` (this machine's when None; the built-ins always are).

        A corpus is cached per process by its name and `files.stat` (size and version): a file edited in place
        is read again; a remote prefix, which has no version of its own, is read each time."""
        if lang not in LANGS:
            raise GeneratorError(f"corpus language must be one of {LANGS}, not {lang!r}")
        if spec is None:
            path, column, files = str(DATA_DIR / f"corpus_{lang}.txt"), "text", LocalFiles()
        else:
            (path, column), files = _split_column(spec), input_files(files)
        version = files.stat(path)
        key = (path, column, lang, max_chars, version or "")
        if version is not None:
            with _cache_lock:
                if key in _cache:
                    return _cache[key]
        paragraphs = list(_stream(path, column, files, max_chars))
        corpus = cls(paragraphs, lang, source="builtin" if spec is None else spec)
        if version is not None:
            with _cache_lock:
                _cache[key] = corpus
        return corpus

    # -- drawing -----------------------------------------------------------------------------------
    @property
    def joiner(self) -> str:
        return " " if self.lang == "en" else ""

    def sentence(self, rng: np.random.Generator) -> str:
        return self.sentences_[int(rng.integers(len(self.sentences_)))]

    def sentences(self, rng: np.random.Generator, n: int) -> list[str]:
        """`n` consecutive sentences from a random starting point (wrapping round)."""
        start = int(rng.integers(len(self.sentences_)))
        return [self.sentences_[(start + i) % len(self.sentences_)] for i in range(n)]

    def paragraph(self, rng: np.random.Generator, min_chars: int, max_chars: int) -> str:
        """Consecutive sentences totalling between `min_chars` and `max_chars` characters where the corpus
        allows; a sentence longer than `max_chars` is cut at a word boundary, never inside a word."""
        if max_chars < 1 or min_chars > max_chars:
            raise GeneratorError(f"bad paragraph bounds {min_chars}..{max_chars}")
        start = int(rng.integers(len(self.sentences_)))
        out: list[str] = []
        length = 0
        for i in range(len(self.sentences_)):
            s = self.sentences_[(start + i) % len(self.sentences_)]
            extra = len(s) + (len(self.joiner) if out else 0)
            if length + extra > max_chars:
                if not out:
                    out.append(self._truncate(s, max_chars))
                break
            out.append(s)
            length += extra
            if length >= min_chars:
                break
        return self.joiner.join(out)

    def words(self, rng: np.random.Generator, n: int) -> list[str]:
        """`n` words drawn independently (English words; for Chinese, two- to four-character pieces of
        clauses, which read as words or short phrases)."""
        idx = rng.integers(len(self._words), size=n)
        return [self._words[int(i)] for i in idx]

    def title(self, rng: np.random.Generator, max_words: int = 6) -> str:
        """A short heading: a run of up to `max_words` words (Chinese: up to 2*max_words characters)
        taken from one sentence, without trailing punctuation."""
        s = self.sentence(rng)
        if self.lang == "en":
            toks = [t.strip(_EN_WORD_STRIP) for t in s.split()]
            toks = [t for t in toks if t]
            n = int(rng.integers(min(2, len(toks)), min(max_words, len(toks)) + 1))
            start = int(rng.integers(len(toks) - n + 1))
            run = toks[start:start + n]
            return " ".join([run[0][:1].upper() + run[0][1:]] + run[1:])
        clauses = [c for c in _ZH_CLAUSE_SPLIT.split(s) if len(c) >= 2]
        if not clauses:
            clauses = [s.strip("。！？")]
        limit = max(2, 2 * max_words)
        # Prefer a whole clause; cut one only when no clause of the sentence is short enough.
        fitting = [c for c in clauses if len(c) <= limit] or clauses
        return fitting[int(rng.integers(len(fitting)))][:limit]

    # -- internals ---------------------------------------------------------------------------------
    def _truncate(self, s: str, max_chars: int) -> str:
        if self.lang == "zh":
            return s[:max_chars]
        cut = s[: max_chars + 1]
        if len(s) > max_chars and " " in cut:
            cut = cut[: cut.rindex(" ")]
        return cut[:max_chars].rstrip()

    def _build_words(self) -> list[str]:
        words: list[str] = []
        if self.lang == "en":
            for s in self.sentences_:
                words.extend(w for w in (t.strip(_EN_WORD_STRIP) for t in s.split()) if w.isalpha())
        else:
            for s in self.sentences_:
                for clause in _ZH_CLAUSE_SPLIT.split(s):
                    # Cut clauses into pieces of 2-4 characters by a fixed pattern so the list is
                    # the same on every run (no randomness at load time).
                    pos, step = 0, 2
                    while pos + 2 <= len(clause):
                        words.append(clause[pos:pos + step])
                        pos += step
                        step = 2 + (pos % 3)
        if not words:
            raise GeneratorError(f"corpus {self.source!r} holds no words")
        return sorted(set(words))


def _split_sentences(paragraph: str, lang: str) -> list[str]:
    if lang == "en":
        return [s.strip() for s in _EN_SENTENCE_END.split(paragraph)]
    return [s.strip() for s in _ZH_SENTENCE_END.split(paragraph)]


def _split_column(spec: str) -> tuple[str, str]:
    """("name", "column") of a corpus spec "name#column" (column "text" when none is named)."""
    path, _, column = spec.partition("#")
    return path, column or "text"


_STREAMED = (".txt", ".jsonl", ".parquet")


def _stream(path: str, column: str, files: InputFiles, max_chars: int) -> Iterator[str]:
    """The texts of a corpus file or folder/prefix, in order, until `max_chars` characters are out."""
    if files.is_folder(path):
        names = sorted(n for n in files.list(path) if _suffix(n) in _STREAMED)  # a subfolder ends in "/": no suffix
    else:
        names = [path]
    if not names:
        raise GeneratorError(f"corpus {path!r} holds no .txt, .jsonl or .parquet files")
    budget = max_chars
    for name in names:
        for text in _texts(name, column, files):
            if budget <= 0:
                return
            budget -= len(text)
            yield text


def _suffix(name: str) -> str:
    base = name.lower().split("?", 1)[0].rsplit("/", 1)[-1]
    return "." + base.rsplit(".", 1)[1] if "." in base else ""


def _open(name: str, files: InputFiles) -> io.BufferedIOBase:
    with setup_read(name, "corpus file"):
        return files.open(name)


def _texts(name: str, column: str, files: InputFiles) -> Iterator[str]:
    """The texts of one corpus file, streamed (a local file is never read whole)."""
    suffix = _suffix(name)
    if suffix not in (".txt", ".jsonl", ".parquet", ""):
        raise GeneratorError(f"corpus {name}: expected a .txt, .jsonl or .parquet file")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(_open(name, files))
            if column not in pf.schema_arrow.names:
                raise GeneratorError(f"corpus {name}: no column {column!r} (columns: {', '.join(pf.schema_arrow.names)})")
            for batch in pf.iter_batches(batch_size=1024, columns=[column]):
                yield from (str(t) for t in batch.column(0).to_pylist() if t)
        except GeneratorError:
            raise
        except Exception as e:  # pyarrow's errors for a file that is not Parquet
            raise GeneratorError(f"corpus {name}: not a Parquet file ({e})") from None
        return
    lines = (line.rstrip("\n") for line in io.TextIOWrapper(_open(name, files), encoding="utf-8"))
    if suffix != ".jsonl":
        yield from lines
        return
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield str(json.loads(line)[column])
            except (ValueError, KeyError, TypeError) as e:
                raise GeneratorError(f"corpus {name}: line {n} is not a JSON object with {column!r} ({e})") from None


def pick_lang(rng: np.random.Generator, lang: str) -> str:
    """The language of one sample: `lang` itself, or a draw from the sample's rng for 'mixed'."""
    if lang == "mixed":
        return LANGS[int(rng.integers(len(LANGS)))]
    if lang in LANGS:
        return lang
    raise GeneratorError(f"lang must be 'en', 'zh' or 'mixed', not {lang!r}")
