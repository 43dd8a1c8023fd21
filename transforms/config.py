"""Where lab2fab keeps things. One place, overridable by environment for tests and deployments."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Paths:
    """The folders of one lab2fab installation, all under one data directory."""

    data_dir: Path

    @property
    def reference(self) -> Path:
        return Path(os.environ.get("LAB2FAB_REFERENCE_DIR", REPO_ROOT / "data" / "reference"))

    @property
    def landing(self) -> Path:
        return self.data_dir / "landing"

    @property
    def warehouse_dir(self) -> Path:
        return self.data_dir / "warehouse"

    @property
    def warehouse(self) -> Path:
        """The working warehouse: written by pipeline runs only, one writer at a time."""
        return self.warehouse_dir / "lab2fab.duckdb"

    @property
    def runs(self) -> Path:
        """Per-run work areas (staged Parquet between stages)."""
        return self.warehouse_dir / "runs"

    @property
    def history(self) -> Path:
        """The manifest history: what every run took, kept outside the warehouse for `lab2fab rebuild`."""
        return self.data_dir / "history"

    @property
    def published_dir(self) -> Path:
        return self.data_dir / "published"

    @property
    def snapshot(self) -> Path:
        """The read-only snapshot analysts query; replaced whole, atomically, by each run."""
        return self.published_dir / "lab2fab.duckdb"

    @property
    def report(self) -> Path:
        return self.published_dir / "report.html"

    @property
    def secrets(self) -> Path:
        return self.data_dir / ".secrets"

    def ensure(self) -> "Paths":
        for p in (self.landing, self.warehouse_dir, self.runs, self.published_dir):
            p.mkdir(parents=True, exist_ok=True)
        return self


def get_paths(data_dir: str | Path | None = None) -> Paths:
    """Paths for `data_dir`, else $LAB2FAB_DATA_DIR, else the repo's own `data/`."""
    chosen = data_dir or os.environ.get("LAB2FAB_DATA_DIR") or REPO_ROOT / "data"
    return Paths(Path(chosen).resolve())
