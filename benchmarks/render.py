"""Render throughput per kind: our generator against the raw library loop, measured in the same run.

    python benchmarks/render.py [--n 30] [--kinds document,pdf] [--out docs/render-benchmarks.md]
    python -m benchmarks.render_<kind> [n]      # one kind, rows printed, nothing written

Runs every `benchmarks/render_<kind>.py` module present (or those named by --kinds); each exposes
`bench(n) -> list[dict]` rows {"kind", "ours_per_s", "raw_per_s", "raw_label", "goal", ...}. Figures
are samples per CPU-second of this process and its renderers (`cpu_seconds`), i.e. per core. Results
are merged by module into `<out>.json` (a run of a few kinds keeps the others' last figures) and the Markdown table is rewritten.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def cpu_seconds() -> float:
    """CPU time spent so far by this process, its reaped children (TeX runs) and its live descendants
    (chromedriver, Chromium). `time.process_time` alone leaves out the renderers, which do most of the work
    of some kinds. (A descendant that ends is counted in its parent's children times.)"""
    import resource

    import psutil

    # getrusage counts in microseconds; os.times() in 10 ms ticks, 5% of a 0.2 s loop.
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    for p in psutil.Process().children(recursive=True):
        try:
            c = p.cpu_times()
            total += c.user + c.system + c.children_user + c.children_system
        except psutil.Error:  # ended between listing and reading
            pass
    return total


def samples(items: Iterable[object]) -> int:
    """How many of `items` are samples: a reject is work done, not a sample made, and the raw loops render
    only what our generator accepted."""
    from generators.base import Sample

    return sum(isinstance(x, Sample) for x in items)


def best_rates(loops: dict[str, Callable[[], int]], rounds: int = 3) -> dict[str, float]:
    """Samples per CPU-second (`cpu_seconds`) of each loop (each returns how many samples it made), best of
    `rounds` runs taken in turn. The machine is shared: CPU time leaves out time spent waiting for a core,
    alternating the loops exposes them to the same load, and the best run is the one least disturbed."""
    best = {name: 0.0 for name in loops}
    for _ in range(rounds):
        for name, loop in loops.items():
            t = cpu_seconds()
            n = loop()
            best[name] = max(best[name], n / max(cpu_seconds() - t, 1e-9))
    return best


def modules(kinds: list[str] | None) -> list[str]:
    found = sorted(p.stem.removeprefix("render_") for p in (ROOT / "benchmarks").glob("render_*.py"))
    if kinds:
        unknown = sorted(set(kinds) - set(found))
        if unknown:
            raise SystemExit(f"no benchmarks/render_<kind>.py for: {', '.join(unknown)}; present: {', '.join(found)}")
        return [k for k in found if k in kinds]
    return found


def run(kind: str, n: int) -> dict:
    started = time.perf_counter()
    try:
        rows = importlib.import_module(f"benchmarks.render_{kind}").bench(n)
        error = None
    except Exception as e:  # one broken renderer (missing Chromium, TeX) must not hide the others
        rows, error = [], f"{type(e).__name__}: {e}"
        traceback.print_exc()
    return {"module": kind, "rows": rows, "error": error, "n": n, "seconds": round(time.perf_counter() - started, 1),
            "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}


def ratio(row: dict) -> str:
    raw = row.get("raw_per_s")
    return f"{row['ours_per_s'] / raw:.2f}x" if raw else "–"


def table(results: dict[str, dict]) -> str:
    lines = ["| kind | ours (samples/s/core) | raw loop (samples/s/core) | ours / raw | raw loop | goal | module run |",
             "|---|---:|---:|---:|---|---|---|"]
    for kind in sorted(results):
        res = results[kind]
        if res["error"]:
            lines.append(f"| {kind} | – | – | – | failed: {res['error']} | – | {res['when']} |")
        for row in res["rows"]:
            lines.append(f"| {row['kind']} | {row['ours_per_s']:.1f} | "
                         f"{row['raw_per_s']:.1f} | {ratio(row)} | {row['raw_label']} | {row['goal']} | "
                         f"{res['when']}, n={res['n']} |" if row.get("raw_per_s") is not None else
                         f"| {row['kind']} | {row['ours_per_s']:.1f} | – | – | {row['raw_label']} | {row['goal']} | "
                         f"{res['when']}, n={res['n']} |")
    return "\n".join(lines)


# What ours does beyond its same-work baseline, said where a kind measures below 0.9x of it (the table shows
# which do in the run it records; `below_goal`).
EXTRA_WORK = {
    "chart": "margins fitted from font metrics so that no title, tick label or legend is clipped (the raw loop "
             "has no layout pass, so long labels can fall off the figure; `tight_layout` would cost it more than "
             "ours costs), the text "
             "gate that checks every text the target names is drawn in full and not covered (a second draw when "
             "it hides value labels or moves the legend), the font-coverage and blank checks, sampling and meta. "
             "Without them a target can name text the image does not show.",
    "echart": "the page's checks after `setOption`: the blank check and the text gate that reads the extent of "
              "every text the target names (off the canvas, overlapped, hidden or truncated is rejected), plus "
              "sampling and meta; the encoded canvas is the same.",
    "formula[fast]": "no speed: on this machine the browser path (latex2mathml, MathML in Chromium, as GOT "
                     "rendered formulas) is slower than plain TeX batched 50 formulas per document, which the "
                     "`faithful` backend also batches. `fast` gives a second layout engine and typeface; for "
                     "speed alone use `faithful`.",
    "formula[faithful]": "the untrusted-input checks (no file or shell access from TeX), the brace check, "
                         "normalisation of the target, a bad formula found by line and rejected alone, the blank "
                         "check and meta.",
    "table": "the checks and bookkeeping of a sample: the target in both markdown and LaTeX, the blank check, "
             "degradations, meta.",
    "document": "layout control (columns, fonts, headings sampled per page), the font-coverage check, the "
                "extraction cross-check against the target, the blank check and meta.",
}


def below_goal(results: dict[str, dict]) -> list[tuple[str, str]]:
    """(kind, ratio) of every compared row (a goal, not a reference) that measured below 0.9x of its baseline."""
    out = []
    for res in results.values():
        for row in res["rows"]:
            raw = row.get("raw_per_s")
            compared = row["goal"] not in ("", "–") and not row["goal"].startswith("(")
            if raw and compared and row["ours_per_s"] / raw < 0.9:
                out.append((row["kind"], ratio(row)))
    return sorted(out)


def extra_work_notes(results: dict[str, dict]) -> str:
    below = below_goal(results)
    if not below:
        return "Every kind is at or above 0.9x its same-work baseline in the runs recorded above.\n"
    groups: dict[str | None, list[str]] = {}
    for kind, r in below:
        key = next((k for k in sorted(EXTRA_WORK, key=len, reverse=True) if kind.startswith(k)), None)
        groups.setdefault(key, []).append(f"{kind} {r}")
    lines = ["Below 0.9x of the same-work baseline in the runs recorded above, and what the extra work buys:", ""]
    for key, kinds in groups.items():
        lines.append(f"- {', '.join(kinds)}: " + (EXTRA_WORK[key] if key else "(not yet explained)"))
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, results: dict[str, dict]) -> None:
    machines = sorted({r["machine"] for r in results.values()})
    path.write_text(
        "# Render benchmarks\n\n"
        "Samples per CPU-second (one core's worth of work) of each generator, against the raw library loop\n"
        "doing the same rendering without the generator (its checks, sampling and bookkeeping), measured in\n"
        "the same run. CPU time counts this process and its renderers (TeX runs, chromedriver, Chromium);\n"
        "each figure is the best of three alternating rounds. Regenerate with `python benchmarks/render.py`\n"
        "(`--kinds a,b` re-measures some kinds and keeps the others' last figures).\n\n"
        "The compared baseline (goal `>= 0.9x raw`) makes the same output as ours — the same inputs, image mode,\n"
        "PNG settings and layout steps — with the plainest library code; rows marked (reference) do more or\n"
        "less work than ours and are there for scale only.\n\n"
        f"Machine: {'; '.join(machines)}. The machine is shared (other jobs ran on the same cores during\n"
        "these runs), so figures move between runs; compare the ratio, which is measured within one run.\n\n"
        f"{table(results)}\n\n"
        f"{extra_work_notes(results)}\n"
        "Reference figures not re-measured here (docs/measured-figures.md): SynthDoG 0.52 images/s per core on this machine\n"
        "type; PyMuPDF page render alone 424/s; + pad + PNG 49/s (grayscale level 1: 111/s).\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=30, help="samples per measurement")
    ap.add_argument("--kinds", help="comma-separated subset (module names after render_)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "render-benchmarks.md"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    store = out.with_suffix(".json")
    results = json.loads(store.read_text()) if store.exists() else {}
    for kind in modules(args.kinds.split(",") if args.kinds else None):
        print(f"== {kind}", flush=True)
        res = run(kind, args.n)
        results[kind] = res
        for row in res["rows"]:
            print(f"  {row['kind']:<24} ours {row['ours_per_s']:8.1f}/s  raw {row.get('raw_per_s') or 0:8.1f}/s  "
                  f"{ratio(row):>6}  ({row['raw_label']}; goal {row['goal']})", flush=True)
        if res["error"]:
            print(f"  failed: {res['error']}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    store.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    write_markdown(out, results)
    print(f"wrote {out} and {store}")
    return 1 if any(r["error"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
