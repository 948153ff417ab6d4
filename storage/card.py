"""The dataset card: `datasets/<name>/README.md` with the Hugging Face YAML header, so a dataset folder uploads
to the Hub as is. One config per committed version (its shards as `data_files`), the newest one the default;
features from the shard schema; a body saying what the versions hold and how to load them.

Layout it describes: `shards/` holds Parquet files only (sidecars of unfinished work live in `shard-meta/`),
`manifests/` the committed versions.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterable

import yaml

from storage.location import Location
from storage.manifest import Manifest, manifest_versions, read_manifest
from storage.schema import SHARD_SCHEMA

CARD = "README.md"


def _features() -> list[dict[str, str]]:
    import json

    hf = json.loads(SHARD_SCHEMA.metadata[b"huggingface"])["info"]["features"]
    return [{"name": name, "dtype": "image" if f["_type"] == "Image" else f["dtype"]} for name, f in hf.items()]


def card_text(manifests: Iterable[Manifest]) -> str:
    """README.md for a dataset whose committed versions are `manifests` (oldest first)."""
    versions = list(manifests)
    if not versions:
        raise ValueError("a dataset card needs at least one committed version")
    newest = versions[-1]
    configs = [{"config_name": f"v{m.version:06d}", **({"default": True} if m is newest else {}),
                "data_files": [{"split": "train", "path": sorted(s.path for s in m.shards)}]} for m in versions]
    header = {
        "configs": configs,
        "dataset_info": {"features": _features(), "splits": [{"name": "train", "num_examples": newest.rows}]},
        "tags": ["varyflow", "document-ocr", *sorted(newest.counts.get("kind", {}))],
        "language": sorted({"en" if k == "en" else "zh" for k in newest.counts.get("lang", {}) if k in ("en", "zh")}) or None,
    }
    header = {k: v for k, v in header.items() if v}
    lines = [
        "---", yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
        f"# {newest.dataset}", "",
        "Image-text pairs rendered by [varyflow](https://github.com/varyflow/varyflow) for Vary-style document "
        "models. Each row: `image` (PNG), `text` (the target), `prompt`, `kind`, `lang`, `width`, `height`, and "
        "`meta` (JSON: generator, version and every sampled parameter, so a row can be rendered again).", "",
        "| version | rows | shards | kinds | languages | rejects | committed |", "|---|---|---|---|---|---|---|",
    ]
    for m in reversed(versions):
        kinds = ", ".join(f"{k} {n}" for k, n in m.counts.get("kind", {}).items())
        langs = ", ".join(f"{k} {n}" for k, n in m.counts.get("lang", {}).items())
        rejects = ", ".join(f"{k} {n}" for k, n in m.rejects.items()) or "0"
        when = dt.datetime.fromtimestamp(m.created, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if m.created else ""
        lines.append(f"| v{m.version:06d} | {m.rows} | {len(m.shards)} | {kinds} | {langs} | {rejects} | {when} |")
    facts = newest.facts
    if facts.get("kind"):
        lines += ["", f"Newest version: generator `{facts['kind']}` {facts.get('generator_version', '')}, seed "
                      f"{facts.get('seed')}, {facts.get('count')} sample indices, parameters `{facts.get('params', {})}`."]
    lines += ["", "Load the newest version, or one by name:", "", "```python",
              "from datasets import load_dataset", f'ds = load_dataset("parquet", data_dir="shards")  # every shard ever written',
              f'ds = load_dataset("path/to/{newest.dataset}", "v{newest.version:06d}")  # exactly one committed version',
              "```", "", "The manifests in `manifests/` list each version's shards with sha256; "
              "`varyflow data files manifests/vNNNNNN.json` prints them for `data_files=`.", ""]
    return "\n".join(lines)


def write_card(dataset_dir: str | Location) -> str:
    """(Re)write the card from every committed version; returns its location."""
    folder = Location.parse(dataset_dir)
    versions = [read_manifest(loc) for _, loc in manifest_versions(folder)]
    target = folder / CARD
    target.write_bytes(card_text(versions).encode())
    return target.uri
