"""The mix flow: committed manifests + weights -> a mixture spec, the small JSON a training stage reads.

Presets follow the stage data of the Vary paper (arXiv 2312.06109, its data-engine sections): Vary-tiny learns
the new vocabulary on documents, PDF pages, charts and negatives; Vary-base integrates it on LaTeX pages, formulas, tables and charts.
Weights are relative; kinds without a committed dataset are left out and the rest renormalised, and the
spec says which were missing.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.common import artifact_key, default_root

FORMAT = "varyflow.mixture/1"
MIX_PRESETS: dict[str, dict[str, float]] = {
    # ~2M document pages (synthetic + PDF), 750k charts, 120k negatives in the paper's tiny stage
    "vary-tiny": {"document": 0.35, "pdf": 0.35, "chart": 0.12, "echart": 0.08, "negative": 0.10},
    # 0.9M LaTeX pages, formulas and tables from them, 200k charts in the base stage
    "vary-base": {"latex_page": 0.40, "formula": 0.25, "table": 0.20, "chart": 0.15},
}


def resolve_preset(preset: str, root: str) -> tuple[dict[str, str], list[str]]:
    """dataset -> newest manifest URI for the preset's datasets that exist, and the missing ones."""
    from storage.manifest import latest_manifest

    if preset not in MIX_PRESETS:
        raise ValueError(f"unknown mix preset {preset!r}; known: {', '.join(MIX_PRESETS)}")
    found, missing = {}, []
    for dataset in MIX_PRESETS[preset]:
        uri = latest_manifest(root, dataset)
        if uri:
            found[dataset] = uri
        else:
            missing.append(dataset)
    return found, missing


def build_mixture(manifests: dict[str, str], weights: dict[str, float], name: str, missing: list[str] = ()) -> dict[str, Any]:
    from storage import read_manifest

    if not manifests:
        raise ValueError(f"mixture {name!r}: no committed manifests to mix")
    unknown = set(manifests) - set(weights)
    if unknown:
        raise ValueError(f"mixture {name!r}: no weight for {', '.join(sorted(unknown))}")
    total = sum(weights[d] for d in manifests)
    if total <= 0:
        raise ValueError(f"mixture {name!r}: weights must be positive")
    components = []
    for dataset, uri in sorted(manifests.items()):
        m = read_manifest(uri)
        components.append({"dataset": dataset, "manifest": m.uri, "sha256": m.sha256, "version": m.version,
                           "rows": m.rows, "weight": round(weights[dataset] / total, 6)})
    return {
        "format": FORMAT,
        "name": name,
        "manifests": [c["manifest"] for c in components],
        "weights": [c["weight"] for c in components],
        "components": components,
        "missing": sorted(missing),
    }


def write_mixture(spec: dict[str, Any], root: str) -> str:
    """Stored under mixtures/, named by content so the same mix is written once."""
    from storage import Location

    body = json.dumps(spec, indent=1, sort_keys=True).encode()
    loc = Location.parse(root) / "mixtures" / f"{spec['name']}-{hashlib.sha256(body).hexdigest()[:12]}.json"
    if not loc.exists():
        loc.write_bytes(body)
    return loc.uri


def read_mixture(uri: str) -> dict[str, Any]:
    from storage import Location

    spec = json.loads(Location.parse(uri).read_bytes())
    if spec.get("format") != FORMAT:
        raise ValueError(f"{uri} is not a varyflow mixture spec")
    return spec


@flow(name="mix", flow_run_name="mix-{name}")
def mix(name: str, preset: str | None = None, manifests: dict[str, str] | None = None,
        weights: dict[str, float] | None = None, out: str | None = None) -> dict[str, Any]:
    """A mixture of `manifests` (dataset -> URI) with `weights`, or of a preset's newest manifests under
    `out`. Returns the spec plus its "uri"."""
    logger = get_run_logger()
    root = out or default_root()
    missing: list[str] = []
    if preset:
        found, missing = resolve_preset(preset, root)
        manifests = {**found, **(manifests or {})}
        weights = {**MIX_PRESETS[preset], **(weights or {})}
    if missing:
        logger.warning("mixture %s: no committed dataset for %s; their weight goes to the others", name, ", ".join(missing))
    spec = build_mixture(manifests or {}, weights or {}, name, missing)
    spec["created"] = time.time()
    uri = write_mixture({k: v for k, v in spec.items() if k != "created"}, root)
    create_table_artifact(
        [{k: c[k] for k in ("dataset", "version", "rows", "weight", "manifest")} for c in spec["components"]],
        key=artifact_key("mix", name), description=f"mixture {name} ({uri})")
    logger.info("mixture %s: %s -> %s", name, ", ".join(f"{c['dataset']} {c['weight']:.2f}" for c in spec["components"]), uri)
    return {**spec, "uri": uri}
