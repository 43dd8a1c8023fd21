"""The DuckDB warehouse: schema, reference tables, atomic loads, SQL models, the published snapshot.

Only pipeline runs open the working warehouse, one writer at a time. Analysts read the
published snapshot, a finished copy swapped in with an atomic rename, so a query never
blocks a run and never sees half a run.
"""
from __future__ import annotations

import os
from pathlib import Path

import duckdb

SQL_DIR = Path(__file__).resolve().parent / "sql"
# duckdb-cli from PyPI (1.5.x) reads storage up to this version; the snapshot is written with it.
SNAPSHOT_STORAGE_VERSION = "v1.5.0"
NUMERIC_REFERENCE_COLUMNS = {
    "slots": "INTEGER", "target": "INTEGER", "target_year": "INTEGER", "normal_years": "DOUBLE",
    "participates": "BOOLEAN",
}


class AccountingError(RuntimeError):
    """Rows read != rows loaded + rows quarantined for some file: nothing is committed."""


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute((SQL_DIR / "schema.sql").read_text())
    return con


def get_state(con, name: str) -> str | None:
    row = con.execute("SELECT value FROM ops.state WHERE name = ?", [name]).fetchone()
    return row[0] if row else None


def set_state(con, name: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO ops.state VALUES (?, ?)", [name, value])


def record_run(con, run_id: str, started, seen: dict, totals: dict, rebuilt: bool) -> None:
    con.execute("""INSERT INTO ops.runs VALUES (?, ?, now()::TIMESTAMP, ?, ?, ?, ?, ?, ?, 'succeeded')""",
                [run_id, started, seen["files_seen"], seen["files_new"], totals["rows_read"], totals["rows_loaded"],
                 totals["rows_quarantined"], rebuilt])


def load_reference(con, reference_dir: Path) -> list[str]:
    """(Re)load every CSV in the reference folder as a `ref.<name>` table."""
    names = []
    for csv in sorted(reference_dir.glob("*.csv")):
        name = csv.stem
        rel = con.execute(f"SELECT * FROM read_csv(?, header = true, all_varchar = true) LIMIT 0", [str(csv)])
        cols = [d[0] for d in rel.description]
        select = ", ".join(
            f"TRY_CAST({c} AS {NUMERIC_REFERENCE_COLUMNS[c]}) AS {c}" if c in NUMERIC_REFERENCE_COLUMNS else c
            for c in cols
        )
        con.execute(f"CREATE OR REPLACE TABLE ref.{name} AS SELECT {select} "
                    f"FROM read_csv(?, header = true, all_varchar = true)", [str(csv)])
        names.append(name)
    return names


def build_marts(con) -> list[str]:
    """Run the SQL models in `sql/marts/` in name order; each replaces its table whole."""
    built = []
    for sql in sorted((SQL_DIR / "marts").glob("*.sql")):
        con.execute(sql.read_text())
        built.append(sql.stem)
    return built


def table_names(con, schemas: tuple[str, ...] = ("ops", "ref", "staging", "marts")) -> list[str]:
    rows = con.execute(
        "SELECT schema_name || '.' || table_name FROM duckdb_tables() "
        f"WHERE schema_name IN ({', '.join('?' * len(schemas))}) ORDER BY 1", list(schemas)
    ).fetchall()
    return [r[0] for r in rows]


def publish(con, snapshot: Path, run_id: str) -> Path:
    """Write a complete copy of the warehouse beside the snapshot, then swap it in atomically.

    A reader that has the old snapshot open keeps reading the old file (POSIX rename keeps its
    inode alive); the next connection sees the new one. Nobody ever sees a partial file.
    """
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    tmp = snapshot.with_name(f".{snapshot.stem}.{run_id}.tmp")
    tmp.unlink(missing_ok=True)
    source = con.execute("SELECT current_database()").fetchone()[0]
    con.execute(f"ATTACH '{tmp}' AS snapshot_out (STORAGE_VERSION '{SNAPSHOT_STORAGE_VERSION}')")
    try:
        con.execute(f"COPY FROM DATABASE {source} TO snapshot_out")
    finally:
        con.execute("DETACH snapshot_out")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, snapshot)
    return snapshot


def query_snapshot(snapshot: Path, sql: str):
    """Run an analyst's SQL on the published snapshot, read-only. Returns a DuckDB relation result."""
    if not snapshot.exists():
        raise FileNotFoundError(f"no published snapshot at {snapshot}: run `lab2fab run` first")
    con = duckdb.connect(str(snapshot), read_only=True)
    return con, con.execute(sql)
