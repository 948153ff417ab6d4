"""prefect.yaml run the way an operator runs it: `prefect server start`, the `cpu` process pool, `prefect deploy
--all` from the checkout, `prefect worker start --pool cpu` (started from another directory, so the pull step
has to find the checkout), then `prefect deployment run ... --watch`. And the retrain trigger on that stack:
completed nightly renders run the retrain gate on the worker, which queues GPU training at most once per
change of the mixture's data."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_prefect import PREFECT, REPO, stop, wait_for

pytestmark = pytest.mark.slow

TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@pytest.fixture(scope="module")
def worker(deployed_server, tmp_path_factory):
    """(api url, env, storage root of the worker): a process worker polling the `cpu` pool."""
    url, env = deployed_server
    tmp = tmp_path_factory.mktemp("worker")
    root = tmp / "root"
    elsewhere = tmp / "cwd"
    elsewhere.mkdir()
    wenv = dict(env, VARYFLOW_ROOT=str(root), PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="5")
    log = tmp / "worker.log"
    proc = subprocess.Popen([PREFECT, "worker", "start", "--pool", "cpu", "--name", "test-worker"], cwd=elsewhere,
                            env=wenv, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for("worker", lambda: "test-worker" in log.read_text() or "started" in log.read_text().lower(), 120, proc, log)
        yield f"{url}/api", env, root, log
    finally:
        stop(proc)


def _client(api: str):
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(api)


def _runs_of(client, deployment: str) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    dep = client.read_deployment_by_name(deployment)
    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))


def test_operator_runs_a_nightly_deployment_on_a_process_worker(worker, tmp_path):
    api, env, _, log = worker
    out = tmp_path / "out"
    run = subprocess.run([PREFECT, "--no-prompt", "deployment", "run", "render/nightly-document", "--param", "count=4",
                          "--param", f"out={out}", "--watch"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:], log.read_text()[-3000:])
    assert "Completed" in run.stdout + run.stderr
    manifest = json.loads((out / "datasets/document/manifests/v000001.json").read_text())
    assert manifest["rows"] + sum(manifest["rejects"].values()) == 4
    assert manifest["facts"]["deployment"] == "nightly-document"
    assert all((out / "datasets/document" / s["path"]).is_file() for s in manifest["shards"])


def _run_and_wait(client, deployment: str, parameters: dict, timeout: float = 600):
    from prefect.deployments import run_deployment

    return run_deployment(deployment, parameters=parameters, timeout=timeout, poll_interval=1)


def _gates_done(client, renders: list):
    """The gate runs the completions of `renders` started, once there is one per render and all are finished."""
    wanted = {f"prefect.flow-run.{r.id}" for r in renders}
    runs = [g for g in _runs_of(client, "retrain-gate/retrain-vary-tiny") if g.parameters.get("trigger_run") in wanted]
    if len(runs) == len(wanted) and all(r.state_type.value in TERMINAL for r in runs):
        return runs
    return None


def test_trigger_queues_training_once_per_change_of_the_mix_data(worker, tmp_path):
    from prefect.client.schemas.objects import StateType
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Cancelled

    from storage.lineage import record_checkpoint
    from storage.manifest import latest_manifest

    api, env, root, log = worker
    small = {"count": 2, "shard_rows": 2, "workers": 1}
    with temporary_settings({PREFECT_API_URL: api}), _client(api) as client:
        assert not _runs_of(client, "vocabulary_generation/vocabulary-generation")

        # two nightly renders of the vary-tiny mix complete (started together) -> one training run
        from prefect.deployments import run_deployment

        runs = [run_deployment(d, parameters=small, timeout=0)
                for d in ("render/nightly-document", "render/nightly-chart")]
        for r in runs:
            done = wait_for(f"run {r.name}", lambda: (fr := client.read_flow_run(r.id)).state_type.value in TERMINAL and fr,
                            600, log=log)
            assert done.state_type == StateType.COMPLETED, (done.state, log.read_text()[-3000:])
        gates = wait_for("gate runs", lambda: _gates_done(client, runs), 600, log=log)
        assert all(g.state_type == StateType.COMPLETED for g in gates), [g.state for g in gates]
        trainings = _runs_of(client, "vocabulary_generation/vocabulary-generation")
        assert len(trainings) == 1, [t.name for t in trainings]
        (training,) = trainings
        assert training.state_type == StateType.SCHEDULED  # queued on the gpu pool (no GPU worker here)
        assert training.parameters["out"] == str(root)

        # that training "ran": its checkpoint's lineage names the newest manifests, with the deployment's config
        client.set_flow_run_state(training.id, Cancelled(), force=True)
        config = client.read_deployment_by_name("vocabulary_generation/vocabulary-generation").parameters["config"]
        manifests = [latest_manifest(str(root), d) for d in ("document", "chart")]
        record_checkpoint(str(root / "checkpoints/vocab/checkpoint-000001"), stage="vocab", manifests=manifests,
                          config={**config, "model": "vary_tiny"}, index_root=str(root))

        # the same nightly again: its output did not change -> no training
        again = _run_and_wait(client, "render/nightly-document", small)
        assert again.state.is_completed()
        assert latest_manifest(str(root), "document") == manifests[0]  # a no-op render commits nothing
        wait_for("gate run", lambda: _gates_done(client, [again]), 600, log=log)
        assert len(_runs_of(client, "vocabulary_generation/vocabulary-generation")) == 1

    # an ad-hoc CLI render into a temporary folder: its completion does not match the trigger at all
    cli = subprocess.run([str(Path(sys.executable).with_name("varyflow")), "render", "document", "--count", "2",
                          "--out", str(tmp_path / "adhoc"), "--json"], cwd=tmp_path, env=dict(env, PREFECT_API_URL=api),
                         capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-3000:]
    with temporary_settings({PREFECT_API_URL: api}), _client(api) as client:
        adhoc = [r for r in client.read_flow_runs() if r.deployment_id is None and r.name.startswith("render-document-2x")]
        assert adhoc
        assert not _trigger_covers(client, adhoc[-1].id)
        assert _trigger_covers(client, again.id)  # while a nightly's completion does


def _trigger_covers(client, flow_run_id) -> bool:
    """Whether the server's retrain-vary-tiny automation matches the Completed event of `flow_run_id`, judged
    by the server's own trigger model on the event the server stored."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.server.events.schemas.automations import EventTrigger
    from prefect.server.events.schemas.events import ReceivedEvent

    def completed():
        page = client.read_events(EventFilter(event=EventNameFilter(name=["prefect.flow-run.Completed"]),
                                              resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"])),
                                 limit=50)  # the server refuses more
        return page.events

    (event,) = wait_for("completed event", completed, 60)
    (automation,) = [a for a in client.read_automations() if "retrain-vary-tiny" in a.name]
    trigger = EventTrigger.model_validate(automation.trigger.model_dump(mode="json"))
    return trigger.covers(ReceivedEvent.model_validate(event.model_dump(mode="json")))
