"""Scale-out on an existing engine, under a fault: a Dask distributed cluster of two worker processes renders to
an S3 root (moto on 127.0.0.1) through `runner_address`; one worker is killed while shards are being rendered.
The run completes with exactly the rows asked for, no duplicate ids and one committed manifest."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.s3]


def test_dask_cluster_survives_a_killed_worker_rendering_to_s3(prefect_api, s3_endpoint, s3_bucket):
    from distributed import Client, LocalCluster

    from flows.render import render
    from storage import Location, StreamingReader, read_manifest

    root = f"s3://{s3_bucket}/data"
    sidecars = Location.parse(root) / "datasets/document/shard-meta"
    # worker processes inherit this environment: the Prefect API and the S3 endpoint of the test
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        killed: list[int] = []
        finished = threading.Event()

        def kill_one_when_a_shard_landed() -> None:
            while not sidecars.list():
                if finished.wait(0.2):
                    return
            if len(sidecars.list()) >= 6:
                return  # every shard landed already: killing now would prove nothing
            pid = sorted(pids.values())[0]
            os.kill(pid, signal.SIGKILL)  # mid-run: the other shards are still rendering or queued
            killed.append(pid)

        killer = threading.Thread(target=kill_one_when_a_shard_landed, daemon=True)
        killer.start()
        result = render(kind="document", count=12, seed=2, out=root, shard_rows=2, runner="dask",
                        runner_address=cluster.scheduler_address, gallery=0)
        finished.set()
        killer.join(timeout=60)
        assert killed, "the worker was not killed while shards were still rendering"
        assert sorted(client.run(os.getpid).values()) != sorted(pids.values())  # a worker was really replaced
    assert result["rows"] == 12 and result["shards"] == 6
    ids = [row["id"] for row in StreamingReader(result["manifest"], shuffle=False, columns=["id"])]
    assert sorted(ids) == [f"document-s2-{i:09d}" for i in range(12)]  # exact rows, no duplicates
    assert [loc.name for loc in (Location.parse(root) / "datasets/document/manifests").list()] == ["v000001.json"]
    assert read_manifest(result["manifest"]).rows == 12
