"""Compare warehouses by content. The run log (which run did what, and when) is left out:
ops.runs, the run_id/ingested_at columns, and the run bookkeeping in ops.state (run ids, and
the inputs fingerprint a run records only after it has published, the model's inputs fingerprint)."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from transforms.warehouse import db as warehouse

RUN_LOG_COLUMNS = {"run_id", "ingested_at"}
RUN_LOG_STATE = ("data_version", "published_version", "inputs_fingerprint", "model_fingerprint")


def contents(path: Path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for name in warehouse.table_names(con):
            if name == "ops.runs":
                continue
            cols = [c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE schema_name || '.' || table_name = ? "
                "ORDER BY column_index", [name]).fetchall() if c not in RUN_LOG_COLUMNS]
            where = f"WHERE name NOT IN {RUN_LOG_STATE}" if name == "ops.state" else ""
            out[name] = con.execute(f"SELECT {', '.join(cols)} FROM {name} {where} ORDER BY ALL").df()
        return out
    finally:
        con.close()


def manifest(data_dir: Path) -> pd.DataFrame:
    """The published snapshot's ops.manifest (one row per file), indexed by the file's landing path."""
    con = duckdb.connect(str(data_dir / "published" / "lab2fab.duckdb"), read_only=True)
    try:
        return con.execute("SELECT * FROM ops.manifest").df().set_index("path")
    finally:
        con.close()


def assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)
