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


# What a lab2fab data folder holds once `lab2fab demo` or a run has used it (see README, Layout).
DATA_FOLDER_MARKERS = ("landing", "warehouse", "published", "history")


def default_data_dir() -> tuple[Path, str]:
    """The data folder when none is given, and where that choice came from:
    `$LAB2FAB_DATA_DIR` ("environment"); else `./data` when the current folder holds a lab2fab data
    folder ("current folder"), as in a checkout or a copy of one; else the checkout's own `data/`
    ("checkout"), so that a command started from any other folder finds the installation's data
    rather than creating an empty one there."""
    if os.environ.get("LAB2FAB_DATA_DIR"):
        return Path(os.environ["LAB2FAB_DATA_DIR"]).resolve(), "environment"
    here = Path.cwd() / "data"
    if any((here / marker).is_dir() for marker in DATA_FOLDER_MARKERS):
        return here.resolve(), "current folder"
    return (REPO_ROOT / "data").resolve(), "checkout"


def get_paths(data_dir: str | Path | None = None) -> Paths:
    """Paths for `data_dir`, else the default data folder (`default_data_dir`)."""
    return Paths(Path(data_dir).resolve() if data_dir else default_data_dir()[0])


@dataclass(frozen=True)
class CollectionSettings:
    """The collection's own settings (`data/reference/collection.csv`, one `setting,value,note` row
    each): the terms it takes and the share of universities that makes a term the latest."""

    first_term: str | None = None
    last_term: str | None = None  # None: the current term by the clock
    latest_term_min_share: float = 0.5

    @classmethod
    def from_reference(cls, reference_dir: Path | None = None) -> "CollectionSettings":
        import csv

        from transforms.vocabulary import parse_term

        path = Path(reference_dir or get_paths().reference) / "collection.csv"
        if not path.exists():
            return cls()
        values: dict[str, str] = {}
        with open(path, encoding="utf-8", newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                name, value = (row.get("setting") or "").strip(), (row.get("value") or "").strip()
                if name not in cls.__dataclass_fields__:
                    raise ValueError(f"{path}, line {line}, field setting: unknown setting {name!r} "
                                     f"(known: {', '.join(cls.__dataclass_fields__)})")
                values[name] = value
        out = {}
        for name in ("first_term", "last_term"):
            if values.get(name):
                try:
                    parse_term(values[name])
                except ValueError as e:
                    raise ValueError(f"{path}, setting {name}, field value: {e}") from None
                out[name] = values[name]
        if values.get("latest_term_min_share"):
            try:
                share = float(values["latest_term_min_share"])
            except ValueError:
                share = -1.0
            if not 0 < share <= 1:
                raise ValueError(f"{path}, setting latest_term_min_share, field value: "
                                 f"{values['latest_term_min_share']!r} is not a share in (0, 1], e.g. 0.5")
            out["latest_term_min_share"] = share
        return cls(**out)
