"""`varyflow train vocab|integrate`, `varyflow eval`, `varyflow ocr` (also `python -m training ...`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.errors import TrainingError

if TYPE_CHECKING:
    from training.config import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a Vary stage (runs without Prefect; use the deepspeed launcher for several ranks)")
    stages = train.add_subparsers(dest="stage", metavar="STAGE")
    stages.required = True
    for stage, help_ in (("vocab", "stage 1: Vary-tiny, vocabulary generation"),
                         ("integrate", "stage 2: Vary-base / Vary-toy on a stage-1 vocabulary network")):
        p = stages.add_parser(stage, help=help_)
        _train_options(p)
        p.set_defaults(func=cmd_train, stage=stage)

    ev = sub.add_parser("eval", help="greedy-decode a manifest and report edit distance, F1, BLEU, METEOR")
    ev.add_argument("--checkpoint", required=True, help="checkpoint folder (with lineage.json)")
    ev.add_argument("--data", action="append", required=True, metavar="MANIFEST",
                    help="manifest .json or dataset directory to decode (repeat for several)")
    ev.add_argument("--split", choices=["heldout", "train", "all"], default="heldout",
                    help="heldout (default): the rows the checkpoint's training never read; train: its training "
                         "rows (labelled so); all: every row (a separate test set)")
    ev.add_argument("--limit", type=int, help="score at most this many rows (default: all)")
    ev.add_argument("--max-new-tokens", type=int, default=512, help="decode length limit per row (default 512)")
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.set_defaults(func=cmd_eval)

    ocr = sub.add_parser("ocr", help="print the greedy decode of each image")
    ocr.add_argument("--checkpoint", required=True, help="checkpoint folder to decode with")
    ocr.add_argument("--prompt", default="Provide the OCR results of this image.", help="stage-2 models only")
    ocr.add_argument("--max-new-tokens", type=int, default=512, help="decode length limit per image (default 512)")
    ocr.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    ocr.set_defaults(func=cmd_ocr)

    export = sub.add_parser("export", help="write an inference-only checkpoint folder (weights, config, code, "
                                           "tokenizer; no optimizer state)")
    export.add_argument("checkpoint", metavar="CKPT")
    export.add_argument("--out", required=True, metavar="DIR")
    export.set_defaults(func=cmd_export)


STAGE_MODELS = {"vocab": ("vary_tiny",), "integrate": ("vary_base", "vary_toy")}


def _train_options(p: argparse.ArgumentParser) -> None:
    """One option per `TrainConfig` field with `cli` metadata, named, typed and documented by the field.
    Defaults stay out of the namespace (SUPPRESS), so a config file or recipe is overridden only by the
    options actually given."""
    import dataclasses

    from training.config import TrainConfig, field_types

    types = field_types()
    defaults = TrainConfig()
    p.add_argument("--config", metavar="JSON", help="a training config file (TrainConfig fields); options given "
                   "here override it")
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        kind = types[f.name]
        default = getattr(defaults, f.name)
        help_ = meta.get("help", "") + ("" if default in (None, [], False) else f" (default: {default})")
        common = dict(dest=f.name, default=argparse.SUPPRESS, help=help_)
        if kind is bool:
            if default:
                p.add_argument("--no-" + flag[2:], action="store_false", **common)
            else:
                p.add_argument(flag, action="store_true", **common)
        elif f.name == "manifests":
            p.add_argument(flag, action="append", metavar="MANIFEST", **common)
        elif f.name == "weights":
            p.add_argument(flag, type=lambda s: [float(x) for x in s.split(",")], **common)
        elif kind == (dict[str, Any] | None):
            p.add_argument(flag, type=json.loads, metavar="JSON", **common)
        else:
            base = next((t for t in (int, float, str) if kind is t or kind == (t | None)), str)
            p.add_argument(flag, type=base, choices=meta.get("choices"), **common)
    p.add_argument("--dry-run", action="store_true", help="build the model on the meta device and print parameters, "
                   "tokens per step and memory per GPU; train nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of a `train` command line: defaults < recipe < --config file < options given."""
    import dataclasses

    from training.config import TrainConfig

    given: dict = {}
    if getattr(args, "config", None):
        given.update(TrainConfig.from_file(args.config).to_dict())
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given.update({k: v for k, v in vars(args).items() if k in names})
    given["stage"] = args.stage
    if not given.get("recipe") and "model" not in given:
        given["model"] = STAGE_MODELS[args.stage][0]
    if "manifests" not in given:
        raise TrainingError("no manifests given (--data MANIFEST, or a --config file naming them)")
    cfg = TrainConfig.from_dict(given)
    if cfg.model not in STAGE_MODELS[args.stage]:
        raise TrainingError(f"train {args.stage} trains {' or '.join(STAGE_MODELS[args.stage])}, not {cfg.model}")
    return cfg


def argv_for(cfg: TrainConfig) -> list[str]:
    """`python -m training` arguments that `config_from_args` turns back into `cfg`, every field included
    (the launcher hands ranks a config file instead; this is for people who want a command line).

    Values go as `--opt=value` so one starting with a dash is never read as an option. Raises
    TrainingError for a field the command line cannot carry."""
    import dataclasses
    import typing

    argv = ["train", cfg.stage]
    if not cfg.manifests:
        raise TrainingError("a training command line needs at least one manifest (--data)")
    types = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        name, value = f.name, getattr(cfg, f.name)
        if name == "stage":
            continue
        if not f.metadata or not f.metadata.get("cli", True):
            raise TrainingError(f"TrainConfig.{name}={value!r} has no command-line option; launch with a config file")
        flag = f.metadata.get("flag") or "--" + name.replace("_", "-")
        if name == "manifests":
            argv += [f"{flag}={m}" for m in value]
        elif name == "weights":
            if value is not None:
                argv.append(f"{flag}=" + ",".join(repr(float(w)) for w in value))
        elif types[name] == (dict[str, Any] | None):
            if value is not None:
                argv.append(f"{flag}={json.dumps(value, sort_keys=True)}")
        elif types[name] is bool:
            if value != f.default:
                argv.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            argv.append(f"{flag}={value!r}" if isinstance(value, float) else f"{flag}={value}")
    return argv


def cmd_train(args: argparse.Namespace) -> int:
    import os

    cfg = config_from_args(args)
    if args.dry_run:
        from training.dry_run import dry_run, format_report

        report = dry_run(cfg, world_size=int(os.environ.get("WORLD_SIZE", "1")))
        print(json.dumps(report) if args.json else format_report(report))
        return 0
    from training.run import train

    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        if args.json:
            print(json.dumps({"checkpoint": result.checkpoint, "losses": result.losses, "metrics": result.metrics}))
        else:
            print(f"checkpoint {result.checkpoint}: {len(result.losses)} steps, final loss {result.losses[-1]:.4f}, "
                  f"{result.metrics['skipped']} rows skipped")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.export import export

    print(export(checkpoint_dir(args.checkpoint), args.out))
    return 0


def checkpoint_dir(path: str) -> str:
    """A checkpoint directory, or a training `--out` directory standing for its newest complete checkpoint. An
    `s3://` checkpoint is fetched into the local cache first (`storage.publish.fetch_checkpoint`)."""
    from storage import is_uri

    if is_uri(path):
        from storage.publish import fetch_checkpoint

        return str(fetch_checkpoint(path))
    from training.checkpoint import latest_checkpoint

    p = Path(path)
    if p.is_dir() and not (p / "config.json").is_file():
        found = latest_checkpoint(p)  # the one rule for "newest complete checkpoint"
        if found is not None:
            return str(found)
    return path


def cmd_eval(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate

    m = evaluate(checkpoint_dir(args.checkpoint), args.data, limit=args.limit, max_new_tokens=args.max_new_tokens,
                 split=args.split)
    if args.json:
        print(json.dumps(m, ensure_ascii=False))
    else:
        print(f"{m['samples']} samples of {m['split_label']} ({m['skipped']} skipped)")
        for k in ("edit_distance", "f1", "precision", "recall", "bleu", "meteor"):
            if k in m:
                print(f"  {k:14s} {m[k]:.4f}")
    return 0


def cmd_ocr(args: argparse.Namespace) -> int:
    """Greedy decode per image. A bad image gets one line on stderr and the rest go on (exit 1); when no
    image can be decoded the command fails with one line, before loading the model if none can even be read."""
    from training.evaluate import decode, load_checkpoint

    def fail(image: str, reason: str) -> None:
        failures.append(f"{image}: {reason}")
        if len(args.images) > 1:
            print(failures[-1], file=sys.stderr)

    failures: list[str] = []
    readable = []
    for image in args.images:
        if Path(image).is_file():
            readable.append(image)
        else:
            fail(image, "no such file" if not Path(image).exists() else "not a file")
    if readable:
        model, tok = load_checkpoint(checkpoint_dir(args.checkpoint))
        from training.data import DecodeError  # imports torch: after the checkpoint is known to exist
    for image in readable:
        try:
            text = decode(model, tok, Path(image).read_bytes(), args.prompt, args.max_new_tokens)
        except OSError as e:
            fail(image, f"cannot read: {e.strerror or e}")
            continue
        except DecodeError as e:
            fail(image, f"not a decodable image ({e})")
            continue
        print(f"==> {image} <==\n{text}" if len(args.images) > 1 else text, flush=True)
    if len(failures) == len(args.images):
        raise TrainingError(failures[0] if len(failures) == 1 else f"none of the {len(failures)} images could be read")
    return 1 if failures else 0
