"""Ending what a test started in its own process groups (servers, workers, schedulers)."""
from __future__ import annotations

import os
import signal
import subprocess


def stop_groups(procs: list[subprocess.Popen], grace: float = 30) -> None:
    """SIGTERM every group, newest first (workers before their scheduler or server); SIGKILL a
    group that has not ended after `grace` seconds."""
    for p in reversed(procs):
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
