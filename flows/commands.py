"""`varyflow render | pipeline | retrain | reproduce`: the orchestration subcommands (flows.cli dispatches)."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any, Iterator


def register(sub: argparse._SubParsersAction) -> None:
    from flows.runners import RUNNERS
    from storage import DEFAULT_SHARD_ROWS

    p = sub.add_parser("render", help="render samples of one kind into a dataset version (Prefect flow)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", help="generator kind (listed below with what each needs)")
    _kinds_in_help(p)
    p.add_argument("--count", type=int, required=True, help="number of sample indices to render")
    p.add_argument("--seed", type=int, default=0, help="render seed: same params + seed give byte-identical shards (default 0)")
    p.add_argument("--out", default=None, help="storage root: a directory or s3://bucket/prefix (default $VARYFLOW_ROOT or ./varyflow-data)")
    p.add_argument("--dataset", default=None, help="dataset name (default: the kind)")
    p.add_argument("--shard-rows", type=int, default=None, help=f"sample indices per shard (one task each; default {DEFAULT_SHARD_ROWS})")
    p.add_argument("--lang", choices=("en", "zh", "mixed"), default=None, help="language of the text (the kind's default if unset)")
    p.add_argument("--workers", type=int, default=2, help="parallel shard tasks")
    p.add_argument("--runner", choices=RUNNERS, default="process", help="task runner (dask/ray for a cluster)")
    p.add_argument("--runner-address", default=None, help="address of an existing Dask/Ray cluster")
    p.add_argument("--source", default=None, help="input files of the kind (PDF folder, photos), local or s3://")
    p.add_argument("--params", default=None, help="more generator parameters as a JSON object")
    p.add_argument("--max-reject-rate", type=float, default=None, metavar="RATE",
                   help="fail without committing when more than this fraction (0-1) of the samples is rejected")
    p.add_argument("--json", action="store_true", help='print {"dataset","manifest","rows","shards","rejects"}')
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("pipeline", help="render every kind -> mix -> vocabulary generation -> integration -> evaluation")
    p.add_argument("--config", default=None, help="YAML or JSON config; unset keys keep the embedded defaults")
    p.add_argument("--out", default=None, help="storage root (overrides the config's root)")
    p.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    p.add_argument("--json", action="store_true", help="print the pipeline's result as JSON")
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("retrain", help="trigger the training deployment when data or training config changed")
    p.add_argument("--config", default=None, help="pipeline config (its mix and train sections are compared)")
    p.add_argument("--out", default=None, help="storage root (overrides the config's root)")
    p.add_argument("--deployment", default=None, help="deployment to run (default: the config's retrain.deployment)")
    p.add_argument("--dry-run", action="store_true", help="say what would happen, trigger nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("api", help="the background Prefect API that commands start when PREFECT_API_URL is unset")
    p.add_argument("--stop", action="store_true", help="stop it now (it also stops after 30 idle minutes)")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("reproduce", help="re-render every shard a checkpoint was trained on and compare sha256")
    p.add_argument("checkpoint", help="checkpoint location (a directory with lineage.json)")
    p.add_argument("--out", default=None, help="where re-rendered shards go (default: a temporary directory)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reproduce)


def _kinds_in_help(parser: argparse.ArgumentParser) -> None:
    """`render --help` ends with every kind, what it makes and what it needs. Built only when help is asked
    for: describing a kind imports its generator (matplotlib, PyMuPDF...), which no other command should pay."""
    plain = parser.format_help

    def with_kinds() -> str:
        from flows.checks import describe_kind
        from generators import KINDS

        parser.epilog = "kinds:\n" + "\n".join(f"  {describe_kind(kind)}" for kind in KINDS)
        return plain()

    parser.format_help = with_kinds  # type: ignore[method-assign]


def _prefect(args: argparse.Namespace) -> None:
    """Configure Prefect's loggers now and, unless --debug, keep tracebacks off the terminal."""
    import prefect.logging.configuration as logging_configuration

    from flows.cli import hide_console_tracebacks

    # Importing prefect configures its loggers (prefect/main.py); a second setup_logging() costs ~0.3 s CPU.
    if not logging_configuration.PROCESS_LOGGING_CONFIG:
        logging_configuration.setup_logging()
    if not getattr(args, "debug", False):
        hide_console_tracebacks()


def connected():
    """The Prefect API for this command (`flows.api`): PREFECT_API_URL if set, else this machine's background API."""
    from flows.api import connected as api_connected

    return api_connected()


# The gallery of shard 0 that the render flow asks for (`flows.render.render`'s default): a job started ahead must be
# the very call the flow's task makes, or the task does not claim it (tests/test_runners.py checks that it does).
_RENDER_GALLERY = 6


def _start_workers(workers: int, kinds: dict[str, dict[str, Any]], render: dict[str, Any] | None = None) -> None:
    """Start the render pool's processes now, importing and building the kinds' generators (kind -> params, as the
    flow will ask for them), while Prefect imports and reaches its API. With `render` (the arguments of one render),
    its first shards start rendering too (`_start_ahead`): a plain loop's workers would not wait for Prefect either."""
    import threading

    from flows.runners import kind_modules, start_local_pool

    modules = kind_modules(kinds)

    def then(pool: Any) -> None:
        pool.warm(modules, list(kinds.items()))
        if render is not None:
            _start_ahead(pool, **render)

    # In a thread: forking the first workers waits for the fork server's imports, which can overlap Prefect's.
    threading.Thread(target=lambda: start_local_pool(workers, preload=modules, then=then), name="varyflow-pool-start",
                     daemon=True).start()


def _start_ahead(pool: Any, kind: str, params: dict[str, Any], seed: int, count: int, shard_rows: int, root: str | None,
                 dataset: str | None) -> None:
    """Start the render's first shard tasks' work (one shard per worker) in the pool, as the very calls the flow's
    `render_shard` tasks make: `shard_job` of a whole shard (rendered and written in the worker), or for a small
    render split across workers, `rows_job` of each part (`flows.render._render_split`). The tasks' own `submit`
    of those calls takes these jobs over instead of rendering them again. Not when the dataset already has
    shards (a rerun or a resumed render): nothing may start that the flow would not render."""
    from flows.common import default_root
    from flows.runners import split_parts
    from flows.shardwork import rows_job, shard_job
    from generators.render_unit import RenderSpec, count_within_inputs, input_digest
    from storage import Location, StorageFiles

    root, dataset = root or default_root(), dataset or kind
    if (Location.parse(root) / f"datasets/{dataset}/shards").list():
        return
    inputs = input_digest(kind, params, StorageFiles())
    count, _ = count_within_inputs(count, inputs, params.get("source"))
    spec = RenderSpec.of(kind, count=count, seed=seed, shard_rows=shard_rows, params=params, inputs=inputs)
    shards = spec.shards()
    parts = split_parts(len(shards), max(stop - start for _, start, stop in shards), pool.workers)
    for k, _, _ in shards[:pool.workers]:
        gallery = _RENDER_GALLERY if k == 0 else 0
        if parts == 1:
            pool.start_ahead(shard_job, spec, root, dataset, k, gallery, reuse_generator=True)
            continue
        for i, (a, b) in enumerate(spec.shard(k).parts(parts)):  # the flow's `_render_split` cuts it the same way
            pool.start_ahead(rows_job, kind, params, seed, a, b, gallery if i == 0 else 0, inputs=inputs)


def cmd_api(args: argparse.Namespace) -> int:
    from flows.api import background_url, healthy, prefect_home, stop_background_api

    if args.stop:
        print("stopped the background Prefect API" if stop_background_api() else "no background Prefect API was running")
        return 0
    url = background_url()
    if url and healthy(url):
        print(f"background Prefect API for {prefect_home()}: {url}")
    else:
        print(f"no background Prefect API for {prefect_home()}; the next render or pipeline starts one")
    return 0


def _error(message: str) -> Exception:
    from flows.cli import CliError

    return CliError(message)


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[None]:
    """A rich progress bar on stderr per kind, fed by the render flow as samples are rendered."""
    from flows import render as render_mod

    if not enabled or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("samples"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=False)
    bars: dict[str, Any] = {}

    def listener(kind: str, done: int, total: int) -> None:
        if kind not in bars:
            bars[kind] = progress.add_task(f"render {kind}", total=total)
        progress.update(bars[kind], completed=done, total=total)

    render_mod.PROGRESS_LISTENERS.append(listener)
    try:
        with progress:
            yield
    finally:
        render_mod.PROGRESS_LISTENERS.remove(listener)


def cmd_render(args: argparse.Namespace) -> int:
    from generators import KINDS

    if args.kind not in KINDS:
        raise _error(f"unknown kind {args.kind!r}; known kinds: {', '.join(KINDS)}")
    params: dict[str, Any] = {}
    if args.params:
        try:
            params = json.loads(args.params)
        except json.JSONDecodeError as e:
            raise _error(f"--params is not JSON: {e.msg}") from None
        if not isinstance(params, dict):
            raise _error("--params must be a JSON object")
    if args.lang:
        params["lang"] = args.lang
    if args.source:
        params["source"] = args.source
    if args.count < 1:
        raise _error(f"--count must be at least 1, got {args.count}")
    if args.shard_rows is not None and args.shard_rows < 1:
        raise _error(f"--shard-rows must be at least 1, got {args.shard_rows}")
    if args.workers < 1:
        raise _error(f"--workers must be at least 1, got {args.workers}")
    if args.max_reject_rate is not None and not 0 <= args.max_reject_rate <= 1:
        raise _error(f"--max-reject-rate must be between 0 and 1, got {args.max_reject_rate}")
    from flows.checks import check_render

    check_render(args.kind, params, args.out)  # before Prefect starts: one line, exit 1
    from storage import DEFAULT_SHARD_ROWS

    shard_rows = DEFAULT_SHARD_ROWS if args.shard_rows is None else args.shard_rows
    if args.runner == "process":
        _start_workers(args.workers, {args.kind: params}, render=dict(
            kind=args.kind, params=params, seed=args.seed, count=args.count, shard_rows=shard_rows, root=args.out,
            dataset=args.dataset))
    _prefect(args)
    from flows.render import run_render
    from flows.runners import active_pool_drop_ahead

    try:
        with connected(), progress_bar(True):
            result = run_render(kind=args.kind, count=args.count, seed=args.seed, out=args.out, dataset=args.dataset,
                                shard_rows=shard_rows, params=params, workers=args.workers, runner=args.runner,
                                runner_address=args.runner_address, max_reject_rate=args.max_reject_rate)
    finally:
        active_pool_drop_ahead()  # a failed render leaves no head start rendering
    if args.json:
        print(json.dumps({k: result[k] for k in ("dataset", "manifest", "rows", "shards", "rejects")}))
    else:
        rejects = sum(result["rejects"].values())
        print(f"{result['dataset']}: {result['rows']} rows in {result['shards']} shards, {rejects} rejects -> {result['manifest']}")
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    from flows.pipeline import load_config, pipeline_report, run_pipeline

    config = load_config(args.config, root=args.out)
    _prefect(args)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config, sort_keys=False))
        return 0
    if config.get("runner", "process") == "process":
        _start_workers(int(config["workers"]), {k: dict((v or {}).get("params") or {}) for k, v in config["render"].items()})
    with connected(), progress_bar(True):
        result = run_pipeline(config)
    print(json.dumps(result, indent=1, default=str) if args.json else pipeline_report(result))
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from flows.pipeline import load_config
    from flows.retrain import retrain

    config = load_config(args.config, root=args.out)
    _prefect(args)
    outcome = retrain(config, deployment=args.deployment, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(outcome, default=str))
    elif outcome["changed"]:
        what = "would trigger" if args.dry_run else "triggered"
        run = f" (flow run {outcome['flow_run_id']})" if outcome.get("flow_run_id") else ""
        print(f"{what} {outcome['deployment']}{run}: " + "; ".join(outcome["reasons"]))
    else:
        print(f"up to date: {outcome['checkpoint']} was trained on the newest manifests with this config")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from flows.reproduce import reproduce

    _prefect(args)
    with connected():
        report = reproduce(args.checkpoint, out=args.out, workers=args.workers)
    if args.json:
        print(json.dumps(report, default=str))
    else:
        for shard in report["shards"]:
            mark = "match" if shard["match"] else "MISMATCH"
            print(f"{mark:8} {shard['uri']}  {shard['sha256'][:12]} vs {shard['reproduced_sha256'][:12] if shard['reproduced_sha256'] else '-'}")
        print(f"{report['matched']}/{len(report['shards'])} shards reproduced byte-identical (re-rendered under {report['out']})")
    return 0 if report["matched"] == len(report["shards"]) else 1
