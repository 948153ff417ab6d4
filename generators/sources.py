"""Input files, local or remote: the per-sample inputs of pdf and negative (a folder, a list of names, or a
.txt list file) and the set-up files of the others (corpora, formula lists). Remote names are read and listed
through callables the driver injects (`reader(name) -> bytes`, `lister(prefix) -> names`), so generators
never import storage.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

from generators.base import GeneratorError, Reject

Reader = Callable[[str], bytes]
Lister = Callable[[str], list[str]]


def is_remote(name: str) -> bool:
    return "://" in name and not name.startswith("file://")


def list_sources(source: str | Sequence[str] | None, reader: Reader | None = None,
                 lister: Lister | None = None) -> list[str]:
    """The sorted input names `source` stands for. A folder lists its regular, non-hidden files (every
    one: a non-PDF file in a PDF folder is a reject, not silently ignored) and the LaTeX paper folders in
    it, or is itself one input when it is a paper folder; a `.txt` file lists one name
    per line (relative names resolve against the list's folder); a remote prefix needs `lister`."""
    if source is None:
        raise GeneratorError("this kind needs a source: a folder, a list of files or a .txt list file")
    if not isinstance(source, str):
        return sorted(str(s) for s in source)
    if is_remote(source):
        if source.endswith(".txt"):
            return _names_from_list(_read_remote(source, reader).decode("utf-8"), base=source.rsplit("/", 1)[0])
        if lister is None:
            raise GeneratorError(f"source {source!r} is a remote prefix; pass a lister (or a list of names)")
        return sorted(lister(source))
    path = Path(source.removeprefix("file://"))
    if path.is_dir():
        from generators.tex_source import is_paper_folder

        # A LaTeX paper's folder (a top-level .tex with \documentclass) is one input; so is each such
        # folder inside a folder of inputs (latex_page --source). PDF and photo folders never hold one.
        if is_paper_folder(str(path)):
            return [str(path)]
        return sorted(str(p) for p in path.iterdir() if not p.name.startswith(".")
                      and (p.is_file() or p.is_dir() and is_paper_folder(str(p))))
    if path.is_file() and path.suffix == ".txt":
        return _names_from_list(path.read_text("utf-8"), base=str(path.parent))
    raise GeneratorError(f"source not found or not a folder/.txt list: {source}")


def describe_source(source: str | Sequence[str] | None) -> str | dict | None:
    """How `source` is recorded in meta: a name as is; a list by its length and digest, since every
    sample's meta carries the params and a list of thousands of names would swamp it."""
    if source is None or isinstance(source, str):
        return source
    names = sorted(str(s) for s in source)
    return {"names": len(names), "sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()}


def read_source(name: str, reader: Reader | None, max_bytes: int) -> bytes:
    """Bytes of one input, or Reject("too_large"/"unreadable") naming it."""
    if is_remote(name):
        data = _read_remote(name, reader, reject=True)
    else:
        path = name.removeprefix("file://")
        try:
            size = os.stat(path).st_size
            if size > max_bytes:
                raise Reject("too_large", f"{name}: {size} bytes > max_bytes {max_bytes}", source=name)
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise Reject("unreadable", f"{name}: {e.strerror or e}", source=name) from None
    if len(data) > max_bytes:
        raise Reject("too_large", f"{name}: {len(data)} bytes > max_bytes {max_bytes}", source=name)
    return data


def read_setup_file(name: str, reader: Reader | None, what: str = "file") -> bytes:
    """Bytes of a file a generator needs before its first sample (a corpus, a formula list). Unlike
    `read_source`, a failure is a GeneratorError: without this file no sample can be made."""
    if is_remote(name):
        return _read_remote(name, reader, what=what)
    path = Path(name.removeprefix("file://"))
    if not path.is_file():
        raise GeneratorError(f"{what} not found: {path}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise GeneratorError(f"cannot read {what} {path}: {e.strerror or e}") from None


def _read_remote(name: str, reader: Reader | None, reject: bool = False, what: str = "file") -> bytes:
    if reader is None:
        raise GeneratorError(f"{what} {name!r} is remote; pass a reader to fetch it")
    try:
        return reader(name)
    except Exception as e:  # the injected reader's own error types are unknown here
        if reject:
            raise Reject("unreadable", f"{name}: {type(e).__name__}: {e}", source=name) from None
        raise GeneratorError(f"cannot read {what} {name}: {e}") from e


def _names_from_list(text: str, base: str) -> list[str]:
    names = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if is_remote(line) or os.path.isabs(line):
            names.append(line)
        else:
            names.append(f"{base}/{line}")
    return sorted(names)


class SourceFiles:
    """The input files of a generator, listed lazily (a remote prefix costs a listing) and indexed:
    sample index i is file i of the sorted list."""

    def __init__(self, source: str | Sequence[str] | None, reader: Reader | None = None, lister: Lister | None = None):
        self.source, self.reader, self.lister = source, reader, lister
        self._files: list[str] | None = None

    @property
    def files(self) -> list[str]:
        if self._files is None:
            self._files = list_sources(self.source, self.reader, self.lister)
        return self._files

    def __len__(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        if not 0 <= index < len(self.files):
            raise Reject("no_such_file", f"index {index} outside the {len(self.files)} source files")
        return self.files[index]


class FileSourced:
    """Mixin for kinds whose sample index i is input file i (`self.sources`, a `SourceFiles`)."""

    sources: SourceFiles

    @property
    def files(self) -> list[str]:
        return self.sources.files

    def __len__(self) -> int:
        """Number of input files (indices 0..len-1)."""
        return len(self.files)
