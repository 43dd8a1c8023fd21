"""The task runner for the per-file stages (read, normalise, pseudonymise, stage), chosen by configuration.

    LAB2FAB_TASK_RUNNER=auto (default)    process when more than one period is to be staged and the new
                                          files are large enough to pay for the worker processes'
                                          start-up (PROCESS_MIN_BYTES, measured: docs/SCALING.md), else thread
    LAB2FAB_TASK_RUNNER=thread            a ThreadPoolTaskRunner in the flow's own process
    LAB2FAB_TASK_RUNNER=process           a ProcessPoolTaskRunner on this machine: staging is CPU-bound
                                          Python, so threads share one core while processes use them all;
                                          each worker process costs a few seconds to start, which only
                                          pays when several periods are staged (a backfill, a first run)
    LAB2FAB_TASK_RUNNER=dask              prefect-dask's DaskTaskRunner:
        LAB2FAB_DASK_ADDRESS=tcp://host:8786   an existing Dask scheduler (a real cluster), or else
        a temporary local cluster of LAB2FAB_DASK_WORKERS worker processes (default: the flow's
        max concurrency), LAB2FAB_DASK_THREADS_PER_WORKER threads each (default 1).

Only the staging tasks run on the runner. They write Parquet into the run's work folder, which
every worker must see at the same path (shared storage: see docs/SCALING.md); the single DuckDB
writer (the load stage, in the flow's process) then loads what they staged.
"""
from __future__ import annotations

from contextlib import contextmanager

from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from transforms.config import TASK_RUNNERS, settings

RUNNER_ENV = "LAB2FAB_TASK_RUNNER"
KINDS = TASK_RUNNERS  # the variables are fields of transforms/config.py's Settings, checked there
# Below this many bytes of new landing files `auto` stages on threads: starting two worker processes
# (spawn, then pandas, Prefect and lab2fab imported again) costs as much as staging about 24 MB on
# one core, about 230,000 rows (bench/breakeven.py; docs/SCALING.md, "Break-even of the process pool").
PROCESS_MIN_BYTES = 24_000_000


def runner_kind() -> str:
    """`$LAB2FAB_TASK_RUNNER`, checked (a bad value raises SettingsError naming the variable)."""
    return settings().task_runner


def task_runner(max_workers: int, periods: int = 1, new_bytes: int | None = None):
    """A fresh task runner for one flow run's staging tasks (runners are not shared between runs).

    `new_bytes`: the size of the files to stage (None: unknown, taken as large)."""
    max_workers = max(1, int(max_workers))
    kind = runner_kind()
    if kind == "auto":
        large = new_bytes is None or new_bytes >= PROCESS_MIN_BYTES
        kind = "process" if periods > 1 and max_workers > 1 and large else "thread"
    if kind == "thread":
        return ThreadPoolTaskRunner(max_workers=max_workers)
    if kind == "process":
        return ProcessPoolTaskRunner(max_workers=min(max_workers, periods))
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as e:  # pinned in requirements.lock; a trimmed install may lack it
        raise RuntimeError(f"${RUNNER_ENV}=dask needs prefect-dask (pip install -r requirements.lock): {e}") from None
    address = (settings().dask_address or "").strip()
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": settings().dask_workers or max_workers,
            "threads_per_worker": settings().dask_threads_per_worker,
            "processes": True,
            "dashboard_address": None,  # no web UI port on a batch run
        },
    )


def parent_api_url() -> str | None:
    """The URL of the temporary Prefect server this process started, when it has no API URL set."""
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        return None
    from prefect.server.api.server import SubprocessASGIServer  # heavy: only when Prefect started the server

    server = SubprocessASGIServer()  # the one instance Prefect started for this process, if any
    return server.api_url if server.running and server.server_process is not None else None


@contextmanager
def workers_share_api():
    """Worker processes (a process pool, Dask workers) report to this run's API.

    Without it each worker, finding no PREFECT_API_URL, starts a temporary server of its own
    (seconds each, one "Starting temporary server" line each). The URL travels in the settings
    that Prefect hands every task it submits."""
    url = parent_api_url()
    if url is None:
        yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield
