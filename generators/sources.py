"""Input files: the per-sample inputs of pdf, negative and latex_page (a folder, a list of names, or a .txt list
file) and the set-up files of the others (corpora, formula lists, chart records).

Generators read them through one small protocol, `InputFiles`, and never tell a local path from a remote name
themselves: a render hands them storage's implementation (`storage.StorageFiles`: local paths and `s3://` names
alike), so generators never import storage. A generator built on its own (a test, a notebook) reads this
machine's files (`LocalFiles`).
"""
from __future__ import annotations

import hashlib
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol, Sequence

from generators.base import GeneratorError, Reject


class InputFiles(Protocol):
    """Where a generator's input files are read. A name that does not exist raises FileNotFoundError (or a
    subclass); any other exception is the store's own."""

    def is_folder(self, name: str) -> bool:
        """Whether `name` is a folder (or a prefix) of files rather than one file."""

    def list(self, folder: str) -> list[str]:
        """The names in `folder`, sorted: a folder's entries (a subfolder's name ends with "/"); under a prefix
        of a store without folders (S3), every object, however deep."""

    def walk(self, folder: str) -> tuple[str, list[str]]:
        """(`folder`'s name as the store spells it, without a trailing "/"; every file below it at any depth as a
        path relative to it, "/"-separated, sorted by (folder, name)). Hidden files count; a link to a file is a
        file; a link to a folder is not entered. What a LaTeX paper's folder is made of."""

    def stat(self, name: str) -> str | None:
        """A short text that changes when the file does (size and version); None when there is none."""

    def size(self, name: str) -> int: ...

    def open(self, name: str) -> BinaryIO: ...

    def read(self, name: str) -> bytes: ...

    def resolve(self, name: str, list_file: str) -> str:
        """`name` as written in the list file `list_file`: relative names are under the list's folder."""


class LocalFiles:
    """This machine's files (`InputFiles`), for a generator built without a store; remote names are not found."""

    @staticmethod
    def _path(name: str) -> Path:
        return Path(name.removeprefix("file://"))

    def is_folder(self, name: str) -> bool:
        return self._path(name).is_dir()

    def list(self, folder: str) -> list[str]:
        path = self._path(folder)
        if not path.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
        return sorted(f"{p}/" if p.is_dir() else str(p) for p in path.iterdir()
                      if not p.name.startswith(".") and (p.is_file() or p.is_dir()))

    def walk(self, folder: str) -> tuple[str, list[str]]:
        path = self._path(folder)
        if not path.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
        out: list[str] = []
        for root, _, names in sorted(os.walk(path)):
            rel = os.path.relpath(root, path).replace(os.sep, "/")
            out += [n if rel == "." else f"{rel}/{n}" for n in sorted(names)]
        return str(path), out

    def stat(self, name: str) -> str | None:
        try:
            st = os.stat(self._path(name))
        except OSError:
            return None
        return f"{st.st_size}\t{st.st_mtime_ns}"

    def size(self, name: str) -> int:
        return os.stat(self._path(name)).st_size

    def open(self, name: str) -> BinaryIO:
        return open(self._path(name), "rb")

    def read(self, name: str) -> bytes:
        return self._path(name).read_bytes()

    def resolve(self, name: str, list_file: str) -> str:
        return name if os.path.isabs(name) else f"{self._path(list_file).parent}/{name}"


def input_files(files: InputFiles | None) -> InputFiles:
    """`files`, or this machine's when none was given."""
    return files if files is not None else LocalFiles()


def list_sources(source: str | Sequence[str] | None, files: InputFiles | None = None) -> list[str]:
    """The sorted input names `source` stands for. A folder (or prefix) lists its files (every one: a non-PDF
    file in a PDF folder is a reject, not silently ignored) and the LaTeX paper folders in it, or is itself one
    input when it is a paper folder; a `.txt` file lists one name per line (relative names resolve against the
    list's folder); a list of names is taken as it is."""
    return listed_inputs(source, files)[0]


def listed_inputs(source: str | Sequence[str] | None, files: InputFiles | None = None) -> tuple[list[str], set[str]]:
    """(`list_sources(source)`, the names among them known from the listing to be folders taken as one input:
    LaTeX papers' folders)."""
    if source is None:
        raise GeneratorError("this kind needs a source: a folder, a list of files or a .txt list file")
    if not isinstance(source, str):
        return sorted(str(s) for s in source), set()
    names, folders = _listed(source, input_files(files))
    return names, folders or set()


def _listed(source: str, files: InputFiles) -> tuple[list[str], set[str] | None]:
    """(the names of a folder or .txt list, the names among them that are paper folders: None for a list, whose
    names the store is asked about)."""
    if files.is_folder(source):
        # A LaTeX paper's folder (`is_paper_folder`) is one input; so is each such folder inside a folder of
        # inputs (latex_page --source). PDF and photo folders never hold one.
        name, below = files.walk(source)
        if is_paper_folder(name, below, files):
            return [name], {name}
        return _inputs_of_folder(source, name, below, files)
    if source.endswith(".txt"):
        with setup_read(source, "source list"):
            text = files.read(source).decode("utf-8")
        return _names_from_list(text, source, files), None
    raise GeneratorError(f"source not found or not a folder/.txt list: {source}")


def _inputs_of_folder(source: str, name: str, below: list[str], files: InputFiles) -> tuple[list[str], set[str]]:
    """The inputs of a folder that is not itself a paper: its files, and its subfolders that are papers. A store
    with folders lists a subfolder by its name ending in "/" (one that is no paper is skipped, as before); a store
    without them lists every object, and the objects of a subfolder that is a paper are that one input."""
    names: set[str] = set()
    papers: set[str] = set()
    inside: dict[str, list[str]] = {}  # a store without folders: subfolder -> the files `below` it
    for r in below:
        top, sep, rest = r.partition("/")
        if sep:
            inside.setdefault(top, []).append(rest)
    checked: dict[str, bool] = {}  # subfolder -> whether it is a paper

    def paper(folder: str, its: list[str]) -> bool:
        if folder not in checked:
            checked[folder] = is_paper_folder(folder, its, files)
        return checked[folder]

    for entry in files.list(source):
        if entry.endswith("/"):
            folder, its = files.walk(entry)
            if paper(folder, its):
                names.add(folder)
                papers.add(folder)
            continue
        rel = entry[len(name) + 1:] if entry.startswith(name + "/") else ""
        top = rel.partition("/")[0] if "/" in rel else None
        if top is not None and paper(f"{name}/{top}", inside.get(top, [])):
            names.add(f"{name}/{top}")
            papers.add(f"{name}/{top}")
        else:
            names.add(entry)
    return sorted(names), papers


# The files beside a paper's main file that make a folder a folder of inputs instead (arXiv source archives).
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".gz")


def is_paper_folder(name: str, below: list[str], files: InputFiles) -> bool:
    """Whether folder `name` (`below`: its files, as `InputFiles.walk` gives them) is one LaTeX paper: exactly
    one `.tex` file at its top level has `\\documentclass` (the main file; the others are its parts) and no
    source archive sits beside it. A folder of single-file papers has several main files; a folder of inputs that
    holds archives is not a paper either. A top-level file that cannot be read (a broken link) counts as none."""
    top = [r for r in below if "/" not in r]
    if any(r.lower().endswith(ARCHIVE_SUFFIXES) and files.stat(f"{name}/{r}") is not None for r in top):
        return False
    mains = 0
    for r in top:
        if r.endswith(".tex"):
            try:
                with files.open(f"{name}/{r}") as f:
                    head = f.read(1 << 20)
            except FileNotFoundError:
                continue
            mains += bool(re.search(rb"^[^%\n]*\\documentclass", head, re.M))
            if mains > 1:  # a folder of papers: no need to read the rest
                return False
    return mains == 1


def describe_source(source: str | Sequence[str] | None) -> str | dict | None:
    """How `source` is recorded in meta: a name as is; a list by its length and digest, since every
    sample's meta carries the params and a list of thousands of names would swamp it."""
    if source is None or isinstance(source, str):
        return source
    names = sorted(str(s) for s in source)
    return {"names": len(names), "sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()}


def read_source(name: str, files: InputFiles | None, max_bytes: int) -> bytes:
    """Bytes of one input, or Reject("too_large"/"unreadable") naming it."""
    files = input_files(files)
    try:
        with files.open(name) as f:
            data = f.read(max_bytes + 1)  # a local file larger than allowed is never read whole
    except Exception as e:  # the store's own error types are unknown here
        raise Reject("unreadable", f"{name}: {_why(e)}", source=name) from None
    if len(data) > max_bytes:
        try:
            size = f"{files.size(name)} bytes"
        except Exception:
            size = "more bytes"
        raise Reject("too_large", f"{name}: {size} > max_bytes {max_bytes}", source=name)
    return data


def read_setup_file(name: str, files: InputFiles | None, what: str = "file") -> bytes:
    """Bytes of a file a generator needs before its first sample (a corpus, a formula list). Unlike
    `read_source`, a failure is a GeneratorError: without this file no sample can be made."""
    with setup_read(name, what):
        return input_files(files).read(name)


@contextmanager
def setup_read(name: str, what: str) -> Iterator[None]:
    """Reads of a set-up file (`read_setup_file`, a streamed corpus): a missing file or any error of the store is
    a GeneratorError naming `what` and `name`."""
    try:
        yield
    except FileNotFoundError:
        raise GeneratorError(f"{what} not found: {name}") from None
    except GeneratorError:
        raise
    except Exception as e:  # the store's own error types are unknown here
        raise GeneratorError(f"cannot read {what} {name}: {_why(e)}") from e


def _why(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _names_from_list(text: str, list_file: str, files: InputFiles) -> list[str]:
    names = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(files.resolve(line, list_file))
    return sorted(names)


class SourceFiles:
    """The input files of a generator, listed lazily (a remote prefix costs a listing) and indexed:
    sample index i is file i of the sorted list."""

    def __init__(self, source: str | Sequence[str] | None, files: InputFiles | None = None):
        self.source, self.inputs = source, input_files(files)
        self._files: list[str] | None = None
        self._folders: set[str] | None = None  # the paper folders of a listed folder; None: names from a list

    @property
    def files(self) -> list[str]:
        if self._files is None:
            if isinstance(self.source, str):
                self._files, self._folders = _listed(self.source, self.inputs)
            else:
                self._files = list_sources(self.source, self.inputs)
        return self._files

    def __len__(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        if not 0 <= index < len(self.files):
            raise Reject("no_such_file", f"index {index} outside the {len(self.files)} source files")
        return self.files[index]

    def is_folder(self, name: str) -> bool:
        """Whether input `name` is a folder taken as one input (a LaTeX paper's); known from the listing for a
        folder source, asked of the store for names from a list."""
        self.files  # noqa: B018 (lists once)
        return name in self._folders if self._folders is not None else self.inputs.is_folder(name)

    def read(self, name: str, max_bytes: int) -> bytes:
        return read_source(name, self.inputs, max_bytes)


class FileSourced:
    """Mixin for kinds whose sample index i is input file i (`self.sources`, a `SourceFiles`)."""

    sources: SourceFiles

    @property
    def files(self) -> list[str]:
        return self.sources.files

    def __len__(self) -> int:
        """Number of input files (indices 0..len-1)."""
        return len(self.files)
