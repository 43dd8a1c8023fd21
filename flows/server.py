"""The run's temporary Prefect server, started before the run imports its code rather than after.

Left to itself, Prefect starts a temporary server (its `SubprocessASGIServer`) when the first flow
run asks for an API: after the run has imported Prefect, lab2fab and `prefect.server` itself, so
the imports and the server's own start-up (a few seconds, on the other core) are paid one after
the other. Here the same server (Prefect's app factory under uvicorn, with the settings Prefect
gives its temporary server) starts first, and becomes the run's API when its first flow run
begins, which waits for it to answer only then. It stops when the process exits, and,
on Linux, also if the run is killed (PR_SET_PDEATHSIG), so a killed run leaves no server behind.

With `PREFECT_API_URL` already set (a real server, a test server) nothing is started.
"""
from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import flows.prefect_defaults  # noqa: F401  (the server inherits them: telemetry off, its start-up timeout)

START_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"  # Prefect's own setting (flows/prefect_defaults.py)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _launch(port: int) -> subprocess.Popen:
    """Prefect's temporary server: the command and environment of prefect.server.api.server.SubprocessASGIServer."""
    prefect_dir = Path(importlib.util.find_spec("prefect").origin).parent  # found, not imported
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent), "--factory",
         "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "error", "--lifespan", "on"],
        env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def _say(message: str) -> None:
    now = time.time()
    print(f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now % 1 * 1000):03d} | INFO    | prefect - "
          f"{message}", file=sys.stderr, flush=True)


class TemporaryServer:
    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.process = _launch(self.port)
        # Registered before Prefect is imported, so it runs after Prefect's own exit handlers, which
        # still send the run's last logs and events to this server.
        atexit.register(self.stop)

    def wait_ready(self) -> str:
        """Block until the server answers /health; the API URL. A server that dies at start (its port
        taken in the meantime) is started again on another port."""
        _say(f"Starting temporary server on http://127.0.0.1:{self.port}")  # as Prefect says it
        deadline = time.monotonic() + float(os.environ.get(START_TIMEOUT_ENV) or 90)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.port = _free_port()
                self.url = f"http://127.0.0.1:{self.port}/api"
                self.process = _launch(self.port)
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self.url
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the temporary Prefect server did not answer within {os.environ.get(START_TIMEOUT_ENV) or 90} s "
                           f"(raise ${START_TIMEOUT_ENV} on a busy machine, or set PREFECT_API_URL to a running server)")

    def stop(self, quietly: bool = False) -> None:
        if self.process.poll() is None:
            if not quietly:
                _say(f"Stopping temporary server on http://127.0.0.1:{self.port}")
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _configured() -> bool:
    """Prefect's settings (environment or profile) name an API, or forbid a temporary server."""
    from prefect.settings import get_current_settings

    current = get_current_settings()
    return bool(current.api.url) or not current.server.ephemeral.enabled


@contextmanager
def prefect_api():
    """Around a command that runs flows: a temporary server, unless an API is configured.

    Enter this before importing Prefect. Call the yielded `ready()` just before the first flow run: if
    Prefect's settings (environment, profile or settings files) name an API, or forbid a temporary
    server, the early server is stopped and Prefect does as it is configured; otherwise ready() waits
    for the server and makes it this process's API, for the rest of the process (Prefect's exit
    handlers still send the last logs there) and for the worker processes it starts."""
    if os.environ.get("PREFECT_API_URL") or ("prefect" in sys.modules and _configured()):
        yield lambda meanwhile=None: None
        return
    server = TemporaryServer()

    def ready(meanwhile: Callable[[], object] | None = None) -> None:
        """`meanwhile`: work the run needs later anyway, done while the server is still starting
        (on the other core), not after."""
        if _configured():
            server.stop(quietly=True)
            return
        if meanwhile is not None:
            meanwhile()
        os.environ["PREFECT_API_URL"] = server.wait_ready()
        os.environ["PREFECT_UI_URL"] = ""  # no UI is served, as with Prefect's own: no "View at" links
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()  # Prefect's settings are read from the environment at import

    yield ready
