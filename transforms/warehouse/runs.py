"""Run bookkeeping that every stage shares: run ids, work folders, and the run context the stages
hand each other.

The writer lock that keeps one run writing at a time lives with the orchestration (flows/lock.py):
this package holds no locks. A run's work folder holds only what a stage hands the next as data
(staged Parquet, validation results); a killed run's folder is never resumed (`clear_stale_work`
removes it under the lock, and the next run starts again from the landing zone and the manifest).
"""
from __future__ import annotations

import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, SecretBytes

from transforms.config import Paths


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def work_dir(paths: Paths, run_id: str) -> Path:
    return paths.runs / run_id


def clear_stale_work(paths: Paths, keep: str) -> None:
    """Work folders of runs that died; safe to remove while we hold the writer lock."""
    if paths.runs.exists():
        for d in paths.runs.iterdir():
            if d.name != keep:
                shutil.rmtree(d, ignore_errors=True)


class RunContext(BaseModel):
    """What every stage of one run needs, built once when the run starts (`RunContext.start`) and
    passed to each stage: no stage reads it back from a file or loads the key again.

    `periods` is the backfill scope (the terms and rounds taken again), None for a regular run.
    A pydantic model so that the parameters Prefect records for the ingest subflow hold neither the
    key (a SecretBytes, recorded as "**********") nor the overrides (excluded)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    paths: Paths
    run_id: str
    key: SecretBytes
    key_fingerprint: str
    overrides: pd.DataFrame = Field(exclude=True, repr=False)
    periods: frozenset[str] | None = None

    @property
    def work(self) -> Path:
        """The run's work folder (staged Parquet, validation results)."""
        return work_dir(self.paths, self.run_id)

    @property
    def backfill(self) -> bool:
        return self.periods is not None

    @property
    def data_dir(self) -> str:
        return str(self.paths.data_dir)

    @classmethod
    def start(cls, paths: Paths, run_id: str, periods: set[str] | None = None) -> "RunContext":
        """Load the key and check it against the warehouse's fingerprint (read only: a run with the
        wrong key must not change a byte), and read the overrides, once for the whole run."""
        from transforms.contract import checks
        from transforms.ingest.pseudonym import PseudonymKeyError, fingerprint, load_key
        from transforms.warehouse import db as warehouse

        expected = None
        if paths.warehouse.exists():
            con = warehouse.connect(paths.warehouse, read_only=True)
            try:
                expected = warehouse.get_state(con, "key_fingerprint")
            finally:
                con.close()
        # A local demo key is made only for a new warehouse: once data is pseudonymised, a missing key stops the run.
        key = load_key(paths.secrets, allow_demo_key=expected is None)
        fp = fingerprint(key)
        if expected and expected != fp:
            raise PseudonymKeyError(
                "the pseudonymisation key is not the one this warehouse was built with; nothing was written. "
                "Set $LAB2FAB_PSEUDONYM_KEY to the original key (or rebuild the warehouse from the landing zone).")
        overrides = checks.read_overrides(checks.overrides_paths(paths.data_dir))  # read every run
        return cls(paths=paths, run_id=run_id, key=SecretBytes(key), key_fingerprint=fp, overrides=overrides,
                   periods=frozenset(periods) if periods is not None else None)
