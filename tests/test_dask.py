"""The per-file stages on other task runners, switched by configuration (issue 8).

A backfill of the small demo runs on a thread pool, then again on a process pool (what `auto` picks
for several large periods), on a local two-worker Dask cluster (LAB2FAB_TASK_RUNNER=dask, prefect-dask)
and on a separately started Dask cluster. On those every task argument and result crosses a pickle
boundary. The single DuckDB writer loads what the workers staged, and the warehouses must hold the same
content.
"""
from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from processes import stop_groups
from tables import contents

REPO = Path(__file__).resolve().parent.parent

def _backfill(data_dir: Path, summary: dict) -> dict:
    from flows.backfill import backfill

    rounds = sorted(summary["placements"])
    return backfill(first_term=summary["terms"][0], last_term=summary["terms"][-1],
                    first_round=rounds[0] if rounds else None, last_round=rounds[-1] if rounds else None,
                    data_dir=str(data_dir), max_concurrency=2)


def test_task_runner_is_chosen_by_configuration(monkeypatch):
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.runners import task_runner

    monkeypatch.delenv("LAB2FAB_TASK_RUNNER", raising=False)
    # auto: threads for one period (a nightly run), processes for several (a backfill), never more than periods
    assert isinstance(task_runner(3), ThreadPoolTaskRunner)
    assert isinstance(task_runner(1, periods=10), ThreadPoolTaskRunner)
    several = task_runner(3, periods=2)
    assert isinstance(several, ProcessPoolTaskRunner) and several._max_workers == 2
    # ... when the new files pay for the worker processes' start-up (docs/SCALING.md, "Break-even")
    from flows.runners import PROCESS_MIN_BYTES

    assert isinstance(task_runner(2, periods=5, new_bytes=PROCESS_MIN_BYTES - 1), ThreadPoolTaskRunner)
    assert isinstance(task_runner(2, periods=5, new_bytes=PROCESS_MIN_BYTES), ProcessPoolTaskRunner)
    monkeypatch.setenv("LAB2FAB_TASK_RUNNER", "thread")
    assert isinstance(task_runner(3, periods=10), ThreadPoolTaskRunner)
    monkeypatch.setenv("LAB2FAB_TASK_RUNNER", "dask")
    monkeypatch.setenv("LAB2FAB_DASK_WORKERS", "2")
    local = task_runner(4)
    assert isinstance(local, DaskTaskRunner)
    assert local.cluster_kwargs["n_workers"] == 2 and local.address is None
    monkeypatch.setenv("LAB2FAB_DASK_ADDRESS", "tcp://scheduler.example:8786")
    remote = task_runner(4)
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://scheduler.example:8786"
    monkeypatch.setenv("LAB2FAB_TASK_RUNNER", "spark")
    with pytest.raises(ValueError, match="LAB2FAB_TASK_RUNNER"):
        task_runner(2)


def test_staging_task_arguments_and_results_pickle(small_demo, tmp_path):
    """What crosses to a Dask worker and back: the key, Paths, LandedFile lists, KnownFiles, Submissions."""
    from transforms.ingest import stage as ingest
    from transforms.ingest import landing
    from transforms.config import get_paths

    demo_dir, _ = small_demo
    landed = landing.scan(demo_dir / "landing")[:3]
    known = ingest.KnownFiles({}, {})
    groups = ingest.group_by_period(ingest.new_files(landed, known), known)
    args = (get_paths(tmp_path), "run-1", b"key", *groups[0])
    assert pickle.loads(pickle.dumps(args)) == args
    sub = ingest.Submission(landed[0], "staged", rows_read=3, staged=tmp_path / "x.parquet")
    assert pickle.loads(pickle.dumps([sub])) == [sub]


@pytest.fixture()
def dask_cluster(tmp_path):
    """A Dask cluster started the way an operator starts one: `dask scheduler` and two `dask worker`
    processes (on 127.0.0.1 here), each in its own process group. Yields `ready()`, which waits for
    the two workers and returns the scheduler's address: the cluster starts while the test does
    its other runs."""
    import socket

    from distributed import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = Path(sys.executable).parent / "dask"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    commands = [[str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                *[[str(dask), "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                   "--name", f"worker-{i}", "--local-directory", str(tmp_path / f"worker-{i}")] for i in (1, 2)]]
    started = []
    try:
        for i, command in enumerate(commands):
            log = open(logs / f"{i}.log", "w")
            # no wait for the scheduler's port: a worker retries until it connects, and the test has
            # its other runs to do meanwhile
            started.append(subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True))

        def ready() -> str:
            with Client(address, timeout=120) as client:
                client.wait_for_workers(2, timeout=180)
            return address

        yield ready
    finally:
        stop_groups(started)


@pytest.mark.slow  # four backfills and three clusters: handed out first (tests/conftest.py)
def test_backfill_on_dask_clusters_and_a_process_pool_matches_the_thread_runner(
        prefect_harness, small_demo, tmp_path_factory, monkeypatch, dask_cluster):
    """thread, process, a LocalCluster inside the flow ("dask") and a separately started scheduler with
    two workers ("dask-external"), the staged files on the folder they share (one machine, one path).

    The thread run backfills a new data folder; each other runner backfills a copy of the thread run's
    folder. A backfill takes every file of its periods again and replaces all the warehouse held for
    them (test_operations: twice gives identical tables), so what it leaves comes from what that
    runner staged; the model, whose inputs are then unchanged, is kept (transforms/model/inputs.py)
    instead of being run four times."""
    demo_dir, summary = small_demo
    results, tables, seconds = {}, {}, {}
    for kind in ("thread", "process", "dask", "dask-external"):
        data = tmp_path_factory.mktemp(f"runner-{kind}") / "data"
        if kind == "thread":
            shutil.copytree(demo_dir / "landing", data / "landing")
        else:
            shutil.copytree(thread_data, data, copy_function=shutil.copy2, symlinks=True)
        monkeypatch.setenv("LAB2FAB_TASK_RUNNER", kind.removesuffix("-external"))
        monkeypatch.setenv("LAB2FAB_DASK_WORKERS", "2")
        if kind == "dask-external":
            monkeypatch.setenv("LAB2FAB_DASK_ADDRESS", address := dask_cluster())
        else:
            monkeypatch.delenv("LAB2FAB_DASK_ADDRESS", raising=False)
        started = time.perf_counter()
        results[kind] = _backfill(data, summary)
        seconds[kind] = round(time.perf_counter() - started, 1)
        tables[kind] = contents(data / "warehouse" / "lab2fab.duckdb")
        if kind == "thread":
            thread_data = data
    print(f"\nbackfill seconds by runner: {seconds}")
    from distributed import Client

    with Client(address, timeout=60) as client:  # the periods were staged on the operator's workers
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    periods = len(summary["terms"]) + len(summary["placements"])
    assert len(executed) == 2 and sum(executed.values()) >= periods, executed
    a = tables["thread"]
    assert results["thread"]["files_new"] > 0 and len(a["staging.enrollment"]) > 0
    for kind in ("process", "dask", "dask-external"):
        for k in ("files_new", "files_seen", "rows_read", "rows_loaded", "rows_quarantined"):
            assert results[kind][k] == results["thread"][k], (kind, k)
        b = tables[kind]
        assert a.keys() == b.keys()
        for name in a:
            if name.startswith("marts.model_"):
                # The model's fitted parameters move in the 6th significant digit between any two runs
                # (floating-point sums in a different order), whichever the runner: compare closely.
                pd.testing.assert_frame_equal(a[name], b[name], obj=f"{kind}: {name}", check_exact=False, rtol=1e-3)
            else:
                pd.testing.assert_frame_equal(a[name], b[name], obj=f"{kind}: {name}")
    b = tables["dask"]
    # the snapshot analysts read was published from the Dask run too (the last one, in `data`)
    con = duckdb.connect(str(data / "published" / "lab2fab.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM staging.enrollment").fetchone()[0] == len(b["staging.enrollment"])
    finally:
        con.close()
