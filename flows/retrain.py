"""`varyflow retrain`: start the training deployment only when the data or the training config changed.

"Changed" compares the newest committed manifests of the stage's mix and the training options the
config sets with the lineage of the newest stage-1 checkpoint under the storage root.
"""
from __future__ import annotations

from typing import Any

from flows.mix import MIX_PRESETS, resolve_preset

from training.config import compared_fields

# Options whose change means a new model (TrainConfig's field metadata); bookkeeping (out, log_every, who
# started the run) does not.
COMPARED_OPTIONS = compared_fields()


def newest_checkpoint(root: str, stage: str) -> dict[str, Any] | None:
    from storage.lineage import all_checkpoints

    records = [r for r in all_checkpoints(root) if r.get("stage") == stage]
    return records[-1] if records else None


def changes(config: dict[str, Any], stage: str = "vocab") -> tuple[list[str], dict[str, Any] | None, dict[str, str]]:
    """(reasons to retrain, newest checkpoint record, dataset -> newest manifest)."""
    from flows.pipeline import train_config

    root = config["root"]
    preset = config["mix"]["generation" if stage == "vocab" else "integration"]
    manifests, _ = resolve_preset(preset, root)
    if not manifests:
        raise ValueError(f"no committed manifests of the {preset} mix ({', '.join(MIX_PRESETS[preset])}) under {root}")
    record = newest_checkpoint(root, stage)
    if record is None:
        return [f"no {stage} checkpoint under {root} yet"], None, manifests
    reasons = []
    trained = {m["dataset"]: m for m in record.get("manifests", [])}
    for dataset, uri in sorted(manifests.items()):
        old = trained.get(dataset)
        if old is None:
            reasons.append(f"{dataset}: not in the checkpoint's data")
        elif old["uri"] != uri:
            reasons.append(f"{dataset}: new manifest {uri.rsplit('/', 1)[-1]} (trained on {old['uri'].rsplit('/', 1)[-1]})")
    for dataset in sorted(set(trained) - set(manifests)):
        reasons.append(f"{dataset}: trained on, no longer in the mix")
    wanted = train_config(config, stage)
    recorded = record.get("config", {})
    for option in COMPARED_OPTIONS:
        # storage redacts secret-looking keys ("***"); those cannot be compared
        if option in wanted and option in recorded and recorded[option] != "***" and _normal(wanted[option], option) != _normal(recorded[option], option):
            reasons.append(f"{option}: {recorded[option]!r} -> {wanted[option]!r}")
    return reasons, record, manifests


def _normal(value: Any, option: str = "") -> Any:
    if option == "deepspeed" and isinstance(value, bool):  # the boolean spellings TrainConfig accepts
        return "zero2" if value else "off"
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def retrain(config: dict[str, Any], deployment: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Trigger `deployment` (flow/deployment) with the config's training parameters when something changed."""
    from flows.pipeline import train_config

    deployment = deployment or config.get("retrain", {}).get("deployment") or "vocabulary_generation/vocabulary-generation"
    reasons, record, manifests = changes(config, "vocab")
    outcome: dict[str, Any] = {"changed": bool(reasons), "reasons": reasons, "deployment": deployment,
                               "checkpoint": record.get("checkpoint") if record else None,
                               "manifests": manifests, "flow_run_id": None}
    if not reasons or dry_run:
        return outcome
    from prefect.deployments import run_deployment

    cfg = train_config(config, "vocab")
    cfg.pop("out", None)  # the deployment's machine decides where checkpoints go
    run = run_deployment(name=deployment, timeout=0, tags=["retrain"],
                         parameters={"config": cfg, "mixture": config["mix"]["generation"], "launch": config.get("launch"),
                                     "out": config["root"]})
    outcome["flow_run_id"] = str(run.id)
    return outcome
