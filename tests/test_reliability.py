"""Reliability: runs killed mid-way, concurrent runs, and what analysts see meanwhile."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from transforms import faults, warehouse

RUN_LOG_COLUMNS = {"run_id", "ingested_at"}
HELD_BACK = "2024-2"  # the term that arrives in the run that gets killed


def contents(path: Path) -> dict[str, pd.DataFrame]:
    """Every table's content, without the run log (which run did it, and when)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for name in warehouse.table_names(con):
            if name == "ops.runs":
                continue
            cols = [c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE schema_name || '.' || table_name = ? "
                "ORDER BY column_index", [name]).fetchall() if c not in RUN_LOG_COLUMNS]
            out[name] = con.execute(f"SELECT {', '.join(cols)} FROM {name} ORDER BY ALL").df()
        return out
    finally:
        con.close()


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def lab2fab(data_dir: Path, *args: str, kill_at: str | None = None, wait: bool = True):
    env = {**os.environ, "PREFECT_HOME": str(data_dir.parent / f"prefect-{data_dir.name}")}
    env.pop("LAB2FAB_KILL_AT", None)
    if kill_at:
        env["LAB2FAB_KILL_AT"] = kill_at
    cmd = [sys.executable, "-m", "flows.cli", "--data-dir", str(data_dir), *args]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    if not wait:
        return p
    out, _ = p.communicate(timeout=600)
    return p.returncode, out


def copy_landing(src: Path, dst: Path, *, hold_back: str | None) -> None:
    """The demo landing zone, optionally without one term (mtimes kept: they order resubmissions)."""
    shutil.copytree(src, dst, copy_function=shutil.copy2,
                    ignore=(lambda d, names: [n for n in names if n == hold_back]) if hold_back else None)


@pytest.fixture(scope="module")
def clean_run(small_demo, tmp_path_factory) -> dict[str, pd.DataFrame]:
    """The reference: the whole demo collection loaded by one run that nobody disturbed."""
    data = tmp_path_factory.mktemp("clean") / "data"
    copy_landing(small_demo[0] / "landing", data / "landing", hold_back=None)
    rc, out = lab2fab(data, "run")
    assert rc == 0, out
    return contents(data / "warehouse" / "lab2fab.duckdb")


@pytest.mark.slow
@pytest.mark.parametrize("point", faults.POINTS)
def test_killed_run_then_rerun_equals_a_clean_run(point, small_demo, clean_run, tmp_path):
    data = tmp_path / "data"
    landing = small_demo[0] / "landing"
    copy_landing(landing, data / "landing", hold_back=HELD_BACK)
    rc, out = lab2fab(data, "run")
    assert rc == 0, out
    snapshot = data / "published" / "lab2fab.duckdb"
    before = contents(snapshot)
    # the held-back term arrives; the run that takes it is killed at `point`
    for folder in landing.glob(f"enrollment/*/{HELD_BACK}"):
        shutil.copytree(folder, data / "landing" / folder.relative_to(landing), copy_function=shutil.copy2)
    rc, out = lab2fab(data, "run", kill_at=point)
    assert rc == -9, f"the run was meant to die at {point}:\n{out[-3000:]}"
    # analysts still have the last complete snapshot, whole
    assert_same(contents(snapshot), before)
    rc, out = lab2fab(data, "run")
    assert rc == 0, out
    assert_same(contents(data / "warehouse" / "lab2fab.duckdb"), clean_run)
    assert_same(contents(snapshot), clean_run)
    assert not list((data / "warehouse" / "runs").iterdir())  # no work left behind
