"""Process set-up of a training run: environment defaults, the rank's device, and the process group —
DeepSpeed's when a DeepSpeed config is asked for (an error when DeepSpeed cannot be used, never a silent
fallback), torch's otherwise (the model is then wrapped in DistributedDataParallel by the trainer)."""
from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.config import TrainConfig
from training.errors import TrainingError


def setup_environment() -> None:
    """Defaults that must be in place before torch/deepspeed are imported."""
    repo_cache = Path(__file__).resolve().parents[1] / ".cache" / "torch_extensions"
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(repo_cache))  # DeepSpeed's JIT ops, compiled once
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Idle OpenMP threads sleep instead of spinning: spinning threads of the trainer, its DataLoader workers
    # and other ranks fight for the cores (a 70-step CPU run took 57 s spinning, 23 s passive). Only takes
    # effect when torch is first imported after this.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars are noise in a run's log and on a CLI's stderr
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    elif torch.cuda.get_device_capability()[0] >= 8:
        # Ampere and newer: fp32 matmuls (the fp32 master weights' side of bf16 training) on tensor cores.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


@dataclass
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: Any
    deepspeed: bool

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        import torch.distributed as dist

        return dist.is_initialized() and self.world_size > 1

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.active:
            dist.barrier()

    def mean(self, value: float) -> float:
        import torch
        import torch.distributed as dist

        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def gather(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        import torch.distributed as dist

        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_deepspeed(cfg: TrainConfig) -> Any:
    """The deepspeed module, or a TrainingError saying why the asked-for DeepSpeed cannot run."""
    try:
        import deepspeed
    except Exception as e:  # ImportError, or a broken install failing inside its own import
        raise TrainingError(f"--deepspeed {cfg.deepspeed} was asked for, but DeepSpeed cannot be imported "
                            f"({type(e).__name__}: {e}); install it, or pass --deepspeed off for plain torch") from None
    return deepspeed


def setup_distributed(cfg: TrainConfig) -> Dist:
    setup_environment()
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_world)))
    use_ds = cfg.deepspeed_config_path() is not None
    deepspeed = require_deepspeed(cfg) if use_ds else None
    if (use_ds or world > 1) and not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world))
        os.environ.setdefault("LOCAL_RANK", str(local_rank))
        backend = "nccl" if cuda else "gloo"
        if deepspeed is not None:
            deepspeed.init_distributed(dist_backend=backend)
        else:
            dist.init_process_group(backend=backend)
    return Dist(rank, world, local_rank, device, use_ds)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
