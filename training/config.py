"""What one training stage needs, as plain data: the orchestration layer builds a `TrainConfig`, the
CLI parses into one, and the checkpoint records it verbatim in its lineage."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.errors import TrainingError

STAGES = ("vocab", "integrate")
MODELS = ("vary_tiny", "vary_base", "vary_toy")
PRESETS = ("paper", "tiny")
DS_CONFIG_DIR = Path(__file__).with_name("ds_configs")


@dataclass
class TrainConfig:
    stage: str = "vocab"  # "vocab": Vary-tiny; "integrate": Vary-base / Vary-toy on a stage-1 vocabulary net
    model: str = "vary_tiny"
    preset: str = "paper"
    manifests: list[str] = field(default_factory=list)
    weights: list[float] | None = None  # mixing weights, one per manifest
    out: str = "checkpoints/run"  # local directory holding checkpoint-NNNNNN/ folders
    steps: int = 1000  # optimiser steps
    batch_size: int = 16  # per rank, per micro step
    grad_accum: int = 1
    lr: float = 5e-5
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    # True: ZeRO-2 (ds_configs/zero2.json); "zero3": the ZeRO-3 file; a path: that file; False: plain torch.
    deepspeed: bool | str = True
    precision: str = "auto"  # "auto" = bf16 on CUDA, fp32 on CPU; or "bf16" / "fp32"
    gradient_checkpointing: bool = False
    tokenizer: str | None = None  # a local tokenizer dir; None trains a byte-level BPE from the manifests
    tokenizer_vocab_size: int = 8000
    init_from: str | None = None  # stage-1 checkpoint whose vocabulary network stage 2 starts from
    sam_checkpoint: str | None = None  # local SAM-B weights (Meta .pth or HF SamModel dir/safetensors)
    clip_path: str | None = None  # local CLIP-L/14 vision weights (HF dir)
    llm_path: str | None = None  # local OPT / Qwen2 weights (HF dir)
    max_length: int = 4096  # image tokens + text
    save_every: int = 0  # 0: only at the end
    keep_checkpoints: int = 0  # 0: keep all
    resume: bool = True  # continue from the newest checkpoint under `out` when there is one
    num_workers: int = 0  # DataLoader workers per rank
    log_every: int = 10
    flow_run_id: str | None = None
    deployment: str | None = None
    index_root: str | None = None  # storage root whose lineage index records the checkpoints

    def validate(self) -> "TrainConfig":
        if self.stage not in STAGES:
            raise TrainingError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.model not in MODELS:
            raise TrainingError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.preset not in PRESETS:
            raise TrainingError(f"preset must be one of {PRESETS}, got {self.preset!r}")
        if (self.stage == "vocab") != (self.model == "vary_tiny"):
            raise TrainingError(f"stage {self.stage!r} trains {'vary_tiny' if self.stage == 'vocab' else 'vary_base or vary_toy'}, not {self.model!r}")
        if not self.manifests:
            raise TrainingError("no manifests given")
        if self.weights is not None and len(self.weights) != len(self.manifests):
            raise TrainingError(f"{len(self.weights)} weights for {len(self.manifests)} manifests")
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise TrainingError("steps, batch_size and grad_accum must be positive")
        if "://" in self.out:
            raise TrainingError(f"checkpoints are written to a local directory, not {self.out!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise TrainingError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        return self

    def deepspeed_config_path(self) -> Path | None:
        if self.deepspeed is False or self.deepspeed in ("", "false", "off", "none"):
            return None
        if self.deepspeed is True or self.deepspeed in ("true", "zero2"):
            return DS_CONFIG_DIR / "zero2.json"
        if self.deepspeed == "zero3":
            return DS_CONFIG_DIR / "zero3.json"
        path = Path(str(self.deepspeed))
        if not path.is_file():
            raise TrainingError(f"DeepSpeed config {path} does not exist")
        return path

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise TrainingError(f"unknown training options: {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass
class TrainResult:
    checkpoint: str  # the last checkpoint directory
    losses: list[float]  # one mean loss per optimiser step, from step 1 (resumed runs include the earlier steps)
    metrics: dict[str, Any]
    lineage: dict[str, Any]
