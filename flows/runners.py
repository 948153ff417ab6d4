"""Which task runner spreads shard tasks: a local worker pool by default, Dask or Ray for a cluster.

`process` (the default) runs each shard task in a thread of the flow's process (the task run, its logs and retries
are Prefect's as ever) and its rendering in `LocalPool`: plain worker processes, forked from a server that has
imported the generators once, which import no Prefect and keep the generators they built for the next shard. A
Prefect process pool instead starts every worker as a fresh interpreter that imports Prefect, opens its own API
client and ships its logs and events, and builds a new generator (a Chromium, a TeX work dir) per shard; on
2 cores that cost 0.4-0.5x the plain loop's throughput. One pool per process serves every render in it (the
pipeline's kinds render at once), so `--workers` bounds the processes rendering at any time.
"""
from __future__ import annotations

import atexit
import contextvars
import json
import signal
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any, Callable, Iterable

RUNNERS = ("process", "thread", "dask", "ray")

# Modules every pool worker needs; the fork server imports them once.
# pandas too: pyarrow's Table.from_pylist imports it (0.4-0.6 s CPU) in every process that writes a shard.
_PRELOAD = ("flows.shardwork", "flows.common", "generators", "generators.base", "storage", "numpy", "PIL.Image",
            "PIL.PngImagePlugin", "pyarrow", "pyarrow.parquet", "pandas")
_PROGRESS_EVERY_S = 0.2  # a worker reports progress at most this often (and when a job ends)
# A part of a split shard holds at least this many samples: each part costs a generator in another worker (a
# Chromium, TeX's formats: 1-3 s CPU), which a few samples do not pay back (a plain loop renders them in one).
MIN_SPLIT_PART = 32

_active: contextvars.ContextVar["LocalPool | None"] = contextvars.ContextVar("varyflow_local_pool", default=None)
_lock = threading.Lock()
_pool: "LocalPool | None" = None

# Set in each pool worker by `_worker_init`.
_worker_queue: Any = None


def _worker_init(queue: Any) -> None:
    global _worker_queue
    _worker_queue = queue
    # Ctrl-C reaches the whole process group; the parent decides what stops (`shutdown_local_pool`).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_terminated)


def _worker_terminated(signum: int, frame: Any) -> None:
    """Stopped mid-shard: close this worker's generators (a Chromium would outlive it), then exit at once."""
    import os

    from flows.shardwork import close_generators

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM (group and parent) must not cut the close short
    try:
        close_generators()
    finally:
        os._exit(128 + signum)


def _run_job(token: str | None, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    """In a pool worker: run `fn`, reporting its progress(n) calls to the parent at most every 0.2 s."""
    if token is None:
        return fn(*args, **kwargs)
    sent = [0.0, -1, -1]  # time of the last report, the count reported, the latest count

    def progress(n: int) -> None:
        sent[2] = n
        now = time.monotonic()
        if now - sent[0] >= _PROGRESS_EVERY_S:
            sent[0], sent[1] = now, n
            _worker_queue.put((token, n, False))

    try:
        return fn(*args, progress=progress, **kwargs)
    finally:
        # The last report, marked last: the parent forgets the callback only then, so a count sent just before the
        # job's result (another channel) is never dropped.
        _worker_queue.put((token, sent[2] if sent[2] != sent[1] else -1, True))


def _warm(modules: tuple[str, ...], generators: tuple[tuple[str, dict[str, Any]], ...] = ()) -> int:
    import importlib
    import os

    from flows.shardwork import cached_generator

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    for kind, params in generators:
        try:
            cached_generator(kind, params)  # the first shard finds it built; not kinds that read input files
        except Exception:  # a bad parameter is the render's to report, not the warm-up's
            pass
    return os.getpid()


class LocalPool:
    """`workers` processes forked from a server that preloaded the generators' common modules (and `preload`,
    e.g. the kinds about to render). `submit(fn, ..., progress=cb)` runs `fn(..., progress=p)` in a worker;
    each p(n) there reaches cb(n) here, from a reader thread."""

    def __init__(self, workers: int, preload: Iterable[str] = ()):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("forkserver")
        # Only the first pool of a process starts the fork server; later ones fork from it as it is.
        ctx.set_forkserver_preload([*_PRELOAD, *preload])
        self.workers = workers
        self._queue = ctx.SimpleQueue()
        self._callbacks: dict[str, Callable[[int], None]] = {}
        self._ahead: dict[str, tuple[Future, _Relay]] = {}  # jobs started before the render asked (`start_ahead`)
        self._ahead_lock = threading.Lock()
        self._executor = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                             initargs=(self._queue,))
        self._reader = threading.Thread(target=self._read, name="varyflow-pool-progress", daemon=True)
        self._reader.start()

    def warm(self, modules: Iterable[str] = (), generators: Iterable[tuple[str, dict[str, Any]]] = ()) -> None:
        """Start the workers now, importing `modules` and building `generators` ((kind, params) as the render will
        ask for them) in each, so that work overlaps Prefect's start-up instead of following it."""
        modules, generators = tuple(modules), tuple(generators)
        for _ in range(self.workers):
            self._executor.submit(_warm, modules, generators)

    def _read(self) -> None:
        while True:
            msg = self._queue.get()
            if msg is None:
                return
            token, n, last = msg
            callback = self._callbacks.pop(token, None) if last else self._callbacks.get(token)
            if callback is not None and n >= 0:
                try:
                    callback(n)
                except Exception:  # a progress display must never stop rendering
                    pass

    def start_ahead(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run `fn(*args, **kwargs)` now, before the render asks for it: the render's `submit` of the same call
        (same function and arguments) gets this future, and its progress callback hears what was done meanwhile."""
        relay = _Relay()
        future = self.submit(fn, *args, progress=relay, **kwargs)
        with self._ahead_lock:
            self._ahead[_job_key(fn, args, kwargs)] = (future, relay)

    def has_ahead(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Whether this call was started ahead and not yet claimed by a `submit`."""
        if not self._ahead:
            return False
        with self._ahead_lock:
            return _job_key(fn, args, kwargs) in self._ahead

    def ahead_left(self) -> int:
        """Jobs started ahead that no `submit` claimed (0 once a render has taken all of its own)."""
        with self._ahead_lock:
            return len(self._ahead)

    def drop_ahead(self) -> None:
        """Forget unclaimed jobs started ahead (the render failed or asked for other work): cancel the ones still
        queued, so the pool does not render what nobody will write."""
        with self._ahead_lock:
            dropped, self._ahead = list(self._ahead.values()), {}
        for future, _ in dropped:
            future.cancel()

    def submit(self, fn: Callable[..., Any], *args: Any, progress: Callable[[int], None] | None = None,
               **kwargs: Any) -> Future:
        if self._ahead:
            with self._ahead_lock:
                started = self._ahead.pop(_job_key(fn, args, kwargs), None)
            if started is not None:
                future, relay = started
                relay.attach(progress)
                return future
        token = None
        if progress is not None:
            token = uuid.uuid4().hex
            self._callbacks[token] = progress
        return self._executor.submit(_run_job, token, fn, args, kwargs)

    @property
    def broken(self) -> bool:
        """A worker died (killed, out of memory): this pool takes no more work; the next render gets a new one."""
        return bool(getattr(self._executor, "_broken", False))

    def close(self, kill: bool = False) -> None:
        if kill:  # SIGTERM: each worker closes its generators and exits (`_worker_terminated`)
            for proc in list((getattr(self._executor, "_processes", None) or {}).values()):
                proc.terminate()
        self._executor.shutdown(wait=True, cancel_futures=kill)
        self._queue.put(None)
        self._reader.join(5)


class _Relay:
    """The progress callback of a job started ahead: holds the latest count until the render attaches its own."""

    def __init__(self) -> None:
        self.n: int | None = None
        self.target: Callable[[int], None] | None = None

    def __call__(self, n: int) -> None:
        self.n = n
        if self.target is not None:
            self.target(n)

    def attach(self, target: Callable[[int], None] | None) -> None:
        self.target = target
        if target is not None and self.n is not None:
            target(self.n)


def _job_key(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> str:
    """A call's identity: the function and its arguments (a dataclass, e.g. a RenderSpec, by its fields)."""
    return json.dumps([fn.__module__, fn.__qualname__, args, kwargs], sort_keys=True, default=_key_part)


def _key_part(value: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__qualname__, **dataclasses.asdict(value)}
    return str(value)


def local_pool(workers: int, preload: Iterable[str] = ()) -> LocalPool:
    """The process's pool, started on first use; a request for another size replaces it."""
    with _lock:
        return _local_pool_locked(workers, preload)


def _local_pool_locked(workers: int, preload: Iterable[str]) -> LocalPool:
    global _pool
    if _pool is not None and (_pool.workers != workers or _pool.broken):
        _pool.close(kill=_pool.broken)
        _pool = None
    if _pool is None:
        _pool = LocalPool(max(1, workers), preload)
    return _pool


def start_local_pool(workers: int, preload: Iterable[str] = (), then: Callable[[LocalPool], None] | None = None) -> None:
    """Start the process's pool and run `then(pool)` (warm it, start jobs ahead) before any other thread gets the
    pool, so a render's tasks find the jobs started ahead for them. `then` failing only loses the head start."""
    with _lock:
        pool = _local_pool_locked(workers, preload)
        if then is not None:
            try:
                then(pool)
            except Exception:  # an optimisation; the render reports its own errors
                pool.drop_ahead()


def shutdown_local_pool(kill: bool = False) -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.close(kill=kill)


atexit.register(shutdown_local_pool)


def active_pool_drop_ahead() -> int:
    """Cancel the process pool's unclaimed jobs started ahead; how many there were (0 after a render took its own)."""
    with _lock:
        pool = _pool
    if pool is None:
        return 0
    left = pool.ahead_left()
    pool.drop_ahead()
    return left


def active_local_pool() -> LocalPool | None:
    """The pool the current task should hand its rendering to; None runs it inline (threads, Dask, Ray)."""
    return _active.get()


def split_parts(shards: int, shard_size: int, workers: int) -> int:
    """Into how many index ranges the local pool splits each shard of a render that has fewer shards than workers
    (the parts are written as one shard: the same bytes); 1 when there are enough shards or too few samples."""
    if shards >= workers:
        return 1
    return max(1, min(-(-workers // shards), shard_size // MIN_SPLIT_PART))


def kind_modules(kinds: Iterable[str]) -> list[str]:
    from generators import KINDS

    return [KINDS[k].split(":")[0] for k in kinds if k in KINDS]


def _local_task_runner(workers: int) -> Any:
    from prefect.task_runners import ThreadPoolTaskRunner

    class LocalPoolTaskRunner(ThreadPoolTaskRunner):
        """Task runs in threads of the flow's process; their rendering in the process's `LocalPool`."""

        def __enter__(self):
            self._pool_token = _active.set(local_pool(workers))
            return super().__enter__()

        def __exit__(self, *exc: Any) -> None:
            try:
                super().__exit__(*exc)
            finally:
                _active.reset(self._pool_token)

        def duplicate(self):
            return type(self)(max_workers=self._max_workers)

    # Twice as many task threads as workers: while a finished shard's task run completes (API calls), the next
    # shard is already queued in the pool, so no worker waits for Prefect between shards.
    return LocalPoolTaskRunner(max_workers=2 * max(1, workers))


def make_task_runner(kind: str = "process", workers: int = 2, address: str | None = None) -> Any:
    """A Prefect task runner. `address` points Dask/Ray at an existing cluster; without it they start a
    local one with `workers` workers."""
    if kind == "process":
        return _local_task_runner(workers)
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
