"""The honest floor for reading a landing zone: the fastest raw read available here (issue 14).

`calamine_floor(landing)` loads every file into DuckDB with no checks at all: CSV and text files
with DuckDB's own `read_csv` (all columns as text, delimiter sniffed), every workbook's first
sheet with python-calamine -> Arrow -> DuckDB. Encodings other than UTF-8 are read by DuckDB
with `ignore_errors` (it cannot tell Windows-1258 from Windows-1252); workbooks keep their title
rows. It is a floor, not a reader: lab2fab's own readers do all that this skips.

    python bench/floor.py data/landing          # prints the figures as JSON
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

WORKBOOKS = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
TEXT = (".csv", ".txt", ".tsv")


def _sheet_table(path: Path):
    """The first sheet as an Arrow table of text columns (column names c0, c1, ...)."""
    import pyarrow as pa
    from python_calamine import CalamineWorkbook

    wb = CalamineWorkbook.from_path(str(path))
    try:
        rows = wb.get_sheet_by_index(0).to_python(skip_empty_area=False)
    finally:
        wb.close()
    width = max((len(r) for r in rows), default=0)
    cols = {f"c{j}": pa.array([str(r[j]) if j < len(r) else "" for r in rows], pa.string()) for j in range(width)}
    return pa.table(cols)


def calamine_floor(landing: Path | str, database: Path | str | None = None) -> dict:
    """Wall and CPU seconds to load every file of `landing` into one DuckDB table per file."""
    import duckdb

    landing = Path(landing)
    files = sorted(p for p in landing.rglob("*") if p.is_file() and p.suffix.lower() in TEXT + WORKBOOKS)
    con = duckdb.connect(str(database) if database else ":memory:")
    out = {"files": 0, "rows": 0, "failed": 0, "csv_s": 0.0, "workbook_s": 0.0, "csv_files": 0, "workbook_files": 0}
    wall, cpu = time.perf_counter(), time.process_time()
    for i, path in enumerate(files):
        t = time.perf_counter()
        try:
            if path.suffix.lower() in TEXT:
                rel = con.sql("SELECT * FROM read_csv(?, all_varchar = true, header = false, ignore_errors = true, "
                              "null_padding = true)", params=[str(path)])
                con.execute(f"CREATE TABLE f{i} AS SELECT * FROM rel")
                kind = "csv"
            else:
                con.register("sheet", _sheet_table(path))
                con.execute(f"CREATE TABLE f{i} AS SELECT * FROM sheet")
                con.unregister("sheet")
                kind = "workbook"
            out["rows"] += con.execute(f"SELECT count(*) FROM f{i}").fetchone()[0]
            out[f"{kind}_s"] += time.perf_counter() - t
            out[f"{kind}_files"] += 1
            out["files"] += 1
        except Exception:  # a file DuckDB or calamine cannot read at all: the floor skips it
            out["failed"] += 1
        con.execute(f"DROP TABLE IF EXISTS f{i}")
    out["seconds"] = round(time.perf_counter() - wall, 3)
    out["cpu_seconds"] = round(time.process_time() - cpu, 3)
    out["csv_s"], out["workbook_s"] = round(out["csv_s"], 3), round(out["workbook_s"], 3)
    con.close()
    return out


if __name__ == "__main__":
    print(json.dumps(calamine_floor(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)))
