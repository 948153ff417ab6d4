"""Every deployment of prefect.yaml is runnable as declared: its parameters fit its flow's signature and what
its kind or stage needs (a `negative` without a source failed every night, 14 s in). No server needed."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def _spec() -> dict:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def _deployments() -> dict[str, dict]:
    return {d["name"]: d for d in _spec()["deployments"]}


def test_every_deployment_is_runnable_as_declared():
    from prefect.flows import load_flow_from_entrypoint

    from flows.checks import check_params
    from flows.mix import MIX_PRESETS
    from flows.pipeline import check_render_config, complete_config
    from training.config import TrainConfig

    deployments = _deployments()
    names = {f"{load_flow_from_entrypoint(str(REPO / d['entrypoint'])).name}/{n}" for n, d in deployments.items()}
    for name, d in deployments.items():
        flow = load_flow_from_entrypoint(str(REPO / d["entrypoint"]))
        params = d.get("parameters", {})
        flow.validate_parameters(params)  # every name is a parameter of the flow, every required one is given
        if flow.name == "render":
            check_params(params["kind"], params.get("params") or {})  # generator parameters, and a source where needed
            assert 0 < params["max_reject_rate"] < 1, name  # nightlies fail rather than commit mostly rejects
        elif flow.name in ("vocabulary_generation", "vocabulary_integration"):
            assert params["mixture"] in MIX_PRESETS, name
            stage = "vocab" if flow.name == "vocabulary_generation" else "integrate"
            model = "vary_tiny" if stage == "vocab" else "vary_base"
            config = {"model": model, **params["config"], "stage": stage, "manifests": ["m.json"]}
            if stage == "integrate" and config.get("init_from") is None:
                config["init_from"] = "ckpt"  # resolved at run time: flows.train.newest_stage1
            TrainConfig.from_dict(config).validate()
        elif flow.name == "retrain-gate":
            assert params["mixture"] in MIX_PRESETS and params["training"] in names, name
        elif flow.name == "pipeline":
            check_render_config(complete_config(params["config"]))
        else:
            pytest.fail(f"deployment {name} of flow {flow.name}: add what it needs to this test")


def test_the_negative_nightly_would_have_been_refused():
    from flows.checks import check_params

    with pytest.raises(ValueError, match="negative reads input files: give --source"):
        check_params("negative", {})
    with pytest.raises(ValueError, match=r"chart has no parameter 'colour'; it takes: lang, chart_types"):
        check_params("chart", {"colour": "red"})


def test_trigger_matches_the_nightlies_feeding_its_mixture_and_nothing_else():
    from prefect.events import DeploymentEventTrigger

    from flows.mix import MIX_PRESETS

    deployments = _deployments()
    gate = deployments["retrain-vary-tiny"]
    (trigger,) = gate["triggers"]
    parsed = DeploymentEventTrigger(**trigger)
    assert parsed.expect == {"prefect.flow-run.Completed"}
    related = {r["prefect.resource.role"]: r["prefect.resource.name"] for r in trigger["match_related"]}
    feeding = {n for n, d in deployments.items() if d["entrypoint"] == "flows/render.py:render"
               and (d["parameters"].get("dataset") or d["parameters"]["kind"]) in MIX_PRESETS[gate["parameters"]["mixture"]]}
    assert related == {"flow": "render", "deployment": sorted(feeding, key=related["deployment"].index)}
    assert set(related["deployment"]) == feeding
    # training itself has no trigger: only the gate starts it
    assert all(not d.get("triggers") for n, d in deployments.items() if n != "retrain-vary-tiny")


def test_pull_step_finds_the_checkout_or_names_the_setting(tmp_path, monkeypatch):
    from flows.deploy_steps import CHECKOUT_ENV, use_checkout

    ((step, inputs),) = _spec()["pull"][0].items()
    assert step == "flows.deploy_steps.use_checkout"
    monkeypatch.delenv(CHECKOUT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert use_checkout(**inputs) == {"directory": str(REPO)} and os.getcwd() == str(REPO)
    monkeypatch.setenv(CHECKOUT_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"not a varyflow checkout.*{CHECKOUT_ENV}"):
        use_checkout(**inputs)


def test_dockerfiles_copy_what_exists_and_keep_the_venv_out():
    """No Docker Hub here, so no build: what the Dockerfiles COPY exists, the build context ignores the local
    venv, and each image puts its checkout where the pull step finds it."""
    for name in ("renderer", "trainer"):
        dockerfile = REPO / "infra/docker" / f"{name}.Dockerfile"
        lines = [line.strip() for line in dockerfile.read_text().splitlines()]
        copies = [line.split()[1:-1] for line in lines if line.startswith("COPY ")]
        assert copies and all((REPO / src).exists() for srcs in copies for src in srcs if src != "."), (name, copies)
        assert any(line.startswith("FROM ") for line in lines)
        assert "ENV PATH=/opt/varyflow/.venv/bin:$PATH VARYFLOW_CHECKOUT=/opt/varyflow" in lines
        ignored = (REPO / "infra/docker" / f"{name}.Dockerfile.dockerignore").read_text().split()
        assert {".venv", ".git", "varyflow-data"} <= set(ignored)
    renderer = (REPO / "infra/docker/renderer.Dockerfile").read_text()
    assert "bash infra/setup.sh" in renderer  # the renderers come from the same script as on a machine
    compose = yaml.safe_load((REPO / "infra/compose.yaml").read_text())
    worker = compose["services"]["worker"]
    assert worker["build"]["dockerfile"] == "infra/docker/renderer.Dockerfile"
    # the compose worker polls every queue the cpu pool's deployments use (the gate's too)
    cmd = worker["command"]
    polled = {cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--work-queue"}
    cpu_queues = {d["work_pool"]["work_queue_name"] for d in _deployments().values() if d["work_pool"]["name"] == "cpu"}
    assert cpu_queues <= polled, (cpu_queues, polled)
