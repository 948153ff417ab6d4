"""One training stage, start to checkpoint: distributed set-up, tokenizer, model, DeepSpeed engine (or
plain torch), the step loop, resumable checkpoints and their lineage. Runs the same under
`python -m training`, the `deepspeed` launcher, and a Prefect task (which only calls `train`)."""
from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import socket
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.config import TrainConfig, TrainResult
from training.errors import TrainingError

logger = logging.getLogger(__name__)
STATE_NAME = "trainer_state.json"
TOKENIZER_DIR = "tokenizer"  # inside each checkpoint: AutoTokenizer.from_pretrained(checkpoint / "tokenizer")


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
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


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

    def barrier(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized() and self.world_size > 1:
            dist.barrier()

    def mean(self, value: float) -> float:
        import torch
        import torch.distributed as dist

        if not (dist.is_initialized() and self.world_size > 1):
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def gather(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        if not (dist.is_initialized() and self.world_size > 1):
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        import torch.distributed as dist

        if not (dist.is_initialized() and self.world_size > 1):
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    if use_ds:
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            use_ds = False  # plain torch when DeepSpeed is not installed
    if (use_ds or world > 1) and not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world))
        os.environ.setdefault("LOCAL_RANK", str(local_rank))
        backend = "nccl" if cuda else "gloo"
        if use_ds:
            import deepspeed

            deepspeed.init_distributed(dist_backend=backend)
        else:
            dist.init_process_group(backend=backend)
    return Dist(rank, world, local_rank, device, use_ds)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# -- building ---------------------------------------------------------------------------------------
def build_tokenizer(cfg: TrainConfig, d: Dist, resume_dir: Path | None):
    from training.tokenizer import load_tokenizer, manifest_texts, train_tokenizer

    if resume_dir is not None:
        return load_tokenizer(resume_dir / TOKENIZER_DIR), str(resume_dir / TOKENIZER_DIR)
    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer), str(Path(cfg.tokenizer).resolve())
    # Only rank 0 trains; the others load its files so every rank has the identical vocabulary.
    staging = Path(cfg.out) / ".tokenizer"
    if d.main:
        tok = train_tokenizer(manifest_texts(cfg.manifests), cfg.tokenizer_vocab_size)
        tok.save_pretrained(str(staging))
    d.barrier()
    return load_tokenizer(staging), "trained:byte-level-bpe"


def _padded_vocab(tok) -> int:
    return int(math.ceil(len(tok) / 64) * 64)


def build_model(cfg: TrainConfig, tok):
    from training import vary_base, vary_tiny
    from training.modeling import load_model, read_model_config
    from training.tokenizer import IMG_PAD

    if cfg.model == "vary_tiny":
        mcfg = vary_tiny.PRESETS[cfg.preset]()
        mcfg.llm["vocab_size"] = _padded_vocab(tok)
        model = vary_tiny.VaryTiny(mcfg)
        if cfg.sam_checkpoint:
            model.vocab.load_sam_weights(cfg.sam_checkpoint)
        if cfg.llm_path:
            model.load_llm(cfg.llm_path)
        return model
    mcfg = vary_base.PRESETS[cfg.model][cfg.preset]()
    mcfg.llm["vocab_size"] = _padded_vocab(tok)
    mcfg.imgpad_token_id = tok.convert_tokens_to_ids(IMG_PAD)
    stage1 = None
    if cfg.init_from:
        model_type, stage1_cfg = read_model_config(cfg.init_from)
        if model_type != "vary_tiny":
            raise TrainingError(f"--init-from must be a stage-1 (vary_tiny) checkpoint; {cfg.init_from} is {model_type}")
        from training.modeling import config_from_dict

        mcfg.vocab = config_from_dict(vary_tiny.VaryTinyConfig, stage1_cfg).vocab  # its exact vocabulary network
        stage1 = load_model(cfg.init_from)
    klass = vary_base.VaryToy if cfg.model == "vary_toy" else vary_base.VaryBase
    model = klass(mcfg)
    if stage1 is not None:
        model.load_vocab_net(stage1)
    elif cfg.sam_checkpoint:
        model.vocab.load_sam_weights(cfg.sam_checkpoint)
        model.freeze_towers()
    if cfg.clip_path:
        model.load_clip(cfg.clip_path)
    if cfg.llm_path:
        model.load_llm(cfg.llm_path)
    return model


def resolve_ds_config(cfg: TrainConfig, d: Dist, model, bf16: bool) -> dict[str, Any]:
    """Fill Vary's "auto" values the way the HF Trainer would."""
    raw = json.loads(cfg.deepspeed_config_path().read_text())
    hidden = int(model.llm.config.hidden_size)
    auto = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.batch_size * cfg.grad_accum * d.world_size,
        "gradient_clipping": cfg.max_grad_norm,
        "reduce_bucket_size": hidden * hidden,
        "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
        "stage3_param_persistence_threshold": 10 * hidden,
    }

    def fill(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: fill(v, k) for k, v in node.items()}
        if node == "auto":
            if key == "enabled":
                return bf16
            if key not in auto:
                raise TrainingError(f"DeepSpeed config: no value for \"auto\" key {key!r}")
            return auto[key]
        return node

    out = fill(raw)
    out.setdefault("bf16", {})["enabled"] = bf16
    out.pop("fp16", None)  # fp16 loss scaling failed for Vary's users (VARY.md §3)
    return out


# -- checkpoints ------------------------------------------------------------------------------------
def latest_checkpoint(out: Path) -> Path | None:
    found = sorted(p for p in out.glob("checkpoint-*") if (p / STATE_NAME).is_file())
    return found[-1] if found else None


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class Trainer:
    def __init__(self, cfg: TrainConfig):
        import torch

        self.cfg = cfg.validate()
        self.d = setup_distributed(cfg)
        self.out = Path(cfg.out).resolve()
        if self.d.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.d.barrier()
        self.resume_dir = latest_checkpoint(self.out) if cfg.resume else None
        seed_everything(cfg.seed)
        self.tok, self.tokenizer_source = build_tokenizer(cfg, self.d, self.resume_dir)
        self.model = build_model(cfg, self.tok)
        if self.resume_dir is not None:
            from safetensors.torch import load_file

            self.model.load_state_dict(load_file(str(self.resume_dir / "model.safetensors")), strict=False)
        if cfg.gradient_checkpointing:
            self.model.enable_gradient_checkpointing()
        cuda = self.d.device.type == "cuda"
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)
        self.model.to(self.d.device)
        self.model.train()

        from transformers import get_cosine_schedule_with_warmup

        params = self.model.trainable_parameters()
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999))
        self.scheduler = get_cosine_schedule_with_warmup(
            self.optimizer, num_warmup_steps=int(round(cfg.warmup_ratio * cfg.steps)), num_training_steps=cfg.steps)
        self.engine = None
        if self.d.deepspeed:
            import deepspeed

            self.ds_config = resolve_ds_config(cfg, self.d, self.model, self.bf16)
            self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=self.model, optimizer=self.optimizer, lr_scheduler=self.scheduler, config=self.ds_config)
        elif self.bf16 and not cuda:
            self.model.to(torch.bfloat16)

        self.step = 0
        self.losses: list[float] = []
        self.shards_read: set[str] = set()
        self.skipped: list[dict[str, str]] = []
        self.truncated = 0
        self.samples = 0
        self.data_state: dict[str, Any] = {}
        self.parents: list[str] = [str(Path(cfg.init_from).resolve())] if cfg.init_from else []
        if self.resume_dir is not None:
            self._load_state(self.resume_dir)

    # -- state ----------------------------------------------------------------------------------------
    def _load_state(self, ckpt: Path) -> None:
        import torch

        state = json.loads((ckpt / STATE_NAME).read_text())
        if state["world_size"] != self.d.world_size:
            raise TrainingError(f"{ckpt} was written by {state['world_size']} ranks; resuming needs the same number, "
                                f"not {self.d.world_size}")
        self.step, self.losses = state["step"], state["losses"]
        self.shards_read = set(state["shards_read"])
        # Each rank goes on from its own counts; the state's totals would be summed again at the next save.
        mine = ckpt / f"counts-rank{self.d.rank}.json"
        if mine.is_file():
            counts = json.loads(mine.read_text())
        else:  # a checkpoint from before per-rank counts: rank 0 carries the totals, so sums stay right
            counts = state if self.d.main else {"skipped": [], "truncated": 0, "samples": 0}
        self.skipped, self.truncated, self.samples = counts["skipped"], counts["truncated"], counts["samples"]
        self.parents = state.get("parents", self.parents)
        self.data_state = json.loads((ckpt / f"data-rank{self.d.rank}.json").read_text())
        if self.engine is not None:
            path, _ = self.engine.load_checkpoint(str(ckpt / "deepspeed"), tag="state", load_optimizer_states=True,
                                                  load_lr_scheduler_states=True)
            if path is None:
                raise TrainingError(f"{ckpt}: DeepSpeed state is missing or unreadable")
        else:
            self.optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=False))
            self.scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", map_location="cpu", weights_only=False))
        _set_rng_state(torch.load(ckpt / f"rng-rank{self.d.rank}.pt", weights_only=False))

    def save(self) -> Path:
        """Write checkpoint-<step> atomically: everything goes into a hidden folder renamed at the end, so a
        run killed while saving leaves the previous checkpoint as the newest complete one."""
        import torch

        final = self.out / f"checkpoint-{self.step:06d}"
        tmp = self.out / f".tmp-checkpoint-{self.step:06d}"
        if self.d.main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.d.barrier()
        gathered = None
        if self.engine is not None:
            self.engine.save_checkpoint(str(tmp / "deepspeed"), tag="state")
            if self.engine.zero_optimization_stage() == 3:
                gathered = self.engine._zero3_consolidated_16bit_state_dict()
        else:
            if self.d.main:
                torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
                torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / f"data-rank{self.d.rank}.json").write_text(json.dumps(self.data_state))
        (tmp / f"counts-rank{self.d.rank}.json").write_text(json.dumps(
            {"skipped": self.skipped, "truncated": self.truncated, "samples": self.samples}))
        torch.save(_rng_state(), tmp / f"rng-rank{self.d.rank}.pt")
        all_shards = set().union(*self.d.gather(sorted(self.shards_read)))
        all_skipped = [s for part in self.d.gather(self.skipped) for s in part]
        samples = sum(self.d.gather(self.samples))
        truncated = sum(self.d.gather(self.truncated))
        if self.d.main:
            state = None if gathered is None else {k: v.float() for k, v in gathered.items()}
            self.model.save_pretrained(tmp, state_dict=state)
            self.tok.save_pretrained(str(tmp / TOKENIZER_DIR))
            (tmp / STATE_NAME).write_text(json.dumps({
                "step": self.step, "losses": self.losses, "world_size": self.d.world_size,
                "shards_read": sorted(all_shards), "skipped": all_skipped, "truncated": truncated,
                "samples": samples, "parents": self.parents, "train_config": self.cfg.to_dict(),
                "tokenizer": self.tokenizer_source,
            }, indent=1))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            self._record_lineage(final, sorted(all_shards), all_skipped, samples, truncated)
            self._prune()
        self.d.barrier()
        self.shards_read = all_shards
        return final

    def _record_lineage(self, ckpt: Path, shards: list[str], skipped: list[dict[str, str]], samples: int,
                        truncated: int) -> dict:
        from storage import lineage

        metrics = {"step": self.step, "loss": self.losses[-1] if self.losses else None, "samples": samples,
                   "skipped": len(skipped), "truncated": truncated}
        config = dict(self.cfg.to_dict(), world_size=self.d.world_size)
        return lineage.record_checkpoint(
            str(ckpt), stage=self.cfg.stage, manifests=list(self.cfg.manifests), parents=list(self.parents),
            config=config, metrics=metrics, flow_run_id=self.cfg.flow_run_id, deployment=self.cfg.deployment,
            index_root=self.cfg.index_root, shards_read=shards,
            extra={"tokenizer": {"source": self.tokenizer_source, "files": str(ckpt / TOKENIZER_DIR)}})

    def _prune(self) -> None:
        if self.cfg.keep_checkpoints <= 0:
            return
        found = sorted(p for p in self.out.glob("checkpoint-*") if (p / STATE_NAME).is_file())
        for old in found[:-self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    # -- the loop -------------------------------------------------------------------------------------
    def _forward(self, batch: dict[str, Any]):
        import torch

        from training.data import model_inputs

        tensors = model_inputs(batch, self.d.device)
        module = self.engine if self.engine is not None else self.model
        ctx = torch.autocast(self.d.device.type, dtype=torch.bfloat16) if (self.bf16 and self.engine is None and self.d.device.type == "cuda") else nullcontext()
        with ctx:
            return module(**tensors)

    def fit(self) -> TrainResult:
        import torch

        from training.data import VaryStream, make_loader

        cfg = self.cfg
        stream = VaryStream(cfg.manifests, cfg.weights, self.tok, self.model.data_spec(), cfg.batch_size,
                            cfg.max_length, cfg.seed, self.d.rank, self.d.world_size, state=self.data_state)
        self.data_state = {"num_workers": max(1, cfg.num_workers), "batches": int(self.data_state.get("batches", 0)),
                           "workers": dict(self.data_state.get("workers", {}))}
        batches = iter(make_loader(stream, cfg.num_workers))
        last = None
        t0 = time.perf_counter()
        while self.step < cfg.steps:
            micro_losses = []
            for _ in range(cfg.grad_accum):
                batch = next(batches)
                self.data_state["workers"][str(batch["logical_worker"])] = batch["position"]
                self.data_state["batches"] += 1
                self.shards_read.update(batch["shards"])
                self.skipped.extend(batch["skipped"])
                self.truncated += int(batch["truncated"])
                self.samples += len(batch["ids"])
                loss = self._forward(batch)
                if self.engine is not None:
                    self.engine.backward(loss)
                    self.engine.step()
                else:
                    (loss / cfg.grad_accum).backward()
                micro_losses.append(float(loss.detach()))
            if self.engine is None:
                torch.nn.utils.clip_grad_norm_(self.model.trainable_parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.losses.append(self.d.mean(sum(micro_losses) / len(micro_losses)))
            if self.d.main and cfg.log_every and self.step % cfg.log_every == 0:
                print(f"step {self.step}/{cfg.steps} loss {self.losses[-1]:.4f} "
                      f"({(time.perf_counter() - t0) / self.step:.2f}s/step)", flush=True)
            if (cfg.save_every and self.step % cfg.save_every == 0) or self.step == cfg.steps:
                last = self.save()
        if last is None:  # resumed at the final step: the newest checkpoint is the result
            last = self.resume_dir
        skipped = [s for part in self.d.gather(self.skipped) for s in part]  # all ranks' counts
        truncated = sum(self.d.gather(self.truncated))
        if self.d.main and truncated > 0:
            logger.warning("%d training rows had their target truncated (and lost its stop token) at --max-length "
                           "%d; raise --max-length so the model learns where texts end", truncated, cfg.max_length)
        lineage_doc = _read_lineage(last)
        metrics = {"steps": self.step, "final_loss": self.losses[-1] if self.losses else None,
                   "samples": sum(self.d.gather(self.samples)), "skipped": len(skipped),
                   "skipped_rows": skipped, "truncated": truncated, "world_size": self.d.world_size,
                   "deepspeed": self.engine is not None, "bf16": self.bf16}
        return TrainResult(checkpoint=str(last), losses=list(self.losses), metrics=metrics, lineage=lineage_doc)


def _read_lineage(ckpt: Path) -> dict[str, Any]:
    path = Path(ckpt) / "lineage.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) one stage; every rank returns the same result."""
    return Trainer(cfg).fit()
