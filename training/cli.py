"""`varyflow train vocab|integrate`, `varyflow eval`, `varyflow ocr` (also `python -m training ...`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from training.errors import TrainingError

if TYPE_CHECKING:
    from training.config import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a Vary stage (runs without Prefect; use the deepspeed launcher for several ranks)")
    stages = train.add_subparsers(dest="stage", metavar="STAGE")
    stages.required = True
    for stage, help_, models, default in (
        ("vocab", "stage 1: Vary-tiny, vocabulary generation", ["vary_tiny"], "vary_tiny"),
        ("integrate", "stage 2: Vary-base / Vary-toy on a stage-1 vocabulary network", ["vary_base", "vary_toy"], "vary_base"),
    ):
        p = stages.add_parser(stage, help=help_)
        p.add_argument("--model", choices=models, default=default)
        _train_options(p)
        p.set_defaults(func=cmd_train, stage=stage)

    ev = sub.add_parser("eval", help="greedy-decode a manifest and report edit distance, F1, BLEU, METEOR")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--data", action="append", required=True, metavar="MANIFEST")
    ev.add_argument("--limit", type=int)
    ev.add_argument("--max-new-tokens", type=int, default=512)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_eval)

    ocr = sub.add_parser("ocr", help="print the greedy decode of each image")
    ocr.add_argument("--checkpoint", required=True)
    ocr.add_argument("--prompt", default="Provide the OCR results of this image.", help="stage-2 models only")
    ocr.add_argument("--max-new-tokens", type=int, default=512)
    ocr.add_argument("images", nargs="+", metavar="IMAGE")
    ocr.set_defaults(func=cmd_ocr)


def _train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", action="append", required=True, metavar="MANIFEST", help="manifest URI (repeat to mix)")
    p.add_argument("--weights", type=lambda s: [float(x) for x in s.split(",")], help="mixing weights, comma-separated")
    p.add_argument("--out", required=True, help="local checkpoint directory")
    p.add_argument("--preset", choices=["paper", "tiny"], default="paper")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=16, help="per rank and micro step")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--warmup-ratio", type=float, default=0.03)
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping norm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deepspeed", default="zero2", help="zero2 (default), zero3, a config JSON path, or off")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--tokenizer", help="local tokenizer directory (default: train a byte-level BPE on the data)")
    p.add_argument("--tokenizer-vocab-size", type=int, default=8000)
    p.add_argument("--init-from", help="stage-1 checkpoint (integrate)")
    p.add_argument("--sam-checkpoint", help="local SAM-B weights")
    p.add_argument("--clip-path", help="local CLIP-L/14 weights directory")
    p.add_argument("--llm-path", help="local OPT / Qwen2 weights directory")
    p.add_argument("--max-length", type=int, default=4096)
    p.add_argument("--save-every", type=int, default=0)
    p.add_argument("--keep-checkpoints", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--no-resume", dest="resume", action="store_false")
    p.add_argument("--flow-run-id")
    p.add_argument("--deployment")
    p.add_argument("--index-root", help="storage root whose lineage index records the checkpoints")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def config_from_args(args: argparse.Namespace):
    from training.config import TrainConfig

    ds = {"off": False, "false": False, "none": False, "zero2": True}.get(str(args.deepspeed).lower(), args.deepspeed)
    return TrainConfig(
        stage=args.stage, model=args.model, preset=args.preset, manifests=list(args.data), weights=args.weights,
        out=args.out, steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
        warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm,
        seed=args.seed, deepspeed=ds, precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing, tokenizer=args.tokenizer,
        tokenizer_vocab_size=args.tokenizer_vocab_size, init_from=args.init_from, sam_checkpoint=args.sam_checkpoint,
        clip_path=args.clip_path, llm_path=args.llm_path, max_length=args.max_length, save_every=args.save_every,
        keep_checkpoints=args.keep_checkpoints, resume=args.resume, num_workers=args.num_workers,
        log_every=args.log_every, flow_run_id=args.flow_run_id, deployment=args.deployment, index_root=args.index_root)


# TrainConfig field -> how `argv_for` writes it; a field missing here cannot be expressed on the command line.
_VALUE_OPTIONS = ("model", "preset", "out", "steps", "batch_size", "grad_accum", "lr", "warmup_ratio", "weight_decay",
                  "max_grad_norm", "seed", "precision", "tokenizer", "tokenizer_vocab_size", "init_from", "sam_checkpoint",
                  "clip_path", "llm_path", "max_length", "save_every", "keep_checkpoints", "num_workers", "log_every",
                  "flow_run_id", "deployment", "index_root")


def argv_for(cfg: TrainConfig) -> list[str]:
    """`python -m training` arguments that `config_from_args` turns back into `cfg`, every field included.

    Values go as `--opt=value` so one starting with a dash is never read as an option. Raises
    TrainingError for a field or value the command line cannot carry."""
    import dataclasses

    argv = ["train", cfg.stage]
    if not cfg.manifests:
        raise TrainingError("a training command line needs at least one manifest (--data)")
    for f in dataclasses.fields(cfg):
        name, value = f.name, getattr(cfg, f.name)
        if name == "stage":
            continue
        if name == "manifests":
            argv += [f"--data={m}" for m in value]
        elif name == "weights":
            if value is not None:
                argv.append("--weights=" + ",".join(repr(float(w)) for w in value))
        elif name == "deepspeed":
            if value is True:
                argv.append("--deepspeed=zero2")
            elif value is False:
                argv.append("--deepspeed=off")
            else:
                argv.append(f"--deepspeed={value}")
        elif name == "gradient_checkpointing":
            if value:
                argv.append("--gradient-checkpointing")
        elif name == "resume":
            if not value:
                argv.append("--no-resume")
        elif name in _VALUE_OPTIONS:
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise TrainingError(f"TrainConfig.{name}={value!r} cannot be written on the command line")
            flag = "--" + name.replace("_", "-")
            argv.append(f"{flag}={value!r}" if isinstance(value, float) else f"{flag}={value}")
        else:
            raise TrainingError(f"TrainConfig.{name} has no command-line option; add one to training.cli before launching with it")
    return argv


def cmd_train(args: argparse.Namespace) -> int:
    from training.run import train

    result = train(config_from_args(args))
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        if args.json:
            print(json.dumps({"checkpoint": result.checkpoint, "losses": result.losses, "metrics": result.metrics}))
        else:
            print(f"checkpoint {result.checkpoint}: {len(result.losses)} steps, final loss {result.losses[-1]:.4f}, "
                  f"{result.metrics['skipped']} rows skipped")
    return 0


def checkpoint_dir(path: str) -> str:
    """A checkpoint directory, or a training `--out` directory standing for its newest complete checkpoint."""
    p = Path(path)
    if p.is_dir() and not (p / "config.json").is_file():
        found = sorted(c for c in p.glob("checkpoint-*") if (c / "config.json").is_file())
        if found:
            return str(found[-1])
    return path


def cmd_eval(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate

    m = evaluate(checkpoint_dir(args.checkpoint), args.data, limit=args.limit, max_new_tokens=args.max_new_tokens)
    if args.json:
        print(json.dumps(m, ensure_ascii=False))
    else:
        print(f"{m['samples']} samples ({m['skipped']} skipped)")
        for k in ("edit_distance", "f1", "precision", "recall", "bleu", "meteor"):
            if k in m:
                print(f"  {k:14s} {m[k]:.4f}")
    return 0


def cmd_ocr(args: argparse.Namespace) -> int:
    """Greedy decode per image. A bad image gets one line on stderr and the rest go on (exit 1); when no
    image can be decoded the command fails with one line, before loading the model if none can even be read."""
    from training.data import DecodeError
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
