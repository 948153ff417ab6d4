"""The pipeline flow: render every kind -> mix -> vocabulary generation -> integration -> evaluation.

On its embedded defaults it is the README's main job: local storage, Prefect's ephemeral API, the tiny
model preset on CPU, small counts; a config file (YAML or JSON) overrides any part of them.
"""
from __future__ import annotations

import contextvars
import copy
import importlib.util
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run as runtime_flow_run

from flows.common import artifact_key, default_root, root_tag
from storage.location import is_uri

DEFAULT_CONFIG: dict[str, Any] = {
    "root": None,  # None: $VARYFLOW_ROOT or ./varyflow-data
    "seed": 0,
    "workers": 2,
    "runner": "process",
    # Input files the pipeline makes for itself before rendering. `pdfs`: {count, seed} PDFs typeset by the
    # `document` generator into <root>/inputs/pdfs, the source of a `pdf` kind given no source of its own;
    # null (or count 0) makes none.
    "inputs": {"pdfs": {"count": 6, "seed": 1}},
    # kind -> {count, shard_rows, params}. `negative` needs input photos, so it joins only when a config
    # gives it a source; `pdf` reads the PDFs of `inputs.pdfs` unless given a source.
    "render": {
        "document": {"count": 32, "shard_rows": 16},
        "chart": {"count": 24, "shard_rows": 12},
        "echart": {"count": 16, "shard_rows": 8},
        "formula": {"count": 32, "shard_rows": 16},
        "table": {"count": 16, "shard_rows": 8},
        "latex_page": {"count": 8, "shard_rows": 4},
        "pdf": {"shard_rows": 8},  # count: one file per sample index, default inputs.pdfs.count
    },
    "mix": {"generation": "vary-tiny", "integration": "vary-base"},
    "train": {
        "preset": "tiny",
        "deepspeed": False,
        "steps": 100,
        "batch_size": 2,  # whole pages are long sequences: 2 per step keeps the demo's time
        "lr": 5e-4,
        "seed": 0,
        # A 4000-token BPE on the demo's text and 2048 positions: every target (a full document page is up
        # to ~1400 tokens) fits with its stop token, so no row teaches the model a text without an end.
        "max_length": 2048,
        "tokenizer_vocab_size": 4000,
        "holdout": 0.1,  # rows (by sample id) training never reads; the evaluation scores them
        "log_every": 25,
    },
    "integration": {"steps": 100},  # stage-2 overrides of `train`
    "launch": None,  # {"gpus", "nodes", "hostfile", ...} for the deepspeed launcher
    "evaluate": {"limit": 8, "max_new_tokens": 48},
    "retrain": {"deployment": "vocabulary_generation/vocabulary-generation"},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "render":
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(path: str | None = None, root: str | None = None) -> dict[str, Any]:
    """The embedded defaults overlaid with a YAML/JSON file (see `complete_config`)."""
    loaded: dict[str, Any] = {}
    if path:
        import yaml

        text = Path(path).read_text()
        try:
            loaded = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise ValueError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'} ({e})") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
    return complete_config(loaded, root)


def complete_config(loaded: dict[str, Any], root: str | None = None) -> dict[str, Any]:
    """Defaults + `loaded`. A `render` section replaces the default kinds (so a config can render just
    one); other sections merge key by key. Without one, the default kinds whose generators exist."""
    unknown = set(loaded) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown config sections {', '.join(sorted(unknown))}; known: {', '.join(DEFAULT_CONFIG)}")
    config = _merge(DEFAULT_CONFIG, loaded)
    if "render" not in loaded:
        config["render"] = {k: v for k, v in config["render"].items() if _available(k)}
    config["root"] = root or config["root"] or default_root()
    if "render" not in loaded and _input_pdfs_spec(config) is None:
        config["render"].pop("pdf", None)  # the defaults asked for no input PDFs: nothing for `pdf` to read
    _point_pdf_at_inputs(config)
    return config


def input_pdfs_location(root: str) -> str:
    """Where the pipeline writes the PDFs of `inputs.pdfs`."""
    from storage import Location

    return (Location.parse(root) / "inputs" / "pdfs").uri


def _input_pdfs_spec(config: dict[str, Any]) -> dict[str, int] | None:
    spec = (config.get("inputs") or {}).get("pdfs")
    if not spec or int(spec.get("count", 0)) <= 0:
        return None
    return {"count": int(spec["count"]), "seed": int(spec.get("seed", 0))}


def _point_pdf_at_inputs(config: dict[str, Any]) -> None:
    """A `pdf` kind without a source reads the generated input PDFs (one sample index per file)."""
    spec, pdfs = config["render"].get("pdf"), _input_pdfs_spec(config)
    if "pdf" not in config["render"] or pdfs is None or ((spec or {}).get("params") or {}).get("source"):
        return
    spec = dict(spec or {})
    spec["params"] = {**(spec.get("params") or {}), "source": input_pdfs_location(config["root"])}
    spec.setdefault("count", pdfs["count"])
    config["render"]["pdf"] = spec


def write_input_pdfs(root: str, count: int, seed: int) -> dict[str, Any]:
    """`count` one-page PDFs typeset by the `document` generator (`typeset(seed, i)`) into
    <root>/inputs/pdfs, named by sample id so the sorted listing is index order. A file already there with
    the same bytes is left alone, so a rerun writes nothing; an index the generator rejects is counted,
    not replaced by another."""
    from generators import Reject, get_generator
    from generators.base import sample_id
    from storage import Location

    folder = Location.parse(input_pdfs_location(root))
    written, kept, rejects = [], [], {}
    gen = get_generator("document")
    try:
        for index in range(count):
            try:
                pdf = gen.typeset(seed, index)[0]
            except Reject as r:
                rejects[r.reason] = rejects.get(r.reason, 0) + 1
                continue
            loc = folder / f"{sample_id('document', seed, index)}.pdf"
            if loc.exists() and loc.read_bytes() == pdf:
                kept.append(loc.uri)
            else:
                loc.write_bytes(pdf)
                written.append(loc.uri)
    finally:
        gen.close()
    return {"folder": folder.uri, "written": len(written), "unchanged": len(kept), "rejects": rejects}


def _available(kind: str) -> bool:
    """Whether a default kind's generator is installed (the embedded defaults skip absent ones)."""
    from generators import KINDS

    return kind in KINDS and importlib.util.find_spec(KINDS[kind].split(":")[0]) is not None


def check_render_config(config: dict[str, Any]) -> None:
    """Build every configured generator from its params (construction only: no rendering, no listing) so a
    wrong parameter, or an input kind given no `source`, fails before hours of rendering the other kinds."""
    from flows.checks import needs_source
    from flows.shardwork import input_files
    from generators import GeneratorError
    from generators.render_unit import build_generator

    for kind, spec in config["render"].items():
        params = dict((spec or {}).get("params") or {})
        try:
            # Kinds that read one input file per sample have nothing to render without a source.
            if needs_source(kind) and not params.get("source"):
                raise GeneratorError("it reads input files: give render.%s.params.source (a folder, list or s3:// prefix)" % kind)
            build_generator(kind, params, input_files()).close()
        except (GeneratorError, TypeError) as e:
            raise ValueError(f"render.{kind}: {e}") from None


def _render_kinds_of(config: dict[str, Any], preset: str, kinds: list[str]) -> list[str]:
    """The kinds among `kinds` whose datasets the mix preset reads (every kind when the preset is not one known)."""
    from flows.mix import MIX_PRESETS

    if preset not in MIX_PRESETS:
        return list(kinds)
    return [k for k in kinds if ((config["render"][k] or {}).get("dataset") or k) in MIX_PRESETS[preset]]


def train_config(config: dict[str, Any], stage: str) -> dict[str, Any]:
    cfg = dict(config["train"])
    if stage == "integrate":
        cfg.update(config.get("integration") or {})
    if not is_uri(config["root"]):  # a remote root: the stage trains in scratch and publishes there
        cfg.setdefault("out", str(Path(config["root"]) / "checkpoints" / stage))
    return cfg


@flow(name="pipeline", flow_run_name="pipeline")
def pipeline(config: dict[str, Any]) -> dict[str, Any]:
    """`config` may be partial (a deployment's parameters): it is completed from the embedded defaults."""
    from flows.mix import mix
    from flows.render import DEFAULT_SHARD_ROWS, render
    from flows.train import vocabulary_generation, vocabulary_integration

    logger = get_run_logger()
    config = complete_config(config)
    check_render_config(config)
    root = config["root"]
    pdfs = _input_pdfs_spec(config)
    makes_pdfs = bool(pdfs) and ((config["render"].get("pdf") or {}).get("params") or {}).get("source") == input_pdfs_location(root)

    def render_kind(kind: str) -> dict[str, Any]:
        spec = dict(config["render"][kind] or {})
        return render(kind=kind, count=int(spec.get("count", 8)), seed=int(spec.get("seed", config["seed"])), out=root,
                      dataset=spec.get("dataset"), shard_rows=int(spec.get("shard_rows", DEFAULT_SHARD_ROWS)),
                      params=spec.get("params") or {}, workers=int(config["workers"]), runner=config["runner"])

    launch = config.get("launch")
    ev = config.get("evaluate") or {}
    mixes: dict[str, dict[str, Any]] = {}
    # The kinds are independent: their render subflows run at once, each in a thread with this run's context (so
    # they are its subflows), and their shards share the process's worker pool, so `workers` still bounds the
    # rendering processes. The kinds vocabulary generation reads render first (`pdf` once its input PDFs are
    # written); the others (stage 2's: formula, table, latex_page) start when those are done and render while
    # stage 1 trains: a small model's training step keeps about one core busy, so on a small machine the renders
    # take the rest instead of running before it.
    kinds = list(config["render"])
    first = _render_kinds_of(config, str(config["mix"]["generation"]), kinds)
    rendered: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(kinds)), thread_name_prefix="varyflow-pipeline-render") as pool:
        def start(group: list[str]) -> dict[str, Any]:
            return {kind: pool.submit(contextvars.copy_context().run, render_kind, kind) for kind in group}

        futures = start([k for k in first if not (makes_pdfs and k == "pdf")])
        if makes_pdfs:
            made = write_input_pdfs(root, **pdfs)
            logger.info("input PDFs in %s: %d written, %d unchanged, rejects %s", made["folder"], made["written"],
                        made["unchanged"], made["rejects"] or "none")
            futures.update(start([k for k in first if k == "pdf"]))
        rendered.update({kind: futures[kind].result() for kind in first})
        futures = start([k for k in kinds if k not in first])
        mixes["generation"] = mix(name=config["mix"]["generation"], preset=config["mix"]["generation"], out=root)
        gen = vocabulary_generation(config=train_config(config, "vocab"), mixture=mixes["generation"]["uri"],
                                    launch=launch, eval_limit=ev.get("limit"),
                                    eval_max_new_tokens=int(ev.get("max_new_tokens", 64)), out=root)
        rendered.update({kind: futures[kind].result() for kind in futures})
    rendered = {kind: rendered[kind] for kind in kinds}
    mixes.update({stage: mix(name=preset, preset=preset, out=root) for stage, preset in config["mix"].items()
                  if stage != "generation"})
    integ_cfg = {**train_config(config, "integrate"), "init_from": gen["checkpoint"]}
    integ = vocabulary_integration(config=integ_cfg, mixture=mixes["integration"]["uri"], launch=launch,
                                   eval_limit=ev.get("limit"), eval_max_new_tokens=int(ev.get("max_new_tokens", 64)), out=root)
    result = {
        "root": root,
        "datasets": {k: {"manifest": v["manifest"], "rows": v["rows"], "rejects": v["rejects"]} for k, v in rendered.items()},
        "mixtures": {k: v["uri"] for k, v in mixes.items()},
        "checkpoints": {"vocab": gen["checkpoint"], "integrate": integ["checkpoint"]},
        "eval": {"vocab": gen["eval"], "integrate": integ["eval"]},
        "final_loss": {"vocab": (gen["losses"] or [None])[-1], "integrate": (integ["losses"] or [None])[-1]},
        "lineage": f"{str(integ['checkpoint']).rstrip('/')}/lineage.json",  # a local path or an s3:// URI
        "flow_run_id": str(runtime_flow_run.id),
    }
    create_markdown_artifact(pipeline_report(result, markdown=True), key=artifact_key("pipeline", "summary", root_tag(root)),
                             description="where the pipeline's outputs are")
    logger.info("pipeline done: %s", json.dumps(result["checkpoints"]))
    return result


def run_pipeline(config: dict[str, Any]) -> dict[str, Any]:
    return pipeline(config=config)


def ui_hint(flow_run_id: str | None) -> str:
    """How to look at the runs: the embedded API (`flows.api`, no UI) kept them in PREFECT_HOME's database."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME

    from flows.api import background_url

    api = PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL")
    if api and api == background_url():
        api = None
    path = f"/runs/flow-run/{flow_run_id}" if flow_run_id else "/runs"
    if api:
        return f"open {api.rstrip('/').removesuffix('/api')}{path}"
    return (f"run `prefect server start` (it reads the runs kept in {PREFECT_HOME.value()}), "
            f"then open http://127.0.0.1:4200{path}")


def _stage_line(stage: str, result: dict[str, Any]) -> str:
    """Final loss beside the held-out evaluation (rows training never read)."""
    loss = (result.get("final_loss") or {}).get(stage)
    ev = (result.get("eval") or {}).get(stage) or {}
    scores = ", ".join(f"{k.replace('_', ' ')} {ev[k]:.3f}" for k in ("edit_distance", "f1", "bleu") if k in ev)
    return (f"{stage:<9} final loss {loss:.3f}" if loss is not None else f"{stage:<9} final loss -") + \
        f"; {'held-out' if ev.get('holdout', 0) > 0 else 'TRAINING'} ({ev.get('samples', 0)} rows): {scores or 'no rows scored'}"


def pipeline_report(result: dict[str, Any], markdown: bool = False) -> str:
    lines = [
        f"data:        {result['root'] if is_uri(result['root']) else os.path.abspath(result['root'])}",
        *(f"  {k:<11} {v['rows']:>4} rows  {v['manifest']}" for k, v in result["datasets"].items()),
        *(f"mixture:     {k}: {v}" for k, v in result["mixtures"].items()),
        f"checkpoints: vocabulary generation {result['checkpoints']['vocab']}",
        f"             vocabulary integration {result['checkpoints']['integrate']}",
        *(f"{'training:' if i == 0 else '':<12} {_stage_line(stage, result)}" for i, stage in enumerate(("vocab", "integrate"))),
        f"lineage:     {result['lineage']}  (varyflow reproduce {result['checkpoints']['integrate']})",
        f"Prefect UI:  {ui_hint(result.get('flow_run_id'))}",
    ]
    return _report_markdown(result) if markdown else "\n".join(lines)


def _report_markdown(result: dict[str, Any]) -> str:
    """The summary artifact: tables with locations as text to copy (a browser opens neither file:// nor s3://)."""
    from flows.common import md_cell

    def cell(text: Any) -> str:
        return f"`{md_cell(str(text), 300)}`"

    root = result["root"] if is_uri(result["root"]) else os.path.abspath(result["root"])
    lines = [f"# pipeline outputs under {cell(root)}", "", "| dataset | rows | rejects | manifest |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['rows']} | {sum((v.get('rejects') or {}).values())} | {cell(v['manifest'])} |"
              for k, v in result["datasets"].items()]
    lines += ["", "| mixture | spec |", "|---|---|", *(f"| {k} | {cell(v)} |" for k, v in result["mixtures"].items())]
    lines += ["", "| stage | checkpoint | final loss | held-out rows | edit distance | F1 | BLEU |", "|---|---|---|---|---|---|---|"]
    for stage in ("vocab", "integrate"):
        loss = (result.get("final_loss") or {}).get(stage)
        ev = (result.get("eval") or {}).get(stage) or {}
        scores = [f"{ev[k]:.3f}" if isinstance(ev.get(k), (int, float)) else "-" for k in ("edit_distance", "f1", "bleu")]
        lines.append(f"| {stage} | {cell(result['checkpoints'][stage])} | {f'{loss:.3f}' if loss is not None else '-'} | "
                     f"{ev.get('samples', 0)} | " + " | ".join(scores) + " |")
    lines += ["", f"Lineage: {cell(result['lineage'])}; check it with {cell('varyflow reproduce ' + result['checkpoints']['integrate'])}."]
    return "\n".join(lines)
