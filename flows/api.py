"""Reaching a Prefect API when the user runs none: one background API per PREFECT_HOME, reused across commands.

Prefect's embedded default starts a temporary API server inside every command (a uvicorn subprocess on the
SQLite database in PREFECT_HOME) and stops it at exit: 15-30 s of every `varyflow render` on 2 busy cores, and
a failure when it misses Prefect's 20 s start-up timeout. Here the first command that needs an API starts the
same server (`prefect.server.api.server:create_app`, ephemeral mode: no UI, only the services runs need) as a
background process, records it in `PREFECT_HOME/varyflow-api.json`, and every later command reuses it after
one health check. It stops itself after `VARYFLOW_API_IDLE_MINUTES` (default 30) without a request, and
`varyflow api --stop` stops it now. Runs land in the same database as before, so `prefect server start` shows
them with their artifacts.

- `PREFECT_API_URL` set (a server you run, Prefect Cloud): used as is, nothing started.
- `VARYFLOW_BACKGROUND_API=0`: Prefect's own per-command temporary server.
- Start-up waits up to `PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS` (default here 90 s), says what it
  waits for, retries once on another port, then falls back to Prefect's temporary server.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

STATE_FILE = "varyflow-api.json"
LOCK_FILE = "varyflow-api.lock"
LOG_FILE = "varyflow-api.log"
DEFAULT_STARTUP_TIMEOUT_S = 90
DEFAULT_IDLE_MINUTES = 30.0
_REPO = Path(__file__).resolve().parents[1]


def _say(message: str) -> None:
    print(f"varyflow: {message}", file=sys.stderr, flush=True)


def prefect_home() -> Path:
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()).expanduser()


def startup_timeout() -> int:
    value = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
    return int(value) if value and value.isdigit() else DEFAULT_STARTUP_TIMEOUT_S


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(home: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((home / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and {"pid", "url"} <= set(state) else None


def background_url() -> str | None:
    """The URL of this PREFECT_HOME's background API when one is recorded (alive or not)."""
    state = read_state(prefect_home())
    return state["url"] if state else None


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One command at a time decides whether to start the API; the others then find it running."""
    import fcntl

    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(home: Path, timeout: int, say: Callable[[str], None]) -> dict[str, Any] | None:
    """Start the server and wait for its health check; None when it did not come up in `timeout` s."""
    from prefect import __version__ as prefect_version

    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PYTHONPATH=os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH")) if p))
    with open(home / LOG_FILE, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "flows.api", "--serve", "--port", str(port)], env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd=str(home))
    say(f"starting the Prefect API for {home} in the background (later commands reuse it); "
        f"waiting up to {timeout} s for {url}/health")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            say(f"the Prefect API exited with code {proc.returncode} while starting (log: {home / LOG_FILE})")
            return None
        if healthy(url):
            return {"pid": proc.pid, "port": port, "url": url, "prefect": prefect_version, "started": time.time()}
        time.sleep(0.25)
    say(f"the Prefect API did not answer {url}/health within {timeout} s (log: {home / LOG_FILE})")
    _terminate(proc.pid)
    return None


def _terminate(pid: int, wait_s: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and _alive(pid):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def ensure_background_api(say: Callable[[str], None] = _say) -> str | None:
    """The URL of this machine's background API, started if need be; None when the caller should leave Prefect
    as configured (PREFECT_API_URL set, VARYFLOW_BACKGROUND_API=0, or the API would not start)."""
    from prefect import __version__ as prefect_version
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value() or os.environ.get("VARYFLOW_BACKGROUND_API", "1").lower() in ("0", "false", "no"):
        return None
    home = prefect_home()
    with _locked(home):
        state = read_state(home)
        if state and _alive(int(state["pid"])):
            if state.get("prefect") == prefect_version and healthy(state["url"], timeout=10):
                return state["url"]
            _terminate(int(state["pid"]))  # another Prefect version, or not answering: replace it
        (home / STATE_FILE).unlink(missing_ok=True)
        timeout = startup_timeout()
        for attempt in (1, 2):
            started = _start(home, timeout, say)
            if started:
                (home / STATE_FILE).write_text(json.dumps(started))
                return started["url"]
            if attempt == 1:
                say("trying once more")
    say(f"falling back to Prefect's temporary per-command server (up to {timeout} s to start)")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(timeout))
    return None


def stop_background_api(home: str | Path | None = None) -> bool:
    """Stop the background API of `home` (default: PREFECT_HOME); False when none was running."""
    home = Path(home) if home else prefect_home()
    state = read_state(home)
    if not state:
        return False
    running = _alive(int(state["pid"]))
    if running:
        _terminate(int(state["pid"]))
    (home / STATE_FILE).unlink(missing_ok=True)
    return running


@contextlib.contextmanager
def connected(say: Callable[[str], None] = _say) -> Iterator[str | None]:
    """Run the block against the background API (exported to subprocesses too); see the module docstring."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    from flows.common import exported_env

    url = ensure_background_api(say)
    if url is None:
        # Prefect's own temporary server, with a start-up timeout a busy machine can meet.
        with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: startup_timeout()}):
            yield None
        return
    with temporary_settings(updates={PREFECT_API_URL: url}), exported_env("PREFECT_API_URL", url):
        yield url


class _IdleTracker:
    """ASGI wrapper that knows how long the server has gone without a request or an open connection."""

    def __init__(self, app: Any):
        self.app, self.active, self.last = app, 0, time.monotonic()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        self.active += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.active -= 1
            self.last = time.monotonic()

    def idle_s(self) -> float:
        return 0.0 if self.active else time.monotonic() - self.last


def serve(port: int, idle_minutes: float) -> None:
    """The background API itself (run as `python -m flows.api --serve --port P`)."""
    import threading

    os.environ["PREFECT__SERVER_EPHEMERAL"] = "1"  # Prefect's ephemeral app: no UI, the services runs need
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    import uvicorn
    from prefect.server.api.server import create_app

    app = _IdleTracker(create_app(final=True))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on"))

    def watchdog() -> None:
        while not server.should_exit:
            time.sleep(min(30.0, idle_minutes * 60 / 4 or 30.0))
            if idle_minutes > 0 and app.idle_s() > idle_minutes * 60:
                server.should_exit = True

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        server.run()
    finally:
        home = prefect_home()
        state = read_state(home)
        if state and int(state["pid"]) == os.getpid():
            (home / STATE_FILE).unlink(missing_ok=True)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m flows.api")
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--idle-minutes", type=float, default=float(os.environ.get("VARYFLOW_API_IDLE_MINUTES", DEFAULT_IDLE_MINUTES)))
    a = ap.parse_args()
    serve(a.port, a.idle_minutes)
