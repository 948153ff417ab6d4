"""The render flow against a plain loop doing the same work, whole processes, measured in the same run.

    python benchmarks/pipeline.py [--kinds formula,document,...] [--count 2048] [--shard-rows 256] [--workers 2]
                                  [--rounds 3] [--slow-rounds 1] [--small 8] [--out docs/pipeline-benchmarks.md]
    python benchmarks/pipeline.py plain KIND --count N --shard-rows R --workers W --out DIR [--params JSON]

Cases (`--kinds`): every generator kind, `table` with both backends (`table[html]`), `pdf` and `negative` on input
folders this file writes once under the system temp dir, deterministically (one-page PDFs typeset with reportlab,
photo-like JPEGs drawn with Pillow and numpy), one file per sample index. Every case renders `--count` samples; the
slow ones (`chart`, `latex_page`: over ~3 min a run on 2 cores) run `--slow-rounds` rounds instead of `--rounds`.

Flow: `varyflow render KIND --count N --shard-rows R --workers W` as a fresh process (Prefect API, tasks, manifest,
artifacts). Plain: this file's `plain` command, a fresh process that builds the generator once per worker of a fork
pool of W and writes the same index ranges with the same shard writer; both commit nothing else, so the work is
equal (the shards' sha256 are compared). Rounds alternate flow and plain so both see the same load; each figure is
the median. From the wall times at `--count` (N) and at `--small` (n):

- flow ÷ plain = plain wall(N) / flow wall(N): throughput of the whole command, start-up included;
- start-up excluded = (plain(N) - plain(n)) / (flow(N) - flow(n)): the marginal per-sample rate;
- fixed overhead = flow(n) - plain(n): what orchestration adds to a small render (Python and Prefect imports,
  reaching the API, task and run bookkeeping, artifacts).

The same ratios are given in CPU time: the command's whole process tree (this process is made the subreaper of
their orphans, so a fork server or a browser driver is counted too) plus the CPU the background API spent meanwhile.
On a shared machine wall time also counts waiting for a core; CPU time does not.

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

# case -> (kind, generator params, input folder the case needs, slow): what `--kinds` names.
CASES: dict[str, tuple[str, dict[str, Any], str | None, bool]] = {
    "formula": ("formula", {}, None, False),
    "document": ("document", {}, None, False),
    "chart": ("chart", {}, None, True),
    "echart": ("echart", {}, None, False),
    "table": ("table", {}, None, False),  # the TeX backend (the default)
    "table[html]": ("table", {"backend": "html"}, None, False),
    "latex_page": ("latex_page", {}, None, True),
    "negative": ("negative", {}, "photos", True),
    "pdf": ("pdf", {}, "pdfs", False),
}


def make_inputs(what: str, count: int) -> str:
    """A folder of `count` input files for `pdf` (one-page PDFs) or `negative` (photo-like JPEGs), written once
    per (what, count) under the temp dir and reused; the same files every time (seeded, no timestamps)."""
    folder = Path(tempfile.gettempdir()) / f"varyflow-bench-inputs-{what}-{count}"
    done = folder / ".complete"
    if done.exists():
        return str(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (_write_pdfs if what == "pdfs" else _write_photos)(folder, count)
    done.write_text("ok\n")
    return str(folder)


def _write_pdfs(folder: Path, count: int) -> None:
    import random

    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    words = ("data engine document vision model page text layout column figure table formula chart render shard "
             "manifest lineage training vocabulary token image sample batch worker flow storage reader").split()
    for i in range(count):
        rng = random.Random(i)
        c = canvas.Canvas(str(folder / f"doc-{i:05d}.pdf"), pagesize=letter, invariant=1)
        c.setFont("Helvetica-Bold", 16)
        c.drawString(72, 720, f"Report {i}: " + " ".join(rng.choice(words) for _ in range(4)).title())
        c.setFont("Helvetica", 11)
        y = 690
        for _ in range(rng.randint(20, 40)):
            c.drawString(72, y, " ".join(rng.choice(words) for _ in range(rng.randint(8, 12))))
            y -= 15
        c.showPage()
        c.save()


def _write_photos(folder: Path, count: int) -> None:
    import numpy as np
    from PIL import Image

    h, w = 150, 200  # drawn small and scaled up 4x: smooth like a photo, and quick to write
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(count):
        rng = np.random.default_rng(i)
        img = rng.uniform(0, 255, 3) + yy[..., None] * rng.uniform(-1.2, 1.2, 3) + xx[..., None] * rng.uniform(-1.2, 1.2, 3)
        for _ in range(6):  # soft blobs, so the pictures are not plain gradients
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(8, 50)
            mask = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
            img = img * (1 - mask) + rng.uniform(0, 255, 3) * mask
        img += rng.normal(0, 4, img.shape)
        small = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        small.resize((4 * w, 4 * h), Image.BICUBIC).save(folder / f"photo-{i:05d}.jpg", quality=90)


def case_params(case: str, count: int) -> tuple[str, dict[str, Any]]:
    """(kind, params) of a case, its input folder written if it needs one."""
    if case not in CASES:
        raise SystemExit(f"unknown case {case!r}; known: {', '.join(CASES)}")
    kind, params, inputs, _ = CASES[case]
    params = dict(params)
    if inputs:
        params["source"] = make_inputs(inputs, count)
    return kind, params


_GEN: Any = None  # the plain loop's generator, one per pool worker


def _plain_init(kind: str, params: dict[str, Any]) -> None:
    from multiprocessing.util import Finalize

    from generators import get_generator

    global _GEN
    _GEN = get_generator(kind, **params)
    Finalize(None, _GEN.close, exitpriority=10)  # runs as the pool worker exits: Chromium and TeX close


def _plain_shard(job: tuple[Any, str, int]) -> str:
    """One shard by the render unit, the flow's own: `run_shard` with this worker's generator and the writer."""
    from generators.render_unit import run_shard
    from storage import DatasetWriter

    spec, out, index = job
    return run_shard(spec, index, DatasetWriter(out, spec.kind, PLAIN_FINGERPRINT), generator=_GEN).info.sha256


def plain(kind: str, count: int, shard_rows: int, workers: int, out: str, seed: int = 0,
          params: dict[str, Any] | None = None) -> list[str]:
    """The baseline: a fork pool of `workers`, the generator built once per worker, shards in index order."""
    import multiprocessing as mp

    from generators.render_unit import RenderSpec

    spec = RenderSpec.of(kind, count=count, seed=seed, shard_rows=shard_rows, params=params)
    with mp.get_context("fork").Pool(workers, initializer=_plain_init, initargs=(kind, dict(params or {}))) as pool:
        shas = pool.map(_plain_shard, [(spec, out, k) for k, _, _ in spec.shards()], chunksize=1)
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


_HOMES: set[str] = set()  # every PREFECT_HOME a measured command used
_KEEP: set[int] = set()  # servers of this benchmark's own, never waited for


def _api_pids() -> set[int]:
    pids = set(_KEEP)
    for home in _HOMES:
        try:
            pids.add(int(json.loads((Path(home) / "varyflow-api.json").read_text())["pid"]))
        except (OSError, ValueError, KeyError):
            pass
    return pids


def _api_cpu(home: str) -> float:
    """CPU seconds so far of the background API serving `home` (not a child of the command, so counted apart)."""
    import psutil

    try:
        pid = json.loads((Path(home) / "varyflow-api.json").read_text())["pid"]
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except (OSError, ValueError, KeyError, psutil.Error):
        return 0.0


def _become_subreaper() -> None:
    """Orphans of the measured commands (a fork server, a browser driver) become this process's children, so their
    CPU time is counted when `_reap` waits for them (Linux: PR_SET_CHILD_SUBREAPER)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)


def _reap(keep: set[int]) -> None:
    """Wait for the descendants the command left (not `keep`: the background API, which outlives commands)."""
    import psutil

    left = [p for p in psutil.Process().children() if p.pid not in keep]
    psutil.wait_procs(left, timeout=60)


def _timed(cmd: list[str], env: dict[str, str], timeout: int = 3600) -> tuple[float, str]:
    """Wall time of the command; its CPU time (the process tree, plus the background API's) goes to _LAST_CPU."""
    import resource

    global _LAST_CPU
    _HOMES.add(env["PREFECT_HOME"])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    api_before = _api_cpu(env["PREFECT_HOME"])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    _reap(_api_pids())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _LAST_CPU = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                 + max(0.0, _api_cpu(env["PREFECT_HOME"]) - api_before))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}… exited {proc.returncode}: {proc.stderr[-2000:]}")
    return wall, proc.stdout


_LAST_CPU = 0.0


def run_flow(kind: str, count: int, shard_rows: int, workers: int, out: str, env: dict[str, str],
             params: dict[str, Any] | None = None) -> tuple[float, list[str]]:
    from storage import read_manifest

    extra = ["--params", json.dumps(params)] if params else []
    wall, stdout = _timed([sys.executable, "-m", "flows.cli", "render", kind, "--count", str(count), "--shard-rows",
                           str(shard_rows), "--workers", str(workers), "--out", out, "--json", *extra], env)
    manifest = json.loads(stdout.strip().splitlines()[-1])["manifest"]
    return wall, [s.sha256 for s in read_manifest(manifest).shards]


def run_plain(kind: str, count: int, shard_rows: int, workers: int, out: str, env: dict[str, str],
              params: dict[str, Any] | None = None) -> tuple[float, list[str]]:
    extra = ["--params", json.dumps(params)] if params else []
    wall, stdout = _timed([sys.executable, __file__, "plain", kind, "--count", str(count), "--shard-rows", str(shard_rows),
                           "--workers", str(workers), "--out", out, *extra], env)
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
                                      str(self.port)], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        _KEEP.add(self.proc.pid)
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


def measure_kind(case: str, count: int, small: int, shard_rows: int, workers: int, rounds: int, home: str,
                 scratch: Path, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """`rounds` alternating rounds of the case; with `previous` (the same case, count, small, shard rows and
    workers measured before), its rounds count too: the medians are over all of them."""
    env = _env(home, None)
    kind, params = case_params(case, count)
    walls: dict[str, list[float]] = {"flow": [], "plain": [], "flow_small": [], "plain_small": []}
    cpus: dict[str, list[float]] = {k: [] for k in walls}
    same = ("count", "small", "shard_rows", "workers")
    if previous and all(previous.get(k) == v for k, v in zip(same, (count, small, shard_rows, workers))):
        walls = {k: list(v) for k, v in previous["walls"].items()}
        cpus = {k: list(v) for k, v in previous["cpus"].items()}
    done = len(walls["flow"])
    for r in range(done, done + rounds):
        order = ["flow", "plain"] if r % 2 == 0 else ["plain", "flow"]
        for size, suffix in ((count, ""), (small, "_small")):
            shas = {}
            for which in order:
                out = str(scratch / f"{kind}-{which}{suffix}-{r}")
                runner = run_flow if which == "flow" else run_plain
                wall, shas[which] = runner(kind, size, min(shard_rows, size) if suffix else shard_rows, workers, out, env,
                                           params)
                walls[which + suffix].append(wall)
                cpus[which + suffix].append(_LAST_CPU)
                shutil.rmtree(out, ignore_errors=True)
                print(f"  {case} {which:<5} n={size:<5} round {r}: {wall:6.1f} s wall, {_LAST_CPU:6.1f} s CPU, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
            if shas["flow"] != shas["plain"]:
                raise RuntimeError(f"{case}: the flow and the plain loop wrote different shards; not the same work")
    med = {k: statistics.median(v) for k, v in walls.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    return {
        "kind": case, "count": count, "small": small, "shard_rows": shard_rows, "workers": workers,
        "rounds": len(walls["flow"]), "round_ratios": [p / f for p, f in zip(walls["plain"], walls["flow"])],
        "walls": walls, "median": med, "cpus": cpus, "cpu_median": cpu,
        "cpu_ratio": cpu["plain"] / max(cpu["flow"], 1e-9),
        "cpu_ratio_excl_startup": _marginal(cpu["plain"] - cpu["plain_small"], cpu["flow"] - cpu["flow_small"]),
        "flow_per_s": count / med["flow"], "plain_per_s": count / med["plain"],
        "ratio": med["plain"] / med["flow"],
        "ratio_excl_startup": _marginal(med["plain"] - med["plain_small"], med["flow"] - med["flow_small"]),
        "fixed_overhead_s": med["flow_small"] - med["plain_small"],
    }


def _marginal(plain: float, flow: float) -> float:
    """plain ÷ flow of the marginal (start-up excluded) time; NaN when either is not positive (noise swamped it)."""
    return plain / flow if plain > 0 and flow > 0 else float("nan")


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
        cpus: dict[str, list[float]] = {name: [] for name in walls}
        for r in range(rounds):
            for name in (list(setups) + ["plain"]) if r % 2 == 0 else (["plain"] + list(setups)):
                target = str(scratch / f"fixed-{r}")
                if name == "plain":
                    wall, _ = run_plain(kind, small, small, workers, target, _env(warm_home, None))
                else:
                    wall, _ = run_flow(kind, small, small, workers, target, setups[name](r))
                shutil.rmtree(target, ignore_errors=True)
                walls[name].append(wall)
                cpus[name].append(_LAST_CPU)
                print(f"  fixed {name:<20} round {r}: {wall:6.1f} s wall, {_LAST_CPU:5.1f} s CPU", flush=True)
            stop_background_api(str(scratch / f"home-first-{r}"))
            _reap(_api_pids())  # the stopped API's CPU is not the next command's
        stop_background_api(warm_home)
    plain_med, plain_cpu = statistics.median(walls["plain"]), statistics.median(cpus["plain"])
    for name in setups:
        med, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        out[name] = {"wall_s": round(med, 2), "overhead_s": round(med - plain_med, 2), "walls": walls[name],
                     "cpu_s": round(cpu, 2), "cpu_overhead_s": round(cpu - plain_cpu, 2)}
    out["plain"] = {"wall_s": round(plain_med, 2), "walls": walls["plain"], "cpu_s": round(plain_cpu, 2)}
    return {"kind": kind, "small": small, "workers": workers, "rounds": rounds, "modes": out}


NARRATIVE = """
## Reading the figures

The CPU columns answer "what does orchestration cost per sample": with start-up excluded they are the plain loop's
CPU over the flow's for the same samples, so 1.0 means the flow spends nothing per sample that the loop does not.
The wall columns answer what a user waits for, start-up included; on a shared machine they also move with
whatever else runs (a round in which another job took a core shows as a slower flow or a slower loop), so compare
them within a round and over the rounds, not across runs. A render's fixed cost is the last table: the command's
whole wall and CPU time against the plain loop doing the same 8 samples, by the way the command reaches Prefect.

## Where the flow's time went, and what changed

Before (issue 14: the flow at 0.40-0.54x the plain loop, 25-30 s of start-up per command), a CLI render paid for:

1. **Prefect's temporary API server**, started and stopped inside every command: 15-30 s of each render on 2 busy
   cores (and a failure when it missed Prefect's 20 s start-up timeout). Now `flows/api.py` starts the same server
   (ephemeral mode) once per `PREFECT_HOME` in the background and later commands reuse it after one health check;
   start-up waits up to 90 s saying what for, retries once, then falls back to Prefect's own.
2. **Prefect's process pool**: each worker a fresh interpreter (spawn) importing Prefect (1.3-1.5 s CPU), with its
   own API client shipping logs and events, shut down (and flushed) at the end of every render. Now shard tasks run
   in threads of the flow's process and hand the rendering to `flows.runners.LocalPool`: processes forked from a
   server that imported the generators once, importing no Prefect.
3. **A generator per shard**: a Chromium (formula `fast`, echart, table html) or a TeX work dir with its preloaded
   formats, per shard. Now each pool worker keeps the generators it built (by kind, params and input digest) for the
   next shard, as the plain loop does; the CLI builds the render's generators in the workers while Prefect imports.
4. **One worker for small renders** (fewer shards than workers) and the pipeline's seven renders **one after
   another**. Now a shard's index range is split across the workers (written as one shard: same bytes), and the
   pipeline's renders run at once, sharing the one pool (so `--workers` still bounds the processes).
5. **Workers idle while Prefect starts**: the pool was up and the generators built in 1-2 s, but the first shard was
   handed to it only once Prefect had imported, reached its API and created the flow run and the first task runs
   (2-3 s on an idle machine; 8 s at load 6). Now `varyflow render` starts the first shard of each worker (a small
   render: its parts) in the pool before Prefect imports, and the render's shard tasks take those jobs over by
   their call (`LocalPool.start_ahead`; never rendered twice, same bytes; not when the dataset already has shards,
   so a rerun renders nothing it would reuse). The fork server also preloads pandas, which pyarrow's
   `Table.from_pylist` imports in every process that writes a shard.

Kept, because they are what the flow is for and cost little per sample: a Prefect task run per shard (a few API
calls each), the manifest commit, the artifacts (statistics, the per-shard table, a gallery of the first shard's
first samples, progress), one log line per shard, and the shards' sha256 (computed while writing, in a second
thread, by the same `storage` writer the plain loop uses). Progress now reaches the CLI per sample (each worker
reports at most every 0.2 s).

What remains fixed per command is CPU, now beside the rendering rather than before it: Python importing Prefect and
building its settings (1.3-1.5 s CPU on an idle machine), the run's and tasks' bookkeeping and artifacts in the CLI
process (about 1.5 s CPU) and the API serving them (about 0.4 s CPU). A sampling profile of one small render's CLI
process (py-spy, GIL held) puts about half of its Python CPU in importing Prefect and validating its settings
models (pydantic), a tenth in the argument parser's imports (pyarrow), a tenth in creating the flow run and
serialising its parameters, a tenth in the task engine, a few percent in the events client and the run's
heartbeat; none of it is a setting a render can switch off (analytics are already off: `DO_NOT_TRACK`). On 2 cores
busy rendering, every CPU-second of it is half a second of the render's wall time, which is what keeps the
fastest kind (formula, ~13 s for 2048 samples in the plain loop) nearest the 0.9 line.

The first command on a fresh `PREFECT_HOME` also starts the background API, whose own Prefect import and the
database migrations of a new SQLite file (Prefect runs every Alembic migration; it has no faster path for a new
database) take about 10 s more once per `PREFECT_HOME`; later commands reuse it. `infra/setup.sh` runs those
migrations for the default `PREFECT_HOME` (`prefect server database upgrade`), so the README's first command after
set-up pays only the API's start (and Prefect's block registration, once). The `embedded, first run` row measures
a `PREFECT_HOME` that set-up did not prepare.
"""


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
        "| kind (count, shard rows) | flow | plain loop | flow ÷ plain | start-up excluded | fixed overhead (n={small}) "
        "| CPU: plain ÷ flow | CPU, start-up excluded | rounds (flow ÷ plain each) | measured | load |".format(
            small=results["kinds"][0]["small"] if results["kinds"] else "-"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for k in results["kinds"]:
        lines.append(f"| {k['kind']} ({k['count']}, {k['shard_rows']}) | {k['flow_per_s']:.1f}/s | {k['plain_per_s']:.1f}/s | "
                     f"{k['ratio']:.2f} | {k['ratio_excl_startup']:.2f} | {k['fixed_overhead_s']:.1f} s | "
                     f"{k['cpu_ratio']:.2f} | {k['cpu_ratio_excl_startup']:.2f} | {k['rounds']} "
                     f"({', '.join(f'{p / f:.2f}' for p, f in zip(k['walls']['plain'], k['walls']['flow']))}) | {k.get('when', '')} | "
                     f"{'-'.join(str(x) for x in k.get('load', [])) or '-'} |")
    fixed = results.get("fixed")
    if fixed:
        lines += ["", f"Fixed overhead of one `varyflow render {fixed['kind']} --count {fixed['small']}` (whole command) "
                  f"by way of reaching the API, against the plain loop's {fixed['modes']['plain']['wall_s']:.1f} s:", "",
                  "| API | command wall time | overhead over the plain loop | CPU time | CPU overhead |",
                  "|---|---:|---:|---:|---:|"]
        for name, m in fixed["modes"].items():
            if name != "plain":
                lines.append(f"| {name} | {m['wall_s']:.1f} s | {m['overhead_s']:.1f} s | {m['cpu_s']:.1f} s | "
                             f"{m['cpu_overhead_s']:.1f} s |")
    if results.get("remarks"):  # what the figures of this run say, written by whoever ran it (kept by --merge)
        lines += ["", *results["remarks"]]
    path.write_text("\n".join(lines) + "\n" + NARRATIVE)


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
        ap.add_argument("--params", default=None, help="generator parameters as a JSON object")
        a = ap.parse_args(argv[1:])
        print(json.dumps(plain(a.kind, a.count, a.shard_rows, a.workers, a.out, a.seed,
                               json.loads(a.params) if a.params else None)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", default=",".join(CASES), help=f"cases to measure, of {', '.join(CASES)}")
    ap.add_argument("--count", type=int, default=2048)
    ap.add_argument("--small", type=int, default=8, help="the small render that measures the fixed overhead")
    ap.add_argument("--shard-rows", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--slow-rounds", type=int, default=1, help="rounds of the slow cases (chart, latex_page, negative)")
    ap.add_argument("--fixed-kind", default="document", help="kind of the fixed-overhead measurement ('' skips it)")
    ap.add_argument("--note", default="", help="a sentence for the results (e.g. the machine was shared)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "pipeline-benchmarks.md"))
    ap.add_argument("--merge", action="store_true", help="keep the other kinds' (and the fixed overhead's) last figures")
    ap.add_argument("--add-rounds", action="store_true",
                    help="with --merge: add the new rounds to a case's stored ones (same count, sizes and workers)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    store = out.with_suffix(".json")
    scratch = Path(tempfile.mkdtemp(prefix="varyflow-bench-pipeline-"))
    _become_subreaper()
    results: dict[str, Any] = json.loads(store.read_text()) if a.merge and store.exists() else {"kinds": []}
    results.update({
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "note": a.note or results.get("note", ""),
    })

    def save() -> None:
        store.write_text(json.dumps(results, indent=1) + "\n")
        write_markdown(out, results)

    try:
        home = str(scratch / "home")
        for case in [k for k in a.kinds.split(",") if k]:
            print(f"== {case} (load average {os.getloadavg()[0]:.1f})", flush=True)
            kind, params = case_params(case, a.count)
            run_flow(kind, a.workers, 1, a.workers, str(scratch / f"warm-{kind}"), _env(home, None), params)  # API up, caches warm
            rounds = a.slow_rounds if CASES[case][3] else a.rounds
            load = os.getloadavg()[0]
            previous = next((k for k in results["kinds"] if k["kind"] == case), None) if a.add_rounds else None
            res = measure_kind(case, a.count, a.small, a.shard_rows, a.workers, rounds, home, scratch, previous)
            res["when"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            loads = [round(load, 1), round(os.getloadavg()[0], 1), *((previous or {}).get("load", []) if a.add_rounds else [])]
            res["load"] = [min(loads), max(loads)]  # 1-min load average around the case's rounds: lowest, highest
            results["kinds"] = [k for k in results["kinds"] if k["kind"] != case] + [res]
            save()
            print(f"  {case}: flow {res['flow_per_s']:.1f}/s plain {res['plain_per_s']:.1f}/s ratio {res['ratio']:.2f} "
                  f"excl. start-up {res['ratio_excl_startup']:.2f} fixed {res['fixed_overhead_s']:.1f} s", flush=True)
        stop_background_api(home)
        if a.fixed_kind:
            print("== fixed overhead", flush=True)
            results["fixed"] = measure_fixed(a.fixed_kind, a.small, a.workers, a.rounds, scratch)
            results["fixed"]["when"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            save()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
