"""Several ranks without DeepSpeed: plain torch under DistributedDataParallel (two gloo ranks on CPU)
trains one model — the same parameters on both ranks, and the same losses as one rank taking the same
global batches — and a DeepSpeed config that cannot run is an error, never a silent fallback."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train_support import document_samples, tiny_config, write_dataset
from training.errors import TrainingError

REPO = Path(__file__).resolve().parents[1]
STEPS = 4

RANK_SCRIPT = """
import json, sys, torch
from pathlib import Path
from tests.train_support import tiny_config
from training.run import Trainer
manifest, out, rank = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
t = Trainer(tiny_config(manifest, out, steps={steps}, batch_size=2, lr=1e-3, max_length=48, save_every=0,
                        save_every_minutes=0))
r = t.fit()
torch.save({{k: v.detach().clone() for k, v in t.model.state_dict().items()}}, out.parent / f"params-rank{{rank}}.pt")
(out.parent / f"result-rank{{rank}}.json").write_text(json.dumps({{"losses": r.losses, "metrics": r.metrics}}))
"""


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp-docs")
    return write_dataset(root, "docs", document_samples(16, size=256), shard_rows=2)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_plain_torch_ranks_train_one_model_equal_to_one_rank_on_the_same_global_batches(docs, tmp_path):
    out = tmp_path / "run"
    port = str(_port())
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port, PYTHONPATH=str(REPO))
        procs.append(subprocess.Popen([sys.executable, "-c", RANK_SCRIPT.format(steps=STEPS), docs, str(out), str(rank)],
                                      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-3000:]
    params = [torch.load(tmp_path / f"params-rank{r}.pt") for r in range(2)]
    results = [json.loads((tmp_path / f"result-rank{r}.json").read_text()) for r in range(2)]
    assert results[0]["metrics"]["ddp"] and results[0]["metrics"]["world_size"] == 2
    for k, v in params[0].items():
        assert torch.equal(v, params[1][k]), k  # one model, not two

    # One rank, gradient accumulation over the two ranks' batches: the same global batch per step.
    from training.data import VaryStream
    from training.run import Trainer

    ref = Trainer(tiny_config(docs, tmp_path / "one", steps=STEPS, batch_size=2, grad_accum=2, lr=1e-3,
                              max_length=48, save_every=0, save_every_minutes=0))
    cfg = ref.cfg
    streams = [iter(VaryStream(cfg.manifests, None, ref.tok, ref.model.data_spec(), 2, cfg.max_length, cfg.seed,
                               rank, 2, holdout=cfg.holdout)) for rank in range(2)]
    losses = [ref.train_step([next(streams[0]), next(streams[1])]) for _ in range(STEPS)]
    assert losses == pytest.approx(results[0]["losses"], rel=1e-4, abs=1e-5)
    assert losses[-1] < losses[0]  # it trained
    for k, v in ref.model.state_dict().items():
        assert torch.allclose(v, params[0][k], rtol=1e-3, atol=1e-5), k


def test_deepspeed_asked_for_but_not_importable_is_an_error(docs, tmp_path, monkeypatch):
    from training.run import Trainer

    monkeypatch.setitem(sys.modules, "deepspeed", None)  # what an absent install looks like to `import`
    with pytest.raises(TrainingError, match="--deepspeed zero2 was asked for, but DeepSpeed cannot be imported"):
        Trainer(tiny_config(docs, tmp_path / "run", deepspeed="zero2"))
    assert not list((tmp_path / "run").glob("checkpoint-*"))
