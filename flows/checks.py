"""Checks a render request passes before any work starts: the CLI runs them before Prefect starts, the render
flow first thing (a deployment run fails in its first second, not after its shards), and the deployment
tests on every deployment of prefect.yaml. Each failure is a ValueError whose message is the one line to
print."""
from __future__ import annotations

import inspect
from typing import Any

# Constructor parameters the driver injects (the input files storage serves, a shared browser): not settable.
INJECTED = ("files", "renderer")


def kind_parameters(kind: str) -> dict[str, inspect.Parameter]:
    """The parameters a kind's generator takes from a user (`--params` keys, `--source`, `--lang`)."""
    from generators import generator_class

    sig = inspect.signature(generator_class(kind).__init__)
    return {name: p for name, p in sig.parameters.items()
            if name != "self" and name not in INJECTED and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def needs_source(kind: str) -> bool:
    """Kinds whose sample index is an input file (their class says: `requires_source`): nothing to render without
    a source. Others may take one optionally (latex_page from real LaTeX sources, formula from a list file)."""
    from generators import generator_class

    return generator_class(kind).requires_source


def describe_kind(kind: str) -> str:
    """One line for `varyflow render --help`: what the kind makes and what it needs."""
    import importlib

    from generators import KINDS

    doc = (importlib.import_module(KINDS[kind].split(":")[0]).__doc__ or "").strip()
    what = " ".join(doc.split("\n\n")[0].split())
    what = what.split(": ", 1)[1] if what.startswith(f"`{kind}`") and ": " in what else what
    what = what.split(". ")[0].rstrip(".")
    params = [p for p in kind_parameters(kind) if not (p == "source" and needs_source(kind))]
    need = "needs --source (folder, .txt list or s3:// prefix)" if needs_source(kind) else "no input needed"
    return f"{kind}: {what}; {need}; params: {', '.join(params) or 'none'}"


def check_params(kind: str, params: dict[str, Any]) -> None:
    """Unknown parameter names, and a kind that needs a source given none."""
    from generators import KINDS

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
    known = kind_parameters(kind)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{kind} has no parameter {', '.join(map(repr, unknown))}; it takes: {', '.join(known)}")
    if needs_source(kind) and not params.get("source"):
        raise ValueError(f"{kind} reads input files: give --source (a folder, a .txt list or an s3:// prefix)")


def check_source(kind: str, source: Any) -> int:
    """The number of usable input files `source` stands for; a ValueError when it is missing or has none."""
    from generators.base import GeneratorError
    from generators.sources import list_sources
    from storage import StorageFiles

    try:
        names = list_sources(source, StorageFiles())
    except GeneratorError as e:
        raise ValueError(f"--source {source}: {e}") from None
    if not names:
        raise ValueError(f"--source {source}: no files there")
    from generators import generator_class

    suffixes = generator_class(kind).source_suffixes
    usable = [n for n in names if not suffixes or n.lower().endswith(suffixes)]
    if not usable:
        raise ValueError(f"--source {source}: none of its {len(names)} files is usable by {kind} ({', '.join(suffixes)})")
    return len(usable)


def check_out(out: str) -> None:
    """That the storage root can be written: a local folder is created and probed; an S3 bucket must exist
    and be listable (storage's `Location.probe`)."""
    from storage import Location
    from storage.errors import StorageError

    try:
        Location.parse(out).probe()
    except StorageError as e:
        raise ValueError(f"--out: {e}") from None


def check_render(kind: str, params: dict[str, Any], out: str | None, list_source: bool = True) -> None:
    """Everything a render checks up front (see module doc). `list_source=False` leaves listing the source to
    the caller (the flow lists it once anyway for its fingerprint, and fails on an empty one)."""
    from flows.common import default_root

    check_params(kind, params)
    if list_source and params.get("source") and needs_source(kind):
        check_source(kind, params["source"])
    check_out(out or default_root())


class TooManyRejects(ValueError):
    """A render whose reject rate is over its limit: nothing is committed."""


def check_reject_rate(dataset: str, rows: int, rejects: dict[str, int], limit: float | None) -> None:
    """Raise TooManyRejects when rejects / (rows + rejects) exceeds `limit`, naming the top reasons."""
    if limit is None:
        return
    if not 0 <= limit <= 1:
        raise ValueError(f"max_reject_rate must be between 0 and 1, got {limit}")
    total = sum(rejects.values())
    rate = total / (rows + total) if rows + total else 0.0
    if rate > limit:
        top = sorted(rejects.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        raise TooManyRejects(f"{dataset}: {total} of {rows + total} samples rejected ({rate:.1%} > max_reject_rate "
                             f"{limit:.1%}), nothing committed; top reasons: " + ", ".join(f"{r} {n}" for r, n in top))
