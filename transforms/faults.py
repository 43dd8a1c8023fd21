"""Failpoints for the crash tests (issue 9): `LAB2FAB_KILL_AT=<point>` makes the process kill
itself with SIGKILL when it reaches that point, exactly as a power cut or the OOM killer would.
Unset (always, outside the tests) a checkpoint costs one dictionary lookup.
"""
from __future__ import annotations

import os
import signal

POINTS = ("staging", "load", "marts", "publish")


def checkpoint(point: str) -> None:
    if os.environ.get("LAB2FAB_KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
