"""What one training stage needs, as plain data: the orchestration layer builds a `TrainConfig`, the
CLI parses into one, and the checkpoint records it verbatim in its lineage.

`TrainConfig`'s fields are the one source of truth: each field's metadata says its help text, whether
it names a local file or folder (`path`, resolved against the user's directory before a launch), and
whether a change of it means a new model (`compared`, what `varyflow retrain` compares). The command line
(`training.cli`) is derived from them, so adding an option is adding a field."""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage import is_uri
from training.errors import TrainingError
from training.recipes import RECIPES

STAGES = ("vocab", "integrate")
MODELS = ("vary_tiny", "vary_base", "vary_toy")
ARCHITECTURES = ("paper", "tiny")  # model sizes: the papers' (GPUs) or a tiny one (CPU tests)
DS_CONFIG_DIR = Path(__file__).with_name("ds_configs")
NAMED_DEEPSPEED = ("zero2", "zero3", "off")


def opt(default: Any = dataclasses.MISSING, help: str = "", *, path: bool = False, compared: bool = True,
        cli: bool = True, flag: str | None = None, choices: tuple[str, ...] | None = None,
        factory: Any = dataclasses.MISSING) -> Any:
    """A config field with the metadata the CLI, the launcher and `retrain` read."""
    meta = {"help": help, "path": path, "compared": compared, "cli": cli, "flag": flag, "choices": choices}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    stage: str = opt("vocab", "vocab: Vary-tiny; integrate: Vary-base / Vary-toy on a stage-1 vocabulary net",
                     cli=False, choices=STAGES)
    model: str = opt("vary_tiny", "which model the stage trains", choices=MODELS)
    recipe: str | None = opt(None, "a paper recipe whose values fill every option not given", choices=tuple(RECIPES))
    preset: str = opt("paper", "model size: paper (GPUs) or tiny (CPU tests)", choices=ARCHITECTURES)
    manifests: list[str] = opt(help="manifest URI (repeat to mix)", flag="--data", factory=list)
    weights: list[float] | None = opt(None, "mixing weights, comma-separated, one per manifest")
    out: str = opt("checkpoints/run", "local directory holding checkpoint-NNNNNN/ folders", path=True, compared=False)
    steps: int | None = opt(None, "optimiser steps (default: derived from --epochs)")
    epochs: float | None = opt(None, "passes over the manifests' training rows; sets --steps (default 1 when "
                                     "neither is given)")
    batch_size: int = opt(16, "per rank and micro step")
    grad_accum: int | None = opt(None, "micro steps per optimiser step (default 1, or derived from --global-batch)")
    global_batch: int | None = opt(None, "samples per optimiser step over all ranks; derives --grad-accum")
    lr: float = opt(5e-5, "peak learning rate")
    warmup_ratio: float = opt(0.03, "share of the steps spent warming up (then cosine)")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    max_grad_norm: float = opt(1.0, "gradient clipping norm")
    seed: int = opt(0, "seed of initialisation and data order")
    deepspeed: str = opt("zero2", "zero2 (default), zero3, a DeepSpeed config JSON path, or off (plain torch; DDP "
                                  "over several ranks)")
    precision: str = opt("auto", "auto = bf16 on CUDA, fp32 on CPU", choices=("auto", "bf16", "fp32"))
    gradient_checkpointing: bool = opt(False, "recompute activations in the backward pass")
    tokenizer: str | None = opt(None, "local tokenizer directory (default: the one saved with --llm-path, else a "
                                      "byte-level BPE trained on the data)", path=True)
    tokenizer_vocab_size: int = opt(8000, "vocabulary of the BPE trained when no tokenizer is given")
    init_from: str | None = opt(None, "stage-1 checkpoint whose vocabulary network stage 2 starts from", path=True)
    sam_checkpoint: str | None = opt(None, "local SAM-B weights: Meta's .pth, an HF SamModel folder, or a released "
                                           "Vary checkpoint", path=True)
    clip_path: str | None = opt(None, "local CLIP-L/14 vision weights (HF CLIPVisionModel / CLIPModel folder)",
                                path=True)
    llm_path: str | None = opt(None, "local OPT / Qwen2 weights folder (its config.json sets the architecture, its "
                                     "tokenizer is used unless --tokenizer is given)", path=True)
    vary_checkpoint: str | None = opt(None, "a released Vary / Vary-toy checkpoint (folder or file) to start every "
                                            "part from; key names are mapped strictly", path=True)
    allow_random_init: bool = opt(False, "allow the paper preset to start towers or the LLM from random weights "
                                         "(otherwise every pretrained part must be given)")
    max_length: int = opt(4096, "positions per sample: image tokens + prompt + target")
    holdout: float = opt(0.02, "share of rows (by sha256 of the sample id) training never reads; evaluation's "
                               "default split")
    save_every: int = opt(500, "save a checkpoint every N steps (0: not by steps)", compared=False)
    save_every_minutes: float = opt(30.0, "and at least every this many minutes (0: not by time)", compared=False)
    keep_checkpoints: int = opt(0, "keep the newest N checkpoints (0: all)", compared=False)
    resume: bool = opt(True, "continue from the newest checkpoint under --out", compared=False)
    num_workers: int = opt(0, "DataLoader workers per rank", compared=False)
    log_every: int = opt(10, "print the loss every N steps", compared=False)
    index_root: str | None = opt(None, "storage root whose lineage index records the checkpoints", path=True,
                                 compared=False)
    # Who started the run (filled by an orchestrator; recorded in lineage as is, never interpreted here).
    orchestrator: dict[str, Any] | None = opt(None, "JSON record of who started the run, kept in lineage as is",
                                              compared=False)

    def __post_init__(self) -> None:
        if self.deepspeed is True or self.deepspeed in ("true", "True"):
            self.deepspeed = "zero2"  # the boolean spellings of older configs
        elif self.deepspeed is False or self.deepspeed is None or str(self.deepspeed).lower() in ("", "false", "none"):
            self.deepspeed = "off"

    def validate(self) -> "TrainConfig":
        if self.stage not in STAGES:
            raise TrainingError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.model not in MODELS:
            raise TrainingError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.preset not in ARCHITECTURES:
            raise TrainingError(f"preset must be one of {ARCHITECTURES}, got {self.preset!r}")
        if (self.stage == "vocab") != (self.model == "vary_tiny"):
            raise TrainingError(f"stage {self.stage!r} trains {'vary_tiny' if self.stage == 'vocab' else 'vary_base or vary_toy'}, not {self.model!r}")
        if not self.manifests:
            raise TrainingError("no manifests given")
        if self.weights is not None and len(self.weights) != len(self.manifests):
            raise TrainingError(f"{len(self.weights)} weights for {len(self.manifests)} manifests")
        if self.steps is not None and self.epochs is not None:
            raise TrainingError("give steps or epochs, not both")
        for name in ("steps", "grad_accum", "global_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise TrainingError(f"{name} must be positive")
        if self.batch_size < 1 or (self.epochs is not None and self.epochs <= 0):
            raise TrainingError("batch_size and epochs must be positive")
        if self.grad_accum is not None and self.global_batch is not None:
            raise TrainingError("give grad_accum or global_batch, not both (global_batch derives grad_accum)")
        if is_uri(self.out):
            raise TrainingError(f"checkpoints are written to a local directory, not {self.out!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise TrainingError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if not 0.0 <= self.holdout < 1.0:
            raise TrainingError(f"holdout must be in [0, 1), got {self.holdout}")
        if self.preset == "paper" and not self.allow_random_init:
            missing = self.missing_pretrained()
            if missing:
                raise TrainingError(f"the paper preset would start {', '.join(missing)} from random weights; give "
                                    f"the local weights, or --allow-random-init to do it on purpose")
        return self

    def missing_pretrained(self) -> list[str]:
        """The parts the papers start from pretrained weights that this config leaves random."""
        if self.vary_checkpoint:
            return []
        if self.stage == "vocab":
            wanted = {"SAM (--sam-checkpoint)": self.sam_checkpoint, "OPT (--llm-path)": self.llm_path}
        else:
            wanted = {"the frozen vocabulary network (--init-from or --sam-checkpoint)": self.init_from or self.sam_checkpoint,
                      "the frozen CLIP tower (--clip-path)": self.clip_path, "the LLM (--llm-path)": self.llm_path}
        return [name for name, value in wanted.items() if not value]

    def deepspeed_config_path(self) -> Path | None:
        if self.deepspeed == "off":
            return None
        if self.deepspeed in ("zero2", "zero3"):
            return DS_CONFIG_DIR / f"{self.deepspeed}.json"
        path = Path(str(self.deepspeed))
        if not path.is_file():
            raise TrainingError(f"DeepSpeed config {path} does not exist")
        return path

    def accumulation(self, world_size: int) -> int:
        """Micro steps per optimiser step: given, or global batch / (per-device batch × ranks), exactly."""
        if self.global_batch is None:
            return self.grad_accum or 1
        per_step = self.batch_size * world_size
        if self.global_batch % per_step:
            raise TrainingError(f"global batch {self.global_batch} is not a multiple of batch size {self.batch_size} × "
                                f"{world_size} ranks")
        return self.global_batch // per_step

    def total_steps(self, world_size: int, training_rows: int | None) -> int:
        """Optimiser steps: given, or epochs × training rows / samples per step (rounded up)."""
        if self.steps is not None:
            return self.steps
        if training_rows is None:
            raise TrainingError("epochs need the number of training rows")
        per_step = self.batch_size * world_size * self.accumulation(world_size)
        return max(1, math.ceil((self.epochs or 1.0) * training_rows / per_step))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Fields from `d`; a `recipe` named in it fills every field `d` does not set."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        for legacy in ("flow_run_id", "deployment"):  # configs written before the orchestrator record
            if legacy in d:
                value = d.pop(legacy)
                if value is not None:
                    d.setdefault("orchestrator", {})
                    d["orchestrator"] = {**(d["orchestrator"] or {}), legacy: value}
        unknown = set(d) - names
        if unknown:
            raise TrainingError(f"unknown training options: {', '.join(sorted(unknown))}")
        if d.get("recipe"):
            from training.recipes import apply_recipe

            d = apply_recipe(d["recipe"], d)
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise TrainingError(f"training config {path} does not exist") from None
        except json.JSONDecodeError as e:
            raise TrainingError(f"training config {path}: not valid JSON ({e.msg})") from None
        if not isinstance(data, dict):
            raise TrainingError(f"training config {path}: expected a JSON object")
        return cls.from_dict(data)


def field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def path_fields() -> tuple[str, ...]:
    """Fields naming local files or folders (the launcher resolves them against the user's directory)."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("path"))


def compared_fields() -> tuple[str, ...]:
    """Fields whose change means a new model (bookkeeping such as out, log_every or who started it does not)."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig)
                 if f.metadata.get("compared", True) and f.name not in ("stage", "manifests", "weights"))


@dataclass
class TrainResult:
    checkpoint: str  # the last checkpoint directory
    losses: list[float]  # one mean loss per optimiser step, from step 1 (resumed runs include the earlier steps)
    metrics: dict[str, Any]
    lineage: dict[str, Any]
