"""The render unit (generators.render_unit) without Prefect: a spec's fingerprints, its facts, and run_shard in a
plain Python loop writing the very shards the render flow writes."""
from __future__ import annotations

import json

import pytest

from generators.render_unit import RenderSpec, run_shard
from storage import DatasetWriter, StorageFiles, read_manifest


def test_fingerprints_are_stable_and_do_not_follow_the_count():
    spec = RenderSpec.of("document", count=5, seed=3, shard_rows=2)
    # Shard names carry these (shard-000000-de39c4b0.parquet ...): a change here orphans every written shard,
    # so it must come with a generator version bump, never by accident.
    assert spec.fingerprint == "72efce641b4ac9d3ef021eae87e9e7bca23e28bd3e874ba71b55b0e4e2a4fb55"
    assert [spec.shard_fingerprint(k)[:8] for k in range(3)] == ["de39c4b0", "7b846c73", "cea222be"]
    assert spec.shards() == [(0, 0, 2), (1, 2, 4), (2, 4, 5)]
    # a shard split across workers: consecutive pieces covering it, none empty
    assert RenderSpec.of("document", count=10, shard_rows=7).shard(0).parts(3) == [(0, 2), (2, 4), (4, 7)]
    assert spec.shard(2).parts(4) == [(4, 5)]

    grown = RenderSpec.of("document", count=6, seed=3, shard_rows=2)
    assert grown.fingerprint == spec.fingerprint  # growing a dataset keeps its fingerprint ...
    assert [grown.shard_fingerprint(k) for k in (0, 1)] == [spec.shard_fingerprint(k) for k in (0, 1)]
    assert grown.shard_fingerprint(2) != spec.shard_fingerprint(2)  # ... the old partial last shard is made anew
    for other in (dict(seed=4), dict(shard_rows=3), dict(params={"lang": "zh"}), dict(inputs={"corpus": {"": "ab"}})):
        assert RenderSpec.of("document", **{"count": 5, "seed": 3, "shard_rows": 2, **other}).fingerprint != spec.fingerprint
    with pytest.raises(ValueError, match="count must be at least 1"):
        RenderSpec.of("document", count=0, shard_rows=2)
    with pytest.raises(ValueError, match="shard rows must be at least 1"):
        RenderSpec.of("document", count=1, shard_rows=0)


def test_facts_round_trip_through_a_manifest():
    spec = RenderSpec.of("negative", count=3, seed=1, shard_rows=2, params={"source": "/photos", "size": 256},
                         inputs={"source": {"files": 3, "sha256": "ab" * 32}})
    facts = json.loads(json.dumps(spec.to_facts()))  # as a manifest stores them
    assert RenderSpec.from_facts(facts) == spec and RenderSpec.from_facts(facts).params == spec.params
    # A recorded fingerprint is kept as recorded (shard names carry it), even when today's rule would differ.
    assert RenderSpec.from_facts({**facts, "fingerprint": "cd" * 32}).shard_fingerprint(0) != spec.shard_fingerprint(0)
    with pytest.raises(ValueError, match=r"m\.json does not record seed, fingerprint"):
        RenderSpec.from_facts({k: v for k, v in facts.items() if k not in ("seed", "fingerprint")}, "m.json")


def test_a_plain_loop_writes_the_flows_shards(prefect_api, tmp_path):
    from flows.render import render

    flow_root, plain_root = str(tmp_path / "flow"), str(tmp_path / "plain")
    result = render(kind="table", count=3, seed=2, out=flow_root, shard_rows=2, workers=1, runner="thread", gallery=0)

    spec = RenderSpec.of("table", count=3, seed=2, shard_rows=2)
    writer = DatasetWriter(plain_root, "table", spec.fingerprint)
    shards = [run_shard(spec, k, writer, StorageFiles()) for k, _, _ in spec.shards()]
    plain = read_manifest(writer.commit([s.info for s in shards], spec.to_facts()))

    flow = read_manifest(result["manifest"])
    assert [(s.path, s.sha256, s.rows) for s in plain.shards] == [(s.path, s.sha256, s.rows) for s in flow.shards]
    assert RenderSpec.from_facts(flow.facts) == spec
    # Run again, the loop finds every shard whole and renders nothing.
    again = [run_shard(spec, k, writer, StorageFiles()) for k, _, _ in spec.shards()]
    assert all(r.reused for r in again) and [r.info.sha256 for r in again] == [s.info.sha256 for s in shards]
