"""One training stage, start to checkpoint. `Trainer.__init__` sets up the rank, tokenizer, model and
optimiser (DeepSpeed engine, or plain torch wrapped in DistributedDataParallel over several ranks) and
resumes when `--out` has a checkpoint; `fit` runs the step loop and saves periodically. Runs the same
under `python -m training`, the `deepspeed` launcher, torchrun, and an orchestrator's task (which only
calls `train`). The parts live in their own modules: distributed, build, pretrained, ds_config,
checkpoint, data."""
from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator

from training.checkpoint import (STATE_NAME, TOKENIZER_DIR, Progress, latest_checkpoint, load_progress,  # noqa: F401
                                 load_rng, prune, publish, read_state, staging_dir, write_rank_files)
from training.config import TrainConfig, TrainResult
from training.distributed import seed_everything, setup_distributed, setup_environment  # noqa: F401
from training.errors import TrainingError
from training.export import write_code

logger = logging.getLogger(__name__)


def training_rows(cfg: TrainConfig) -> int:
    """Rows an epoch trains on: the manifests' rows less the held-out share (from the manifests alone,
    without reading shards; the split by id hash makes the share exact only on average)."""
    from storage import read_manifest

    rows = sum(read_manifest(m).rows for m in cfg.manifests)
    return max(1, round(rows * (1.0 - cfg.holdout)))


class Trainer:
    def __init__(self, cfg: TrainConfig):
        import torch

        from training.build import build_model, build_tokenizer

        self.cfg = cfg.validate()
        self.d = setup_distributed(cfg)
        self.out = Path(cfg.out).resolve()
        if self.d.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.d.barrier()

        # -- where this run starts: fresh, or from the newest complete checkpoint ----------------------
        self.resume_dir = latest_checkpoint(self.out) if cfg.resume else None
        resumed = read_state(self.resume_dir) if self.resume_dir is not None else {}
        if resumed and resumed["world_size"] != self.d.world_size:
            raise TrainingError(f"{self.resume_dir} was written by {resumed['world_size']} ranks; resuming needs the "
                                f"same number, not {self.d.world_size}")
        self.grad_accum = cfg.accumulation(self.d.world_size)
        self.total_steps = cfg.total_steps(self.d.world_size, None if cfg.steps else training_rows(cfg))
        seed_everything(cfg.seed)

        # -- tokenizer and model ------------------------------------------------------------------------
        choice = build_tokenizer(cfg, self.d, self.resume_dir, resumed.get("tokenizer"))
        self.tok, self.tokenizer_source = choice.tok, choice.source
        if self.resume_dir is not None:
            from training.modeling import load_model

            self.model, self.loaded = load_model(self.resume_dir), resumed.get("pretrained", {})
        else:
            self.model, self.loaded = build_model(cfg, self.tok, choice.base_tokens)
        if cfg.gradient_checkpointing:
            self.model.enable_gradient_checkpointing()
        cuda = self.d.device.type == "cuda"
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)
        self.model.to(self.d.device)
        self.model.train()

        # -- optimiser: DeepSpeed's engine, or plain torch (DDP over several ranks) ---------------------
        from transformers import get_cosine_schedule_with_warmup

        params = self.model.trainable_parameters()
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999))
        self.scheduler = get_cosine_schedule_with_warmup(
            self.optimizer, num_warmup_steps=int(round(cfg.warmup_ratio * self.total_steps)),
            num_training_steps=self.total_steps)
        self.engine = None
        self.ddp = None
        if self.d.deepspeed:
            self._init_deepspeed()
        else:
            if self.bf16 and not cuda:
                self.model.to(torch.bfloat16)
            if self.d.world_size > 1:
                from torch.nn.parallel import DistributedDataParallel

                # Gradients are averaged over the ranks in backward, so every rank takes the same step.
                self.ddp = DistributedDataParallel(self.model, device_ids=[self.d.local_rank] if cuda else None)

        # -- progress and lineage parents ---------------------------------------------------------------
        self.progress = Progress()
        self.parents: list[str] = [str(Path(cfg.init_from).resolve())] if cfg.init_from else []
        if self.resume_dir is not None:
            self._resume(self.resume_dir, resumed)

    def _init_deepspeed(self) -> None:
        from training.distributed import require_deepspeed
        from training.ds_config import resolve_ds_config

        deepspeed = require_deepspeed(self.cfg)
        self.ds_config = resolve_ds_config(self.cfg, self.d.world_size, self.grad_accum,
                                           int(self.model.llm.config.hidden_size), self.bf16)
        try:
            self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=self.model, optimizer=self.optimizer, lr_scheduler=self.scheduler, config=self.ds_config)
        except Exception as e:  # a config DeepSpeed cannot honour here is the user's to fix, not to work around
            raise TrainingError(f"DeepSpeed cannot run {self.cfg.deepspeed_config_path()}: {type(e).__name__}: {e}") from e

    def _resume(self, ckpt: Path, state: dict[str, Any]) -> None:
        import torch

        self.progress = load_progress(ckpt, self.d.rank, self.d.main)
        self.parents = list(state.get("parents", self.parents))
        if str(ckpt) not in self.parents:
            self.parents.append(str(ckpt))  # lineage: this run's later checkpoints continue that one
        if self.engine is not None:
            path, _ = self.engine.load_checkpoint(str(ckpt / "deepspeed"), tag="state", load_optimizer_states=True,
                                                  load_lr_scheduler_states=True)
            if path is None:
                raise TrainingError(f"{ckpt}: DeepSpeed state is missing or unreadable")
        else:
            self.optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=False))
            self.scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", map_location="cpu", weights_only=False))
        load_rng(ckpt, self.d.rank)
        if self.d.main:
            print(f"resumed from {ckpt} at step {self.progress.step}", flush=True)

    # -- one optimiser step ---------------------------------------------------------------------------
    def _forward(self, batch: dict[str, Any]):
        import torch

        from training.data import model_inputs

        tensors = model_inputs(batch, self.d.device)
        module = self.engine or self.ddp or self.model
        autocast = self.bf16 and self.engine is None and self.d.device.type == "cuda"
        with torch.autocast(self.d.device.type, dtype=torch.bfloat16) if autocast else nullcontext():
            return module(**tensors)

    def train_step(self, micro_batches: list[dict[str, Any]]) -> float:
        """Forward/backward over the micro batches and one optimiser step; the loss averaged over the
        micro batches and the ranks."""
        import torch

        losses = []
        for i, batch in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            if self.engine is not None:
                loss = self._forward(batch)
                self.engine.backward(loss)
                self.engine.step()
            else:
                # DDP reduces gradients on the last micro batch only; earlier ones accumulate locally.
                with self.ddp.no_sync() if (self.ddp is not None and not last) else nullcontext():
                    loss = self._forward(batch)
                    (loss / len(micro_batches)).backward()
            losses.append(float(loss.detach()))
        if self.engine is None:
            torch.nn.utils.clip_grad_norm_(self.model.trainable_parameters(), self.cfg.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return self.d.mean(sum(losses) / len(losses))

    def _account(self, batch: dict[str, Any]) -> None:
        p = self.progress
        p.data_state["workers"][str(batch["logical_worker"])] = batch["position"]
        p.data_state["batches"] += 1
        p.shards_read.update(batch["shards"])
        p.skipped.extend(batch["skipped"])
        p.truncated += int(batch["truncated"])
        p.samples += len(batch["ids"])

    # -- the loop -------------------------------------------------------------------------------------
    def _batches(self) -> Iterator[dict[str, Any]]:
        from training.data import VaryStream, make_loader

        cfg, p = self.cfg, self.progress
        stream = VaryStream(cfg.manifests, cfg.weights, self.tok, self.model.data_spec(), cfg.batch_size,
                            cfg.max_length, cfg.seed, self.d.rank, self.d.world_size, state=p.data_state,
                            holdout=cfg.holdout)
        p.data_state = {"num_workers": max(1, cfg.num_workers), "batches": int(p.data_state.get("batches", 0)),
                        "workers": dict(p.data_state.get("workers", {}))}
        return iter(make_loader(stream, cfg.num_workers))

    def _save_due(self, last_save: float) -> bool:
        cfg, step = self.cfg, self.progress.step
        if step == self.total_steps or (cfg.save_every and step % cfg.save_every == 0):
            return True
        if not cfg.save_every_minutes:
            return False
        # Rank 0's clock decides, so every rank joins the same saves.
        return bool(self.d.broadcast(time.monotonic() - last_save >= 60.0 * cfg.save_every_minutes))

    def fit(self) -> TrainResult:
        cfg, p = self.cfg, self.progress
        batches = self._batches()
        last = None
        t0 = last_save = time.monotonic()
        done_before = p.step
        while p.step < self.total_steps:
            micro = [next(batches) for _ in range(self.grad_accum)]
            for batch in micro:
                self._account(batch)
            p.losses.append(self.train_step(micro))
            p.step += 1
            if self.d.main and cfg.log_every and p.step % cfg.log_every == 0:
                print(f"step {p.step}/{self.total_steps} loss {p.losses[-1]:.4f} "
                      f"({(time.monotonic() - t0) / (p.step - done_before):.2f}s/step)", flush=True)
            if self._save_due(last_save):
                last = self.save()
                last_save = time.monotonic()
        if last is None:  # resumed at the final step: the newest checkpoint is the result
            last = self.resume_dir
        skipped = [s for part in self.d.gather(p.skipped) for s in part]  # all ranks' counts
        truncated = sum(self.d.gather(p.truncated))
        if self.d.main and truncated > 0:
            logger.warning("%d training rows had their target truncated (and lost its stop token) at --max-length "
                           "%d; raise --max-length so the model learns where texts end", truncated, cfg.max_length)
        lineage_path = Path(last) / "lineage.json"
        metrics = {"steps": p.step, "final_loss": p.losses[-1] if p.losses else None,
                   "samples": sum(self.d.gather(p.samples)), "skipped": len(skipped), "skipped_rows": skipped,
                   "truncated": truncated, "world_size": self.d.world_size, "grad_accum": self.grad_accum,
                   "deepspeed": self.engine is not None, "ddp": self.ddp is not None, "bf16": self.bf16}
        return TrainResult(checkpoint=str(last), losses=list(p.losses), metrics=metrics,
                           lineage=json.loads(lineage_path.read_text()) if lineage_path.is_file() else {})

    # -- saving ---------------------------------------------------------------------------------------
    def save(self) -> Path:
        """Write checkpoint-<step> atomically (see training.checkpoint); returns its folder."""
        import shutil

        import torch

        p = self.progress
        tmp, final = staging_dir(self.out, p.step)
        if self.d.main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.d.barrier()
        gathered = None
        if self.engine is not None:
            self.engine.save_checkpoint(str(tmp / "deepspeed"), tag="state")
            if self.engine.zero_optimization_stage() == 3:
                gathered = self.engine._zero3_consolidated_16bit_state_dict()
        elif self.d.main:
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        write_rank_files(tmp, self.d.rank, p)
        shards = sorted(set().union(*self.d.gather(sorted(p.shards_read))))
        skipped = [s for part in self.d.gather(p.skipped) for s in part]
        samples, truncated = sum(self.d.gather(p.samples)), sum(self.d.gather(p.truncated))
        if self.d.main:
            state = None if gathered is None else {k: v.float() for k, v in gathered.items()}
            self.model.save_pretrained(tmp, state_dict=state)
            write_code(tmp)  # so AutoModel.from_pretrained(checkpoint, trust_remote_code=True) opens it
            self.tok.save_pretrained(str(tmp / TOKENIZER_DIR))
            (tmp / STATE_NAME).write_text(json.dumps({
                "step": p.step, "losses": p.losses, "world_size": self.d.world_size, "grad_accum": self.grad_accum,
                "total_steps": self.total_steps, "shards_read": shards, "skipped": skipped, "truncated": truncated,
                "samples": samples, "parents": self.parents, "train_config": self.cfg.to_dict(),
                "tokenizer": self.tokenizer_source, "pretrained": self.loaded,
            }, indent=1))
            publish(tmp, final)
            self._record_lineage(final, shards, skipped, samples, truncated)
            prune(self.out, self.cfg.keep_checkpoints)
        self.d.barrier()
        p.shards_read = set(shards)
        return final

    def _record_lineage(self, ckpt: Path, shards: list[str], skipped: list[dict[str, str]], samples: int,
                        truncated: int) -> dict:
        from storage import lineage

        from training import split

        p = self.progress
        metrics = {"step": p.step, "loss": p.losses[-1] if p.losses else None, "samples": samples,
                   "skipped": len(skipped), "truncated": truncated}
        config = dict(self.cfg.to_dict(), world_size=self.d.world_size, total_steps=self.total_steps,
                      effective_grad_accum=self.grad_accum)
        config.pop("orchestrator", None)  # recorded as its own part, not as a training option
        return lineage.record_checkpoint(
            str(ckpt), stage=self.cfg.stage, manifests=list(self.cfg.manifests), parents=list(self.parents),
            config=config, metrics=metrics, orchestrator=self.cfg.orchestrator, index_root=self.cfg.index_root,
            shards_read=shards,
            extra={"tokenizer": {"source": self.tokenizer_source, "files": str(ckpt / TOKENIZER_DIR)},
                   "holdout": split.record(self.cfg.holdout), "pretrained": self.loaded})


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) one stage; every rank returns the same result."""
    return Trainer(cfg).fit()
