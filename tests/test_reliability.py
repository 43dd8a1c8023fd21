"""Reliability (issue 9), each scenario done for real to a pipeline run in its own process:
killed mid-run, write errors, two runs at once, a damaged or lost warehouse, a wrong or
missing key, and a scan of everything a run leaves for personal data."""
from __future__ import annotations

import errno
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from hostile_corpus import Detector, texts
from tables import assert_same, contents
from flows import faults
from transforms.ingest.readers import AliasTable, SubmissionRejected, read_submission

REPO = Path(__file__).resolve().parent.parent
HELD_BACK = "2024-2"  # the term that arrives in the run under test


def lab2fab(data_dir: Path, *args: str, kill_at: str | None = None, fail_at: str | None = None,
            name: str = "run", env: dict | None = None, wait: bool = True, preexec=None, api: str | None = None):
    """Run the CLI in its own process group, with its own Prefect home, reporting to the Prefect API
    at `api` (the worker's test server, tests/conftest.py `prefect_api`) or, without it, to a
    temporary server of its own; afterwards, end whatever it left behind (a killed run's temporary
    Prefect server would otherwise live on).
    Returns (returncode, output), or the Popen handle and log path with wait=False."""
    env = {**os.environ, "PREFECT_HOME": str(data_dir.parent / f"prefect-{data_dir.name}-{name}"),
           "PREFECT_API_URL": api, **(env or {})}
    for var, value in (("LAB2FAB_KILL_AT", kill_at), ("LAB2FAB_FAIL_AT", fail_at)):
        env.pop(var, None)
        if value:
            env[var] = value
    env = {k: v for k, v in env.items() if v is not None}
    log = data_dir.parent / f"{data_dir.name}-{name}-{kill_at or fail_at or 'ok'}.log"
    out = open(log, "w")
    p = subprocess.Popen([sys.executable, "-m", "flows.cli", "--data-dir", str(data_dir), *args], env=env,
                         stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True, preexec_fn=preexec)
    if not wait:
        return p, log
    return finish(p, log)


def finish(p: subprocess.Popen, log: Path) -> tuple[int, str]:
    try:
        rc = p.wait(timeout=600)
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return rc, log.read_text()


def clone(src: Path, dst: Path) -> Path:
    """A data folder copied whole (mtimes kept: they order resubmissions; links kept as links)."""
    shutil.copytree(src, dst, copy_function=shutil.copy2, symlinks=True)
    return dst


def arrive(landing: Path, data: Path, term: str = HELD_BACK) -> None:
    """The held-back term's files arrive in `data`'s landing zone."""
    for folder in landing.glob(f"enrollment/*/{term}"):
        shutil.copytree(folder, data / "landing" / folder.relative_to(landing), copy_function=shutil.copy2)


def term_arrives(small_demo, first_run: Path, tmp_path: Path) -> tuple[Path, dict]:
    """A copy of the first run's data folder, the snapshot's content, and the held-back term landed."""
    data = clone(first_run, tmp_path / "data")
    before = contents(data / "published" / "lab2fab.duckdb")
    arrive(small_demo[0] / "landing", data)
    return data, before


def assert_next_run_recovers(data: Path, snapshot_before: dict, clean_run: dict, api: str) -> None:
    """Analysts kept the last complete snapshot; the next run, with no clean-up, gives a clean run's tables."""
    snapshot = data / "published" / "lab2fab.duckdb"
    assert_same(contents(snapshot), snapshot_before)
    rc, out = lab2fab(data, "run", api=api)
    assert rc == 0, out
    assert_same(contents(data / "warehouse" / "lab2fab.duckdb"), clean_run)
    assert_same(contents(snapshot), clean_run)
    assert not list((data / "warehouse" / "runs").iterdir())  # no work left behind


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# The fixtures below are built once per session, whichever xdist worker asks first (tests/conftest.py).

@pytest.fixture(scope="session")
def clean_run(demo_run) -> dict:
    """The reference: the whole demo collection loaded by one run that nobody disturbed (the session's
    demo run, tests/conftest.py)."""
    return contents(demo_run[0] / "warehouse" / "lab2fab.duckdb")


@pytest.fixture(scope="session")
def first_run(small_demo, prefect_harness, once) -> Path:
    """A data folder after one run, before the held-back term arrived; tests work on copies. (Only the
    state it leaves matters, so the run is done in this process: a process of its own would cost
    imports and a Prefect server.)"""
    from flows.pipeline import pipeline

    def build(folder: Path) -> Path:
        data = folder / "data"
        shutil.copytree(small_demo[0] / "landing", data / "landing", copy_function=shutil.copy2,
                        ignore=lambda d, names: [n for n in names if n == HELD_BACK])
        pipeline(data_dir=str(data))
        return data

    return once("reliability-first-run", build)


@pytest.fixture(scope="session")
def original(small_demo, first_run, once) -> Path:
    """The first run, then a second run that took the held-back term: a warehouse built over time."""
    def build(folder: Path) -> Path:
        data = clone(first_run, folder / "data")
        arrive(small_demo[0] / "landing", data)
        rc, out = lab2fab(data, "run")
        assert rc == 0, out
        return data

    return once("reliability-original", build)


# ------------------------------------------------------------------ crashes and write errors

@pytest.mark.slow
@pytest.mark.parametrize("point", faults.POINTS)
def test_killed_run_then_rerun_equals_a_clean_run(point, small_demo, first_run, clean_run, prefect_api, tmp_path):
    data, before = term_arrives(small_demo, first_run, tmp_path)
    rc, out = lab2fab(data, "run", kill_at=point, api=prefect_api)
    assert rc == -9, f"the run was meant to die at {point}:\n{out[-3000:]}"
    assert_next_run_recovers(data, before, clean_run, prefect_api)


@pytest.mark.slow
@pytest.mark.parametrize("fail_at", ["load:ENOSPC", "marts:EACCES", "publish:ENOSPC"])
def test_write_error_ends_the_run_clearly_and_the_next_run_recovers(fail_at, small_demo, first_run, clean_run,
                                                                     prefect_api, tmp_path):
    """A full disk or a permission change while writing: a plain error saying what to do, the last
    snapshot untouched, and the next run (disk freed) recovers with no clean-up."""
    data, before = term_arrives(small_demo, first_run, tmp_path)
    rc, out = lab2fab(data, "run", fail_at=fail_at, api=prefect_api)
    assert rc == 1, out[-3000:]
    message = out[out.rindex("lab2fab run:"):]
    assert os.strerror(getattr(errno, fail_at.split(":")[1])) in message
    assert ("Free disk space" if fail_at.endswith("ENOSPC") else "Let the user running lab2fab write there") in message
    assert "the next run picks up" in message.lower()
    assert_next_run_recovers(data, before, clean_run, prefect_api)


@pytest.mark.slow
def test_file_size_limit_hit_while_writing_then_next_run_recovers(small_demo, first_run, clean_run, prefect_api,
                                                                  tmp_path):
    """The kernel itself refuses the writes (RLIMIT_FSIZE: "File too large", as a full disk would),
    wherever the run happens to be writing when the warehouse, WAL or snapshot crosses the limit."""
    data, before = term_arrives(small_demo, first_run, tmp_path)
    limit = (data / "warehouse" / "lab2fab.duckdb").stat().st_size  # any growth of the warehouse fails

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write(), not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    # (the Prefect API's database is the test server's, in another process, outside the limit)
    rc, out = lab2fab(data, "run", name="limited", preexec=limited, api=prefect_api)
    assert rc == 1, out[-3000:]
    assert "File too large" in out[out.rindex("lab2fab run:"):], out[-3000:]
    assert_next_run_recovers(data, before, clean_run, prefect_api)


# ------------------------------------------------------------------ concurrency

@pytest.mark.slow
def test_two_runs_started_at_once_give_a_single_runs_result(small_demo, first_run, clean_run, prefect_api, tmp_path):
    """Both wait for the writer lock: one takes the new files, the other then finds nothing new."""
    data = clone(first_run, tmp_path / "data")
    arrive(small_demo[0] / "landing", data)
    started = [lab2fab(data, "run", "--wait", "600", name=f"run{i}", wait=False, api=prefect_api) for i in (1, 2)]
    results = [finish(p, log) for p, log in started]
    for rc, out in results:
        assert rc == 0, out[-3000:]
    took = [re.search(r"files: \d+ in scope, (\d+) ingested", out).group(1) for _, out in results]
    assert sorted(took) == ["0", str(len(list((small_demo[0] / "landing").glob(f"enrollment/*/{HELD_BACK}/*"))))]
    assert_same(contents(data / "warehouse" / "lab2fab.duckdb"), clean_run)


# ------------------------------------------------------------------ recovery

def _arrivals(path: Path) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT file_id, run_id, ingested_at FROM ops.manifest ORDER BY file_id").df()
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["damaged", "lost"])
def test_rebuild_recreates_a_damaged_or_lost_warehouse(damage, original, prefect_api, tmp_path):
    data = clone(original, tmp_path / "data")
    wh = data / "warehouse" / "lab2fab.duckdb"
    expected, arrivals = contents(wh), _arrivals(wh)
    published = contents(data / "published" / "lab2fab.duckdb")
    if damage == "damaged":
        with open(wh, "r+b") as f:  # the file and database headers overwritten
            f.write(os.urandom(3 * 4096))
    else:
        wh.unlink()
    # a backup restored without timestamps: same content, time received lost
    touched = sorted((data / "landing" / "enrollment").rglob("*.csv"))[0]
    os.utime(touched, (time.time(), time.time()))
    rc, out = lab2fab(data, "run", name="refused", api=prefect_api)
    assert rc == 1, out[-3000:]
    assert "`lab2fab rebuild`" in out[out.rindex("lab2fab run:"):]
    rc, out = lab2fab(data, "rebuild", api=prefect_api)
    assert rc == 0, out[-3000:]
    assert_same(contents(wh), expected)
    pd.testing.assert_frame_equal(_arrivals(wh), arrivals)  # each file keeps the run and time it first arrived
    assert_same(contents(data / "published" / "lab2fab.duckdb"), published)
    if damage == "damaged":
        assert len(list(wh.parent.glob("lab2fab.duckdb.replaced-*"))) == 1  # kept aside, not deleted
    runs = duckdb.connect(str(wh), read_only=True).execute("SELECT count(*) FROM ops.runs").fetchone()[0]
    assert runs == 3  # the two original runs, and the rebuild


@pytest.mark.slow
def test_rebuild_refuses_what_it_cannot_recreate_and_changes_nothing(original, prefect_api, tmp_path):
    data = clone(original, tmp_path / "data")
    wh = data / "warehouse" / "lab2fab.duckdb"
    before = digest(wh)
    gone = sorted((data / "landing" / "enrollment").rglob("*.xlsx"))[0]
    gone.unlink()
    rc, out = lab2fab(data, "rebuild", name="missing", api=prefect_api)
    assert rc == 1, out[-3000:]
    message = out[out.rindex("lab2fab rebuild:"):]
    assert gone.relative_to(data / "landing").as_posix() in message and "missing" in message
    rc, out = lab2fab(data, "rebuild", name="otherkey", env={"LAB2FAB_PSEUDONYM_KEY": "not-the-original-key"},
                      api=prefect_api)
    assert rc == 1, out[-3000:]
    assert "pseudonymisation key" in out[out.rindex("lab2fab rebuild:"):]
    assert digest(wh) == before and not list(wh.parent.glob("*.replaced-*"))


# ------------------------------------------------------------------ privacy

@pytest.mark.slow
@pytest.mark.parametrize("key", ["wrong", "missing"])
def test_wrong_or_missing_key_stops_the_run_before_anything_is_written(key, small_demo, first_run, prefect_api,
                                                                       tmp_path):
    data = clone(first_run, tmp_path / "data")
    arrive(small_demo[0] / "landing", data)
    watched = [data / "warehouse" / "lab2fab.duckdb", data / "published" / "lab2fab.duckdb",
               data / "history" / "manifest.parquet"]
    before = [digest(p) for p in watched]
    rc, out = lab2fab(data, "run", name=key, api=prefect_api,
                      env={"LAB2FAB_PSEUDONYM_KEY": "not-the-original-key" if key == "wrong" else None})
    assert rc == 1, out[-3000:]
    assert "pseudonymisation key" in out[out.rindex("lab2fab run:"):]
    assert [digest(p) for p in watched] == before
    assert not list((data / "warehouse" / "runs").rglob("*.parquet"))  # nothing staged either
    assert not (data / ".secrets").exists()  # and no stand-in key made up


def personal_data(landing: Path) -> dict[str, set[str]]:
    """Names, national ids and birth dates in the input, as sent and in the usual date spellings."""
    aliases = AliasTable.from_csv(REPO / "data" / "reference" / "column_aliases.csv")
    found: dict[str, set[str]] = {"full_name": set(), "national_id": set(), "birth_date": set()}
    for path in sorted((landing / "enrollment").rglob("*.*")):
        try:
            frame = read_submission(path, aliases, set()).frame
        except SubmissionRejected:
            continue
        for col in found:
            if col in frame:
                found[col] |= {v.strip() for v in frame[col].dropna().astype(str) if len(v.strip()) >= 8}
    dates = pd.to_datetime(pd.Series(sorted(found["birth_date"])), errors="coerce", dayfirst=True).dropna()
    found["birth_date"] |= {f"{d:%Y-%m-%d}" for d in dates} | {f"{d:%d/%m/%Y}" for d in dates}
    return found


# texts() and Detector: tests/hostile_corpus.py (shared with the hostile corpus of tests/test_privacy.py)


@pytest.mark.slow
def test_no_personal_data_in_anything_a_run_leaves(small_demo, original):
    """Warehouse, snapshot, Parquet exports, report, feedback, Data Docs, history, run logs and the
    Prefect API's database (artifacts, logs, parameters): no name, national id or birth date from the input."""
    landing = small_demo[0] / "landing"
    pii = personal_data(landing)
    assert all(len(v) > 100 for v in pii.values())
    detect = Detector(pii)
    # the detector does find them where they are: in a submission as sent
    sent = next(p for p in sorted(landing.rglob("*.csv")) if "enrollment" in p.parts)
    assert {kind for kind, _ in detect(sent.read_bytes().decode("utf-8-sig", errors="replace"))} == set(pii)
    prefect_home = original.parent / f"prefect-{original.name}-run"
    logs = sorted(original.parent.glob(f"{original.name}-*.log"))
    assert (prefect_home / "prefect.db").exists() and logs
    scanned, leaks = [], []
    for where, text in texts(original, prefect_home, logs):
        scanned.append(where)
        leaks += [(where, *hit) for hit in detect(text)]
    assert not leaks, leaks[:20]
    for expected in ("warehouse/lab2fab.duckdb", "published/lab2fab.duckdb", ".parquet", "report.html",
                     "feedback", "data_docs", "history/manifest.parquet", "prefect.db:artifact", "prefect.db:log"):
        assert any(expected in w for w in scanned), f"nothing scanned for {expected}"
