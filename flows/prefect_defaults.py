"""Prefect's defaults for lab2fab, set before Prefect is imported; a value the user set wins.

Telemetry off: the server's usage report (PREFECT_SERVER_ANALYTICS_ENABLED; on a machine without
internet access every run logged "ERROR ... Failed to send telemetry" once per temporary server)
and the SDK's own (DO_NOT_TRACK, read when `prefect` is imported). And a temporary server gets
90 s to start instead of 20: on a busy 2-core machine it took longer, and the run failed with
"Timed out while attempting to connect to ephemeral Prefect API server". Worker processes and
the temporary server inherit this environment.
"""
from __future__ import annotations

import os

DEFAULTS = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}

for _name, _value in DEFAULTS.items():
    os.environ.setdefault(_name, _value)
