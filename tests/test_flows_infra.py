"""Deployment and infrastructure files, checked with the tools that consume them (no Docker or cluster
here): prefect.yaml against the flows and Prefect's schemas, the GPU job template through Prefect's
templating, DeepSpeed launch lines through DeepSpeed's own argument parser, compose and CI files parsed."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
ANALYTICS_OFF = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def _deployments() -> dict[str, dict]:
    doc = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {d["name"]: d for d in doc["deployments"]}


def test_prefect_yaml_deployments_load_validate_and_schedule():
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    deployments = _deployments()
    renders = [d for d in deployments.values() if d["entrypoint"] == "flows/render.py:render"]
    assert {d["parameters"]["kind"] for d in renders} >= {"document", "chart", "formula", "table", "latex_page", "negative", "pdf"}
    for d in deployments.values():
        flow = load_flow_from_entrypoint(str(REPO / d["entrypoint"]))
        flow.validate_parameters(d.get("parameters", {}))  # raises on a parameter the flow does not take
        assert ANALYTICS_OFF.items() <= d["work_pool"]["job_variables"]["env"].items()
    for d in renders:
        assert d["work_pool"]["name"] == "cpu"
        (schedule,) = d["schedules"]
        cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
        assert cron.cron.split()[2:] == ["*", "*", "*"]  # every night
    for name in ("vocabulary-generation", "vocabulary-integration"):
        assert deployments[name]["work_pool"]["name"] == "gpu"


def test_gpu_job_template_renders_a_job_requesting_gpus():
    from prefect.utilities.templating import apply_values

    template = json.loads((REPO / "infra/k8s/gpu-base-job-template.json").read_text())
    values = {k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v}
    values.update(gpus=4, name="vocab-run", labels={"app": "varyflow"}, command="python -m prefect.engine")
    job = apply_values(template["job_configuration"], values, remove_notset=True)["job_manifest"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 4
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert ANALYTICS_OFF.items() <= container["env"].items()
    assert job["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"


def _training_parser():
    import argparse

    from training.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser


def _every_field_changed():
    """A TrainConfig whose every field differs from its default (the test fails when a field is added
    to TrainConfig and not here, so the round trip below keeps covering all of them)."""
    import dataclasses

    from training.config import TrainConfig

    cfg = TrainConfig(
        stage="integrate", model="vary_toy", preset="tiny", manifests=["s3://b/d/manifests/v000001.json", "/data/m.json"],
        weights=[0.7, 0.3], out="-odd/ckpt dir", steps=7, batch_size=3, grad_accum=2, lr=1.5e-4, warmup_ratio=0.1,
        weight_decay=0.05, max_grad_norm=0.5, seed=11, deepspeed="zero3", precision="bf16", gradient_checkpointing=True,
        tokenizer="tok", tokenizer_vocab_size=600, init_from="ckpt/vocab", sam_checkpoint="sam.pth", clip_path="clip",
        llm_path="llm", max_length=1024, save_every=5, keep_checkpoints=2, resume=False, num_workers=1, log_every=3,
        orchestrator={"name": "prefect", "flow_run_id": "abc"}, index_root="s3://b/root", recipe="vary-toy-sft",
        epochs=2.0, global_batch=64, vary_checkpoint="vary.pth", allow_random_init=True, holdout=0.1,
        save_every_minutes=5.0)
    default = TrainConfig()
    same = [f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) == getattr(default, f.name)]
    assert not same, f"set these to non-default values too: {same}"
    return cfg


def test_training_command_line_round_trips_every_config_field():
    import dataclasses

    import pytest

    from training.cli import argv_for, config_from_args
    from training.config import TrainConfig
    from training.errors import TrainingError

    cfg = _every_field_changed()
    assert config_from_args(_training_parser().parse_args(argv_for(cfg))) == cfg
    for ds in (True, False):  # the boolean spellings of --deepspeed
        plain = TrainConfig(manifests=["m.json"], deepspeed=ds)
        assert config_from_args(_training_parser().parse_args(argv_for(plain))) == plain

    @dataclasses.dataclass
    class Extended(TrainConfig):
        new_option: int = 3

    with pytest.raises(TrainingError, match="new_option"):  # never silently dropped
        argv_for(Extended(manifests=["m.json"]))


def test_deepspeed_launch_lines_parse_with_deepspeed_and_the_training_cli(tmp_path):
    from deepspeed.launcher.runner import fetch_hostfile, parse_args

    from flows.train import Launch, deepspeed_command, write_hostfile
    from training.cli import argv_for, config_from_args

    cfg = _every_field_changed()
    argv = argv_for(cfg)

    # Kubernetes: one launcher per pod, no ssh
    k8s = deepspeed_command(argv, Launch(gpus=8, nodes=2, no_ssh=True, node_rank=1, master_addr="trainer-0.trainer"), None)
    args = parse_args(k8s[1:])
    assert (args.no_ssh, args.node_rank, args.num_nodes, args.num_gpus, args.module, args.user_script) == (True, 1, 2, 8, True, "training")
    assert args.master_addr == "trainer-0.trainer" and args.user_args == argv
    # what each rank parses back: the same config
    assert config_from_args(_training_parser().parse_args(args.user_args)) == cfg

    # ssh: a hostfile DeepSpeed reads back as host -> slots
    hostfile = write_hostfile(["gpu-a", "gpu-b"], 8, str(tmp_path / "hostfile"))
    ssh = parse_args(deepspeed_command(argv, Launch(gpus=8, nodes=2), hostfile)[1:])
    assert ssh.hostfile == hostfile and not ssh.no_ssh
    assert dict(fetch_hostfile(hostfile)) == {"gpu-a": 8, "gpu-b": 8}
    assert dict(fetch_hostfile(str(REPO / "infra/deepspeed/hostfile.example"))) == {"gpu-node-0": 8, "gpu-node-1": 8}
    assert subprocess.run(["bash", "-n", str(REPO / "infra/deepspeed/launch.sh")]).returncode == 0


def test_launch_from_another_directory_resolves_paths_against_the_users_cwd(tmp_path, monkeypatch):
    import sys

    from deepspeed.launcher.runner import parse_args

    from flows.train import Launch, launch_plan
    from training.cli import config_from_args
    from training.config import TrainConfig

    work = tmp_path / "my project"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = TrainConfig(manifests=["varyflow-data/datasets/doc/manifests/v000001.json", "s3://b/d/manifests/v000002.json"],
                      out="varyflow-data/checkpoints/vocab", tokenizer="tok", sam_checkpoint="weights/sam.pth",
                      llm_path="weights/opt", clip_path="weights/clip", init_from="old/ckpt", index_root="varyflow-data",
                      deepspeed="conf/ds.json")
    plan = launch_plan(cfg, Launch(gpus=2), None)
    assert plan.cwd == str(work)  # the user's directory, not the repository's
    launched = config_from_args(_training_parser().parse_args(parse_args(plan.cmd[1:]).user_args))
    assert launched == plan.cfg
    assert launched.out == str(work / "varyflow-data/checkpoints/vocab")
    assert launched.manifests == [str(work / "varyflow-data/datasets/doc/manifests/v000001.json"), "s3://b/d/manifests/v000002.json"]
    assert (launched.tokenizer, launched.sam_checkpoint, launched.llm_path, launched.clip_path, launched.init_from,
            launched.index_root, launched.deepspeed) == tuple(str(work / p) for p in (
                "tok", "weights/sam.pth", "weights/opt", "weights/clip", "old/ckpt", "varyflow-data", "conf/ds.json"))
    assert launch_plan(TrainConfig(manifests=["m"], deepspeed="zero3"), Launch(gpus=2), None).cfg.deepspeed == "zero3"
    # `--module training` run from the user's directory imports this checkout
    where = subprocess.run([sys.executable, "-c", "import training; print(training.__file__)"], cwd=plan.cwd, env=plan.env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert os.path.dirname(where) == str(REPO / "training")


def test_launcher_output_reaches_the_log_line_by_line_while_it_runs(tmp_path):
    import sys

    from flows.train import stream_process

    go = tmp_path / "go"
    # The child prints one line, then waits for the test to have *received* it: with buffered output it
    # would wait for nothing and give up.
    child = (f"import os, sys, time\nprint('first line', flush=True)\n"
             f"for _ in range(600):\n    if os.path.exists({str(go)!r}): break\n    time.sleep(0.1)\n"
             f"else:\n    print('never got the go'); sys.exit(9)\n"
             f"print('second line', file=sys.stderr, flush=True)\nsys.exit(3)\n")
    seen: list[str] = []

    def line(text: str) -> None:
        seen.append(text)
        if text == "first line":
            go.write_text("")

    rc, tail = stream_process([sys.executable, "-c", child], str(tmp_path), dict(os.environ), line)
    assert (rc, seen, tail) == (3, ["first line", "second line"], ["first line", "second line"])


def test_example_pipeline_config_builds_every_generator(tmp_path):
    import pytest
    from PIL import Image

    from flows.pipeline import check_render_config, load_config
    from flows.shardwork import input_files
    from generators.render_unit import build_generator

    config = load_config(str(REPO / "infra/pipeline.example.yaml"))
    assert {"pdf", "negative"} <= set(config["render"])
    check_render_config(config)  # as written: every kind's params validate (remote sources are not listed)

    # the kinds that read folders list their files when pointed at a local one
    folder = tmp_path / "inputs"
    folder.mkdir()
    Image.new("RGB", (64, 48), "white").save(folder / "a.png")
    (folder / "b.pdf").write_bytes(b"%PDF-1.4 not parsed here")
    listed = 0
    for kind, spec in config["render"].items():
        params = dict(spec.get("params") or {})
        if "source" in params:
            params["source"] = str(folder)
            with build_generator(kind, params, input_files()) as gen:
                assert len(gen.sources) == 2, kind
            listed += 1
    assert listed == 2

    # an input kind without a source fails before anything renders, naming the entry
    del config["render"]["negative"]["params"]
    with pytest.raises(ValueError, match="render.negative.*source"):
        check_render_config(config)


def test_compose_stack_and_ci_workflow_are_well_formed():
    from flows.cli import build_parser

    compose = yaml.safe_load((REPO / "infra/compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "minio", "worker"} <= set(services)
    server = services["prefect-server"]
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    for name in ("prefect-server", "worker"):
        assert ANALYTICS_OFF.items() <= services[name]["environment"].items()
    assert all(p.startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))
    assert services["worker"]["command"][:3] == ["prefect", "worker", "start"] and "process" in services["worker"]["command"]

    ci = yaml.safe_load((REPO / "infra/ci/retrain.yml").read_text())
    (job,) = ci["jobs"].values()
    assert {"PREFECT_API_URL", *ANALYTICS_OFF} <= set(job["env"])
    (step,) = [s for s in job["steps"] if "varyflow retrain" in s.get("run", "")]
    args = build_parser().parse_args(shlex.split(step["run"])[1:])  # the varyflow CLI accepts the exact line
    assert args.command == "retrain" and (REPO / args.config).is_file()


def test_training_progress_moves_while_the_loop_prints(prefect_api):
    """The loop's step lines (in-process stdout, or the launcher's output) move a progress artifact and reach
    the run log while training runs, not only when it ends."""
    from prefect import flow, get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.runtime import flow_run

    from flows.train import TrainingProgress

    def progress_data() -> tuple[float, str]:
        with get_client(sync_client=True) as client:
            (art,) = client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["train-vocab-progress"]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])))
        return art.data, art.description

    @flow
    def stage() -> list:
        seen = []
        progress = TrainingProgress("vocab", 4, get_run_logger())
        with progress.watching_stdout():
            print("loading 3 manifests")
            print("step 2/4 loss 1.2500 (0.10s/step)", flush=True)
            seen.append(progress_data())
        progress.launcher_line("[rank0] step 3/4 loss 1.0000 (0.10s/step)")
        seen.append(progress_data())
        progress.done()
        seen.append(progress_data())
        return seen

    assert stage() == [(50.0, "vocab: step 2/4, loss 1.2500"), (75.0, "vocab: step 3/4, loss 1.0000"), (100.0, "vocab: done")]
