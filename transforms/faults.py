"""Failpoints for the reliability tests (issue 9). Unset (always, outside the tests) a checkpoint
costs two dictionary lookups.

- `LAB2FAB_KILL_AT=<point>`: the process kills itself with SIGKILL there, exactly as a power
  cut or the OOM killer would.
- `LAB2FAB_FAIL_AT=<point>:<ERRNO>` (e.g. `publish:ENOSPC`, `load:EACCES`): the write there fails
  with that OS error, as a full disk or a permission change would make it.
"""
from __future__ import annotations

import errno
import os
import signal

POINTS = ("staging", "load", "marts", "publish")


def checkpoint(point: str, path: object = None) -> None:
    if os.environ.get("LAB2FAB_KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
    fail = os.environ.get("LAB2FAB_FAIL_AT")
    if fail and fail.partition(":")[0] == point:
        code = getattr(errno, fail.partition(":")[2] or "EIO")
        raise OSError(code, os.strerror(code), str(path) if path is not None else None)
