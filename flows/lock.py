"""The single-writer lock: one run writes the warehouse at a time.

An exclusive OS file lock (`fcntl.flock` on `data/warehouse/writer.lock`), taken by every run for
its whole duration whether it was started by a worker, the CLI or a test, with or without a
Prefect server; the kernel releases it if the process dies. Orchestration, not logic: it lives
here and not in transforms/.
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from datetime import datetime, timezone

from transforms.config import Paths


class WarehouseBusy(RuntimeError):
    """Another run holds the warehouse."""


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
