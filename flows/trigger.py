"""The retrain gate: what prefect.yaml's render trigger runs instead of starting GPU training directly.

A completed nightly render of a mixture's data runs this flow (on the CPU pool). It starts the training
deployment only when all of these hold:
  1. no render deployment feeding the mixture is still running, pending or due within `settle_minutes`
     (the renders of one night land first; the last one to finish decides),
  2. the newest manifests of the mixture, or the training deployment's config, differ from the newest
     checkpoint's lineage under the storage root (`flows.retrain.changes`, what `varyflow retrain` decides),
  3. no training run is already queued (scheduled or pending: it reads the newest manifests when it starts),
     and none is running or done for exactly this data (tagged `data-<key>`).
So two renders completing start at most one training run, a render whose output did not change starts none,
and ad-hoc renders never reach it (the trigger matches runs of the nightly deployments only).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from prefect import flow, get_run_logger

from flows.common import default_root

DEFAULT_TRAINING = "vocabulary_generation/vocabulary-generation"
STAGE_OF_MIX_KEY = {"generation": "vocab", "integration": "integrate"}
QUEUED = ("SCHEDULED", "PENDING")
ACTIVE = ("SCHEDULED", "PENDING", "RUNNING")


def data_key(manifests: dict[str, str], config: dict[str, Any]) -> str:
    """What a training run is for: the newest manifests and the training config, as a short digest."""
    body = json.dumps({"manifests": manifests, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def render_deployments_of(mixture: str, deployments: list[Any], render_flow_id: Any) -> list[Any]:
    """The render deployments whose dataset (parameter `dataset`, else `kind`) the mixture preset reads."""
    from flows.mix import MIX_PRESETS

    wanted = set(MIX_PRESETS[mixture])
    return [d for d in deployments if d.flow_id == render_flow_id
            and ((d.parameters or {}).get("dataset") or (d.parameters or {}).get("kind")) in wanted]


def _runs(client: Any, deployment_ids: list[Any], states: tuple[str, ...]) -> list[Any]:
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter,
                                                FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType

    if not deployment_ids:
        return []
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=list(deployment_ids))),
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(s) for s in states]))),
    )


def unsettled_renders(client: Any, feeding: list[Any], settle: dt.timedelta, exclude: str | None = None) -> list[str]:
    """'<deployment> (<state>)' for each feeding render still running or pending, or due within `settle`
    (a late one older than that is not waited for: it may never run)."""
    now = dt.datetime.now(dt.timezone.utc)
    names = {d.id: d.name for d in feeding}
    out = []
    for run in _runs(client, list(names), ACTIVE):
        if exclude and str(run.id) == exclude:
            continue
        if run.state_type.value == "SCHEDULED":
            start = run.expected_start_time or run.next_scheduled_start_time
            if start is None or abs(start - now) > settle:
                continue
        out.append(f"{names.get(run.deployment_id, run.deployment_id)} ({run.state_name})")
    return sorted(out)


@flow(name="retrain-gate", flow_run_name="retrain-gate-{mixture}")
def retrain_gate(mixture: str = "vary-tiny", training: str = DEFAULT_TRAINING, out: str | None = None,
                 trigger_run: str | None = None, settle_minutes: float = 120.0) -> dict[str, Any]:
    """Start `training` (flow/deployment) on `mixture` when its data or config changed (see module doc).
    `trigger_run`: the render flow run whose completion ran this (a resource id `prefect.flow-run.<id>` or
    a bare id). Returns {"started", "reasons", "skipped" (why not), "flow_run_id"}."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from flows.mix import MIX_PRESETS
    from flows.retrain import changes

    logger = get_run_logger()
    if mixture not in MIX_PRESETS:
        raise ValueError(f"unknown mixture {mixture!r}; known: {', '.join(MIX_PRESETS)}")
    root = out or default_root()
    trigger_id = trigger_run.removeprefix("prefect.flow-run.") if trigger_run else None
    outcome: dict[str, Any] = {"started": False, "reasons": [], "skipped": None, "flow_run_id": None, "root": root}

    def skip(why: str) -> dict[str, Any]:
        logger.info("not starting %s: %s", training, why)
        outcome["skipped"] = why
        return outcome

    with get_client(sync_client=True) as client:
        target = client.read_deployment_by_name(training)
        render_flow = client.read_flow_by_name("render")
        feeding = render_deployments_of(mixture, client.read_deployments(), render_flow.id)
        waiting = unsettled_renders(client, feeding, dt.timedelta(minutes=settle_minutes), exclude=trigger_id)
        if waiting:
            return skip(f"renders of {mixture} still to finish: {', '.join(waiting)} (the last one decides)")
        train_cfg = dict((target.parameters or {}).get("config") or {})
        stage = "integrate" if target.name.endswith("integration") or train_cfg.get("init_from") else "vocab"
        mix_key = "generation" if stage == "vocab" else "integration"
        config = {"root": root, "mix": {mix_key: mixture}, "train": train_cfg, "integration": {}}
        try:
            reasons, _, manifests = changes(config, stage)
        except ValueError as e:  # nothing committed under this root yet
            return skip(str(e))
        if not reasons:
            return skip(f"up to date: the newest {stage} checkpoint under {root} was trained on these manifests with this config")
        outcome["reasons"] = reasons
        key = data_key(manifests, train_cfg)
        queued = _runs(client, [target.id], QUEUED)
        if queued:
            return skip(f"{training} already has a queued run ({queued[0].name}, {queued[0].state_name}); it reads the newest manifests when it starts")
        same = [r for r in _runs(client, [target.id], ("RUNNING", "COMPLETED")) if f"data-{key}" in (r.tags or [])]
        if same:
            return skip(f"{training} run {same[0].name} ({same[0].state_name}) is for exactly this data")
    run = run_deployment(name=training, timeout=0, tags=["retrain", f"mix-{mixture}", f"data-{key}"],
                         parameters={"out": root}, as_subflow=False)
    logger.info("started %s (flow run %s): %s", training, run.id, "; ".join(reasons))
    outcome.update(started=True, flow_run_id=str(run.id))
    return outcome
