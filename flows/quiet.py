"""A run with nothing new, answered without Prefect (the CLI's fast path; README, "The stages").

Under the writer lock it asks `transforms.warehouse.freshness.nothing_new` again, then logs the run
and saves the manifest history exactly as the flow does for such a run, in about a second instead
of a temporary Prefect server and every stage's imports.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flows.lock import writer_lock
from transforms.config import Paths

NO_ROWS = {"files": 0, "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0}


def record_quiet_run(paths: Paths, wait_for_lock_seconds: float = 0.0) -> dict | None:
    """A whole run when there is nothing new, without Prefect. None (nothing written) when there is
    work after all; the caller then runs the flow."""
    from transforms.warehouse import freshness, recovery, runs
    from transforms.warehouse.db import connect, record_run

    with writer_lock(paths, timeout=wait_for_lock_seconds):
        started = datetime.now(timezone.utc).replace(tzinfo=None)
        seen = freshness.nothing_new(paths)
        if seen is None:
            return None
        run_id = runs.new_run_id()
        runs.clear_stale_work(paths, keep="")
        con = connect(paths.warehouse)
        try:
            record_run(con, run_id, started, seen, NO_ROWS, False)
            recovery.save_history(con, paths.history)
        finally:
            con.close()
    return {**seen, **NO_ROWS, "changed": False, "run_id": run_id, "warehouse": str(paths.warehouse),
            "snapshot": str(paths.snapshot), "report": str(paths.report)}
