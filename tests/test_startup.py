"""Start-up and quiet output (issue 17): what a run costs before it does anything.

Importing the pipeline leaves Great Expectations, scipy and altair to the stages that use them;
Prefect's telemetry is off unless the user turned it on; a run with nothing new is answered before
Prefect starts (transforms/warehouse/freshness.py, the flow's own test) and still logs the run.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tables import assert_same, contents

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("great_expectations", "scipy", "altair", "vl_convert", "openpyxl")


def _python(code: str, env: dict | None = None) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK")}
    done = subprocess.run([sys.executable, "-c", code], env={**base, **(env or {})}, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


TELEMETRY = ("import os, flows.pipeline; print(os.environ['PREFECT_SERVER_ANALYTICS_ENABLED'], os.environ['DO_NOT_TRACK']); "
             "from prefect.settings import get_current_settings; print(get_current_settings().server.analytics_enabled)")


@pytest.fixture(scope="module")
def fresh_import() -> list[str]:
    """One new interpreter with the user's environment (no telemetry variables): the telemetry settings
    right after `import flows.pipeline`, then the heavy libraries loaded once flows.backfill and flows.cli
    are imported too, then Prefect's settings (two tests' questions, one start-up of ~5 s)."""
    return _python("import os, sys, json, flows.pipeline; "
                   "telemetry = [os.environ['PREFECT_SERVER_ANALYTICS_ENABLED'], os.environ['DO_NOT_TRACK']]; "
                   "import flows.backfill, flows.cli; "
                   f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules])); print(*telemetry); "
                   "from prefect.settings import get_current_settings; print(get_current_settings().server.analytics_enabled)"
                   ).splitlines()


def test_importing_the_pipeline_leaves_heavy_libraries_to_their_stages(fresh_import):
    assert json.loads(fresh_import[0]) == []


def test_prefect_telemetry_is_off_unless_the_user_asks_for_it(fresh_import):
    assert " ".join(fresh_import[1:]).split() == ["false", "1", "False"]
    assert _python(TELEMETRY, {"PREFECT_SERVER_ANALYTICS_ENABLED": "true", "DO_NOT_TRACK": "0"}).split() == \
        ["true", "0", "True"]


def test_flow_defaults_agree_with_the_model():
    from flows import pipeline
    from transforms.model import projection

    assert (pipeline.DEFAULT_DRAWS, pipeline.DEFAULT_SEED) == (projection.DEFAULT_DRAWS, projection.DEFAULT_SEED)


def _copy(demo_run, tmp_path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(demo_run[0], data, copy_function=shutil.copy2, symlinks=True)
    return data


def test_nothing_new_is_the_flows_own_test(demo_run, tmp_path):
    from transforms.config import get_paths
    from transforms.warehouse import freshness

    data = _copy(demo_run, tmp_path)
    paths = get_paths(data)
    seen, why = freshness.check(paths)
    assert seen == {"files_seen": demo_run[1]["files_seen"], "files_new": 0}, why
    # a resubmission (a new file) is work
    landed = sorted((data / "landing" / "enrollment").rglob("*.csv"))[0]
    shutil.copy2(landed, landed.with_name("resubmitted " + landed.name))
    assert freshness.nothing_new(paths) is None
    (landed.with_name("resubmitted " + landed.name)).unlink()
    assert freshness.nothing_new(paths) is not None
    # so is a changed input of the outputs (here an override file in the data folder)
    overrides = data / "overrides" / "accepted_warnings.csv"
    overrides.parent.mkdir(exist_ok=True)
    overrides.write_text("file_id,rule_id,reason\n", encoding="utf-8")
    assert freshness.nothing_new(paths) is None


def test_run_with_nothing_new_starts_no_prefect_server_and_is_logged(demo_run, tmp_path):
    data = _copy(demo_run, tmp_path)
    wh = data / "warehouse" / "lab2fab.duckdb"
    before, snapshot = contents(wh), (data / "published" / "lab2fab.duckdb").stat().st_mtime_ns
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "--data-dir", str(data), "run"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "nothing new" in out and "Starting temporary server" not in out and "telemetry" not in out, out
    assert_same(contents(wh), before)
    assert (data / "published" / "lab2fab.duckdb").stat().st_mtime_ns == snapshot
    con = duckdb.connect(str(wh), read_only=True)
    try:
        last = con.execute("SELECT files_new, rebuilt, status FROM ops.runs ORDER BY started_at DESC LIMIT 1").fetchone()
        runs = con.execute("SELECT count(*) FROM ops.runs").fetchone()[0]
    finally:
        con.close()
    assert last == (0, False, "succeeded") and runs == 2
