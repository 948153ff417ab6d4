"""Which task runner spreads shard tasks: a local process pool by default, Dask or Ray for a cluster."""
from __future__ import annotations

from typing import Any

RUNNERS = ("process", "thread", "dask", "ray")


def make_task_runner(kind: str = "process", workers: int = 2, address: str | None = None) -> Any:
    """A Prefect task runner. `address` points Dask/Ray at an existing cluster; without it they start a
    local one with `workers` workers."""
    if kind == "process":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=max(1, workers))
    if kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=max(1, workers))
    if kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner  # type: ignore[import-not-found]
        except ImportError:
            raise ValueError("runner 'dask' needs the prefect-dask package (pip install 'prefect[dask]')") from None
        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": max(1, workers), "threads_per_worker": 1})
    if kind == "ray":
        try:
            from prefect_ray import RayTaskRunner  # type: ignore[import-not-found]
        except ImportError:
            raise ValueError("runner 'ray' needs the prefect-ray package (pip install prefect-ray)") from None
        return RayTaskRunner(address=address) if address else RayTaskRunner(init_kwargs={"num_cpus": max(1, workers)})
    raise ValueError(f"unknown task runner {kind!r}; choose one of {', '.join(RUNNERS)}")
