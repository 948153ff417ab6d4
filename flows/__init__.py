"""Orchestration glue: Prefect flows, the CLI, deployments. No rendering or training logic lives here."""
