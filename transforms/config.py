"""Where lab2fab keeps things and how it is configured: the one place.

`settings()` is every `LAB2FAB_*` environment variable, read into one typed object (pydantic-settings),
each field with its description; the README's configuration table is generated from it
(`settings_table`). Nothing reads the environment at import time: `settings()` reads it when first
asked and again whenever a `LAB2FAB_*` variable has changed since (a test's monkeypatch, a worker
process started with another environment), so no module keeps a stale value. `reload()` forces a
fresh read.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "LAB2FAB_"
TASK_RUNNERS = ("auto", "thread", "process", "dask")  # flows/runners.py


class SettingsError(ValueError):
    """A `LAB2FAB_*` variable holds a value lab2fab cannot use; the message names the variable."""


class Settings(BaseSettings):
    """lab2fab's configuration, one field per `LAB2FAB_<FIELD>` environment variable. An empty
    variable counts as unset. Read through `settings()`, never at import time."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore",
                                      frozen=True, case_sensitive=False)

    data_dir: Path | None = Field(None, description=(
        "The data folder (landing zone, warehouse, snapshot, history) when `--data-dir` is not given; "
        "unset: `./data` if the current folder holds a lab2fab data folder, else the checkout's `data/`."))
    reference_dir: Path = Field(REPO_ROOT / "data" / "reference", description=(
        "The reference data (registry, programmes, hosts and slots, targets, aliases); default the "
        "checkout's `data/reference`."))
    pseudonym_key: SecretStr | None = Field(None, description=(
        "The pseudonymisation key (HMAC-SHA256 of student and national ids). Unset, and no Secret block: "
        "a local demo key in `data/.secrets/`, made only for a new warehouse."))
    pseudonym_secret_block: str | None = Field(None, description=(
        "Name of a Prefect Secret block holding the pseudonymisation key (used when `LAB2FAB_PSEUDONYM_KEY` "
        "is unset)."))
    max_file_bytes: int = Field(200 * 1024 * 1024, gt=0, description=(
        "Largest submission file read, in bytes (the landing scan, the readers and the portal's upload); "
        "default 200 MiB."))
    file_time_limit: float = Field(60.0, gt=0, description=(
        "Seconds a reader may spend on one file before it is refused with that reason; default 60."))
    duckdb_memory_limit: str = Field("1GB", pattern=r"^\s*\d+(\.\d+)?\s*[KMGT]i?B\s*$", description=(
        "DuckDB `memory_limit` of the working warehouse connection, e.g. `1GB`; past it DuckDB spills to "
        "`warehouse/spill/`."))
    model_threads: int = Field(0, ge=0, description=(
        "Threads of the model's cohort projection; 0 or unset: the number of cores, at most 4 (the result "
        "does not depend on it)."))
    validate_workers: int = Field(0, ge=0, description=(
        "Processes validating the staged submissions side by side, split by university; 0 or unset: the "
        "number of cores (at most 4) once 250,000 rows are staged, else 1 (the results do not depend on it; "
        "transforms/ingest/validate.py)."))
    task_runner: Literal[TASK_RUNNERS] = Field("auto", description=(
        "Task runner of the staging tasks: `auto` (a process pool when several periods and enough bytes "
        "are staged, else threads), `thread`, `process` or `dask` (flows/runners.py, docs/SCALING.md)."))
    dask_address: str | None = Field(None, description=(
        "With `dask`: an existing Dask scheduler, e.g. `tcp://dask-scheduler:8786`; unset: a temporary "
        "local cluster."))
    dask_workers: int | None = Field(None, ge=1, description=(
        "With `dask` and no address: worker processes of the local cluster; default the flow's "
        "`max_concurrency`."))
    dask_threads_per_worker: int = Field(1, ge=1, description=(
        "With `dask` and no address: threads per local worker; default 1 (the work is CPU-bound Python)."))
    portal_secret: SecretStr | None = Field(None, description=(
        "Key signing the portal's session cookies, shared by several portal hosts; unset: one made in "
        "`data/portal/secret.key`."))
    kill_at: str | None = Field(None, description=(
        "Tests only: the run kills itself with SIGKILL at this failpoint (`staging`, `load`, `marts`, "
        "`publish`; flows/faults.py)."))
    fail_at: str | None = Field(None, pattern=r"^[a-z]+(:E[A-Z0-9]+)?$", description=(
        "Tests only: `<failpoint>:<ERRNO>` (e.g. `publish:ENOSPC`): the write there fails with that OS "
        "error (flows/faults.py)."))

    @field_validator("task_runner", mode="before")
    @classmethod
    def _runner_aliases(cls, value):
        # Spellings the runner variable has always accepted.
        text = str(value).strip().lower()
        return "thread" if text in ("threads", "threadpool", "local") else text

    @field_validator("fail_at")
    @classmethod
    def _known_errno(cls, value):
        if value and ":" in value and not hasattr(errno, value.partition(":")[2]):
            raise ValueError(f"{value.partition(':')[2]} is not an errno name such as ENOSPC or EACCES")
        return value

    @classmethod
    def env_name(cls, field: str) -> str:
        return ENV_PREFIX + field.upper()


def _environment() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)))


@lru_cache(maxsize=16)
def _read(environment: tuple[tuple[str, str], ...]) -> Settings:
    try:
        return Settings()
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = str(err["loc"][0]) if err.get("loc") else "?"
            shown = "(hidden)" if field in ("pseudonym_key", "portal_secret") else repr(err.get("input"))
            problems.append(f"${Settings.env_name(field)}={shown}: {err['msg']}")
        raise SettingsError("; ".join(problems)) from None


def settings() -> Settings:
    """The settings of this process's current environment: read once per distinct set of
    `LAB2FAB_*` variables (a few microseconds to check), so a changed variable is seen at once.
    Raises SettingsError naming the variable when a value is unusable."""
    return _read(_environment())


def reload() -> Settings:
    """Forget every cached read and read the environment again."""
    _read.cache_clear()
    return settings()


def settings_table() -> str:
    """The README's configuration table, generated from `Settings` (tests/test_settings.py keeps them equal)."""
    rows = ["| variable | default | what |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, Path):
            default = default.relative_to(REPO_ROOT) if default.is_relative_to(REPO_ROOT) else default
        shown = "unset" if default is None else f"`{default}`"
        rows.append(f"| `{Settings.env_name(name)}` | {shown} | {field.description} |")
    return "\n".join(rows) + "\n"


@dataclass(frozen=True)
class Paths:
    """The folders of one lab2fab installation, all under one data directory."""

    data_dir: Path

    @property
    def reference(self) -> Path:
        return settings().reference_dir

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
    if settings().data_dir:
        return settings().data_dir.resolve(), "environment"
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
