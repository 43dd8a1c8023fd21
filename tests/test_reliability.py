"""Reliability: runs killed mid-way, concurrent runs, and what analysts see meanwhile."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tables import assert_same, contents
from transforms import faults

REPO = Path(__file__).resolve().parent.parent
HELD_BACK = "2024-2"  # the term that arrives in the run that gets killed


def lab2fab(data_dir: Path, *args: str, kill_at: str | None = None) -> tuple[int, str]:
    """Run the CLI in its own process group; afterwards, end whatever it left behind (a killed run's
    ephemeral Prefect server would otherwise live on)."""
    env = {**os.environ, "PREFECT_HOME": str(data_dir.parent / f"prefect-{data_dir.name}")}
    env.pop("LAB2FAB_KILL_AT", None)
    if kill_at:
        env["LAB2FAB_KILL_AT"] = kill_at
    log = data_dir.parent / f"{data_dir.name}-{kill_at or 'run'}.log"
    with open(log, "w") as out:
        p = subprocess.Popen([sys.executable, "-m", "flows.cli", "--data-dir", str(data_dir), *args], env=env,
                             stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        try:
            rc = p.wait(timeout=600)
        finally:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return rc, log.read_text()


def copy_landing(src: Path, dst: Path, *, hold_back: str | None) -> None:
    """The demo landing zone, optionally without one term (mtimes kept: they order resubmissions)."""
    shutil.copytree(src, dst, copy_function=shutil.copy2,
                    ignore=(lambda d, names: [n for n in names if n == hold_back]) if hold_back else None)


@pytest.fixture(scope="module")
def clean_run(small_demo, tmp_path_factory) -> dict:
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
