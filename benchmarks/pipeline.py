"""The render flow against a plain loop doing the same work, whole processes, measured in the same run.

    python benchmarks/pipeline.py [--kinds document,chart,formula] [--count 2048] [--shard-rows 256] [--workers 2]
                                  [--rounds 3] [--small 8] [--out docs/pipeline-benchmarks.md]
    python benchmarks/pipeline.py plain KIND --count N --shard-rows R --workers W --out DIR   # the baseline alone

Flow: `varyflow render KIND --count N --shard-rows R --workers W` as a fresh process (Prefect API, tasks, manifest,
artifacts). Plain: this file's `plain` command, a fresh process that builds the generator once per worker of a fork
pool of W and writes the same index ranges with the same shard writer; both commit nothing else, so the work is
equal (the shards' sha256 are compared). Rounds alternate flow and plain so both see the same load; each figure is
the median. From the wall times at `--count` (N) and at `--small` (n):

- flow ÷ plain = plain wall(N) / flow wall(N): throughput of the whole command, start-up included;
- start-up excluded = (plain(N) - plain(n)) / (flow(N) - flow(n)): the marginal per-sample rate;
- fixed overhead = flow(n) - plain(n): what orchestration adds to a small render (Python and Prefect imports,
  reaching the API, task and run bookkeeping, artifacts).

Fixed overhead is measured for three ways of reaching the API: `server` (a `prefect server start` already running,
PREFECT_API_URL set), `embedded` (no PREFECT_API_URL: the background API that the first render on the machine started,
`flows.api`), and `embedded, first run` (a fresh PREFECT_HOME, so that render starts the API itself).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLAIN_FINGERPRINT = "0" * 64  # names only; the bytes of a shard do not depend on it

_GEN: Any = None  # the plain loop's generator, one per pool worker


def _plain_init(kind: str, params: dict[str, Any]) -> None:
    from multiprocessing.util import Finalize

    from generators import get_generator

    global _GEN
    _GEN = get_generator(kind, **params)
    Finalize(None, _GEN.close, exitpriority=10)  # runs as the pool worker exits: Chromium and TeX close


def _plain_shard(job: tuple[str, str, int, int, int, int]) -> str:
    from generators.base import Rejected
    from storage import DatasetWriter

    out, dataset, seed, index, start, stop = job
    rows, rejects = [], {}
    for item in _GEN.items(seed, start, stop):
        if isinstance(item, Rejected):
            rejects[item.reason] = rejects.get(item.reason, 0) + 1
        else:
            rows.append(item.to_row())
    return DatasetWriter(out, dataset, PLAIN_FINGERPRINT).write_shard(index, rows, rejects=rejects).sha256


def plain(kind: str, count: int, shard_rows: int, workers: int, out: str, seed: int = 0,
          params: dict[str, Any] | None = None) -> list[str]:
    """The baseline: a fork pool of `workers`, the generator built once per worker, shards in index order."""
    import multiprocessing as mp

    ranges = [(k, s, min(s + shard_rows, count)) for k, s in enumerate(range(0, count, shard_rows))]
    with mp.get_context("fork").Pool(workers, initializer=_plain_init, initargs=(kind, dict(params or {}))) as pool:
        shas = pool.map(_plain_shard, [(out, kind, seed, k, s, e) for k, s, e in ranges], chunksize=1)
        pool.close()
        pool.join()
    return shas


def _env(home: str, api_url: str | None) -> dict[str, str]:
    env = dict(os.environ, PREFECT_HOME=home, DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PYTHONPATH=str(ROOT))
    env.pop("PREFECT_API_URL", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _timed(cmd: list[str], env: dict[str, str], timeout: int = 3600) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}… exited {proc.returncode}: {proc.stderr[-2000:]}")
    return wall, proc.stdout


def run_flow(kind: str, count: int, shard_rows: int, workers: int, out: str, env: dict[str, str]) -> tuple[float, list[str]]:
    from storage import read_manifest

    wall, stdout = _timed([sys.executable, "-m", "flows.cli", "render", kind, "--count", str(count), "--shard-rows",
                           str(shard_rows), "--workers", str(workers), "--out", out, "--json"], env)
    manifest = json.loads(stdout.strip().splitlines()[-1])["manifest"]
    return wall, [s.sha256 for s in read_manifest(manifest).shards]


def run_plain(kind: str, count: int, shard_rows: int, workers: int, out: str, env: dict[str, str]) -> tuple[float, list[str]]:
    wall, stdout = _timed([sys.executable, __file__, "plain", kind, "--count", str(count), "--shard-rows", str(shard_rows),
                           "--workers", str(workers), "--out", out], env)
    return wall, json.loads(stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectServer:
    """`prefect server start` in its own PREFECT_HOME, for the `server` measurements."""

    def __init__(self, home: str):
        self.home, self.port = home, _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "PrefectServer":
        import urllib.request

        env = _env(self.home, None)
        self.proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                                      str(self.port), "--no-services"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("prefect server start did not answer in 180 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def stop_background_api(home: str) -> None:
    """Stop the background API a render started under `home` (flows.api), if that module is there."""
    try:
        from flows.api import stop_background_api as stop
    except ImportError:
        return
    stop(home)


def measure_kind(kind: str, count: int, small: int, shard_rows: int, workers: int, rounds: int, home: str,
                 scratch: Path) -> dict[str, Any]:
    env = _env(home, None)
    walls: dict[str, list[float]] = {"flow": [], "plain": [], "flow_small": [], "plain_small": []}
    for r in range(rounds):
        order = ["flow", "plain"] if r % 2 == 0 else ["plain", "flow"]
        for size, suffix in ((count, ""), (small, "_small")):
            shas = {}
            for which in order:
                out = str(scratch / f"{kind}-{which}{suffix}-{r}")
                runner = run_flow if which == "flow" else run_plain
                wall, shas[which] = runner(kind, size, min(shard_rows, size) if suffix else shard_rows, workers, out, env)
                walls[which + suffix].append(wall)
                shutil.rmtree(out, ignore_errors=True)
                print(f"  {kind} {which:<5} n={size:<5} round {r}: {wall:6.1f} s", flush=True)
            if shas["flow"] != shas["plain"]:
                raise RuntimeError(f"{kind}: the flow and the plain loop wrote different shards; not the same work")
    med = {k: statistics.median(v) for k, v in walls.items()}
    return {
        "kind": kind, "count": count, "small": small, "shard_rows": shard_rows, "workers": workers, "rounds": rounds,
        "walls": walls, "median": med,
        "flow_per_s": count / med["flow"], "plain_per_s": count / med["plain"],
        "ratio": med["plain"] / med["flow"],
        "ratio_excl_startup": (med["plain"] - med["plain_small"]) / max(med["flow"] - med["flow_small"], 1e-9),
        "fixed_overhead_s": med["flow_small"] - med["plain_small"],
    }


def measure_fixed(kind: str, small: int, workers: int, rounds: int, scratch: Path) -> dict[str, Any]:
    """Fixed overhead of one small render per way of reaching the API, against the plain loop in the same rounds."""
    out: dict[str, Any] = {}
    warm_home = str(scratch / "home-embedded")
    with PrefectServer(str(scratch / "home-server")) as server:
        setups = {
            "server": lambda r: _env(server.home, server.url),
            "embedded": lambda r: _env(warm_home, None),
            "embedded, first run": lambda r: _env(str(scratch / f"home-first-{r}"), None),
        }
        run_flow(kind, small, small, workers, str(scratch / "warm-up"), setups["embedded"](0))  # starts the embedded API
        walls: dict[str, list[float]] = {name: [] for name in [*setups, "plain"]}
        for r in range(rounds):
            for name in (list(setups) + ["plain"]) if r % 2 == 0 else (["plain"] + list(setups)):
                target = str(scratch / f"fixed-{r}")
                if name == "plain":
                    wall, _ = run_plain(kind, small, small, workers, target, _env(warm_home, None))
                else:
                    wall, _ = run_flow(kind, small, small, workers, target, setups[name](r))
                shutil.rmtree(target, ignore_errors=True)
                walls[name].append(wall)
                print(f"  fixed {name:<20} round {r}: {wall:6.1f} s", flush=True)
            stop_background_api(str(scratch / f"home-first-{r}"))
        stop_background_api(warm_home)
    plain_med = statistics.median(walls["plain"])
    for name in setups:
        med = statistics.median(walls[name])
        out[name] = {"wall_s": round(med, 2), "overhead_s": round(med - plain_med, 2), "walls": walls[name]}
    out["plain"] = {"wall_s": round(plain_med, 2), "walls": walls["plain"]}
    return {"kind": kind, "small": small, "workers": workers, "rounds": rounds, "modes": out}


def write_markdown(path: Path, results: dict[str, Any]) -> None:
    lines = [
        "# Render flow against the plain loop",
        "",
        "Written by `python benchmarks/pipeline.py` (its docstring says exactly what is measured). Whole processes,",
        "flow and plain loop alternating, median of the rounds; the plain loop builds each generator once per worker of",
        "a fork pool and writes the same shards with the same writer (sha256 compared, so the work is equal).",
        "",
        f"Measured {results['when']} on {results['machine']}. {results['note']}",
        "",
        "| kind (count, shard rows) | flow | plain loop | flow ÷ plain | start-up excluded | fixed overhead (n={small}) |".format(
            small=results["kinds"][0]["small"] if results["kinds"] else "-"),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k in results["kinds"]:
        lines.append(f"| {k['kind']} ({k['count']}, {k['shard_rows']}) | {k['flow_per_s']:.1f}/s | {k['plain_per_s']:.1f}/s | "
                     f"{k['ratio']:.2f} | {k['ratio_excl_startup']:.2f} | {k['fixed_overhead_s']:.1f} s |")
    fixed = results.get("fixed")
    if fixed:
        lines += ["", f"Fixed overhead of one `varyflow render {fixed['kind']} --count {fixed['small']}` (whole command) "
                  f"by way of reaching the API, against the plain loop's {fixed['modes']['plain']['wall_s']:.1f} s:", "",
                  "| API | command wall time | overhead over the plain loop |", "|---|---:|---:|"]
        for name, m in fixed["modes"].items():
            if name != "plain":
                lines.append(f"| {name} | {m['wall_s']:.1f} s | {m['overhead_s']:.1f} s |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plain"]:
        ap = argparse.ArgumentParser(prog="pipeline.py plain")
        ap.add_argument("kind")
        ap.add_argument("--count", type=int, required=True)
        ap.add_argument("--shard-rows", type=int, required=True)
        ap.add_argument("--workers", type=int, default=2)
        ap.add_argument("--seed", type=int, default=0)
        ap.add_argument("--out", required=True)
        a = ap.parse_args(argv[1:])
        print(json.dumps(plain(a.kind, a.count, a.shard_rows, a.workers, a.out, a.seed)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", default="document,chart,formula")
    ap.add_argument("--count", type=int, default=2048)
    ap.add_argument("--small", type=int, default=8, help="the small render that measures the fixed overhead")
    ap.add_argument("--shard-rows", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fixed-kind", default="document", help="kind of the fixed-overhead measurement ('' skips it)")
    ap.add_argument("--note", default="", help="a sentence for the results (e.g. the machine was shared)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "pipeline-benchmarks.md"))
    a = ap.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="varyflow-bench-pipeline-"))
    results: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "note": a.note, "kinds": [],
    }
    try:
        home = str(scratch / "home")
        for kind in [k for k in a.kinds.split(",") if k]:
            print(f"== {kind}", flush=True)
            run_flow(kind, a.workers, 1, a.workers, str(scratch / f"warm-{kind}"), _env(home, None))  # API up, caches warm
            res = measure_kind(kind, a.count, a.small, a.shard_rows, a.workers, a.rounds, home, scratch)
            results["kinds"].append(res)
            print(f"  {kind}: flow {res['flow_per_s']:.1f}/s plain {res['plain_per_s']:.1f}/s ratio {res['ratio']:.2f} "
                  f"excl. start-up {res['ratio_excl_startup']:.2f} fixed {res['fixed_overhead_s']:.1f} s", flush=True)
        stop_background_api(home)
        if a.fixed_kind:
            print("== fixed overhead", flush=True)
            results["fixed"] = measure_fixed(a.fixed_kind, a.small, a.workers, a.rounds, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    write_markdown(out, results)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
