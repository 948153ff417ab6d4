"""ZeRO-2 — the reference setting and the default — on two CPU ranks under the `deepspeed` launcher:
killed with SIGKILL mid-run (launcher and ranks), rerun with the same command, it goes on from the last
checkpoint with the same losses, step for step, as a run that was never interrupted."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.train_support import document_samples, write_dataset

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = str(REPO / ".venv" / "bin" / "deepspeed")
STEPS = 6


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(out: Path, manifest: str) -> list[str]:
    return [LAUNCHER, "--num_gpus", "2", "--master_port", str(_port()), "--module", "training", "train", "vocab",
            "--data", manifest, "--out", str(out), "--preset", "tiny", "--steps", str(STEPS), "--batch-size", "2",
            "--lr", "1e-3", "--warmup-ratio", "0.1", "--tokenizer-vocab-size", "300", "--max-length", "48",
            "--save-every", "2", "--save-every-minutes", "0", "--log-every", "1", "--deepspeed", "zero2",
            "--index-root", str(out.parent / "idx"), "--json"]


def _losses(stdout: str) -> list[float]:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])["losses"]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # three two-rank launches; minutes on a loaded 2-core machine
def test_zero2_two_cpu_ranks_killed_mid_run_resume_with_identical_losses(tmp_path):
    manifest = write_dataset(tmp_path / "data", "docs", document_samples(16, size=256), shard_rows=2)
    env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONUNBUFFERED="1")
    whole = subprocess.run(_command(tmp_path / "whole", manifest), cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=500)
    assert whole.returncode == 0, (whole.stdout[-3000:], whole.stderr[-3000:])
    expected = _losses(whole.stdout)
    assert len(expected) == STEPS

    out = tmp_path / "killed"
    proc = subprocess.Popen(_command(out, manifest), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    for line in proc.stdout:
        if "step 5/" in line:  # after the step-4 checkpoint, before the end
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, no chance to clean up
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (out / "checkpoint-000004").is_dir() and not (out / f"checkpoint-{STEPS:06d}").exists()

    resumed = subprocess.run(_command(out, manifest), cwd=REPO, env=env, capture_output=True, text=True, timeout=500)
    assert resumed.returncode == 0, (resumed.stdout[-3000:], resumed.stderr[-3000:])
    assert f"resumed from {out / 'checkpoint-000004'} at step 4" in resumed.stdout
    assert _losses(resumed.stdout) == expected
    state = json.loads((out / f"checkpoint-{STEPS:06d}" / "trainer_state.json").read_text())
    assert state["samples"] == STEPS * 2 * 2 and state["world_size"] == 2
