"""The held-out split: a row belongs to it when the sha256 of its sample id falls below the run's
`holdout` fraction. It depends on nothing but the id, so it is the same for every rank, worker, epoch,
mixture and re-render, and the training stream never yields those rows; evaluation reads exactly them."""
from __future__ import annotations

import hashlib
from typing import Any

RULE = "sha256(id) / 2**64 < fraction"


def in_holdout(sample_id: str, fraction: float) -> bool:
    if fraction <= 0.0:
        return False
    h = int.from_bytes(hashlib.sha256(str(sample_id).encode()).digest()[:8], "big")
    return h < fraction * 2 ** 64


def count_rows(manifests: list[str], fraction: float) -> dict[str, int]:
    """Rows of the manifests on each side of the split, reading only the id column of each shard."""
    import io

    import pyarrow.parquet as pq
    from storage import Location, read_manifest

    train = held = 0
    for uri in manifests:
        for shard in read_manifest(uri).shards:
            ids = pq.read_table(io.BytesIO(Location.parse(shard.uri).read_bytes()), columns=["id"]).column("id").to_pylist()
            n = sum(in_holdout(i, fraction) for i in ids)
            held += n
            train += len(ids) - n
    return {"train": train, "heldout": held}


def record(fraction: float, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """What lineage says about the split."""
    return {"by": RULE, "fraction": fraction, **({"rows": counts} if counts else {})}
