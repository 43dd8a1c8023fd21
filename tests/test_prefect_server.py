"""The run's temporary Prefect server (flows/server.py), in processes of their own as a run has it:
started before the imports, one "Starting temporary server" line, the flow's logs reach it, and
nothing is left running after the run ends or is killed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

RUN = """
from flows.server import prefect_api
with prefect_api() as ready:
    from prefect import flow, get_run_logger
    from prefect.settings import PREFECT_API_URL

    ready()

    @flow(name="server-probe")
    def probe() -> int:
        get_run_logger().info("probe ran")
        return 41 + 1

    print("API", PREFECT_API_URL.value(), flush=True)
    print("RESULT", probe(), flush=True)
    {after}
"""


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return {**env, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_TO_API_ENABLED": "true",  # as in a real run (tests/conftest.py turns it off)
            "PYTHONPATH": str(REPO)}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _servers_of(api: str) -> list[int]:
    """uvicorn processes serving the port of `api`."""
    port = api.rsplit(":", 1)[1].split("/")[0]
    out = subprocess.run(["pgrep", "-f", f"uvicorn .*--port {port}"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.slow
def test_one_temporary_server_serves_the_run_and_stops_with_it(tmp_path):
    p = subprocess.run([sys.executable, "-c", RUN.format(after="")], env=_env(tmp_path), cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "RESULT 42" in out
    assert out.count("Starting temporary server") == 1 and out.count("Stopping temporary server") == 1, out
    assert "View at" not in out and "Error logging to API" not in out and "telemetry" not in out.lower(), out
    api = next(line.split()[1] for line in out.splitlines() if line.startswith("API "))
    assert api.startswith("http://127.0.0.1:") and api.endswith("/api")
    assert not _servers_of(api), "the server outlived the run"
    # the flow run and its log line reached the server's database, in the run's PREFECT_HOME
    import sqlite3

    db = sqlite3.connect(tmp_path / "prefect" / "prefect.db")
    try:
        assert db.execute("SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'").fetchone()[0] == 1
        assert db.execute("SELECT count(*) FROM log WHERE message = 'probe ran'").fetchone()[0] == 1
    finally:
        db.close()


@pytest.mark.slow
def test_a_killed_run_leaves_no_server_behind(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", RUN.format(after="import time; time.sleep(600)")], env=_env(tmp_path),
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        api = None
        for line in p.stdout:
            if line.startswith("API "):
                api = line.split()[1]
            if line.startswith("RESULT"):
                break
        assert api, "the run did not get as far as its flow"
        servers = _servers_of(api)
        assert len(servers) == 1
        p.send_signal(signal.SIGKILL)  # the run alone, not its process group: no handler of its own runs
        p.wait(timeout=30)
        deadline = time.time() + 30
        while _alive(servers[0]) and time.time() < deadline:
            time.sleep(0.2)
        assert not _alive(servers[0]), "the killed run's server is still running"
    finally:
        p.kill()
        for pid in _servers_of(api or ":0/"):
            os.kill(pid, signal.SIGKILL)


def test_an_api_already_set_starts_nothing(tmp_path):
    code = ("import os; os.environ['PREFECT_API_URL'] = 'http://127.0.0.1:9/api'\n"
            "from flows.server import prefect_api\n"
            "with prefect_api() as ready:\n    ready()\n    print(os.environ['PREFECT_API_URL'])")
    p = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "http://127.0.0.1:9/api" and "Starting temporary server" not in p.stderr
