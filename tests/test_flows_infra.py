"""Deployment and infrastructure files, checked with the tools that consume them (no Docker or cluster
here): prefect.yaml against the flows and Prefect's schemas, the GPU job template through Prefect's
templating, DeepSpeed launch lines through DeepSpeed's own argument parser, compose and CI files parsed."""
from __future__ import annotations

import json
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


def test_training_deployment_is_triggered_by_completed_render_runs():
    from prefect.events import DeploymentEventTrigger

    (trigger,) = _deployments()["vocabulary-generation"]["triggers"]
    parsed = DeploymentEventTrigger(**trigger)
    assert parsed.expect == {"prefect.flow-run.Completed"}
    related = parsed.match_related[0] if isinstance(parsed.match_related, list) else parsed.match_related
    assert related.get("prefect.resource.name") in ("render", ["render"])


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


def test_deepspeed_launch_lines_parse_with_deepspeed_and_the_training_cli(tmp_path):
    from deepspeed.launcher.runner import fetch_hostfile, parse_args

    from flows.train import Launch, deepspeed_command, training_argv, write_hostfile
    from training.config import TrainConfig

    cfg = TrainConfig(stage="vocab", preset="tiny", manifests=["s3://b/d/manifests/v000001.json", "/data/m.json"],
                      weights=[0.7, 0.3], out="/ckpt/vocab", steps=50, flow_run_id="abc")
    argv = training_argv(cfg)
    parsed = _training_parser().parse_args(argv)
    assert (parsed.stage, parsed.data, parsed.weights, parsed.steps, parsed.out) == ("vocab", cfg.manifests, [0.7, 0.3], 50, "/ckpt/vocab")

    # Kubernetes: one launcher per pod, no ssh
    k8s = deepspeed_command(argv, Launch(gpus=8, nodes=2, no_ssh=True, node_rank=1, master_addr="trainer-0.trainer"), None)
    args = parse_args(k8s[1:])
    assert (args.no_ssh, args.node_rank, args.num_nodes, args.num_gpus, args.module, args.user_script) == (True, 1, 2, 8, True, "training")
    assert args.master_addr == "trainer-0.trainer" and args.user_args == argv

    # ssh: a hostfile DeepSpeed reads back as host -> slots
    hostfile = write_hostfile(["gpu-a", "gpu-b"], 8, str(tmp_path / "hostfile"))
    ssh = parse_args(deepspeed_command(argv, Launch(gpus=8, nodes=2), hostfile)[1:])
    assert ssh.hostfile == hostfile and not ssh.no_ssh
    assert dict(fetch_hostfile(hostfile)) == {"gpu-a": 8, "gpu-b": 8}
    assert dict(fetch_hostfile(str(REPO / "infra/deepspeed/hostfile.example"))) == {"gpu-node-0": 8, "gpu-node-1": 8}
    assert subprocess.run(["bash", "-n", str(REPO / "infra/deepspeed/launch.sh")]).returncode == 0


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
