"""Operations: backfills, one writer at a time, queries beside runs, and deployments on a real Prefect server."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pandas as pd
import pytest

from processes import stop_groups
from tables import assert_same, contents
from flows import lock
from transforms.config import get_paths

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
@pytest.fixture(scope="module")
def demo_data(demo_run, tmp_path_factory) -> Path:
    """A copy of the session's demo run (tests/conftest.py): the small demo collection after one run."""
    data_dir = tmp_path_factory.mktemp("ops") / "data"
    shutil.copytree(demo_run[0], data_dir, copy_function=shutil.copy2, symlinks=True)
    return data_dir


def test_backfill_twice_leaves_every_table_identical(prefect_harness, demo_data):
    from flows.backfill import backfill

    wh = demo_data / "warehouse" / "lab2fab.duckdb"
    after_run = contents(wh)  # the incremental run of demo_data
    first = backfill(first_term="2023-1", last_term="2024-2", first_round="2025H1", last_round="2026H1",
                     data_dir=str(demo_data))
    assert first["files_new"] > 0
    after_first = contents(wh)
    backfill(first_term="2023-1", last_term="2024-2", first_round="2025H1", last_round="2026H1",
             data_dir=str(demo_data))
    after_second = contents(wh)
    assert_same(after_first, after_second)
    # and a backfill of everything derives exactly what the incremental runs had built
    for name in ("staging.enrollment", "staging.placements", "ops.manifest", "marts.enrollment_by_term"):
        pd.testing.assert_frame_equal(after_run[name], after_first[name], obj=name)


def test_backfill_rejects_malformed_terms(prefect_harness, demo_data):
    from flows.backfill import backfill

    with pytest.raises(Exception, match="pattern"):
        backfill(first_term="2024/1", last_term="2024-2", data_dir=str(demo_data))


def test_second_writer_is_refused_clearly(prefect_harness, demo_data):
    from flows.pipeline import pipeline

    paths = get_paths(demo_data)
    with lock.writer_lock(paths):
        with pytest.raises(lock.WarehouseBusy, match="being written by pid"):
            pipeline(data_dir=str(demo_data), rebuild=True)


def test_open_query_and_run_both_succeed(prefect_harness, demo_data):
    """An analyst's read-only session stays open, querying, while a run rebuilds and publishes."""
    from flows.pipeline import pipeline

    snapshot = demo_data / "published" / "lab2fab.duckdb"
    if not snapshot.exists():
        pipeline(data_dir=str(demo_data))
    reader = subprocess.Popen([sys.executable, "-c", f"""
import duckdb, time, json
con = duckdb.connect({str(snapshot)!r}, read_only=True)   # held open for the whole run
con.execute("SELECT count(*) FROM staging.enrollment").fetchone()
print("open", flush=True)
n = 0
deadline = time.time() + 60
while time.time() < deadline:
    con.execute("SELECT count(*) FROM staging.enrollment").fetchone()
    fresh = duckdb.connect({str(snapshot)!r}, read_only=True)   # and new sessions too
    fresh.execute("SELECT sum(students) FROM marts.enrollment_by_term").fetchone()
    fresh.close()
    n += 1
    if open({str(demo_data / 'stop')!r}, 'a+').tell():
        break
    time.sleep(0.05)
print(json.dumps({{"queries": n}}))
"""], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout.readline() == "open\n", reader.stderr.read()  # the session is open before the run starts
    result = pipeline(data_dir=str(demo_data), rebuild=True)
    (demo_data / "stop").write_text("stop")
    out, err = reader.communicate(timeout=90)
    assert reader.returncode == 0, err
    assert json.loads(out)["queries"] > 0
    assert result["changed"] is True


def test_example_queries_dictionary_parquet_and_duckdb_shell(prefect_harness, demo_data):
    from flows.pipeline import pipeline

    snapshot = demo_data / "published" / "lab2fab.duckdb"
    if not snapshot.exists():
        pipeline(data_dir=str(demo_data))
    con = duckdb.connect(str(snapshot), read_only=True)
    for sql in sorted((REPO / "queries").glob("*.sql")):
        con.execute(sql.read_text()).fetchall()
    undocumented = con.execute("""SELECT schema_name || '.' || table_name || '.' || column_name FROM duckdb_columns()
                                  WHERE schema_name = 'analytics' AND (comment IS NULL OR comment = '')""").fetchall()
    assert undocumented == []
    con.close()
    assert "## `analytics.submissions`" in (demo_data / "published" / "DATA_DICTIONARY.md").read_text()
    parquet = demo_data / "published" / "parquet"
    assert (parquet / "marts.enrollment_by_term.parquet").exists()
    assert (parquet / "analytics.slot_use.parquet").exists()
    shell = subprocess.run([str(VENV_BIN / "duckdb"), "-readonly", str(snapshot), "-csv", "-c",
                            "SELECT count(*) AS n FROM staging.enrollment"], capture_output=True, text=True, timeout=60)
    assert shell.returncode == 0, shell.stderr
    assert int(shell.stdout.split()[-1]) > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_deployments_on_a_real_prefect_server(small_demo, tmp_path):
    """prefect server + process pool + `prefect deploy --all` + worker + the backfill deployment."""
    data_dir = tmp_path / "data"
    shutil.copytree(small_demo[0] / "landing", data_dir / "landing")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PWD": str(REPO), "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
           # the worker asks for scheduled runs every 2 s, not every 10 s (Prefect's default): the run
           # starts sooner, for a few more polls while it runs
           "PREFECT_WORKER_QUERY_SECONDS": "2"}
    prefect = str(VENV_BIN / "prefect")
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        with open(logs / f"{name}.log", "w") as log:
            p = subprocess.Popen([prefect, *args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        procs.append(p)
        return p

    def run(*args: str, timeout: float = 180) -> str:
        r = subprocess.run([prefect, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"prefect {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    try:
        start("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, (logs / "server.log").read_text()[-3000:]
            time.sleep(0.25)
        run("work-pool", "create", "lab2fab-process", "--type", "process", "--overwrite")
        # the worker starts while the deployments are registered: it only polls its pool until a run comes
        start("worker", "worker", "start", "--pool", "lab2fab-process", "--limit", "1")
        out = run("--no-prompt", "deploy", "--all")
        assert "lab2fab-backfill/backfill" in out or "backfill" in out
        out = run("deployment", "run", "lab2fab-backfill/backfill",
                  "--param", "first_term=2023-1", "--param", "last_term=2024-2",
                  "--param", "first_round=2025H1", "--param", "last_round=2026H1",
                  "--param", f"data_dir={data_dir}", "--watch", "--watch-timeout", "400", timeout=480)
        assert "Completed" in out, out + (logs / "worker.log").read_text()[-3000:]
        con = duckdb.connect(str(data_dir / "published" / "lab2fab.duckdb"), read_only=True)
        files = con.execute("SELECT count(*) FROM ops.manifest").fetchone()[0]
        rows = con.execute("SELECT count(*) FROM staging.enrollment").fetchone()[0]
        con.close()
        assert files == small_demo[1]["files_written"] and rows > 0
    finally:
        stop_groups(procs)
