"""Failpoints for the reliability tests (issue 9). Unset (always, outside the tests) a checkpoint
costs a look at the settings.

- `LAB2FAB_KILL_AT=<point>`: the process kills itself with SIGKILL there, exactly as a power
  cut or the OOM killer would.
- `LAB2FAB_FAIL_AT=<point>:<ERRNO>` (e.g. `publish:ENOSPC`, `load:EACCES`): the write there fails
  with that OS error, as a full disk or a permission change would make it.

The flows call `checkpoint("staging")` themselves and pass `checkpoint` as the `on_step` hook of
the transforms that have a point inside them (`load_batch`, `build_marts`, `publish`).
"""
from __future__ import annotations

import errno
import os
import signal

from transforms.config import settings

POINTS = ("staging", "load", "marts", "publish")


def checkpoint(point: str, path: object = None) -> None:
    s = settings()
    if s.kill_at == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if s.fail_at and s.fail_at.partition(":")[0] == point:
        code = getattr(errno, s.fail_at.partition(":")[2] or "EIO")
        raise OSError(code, os.strerror(code), str(path) if path is not None else None)
