import os

# No analytics, no network, ever (the Standards): set before anything imports Prefect.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Spinning OpenMP threads fight each other on a busy 2-core machine (a CPU training test: 57 s -> 23 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

pytest_plugins = ["tests.fixtures_s3", "tests.fixtures_prefect"]
