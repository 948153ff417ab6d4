"""Prefect for the tests.

`prefect_api`: one real Prefect API for the whole test session (a temporary SQLite database behind Prefect's
own server subprocess). Its URL is also exported so `varyflow` subprocesses and spawned task workers use it
instead of starting servers of their own.

`prefect_server`: what an operator runs, `prefect server start` on 127.0.0.1 (random free port, temporary
PREFECT_HOME and SQLite). `deployed_server`: that server with the `cpu` (process) and `gpu` (Kubernetes,
infra/k8s/gpu-base-job-template.json) pools created and `prefect deploy --all` run from the checkout.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).with_name("prefect"))


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], Any], timeout: float, proc: subprocess.Popen | None = None,
             log: Path | None = None) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` (and the log's tail) when `proc`
    exits or `timeout` seconds pass. A readiness wait, not a speed assertion."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception:
            pass
        tail = f"\n{log.read_text()[-3000:]}" if log is not None and log.exists() else ""
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited {proc.returncode}{tail}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not ready after {timeout} s{tail}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True and everything it started (a worker's flow runs):
    SIGTERM, then SIGKILL to the whole group after 5 s (a worker finishing a flow run's shutdown took 20 s of
    a test's teardown; what is stopped here is a throwaway server or worker on temporary files)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            return
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """(url, env): a live `prefect server start`; `env` is a clean environment pointing at nothing else."""
    port = free_port()
    tmp_path = tmp_path_factory.mktemp("prefect-server")
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home}/prefect.db",
               PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port),
               PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api",
               # Polling intervals, not behaviour: a run refused by a deployment's concurrency limit is retried
               # after 1 s instead of 30 s (the limit itself still holds), and a served flow (`.serve()`) looks
               # for its runs every second instead of every 10.
               PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS="1", PREFECT_RUNNER_POLL_FREQUENCY="1",
               # No runs from the nightlies' cron schedules (the deployments keep their schedules): a nightly
               # due within the retrain gate's settle window makes the gate wait, so with the scheduler on, the
               # trigger test failed whenever it ran within 2 h before 01:00 UTC.
               PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false")
    log_path = tmp_path / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("prefect server", lambda: urllib.request.urlopen(f"{url}/api/health", timeout=2).status == 200, 180,
                 proc, log_path)
        yield url, env
    finally:
        stop(proc)
        log.close()


def prefect_cli(env: dict[str, str], *args: str, cwd: Path = REPO, timeout: float = 300) -> str:
    out = subprocess.run([PREFECT, "--no-prompt", *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, (args, out.stdout[-3000:], out.stderr[-3000:])
    return out.stdout


@pytest.fixture(scope="session")
def deployed_server(prefect_server):
    """(url, env with PREFECT_API_URL): both work pools created as docs/orchestration.md says, then
    `prefect deploy --all` from the checkout."""
    url, env = prefect_server
    env = dict(env, PREFECT_API_URL=f"{url}/api")
    prefect_cli(env, "work-pool", "create", "cpu", "--type", "process")
    prefect_cli(env, "work-pool", "create", "gpu", "--type", "kubernetes", "--base-job-template",
                str(REPO / "infra/k8s/gpu-base-job-template.json"))
    prefect_cli(env, "deploy", "--all")
    return url, env
