"""`BlobFiles`: an `InputFiles` (generators.sources) over a dict of name -> bytes, a small object store for
generator tests that read remote-looking names without a server (the flows' tests use storage's, on moto S3)."""
from __future__ import annotations

import io
from typing import Callable


class BlobFiles:
    def __init__(self, blobs: dict[str, bytes], read: Callable[[str], bytes] | None = None):
        self.blobs = blobs
        self._read = read  # e.g. one that fails, to play an outage
        self.calls: list[tuple[str, str]] = []  # (method, name), in order

    def _under(self, prefix: str) -> list[str]:
        prefix = prefix.rstrip("/") + "/"
        return sorted(n for n in self.blobs if n.startswith(prefix))

    def is_folder(self, name: str) -> bool:
        return name.endswith("/") or bool(self._under(name))

    def list(self, folder: str) -> list[str]:
        self.calls.append(("list", folder))
        return self._under(folder)

    def walk(self, folder: str) -> tuple[str, list[str]]:
        self.calls.append(("walk", folder))
        name = folder.rstrip("/")
        rels = [n[len(name) + 1:] for n in self._under(name)]
        return name, sorted(rels, key=lambda r: (r.rpartition("/")[0], r.rpartition("/")[2]))

    def stat(self, name: str) -> str | None:
        return f"{len(self.blobs[name])}" if name in self.blobs else None

    def size(self, name: str) -> int:
        return len(self.read(name))

    def read(self, name: str) -> bytes:
        self.calls.append(("read", name))
        if self._read is not None:
            return self._read(name)
        try:
            return self.blobs[name]
        except KeyError:
            raise FileNotFoundError(f"{name}: no such object") from None

    def open(self, name: str) -> io.BytesIO:
        return io.BytesIO(self.read(name))

    def resolve(self, name: str, list_file: str) -> str:
        return name if "://" in name or name.startswith("/") else f"{list_file.rsplit('/', 1)[0]}/{name}"
