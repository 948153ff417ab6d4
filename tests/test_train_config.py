"""The training config without training: one source of truth for the command line, the paper recipes
(global batch -> accumulation, epochs -> steps), the paper preset's refusal of random frozen towers, the
production example, periodic saving by default, the held-out split, and `--dry-run`."""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train_support import short_texts, text_line_samples, tiny_config, write_dataset
from training.config import TrainConfig
from training.errors import TrainingError

REPO = Path(__file__).resolve().parents[1]


def parse(*argv: str) -> TrainConfig:
    from training.cli import config_from_args, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return config_from_args(parser.parse_args(list(argv)))


def test_every_cli_option_comes_from_a_config_field_with_its_default():
    cfg = parse("train", "vocab", "--data", "m.json")
    assert cfg == TrainConfig(manifests=["m.json"])  # nothing on the command line: the dataclass's defaults
    # saving is periodic unless asked otherwise: a killed default run loses at most this much
    assert cfg.save_every > 0 and cfg.save_every_minutes > 0
    assert parse("train", "integrate", "--data", "m.json").model == "vary_base"
    with pytest.raises(TrainingError, match="train vocab trains vary_tiny, not vary_toy"):
        parse("train", "vocab", "--data", "m.json", "--model", "vary_toy")


def test_a_config_file_is_the_base_and_given_options_override_it(tmp_path):
    base = tiny_config("m.json", tmp_path / "run", steps=9, lr=2e-4, orchestrator={"name": "x", "run": "7"})
    (tmp_path / "c.json").write_text(json.dumps(base.to_dict()))
    assert parse("train", "vocab", "--config", str(tmp_path / "c.json")) == base
    assert parse("train", "vocab", "--config", str(tmp_path / "c.json"), "--lr", "1e-3") == dataclasses.replace(base, lr=1e-3)


def test_recipes_fill_what_is_not_given_and_derive_accumulation_and_steps(tmp_path):
    cfg = parse("train", "integrate", "--recipe", "vary-base-sft", "--data", "m.json", "--allow-random-init")
    assert (cfg.model, cfg.preset, cfg.lr, cfg.global_batch, cfg.batch_size, cfg.epochs, cfg.max_length,
            cfg.precision, cfg.deepspeed, cfg.gradient_checkpointing) == \
        ("vary_base", "paper", 1e-5, 256, 4, 1.0, 4096, "bf16", "zero2", True)
    assert cfg.accumulation(8) == 8 and cfg.accumulation(64) == 1  # 256 = 4 per GPU × ranks × micro steps
    with pytest.raises(TrainingError, match="global batch 256 is not a multiple of batch size 4 × 3 ranks"):
        cfg.accumulation(3)
    assert cfg.total_steps(8, 10_000) == 40  # ceil(1 epoch × 10000 rows / 256)
    assert parse("train", "integrate", "--recipe", "vary-base-sft", "--data", "m", "--steps", "5").epochs is None
    assert parse("train", "vocab", "--recipe", "vary-tiny", "--data", "m", "--lr", "1e-4").lr == 1e-4
    with pytest.raises(TrainingError, match="recipe vary-tiny trains stage 'vocab', not 'integrate'"):
        parse("train", "integrate", "--recipe", "vary-tiny", "--data", "m")


def test_the_paper_preset_refuses_random_pretrained_parts_unless_allowed():
    with pytest.raises(TrainingError, match=r"would start SAM \(--sam-checkpoint\), OPT \(--llm-path\) from random"):
        TrainConfig(manifests=["m"]).validate()
    with pytest.raises(TrainingError, match=r"the frozen CLIP tower \(--clip-path\), the LLM"):
        TrainConfig(stage="integrate", model="vary_base", manifests=["m"], init_from="ckpt").validate()
    TrainConfig(manifests=["m"], allow_random_init=True).validate()
    TrainConfig(manifests=["m"], sam_checkpoint="s.pth", llm_path="opt").validate()
    TrainConfig(manifests=["m"], preset="tiny").validate()  # tiny models are built from scratch on purpose


def test_the_production_example_would_work_on_eight_80gb_gpus():
    from flows.pipeline import load_config, train_config
    from training.dry_run import dry_run

    config = load_config(str(REPO / "infra" / "pipeline.example.yaml"))
    gpus = config["launch"]["gpus"] * config["launch"].get("nodes", 1)
    for stage, model, global_batch in (("vocab", "vary_tiny", 512), ("integrate", "vary_base", 256)):
        given = {**train_config(config, stage), "stage": stage, "model": model, "manifests": ["m.json"]}
        if stage == "integrate":
            given["init_from"] = "ckpt/vocab"  # the pipeline passes stage 1's checkpoint
        cfg = TrainConfig.from_dict(given).validate()  # every pretrained part is named
        assert cfg.preset == "paper" and cfg.precision == "bf16" and cfg.deepspeed == "zero2"
        assert cfg.batch_size * gpus * cfg.accumulation(gpus) == global_batch
        # The weights are not on this machine: estimate with the presets' (the papers') architectures.
        local = dataclasses.replace(cfg, sam_checkpoint=None, llm_path=None, clip_path=None, init_from=None,
                                    tokenizer=None, allow_random_init=True)
        report = dry_run(local, world_size=gpus)
        assert report["memory_per_gpu_gib"]["total"] < 0.9 * 80, report


def test_dry_run_prints_parameters_tokens_and_memory_without_building_weights():
    p = subprocess.run([sys.executable, "-m", "training", "train", "integrate", "--recipe", "vary-toy-pretrain",
                        "--data", "m.json", "--allow-random-init", "--dry-run", "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=300, env={"WORLD_SIZE": "8", "PATH": "/usr/bin"})
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert 2.0e9 < r["parameters"] < 2.4e9 and r["trainable_parameters"] < r["parameters"]  # towers frozen
    assert (r["samples_per_step"], r["grad_accum"], r["max_tokens_per_step"]) == (512, 8, 512 * 4096)
    m = r["memory_per_gpu_gib"]
    assert m["total"] == pytest.approx(sum(m[k] for k in ("weights", "gradients", "optimizer", "activations")), abs=0.05)
    assert m["optimizer"] == pytest.approx(12 * r["trainable_parameters"] / 8 / 2 ** 30, rel=0.01)  # ZeRO-2: /8


def test_the_stream_never_yields_held_out_rows_and_evaluation_reads_only_them(tmp_path):
    from training.data import VaryStream
    from training.modeling import DataSpec
    from training.split import in_holdout
    from training.tokenizer import train_tokenizer

    samples = text_line_samples(short_texts(16))
    manifest = write_dataset(tmp_path, "lines", samples, shard_rows=4)
    held = {s.id for s in samples if in_holdout(s.id, 0.25)}
    assert 0 < len(held) < 16
    tok = train_tokenizer(short_texts(16), 300)
    spec = DataSpec(layout="opt", image_size=256, clip_size=None, num_image_tokens=16)
    stream = iter(VaryStream([manifest], None, tok, spec, batch_size=4, max_length=48, seed=0, holdout=0.25))
    seen = [i for _ in range(12) for i in next(stream)["ids"]]  # three epochs' worth
    assert set(seen) == {s.id for s in samples} - held



def test_the_demo_trains_on_whole_targets():
    """The main job's training defaults fit its longest pages: a full `document` page (stage 1's longest
    kind) and a `latex_page` (stage 2's), tokenised by a BPE of the demo's size trained on fewer texts than
    the demo has (so no shorter than the demo's), keep their whole target and stop token."""
    from flows.pipeline import DEFAULT_CONFIG
    from generators import Sample, get_generator
    from training import vary_base, vary_tiny
    from training.data import encode_example
    from training.tokenizer import train_tokenizer

    train = DEFAULT_CONFIG["train"]
    pages = {}
    for kind, n in (("document", 8), ("latex_page", 3)):
        with get_generator(kind, **(DEFAULT_CONFIG["render"][kind].get("params") or {})) as g:
            pages[kind] = [s for s in g.items(DEFAULT_CONFIG["seed"], 0, n) if isinstance(s, Sample)]
    tok = train_tokenizer([s.text for group in pages.values() for s in group], train["tokenizer_vocab_size"])
    stage1 = vary_tiny.VaryTiny(vary_tiny.PRESETS["tiny"]()).data_spec()
    stage2 = vary_base.PRESETS["vary_base"]["tiny"]()
    from training.modeling import DataSpec

    chat = DataSpec(layout="chat", image_size=stage2.vocab.image_size, clip_size=stage2.clip["image_size"],
                    num_image_tokens=stage2.vocab.num_tokens)
    for spec, kind in ((stage1, "document"), (chat, "latex_page"), (chat, "document")):
        for s in pages[kind]:
            ids, _, truncated = encode_example(tok, spec, s.prompt, s.text, train["max_length"])
            assert not truncated, (kind, len(ids))
    assert train["max_length"] <= vary_tiny.PRESETS["tiny"]().max_positions
    assert train["max_length"] <= stage2.llm["max_position_embeddings"]
