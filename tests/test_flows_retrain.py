"""`varyflow retrain` against a real Prefect API: it triggers the training deployment when a new manifest
appears (or the training config changes) and does nothing, saying "up to date", otherwise."""
from __future__ import annotations

import yaml


def _runs_of(deployment_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def test_retrain_triggers_only_when_data_or_config_changed(prefect_api, tmp_path, capsys):
    from flows.cli import main
    from flows.pipeline import load_config, train_config
    from flows.render import render
    from flows.train import vocabulary_generation
    from storage.lineage import record_checkpoint

    root = str(tmp_path / "data")
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(yaml.safe_dump({"root": root, "render": {"document": {"count": 2, "shard_rows": 2}},
                                           "train": {"steps": 4},
                                           "retrain": {"deployment": "vocabulary_generation/retrain-test"}}))
    deployment_id = vocabulary_generation.to_deployment(name="retrain-test").apply()
    first = render(kind="document", count=2, seed=0, out=root, shard_rows=2, workers=1)

    # no checkpoint yet: training is due
    assert main(["retrain", "--config", str(config_file)]) == 0
    assert "triggered vocabulary_generation/retrain-test" in capsys.readouterr().out
    runs = _runs_of(deployment_id)
    assert len(runs) == 1
    assert runs[0].parameters["mixture"] == "vary-tiny" and runs[0].parameters["config"]["preset"] == "tiny"

    # the deployment's training ran on exactly these manifests with this config (what train() records)
    config = load_config(str(config_file))
    ckpt = tmp_path / "ckpt-1"
    ckpt.mkdir()
    record_checkpoint(str(ckpt), stage="vocab", manifests=[first["manifest"]], config=train_config(config, "vocab"), index_root=root)
    assert main(["retrain", "--config", str(config_file)]) == 0
    assert capsys.readouterr().out.startswith("up to date")
    assert len(_runs_of(deployment_id)) == 1

    # a training option changed: due again, and the reason says which
    changed = {**yaml.safe_load(config_file.read_text()), "train": {"steps": 9}}
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
    assert main(["retrain", "--config", str(tmp_path / "changed.yaml"), "--dry-run"]) == 0
    assert "would trigger" in (out := capsys.readouterr().out) and "steps: 4 -> 9" in out
    assert len(_runs_of(deployment_id)) == 1

    # a new manifest of a mixed dataset appears: due again
    second = render(kind="document", count=2, seed=1, out=root, shard_rows=2, workers=1)
    assert second["manifest"].endswith("v000002.json")
    assert main(["retrain", "--config", str(config_file)]) == 0
    assert "document: new manifest v000002.json" in capsys.readouterr().out
    assert len(_runs_of(deployment_id)) == 2
