"""Run bookkeeping that every stage shares: run ids, the single-writer lock, work folders."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from transforms.ingest.stage import Submission
from transforms.ingest.landing import LandedFile
from transforms.config import Paths


class WarehouseBusy(RuntimeError):
    """Another run holds the warehouse."""


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


@contextmanager
def writer_lock(paths: Paths, timeout: float = 0.0):
    """Exclusive lock on the warehouse for one run (an OS file lock, released if the process dies).

    With `timeout` 0 a second run fails at once with a clear message; otherwise it waits.
    """
    paths.warehouse_dir.mkdir(parents=True, exist_ok=True)
    lock_path = paths.warehouse_dir / "writer.lock"
    with open(lock_path, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise WarehouseBusy(
                        f"the warehouse {paths.warehouse} is being written by {holder}; "
                        "wait for that run to finish (or pass a wait timeout) and try again"
                    ) from None
                time.sleep(0.5)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def work_dir(paths: Paths, run_id: str) -> Path:
    return paths.runs / run_id


def clear_stale_work(paths: Paths, keep: str) -> None:
    """Work folders of runs that died; safe to remove while we hold the writer lock."""
    if paths.runs.exists():
        for d in paths.runs.iterdir():
            if d.name != keep:
                shutil.rmtree(d, ignore_errors=True)


def save_submissions(path: Path, submissions: list[Submission]) -> None:
    rows = []
    for s in submissions:
        d = asdict(s)
        d["landed"] = {**asdict(s.landed), "path": str(s.landed.path)}
        d["staged"] = str(s.staged) if s.staged else None
        rows.append(d)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, ensure_ascii=False))


def read_submissions(path: Path) -> list[Submission]:
    out = []
    for d in json.loads(path.read_text()):
        landed = LandedFile(**{**d.pop("landed")})
        landed.path = Path(landed.path)
        staged = d.pop("staged")
        out.append(Submission(landed=landed, staged=Path(staged) if staged else None, **d))
    return out


def save_scope(work: Path, periods: set[str]) -> None:
    """The periods a backfill takes again (empty for a regular run), for the load stage."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "scope.json").write_text(json.dumps(sorted(periods)))


def read_scope(work: Path) -> set[str]:
    path = work / "scope.json"
    return set(json.loads(path.read_text())) if path.exists() else set()
