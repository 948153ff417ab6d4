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

    before = os.environ.get("PREFECT_API_URL")
    with prefect_test_harness(server_startup_timeout=120):
        url = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = url
        try:
            yield url
        finally:
            if before is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = before
