"""The local render pool (`flows.runners.LocalPool`): jobs started ahead of a render, before Prefect is up, are
taken over by the render's own call for them (never rendered twice), with their progress; the CLI's head start
writes the bytes a render without one writes."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pytest


def _count_to(n: int, progress: Callable[[int], None] | None = None) -> int:
    """A pool job: counts to n, reporting each step (runs in a pool worker)."""
    for i in range(1, n + 1):
        if progress is not None:
            progress(i)
    return n


def test_a_job_started_ahead_is_taken_over_by_the_same_call_and_relays_its_progress():
    from flows.runners import LocalPool

    pool = LocalPool(1)
    try:
        pool.start_ahead(_count_to, 5)
        assert pool.has_ahead(_count_to, 5) and not pool.has_ahead(_count_to, 6)
        heard: list[int] = []
        future = pool.submit(_count_to, 5, progress=heard.append)
        assert future.result(timeout=120) == 5
        assert pool.ahead_left() == 0 and not pool.has_ahead(_count_to, 5)  # taken once, never twice
        deadline = time.monotonic() + 60  # the last report reaches the reader thread just after the result
        while (not heard or heard[-1] != 5) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert heard and heard[-1] == 5  # what was done before the caller attached, then the rest

        other = pool.submit(_count_to, 6)  # a call nobody started ahead runs as usual
        assert other.result(timeout=120) == 6

        pool.start_ahead(_count_to, 7)
        pool.drop_ahead()  # the render asked for other work: forgotten, not handed to a later caller
        assert pool.ahead_left() == 0 and not pool.has_ahead(_count_to, 7)
    finally:
        pool.close()


def test_a_shard_is_split_across_workers_only_into_parts_worth_a_generator_each():
    from flows.runners import MIN_SPLIT_PART, split_parts

    assert split_parts(3, 512, 2) == 1  # enough shards: each worker renders whole ones
    assert split_parts(1, 512, 2) == 2 and split_parts(1, 512, 8) == 8 and split_parts(3, 512, 8) == 3
    assert split_parts(1, 8, 2) == 1  # 8 samples: one worker, one generator, as a plain loop would
    assert split_parts(1, 2 * MIN_SPLIT_PART, 4) == 2 and split_parts(1, 2 * MIN_SPLIT_PART - 1, 4) == 1


def test_the_cli_head_start_is_claimed_by_the_render_and_writes_the_same_shards(prefect_api, tmp_path, monkeypatch,
                                                                                capsys):
    """`varyflow render` starts its first shards (one per worker) before Prefect imports; the render's shard tasks
    take them over, none is left over or rendered twice, and the shards are byte-identical to a render without a
    head start (thread runner). A rerun, whose shards exist, starts nothing ahead."""
    from flows import runners
    from flows.cli import main
    from flows.render import render
    from storage import read_manifest

    started: list[tuple] = []
    left: list[int] = []
    start_ahead, drop = runners.LocalPool.start_ahead, runners.active_pool_drop_ahead
    def record(self, fn, *a, **k):  # a whole shard by its index, a part by its index range
        started.append(("shard", a[3]) if fn.__name__ == "shard_job" else ("part", a[3], a[4]))
        return start_ahead(self, fn, *a, **k)

    monkeypatch.setattr(runners.LocalPool, "start_ahead", record)
    monkeypatch.setattr(runners, "active_pool_drop_ahead", lambda: (left.append(drop()), left[-1])[1])

    def cli_render(out: Path, count: int, *more: str) -> dict:
        capsys.readouterr()
        assert main(["render", "document", "--count", str(count), "--seed", "2", "--workers", "2", "--out", str(out),
                     "--json", *more]) == 0
        return read_manifest(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["manifest"])

    # three shards of 2 on 2 workers: shards 0 and 1 start ahead, rendered and written in the workers
    many = cli_render(tmp_path / "many", 6, "--shard-rows", "2")
    assert started == [("shard", 0), ("shard", 1)] and left == [0]
    # one shard of 3 on 2 workers: too few samples to split (a part costs a generator), it starts ahead whole ...
    started.clear()
    cli_render(tmp_path / "whole", 3)
    assert started == [("shard", 0)] and left == [0, 0]
    # ... unless parts may be that small: then its two parts start ahead
    monkeypatch.setattr(runners, "MIN_SPLIT_PART", 1)
    started.clear()
    one = cli_render(tmp_path / "one", 3)
    assert started == [("part", 0, 1), ("part", 1, 3)] and left == [0, 0, 0]
    # a rerun into the same dataset: its shards exist, nothing starts ahead (and nothing is left over)
    started.clear()
    cli_render(tmp_path / "many", 6, "--shard-rows", "2")
    assert started == []

    for manifest, count, shard_rows in ((many, 6, 2), (one, 3, 512)):
        plain = render(kind="document", count=count, seed=2, shard_rows=shard_rows, out=str(tmp_path / f"plain-{count}"),
                       workers=1, runner="thread")
        assert [s.sha256 for s in manifest.shards] == [s.sha256 for s in read_manifest(plain["manifest"]).shards]


if __name__ == "__main__":
    pytest.main([__file__, "-q"])
