"""Vary-tiny / Vary-base / Vary-toy training with transformers and DeepSpeed; runs without Prefect.

Public API: `training.config.TrainConfig`, `training.run.train(cfg) -> TrainResult`,
`training.evaluate.evaluate(checkpoint, manifests, limit=None) -> dict`, `training.cli.register`."""
