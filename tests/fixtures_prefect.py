"""One real Prefect API for the whole test session (a temporary SQLite database behind Prefect's own
server subprocess). Its URL is also exported so `varyflow` subprocesses and spawned task workers use it
instead of starting servers of their own."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def prefect_api():
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from flows.common import exported_env

    with prefect_test_harness(server_startup_timeout=120):
        url = PREFECT_API_URL.value()
        with exported_env("PREFECT_API_URL", url):
            yield url
