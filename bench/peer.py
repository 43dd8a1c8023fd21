"""The naive peer (issue 17): what a team writes first, measured on the same landing files.

    .venv/bin/python bench/peer.py LANDING_DIR DATABASE

For each file, one at a time in one process: pandas reads it (`read_csv`, or `read_excel` with
pandas' default engine), one Great Expectations checkpoint of eight expectations validates it,
the student ids are pseudonymised with HMAC-SHA256 in a Python loop, and the frame is inserted
into DuckDB. No header mapping, normalisation, history rules, quarantine or marts: a lower bound
on what such a pipeline costs, not a pipeline. Prints `BENCH_JSON {...}` with the seconds.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
KEY = b"peer-benchmark-key-not-secret"


def checkpoint():
    """One checkpoint, reused for every file: eight expectations over the file's first columns
    (the peer names columns by position, c0 = the student id)."""
    import logging

    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = context.data_sources.add_pandas("peer").add_dataframe_asset("file").add_batch_definition_whole_dataframe("all")
    E = gx.expectations
    suite = context.suites.add(gx.ExpectationSuite(name="peer", expectations=[
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectTableColumnCountToBeBetween(min_value=3),
        E.ExpectColumnValuesToNotBeNull(column="c0"),
        E.ExpectColumnValuesToBeUnique(column="c0"),
        E.ExpectColumnValueLengthsToBeBetween(column="c0", min_value=1, max_value=64),
        E.ExpectColumnValuesToMatchRegex(column="c0", regex=r"\S"),
        E.ExpectColumnValuesToNotBeNull(column="c1"),
        E.ExpectColumnValuesToNotBeNull(column="c2"),
    ]))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="peer", data=batch, suite=suite))
    return context.checkpoints.add(gx.Checkpoint(name="peer", validation_definitions=[definition]))


def run(landing: Path, database: Path) -> dict:
    import duckdb
    import pandas as pd

    t0 = time.perf_counter()
    check = checkpoint()
    setup = time.perf_counter() - t0
    files = sorted(p for p in landing.rglob("*") if p.is_file() and p.suffix.lower() in (".csv", ".xlsx"))
    database.unlink(missing_ok=True)
    con = duckdb.connect(str(database))
    con.execute("CREATE TABLE peer_rows (file VARCHAR, student_hash VARCHAR, columns INTEGER, row_json VARCHAR)")
    rows = failed = unreadable = 0
    for path in files:
        try:
            if path.suffix.lower() == ".csv":
                df = pd.read_csv(path, dtype=str, encoding_errors="replace", sep=None, engine="python")
            else:
                df = pd.read_excel(path, dtype=str)
        except Exception:  # noqa: BLE001 - the peer skips what pandas cannot read
            unreadable += 1
            continue
        if df.shape[1] < 3:
            unreadable += 1
            continue
        df.columns = [f"c{i}" for i in range(df.shape[1])]
        result = check.run(batch_parameters={"dataframe": df})
        failed += not result.success
        hashes = []
        for value in df["c0"].tolist():  # the Python loop a first version has
            hashes.append(None if value is None or value != value else
                          hmac.new(KEY, str(value).encode(), hashlib.sha256).hexdigest())
        out = pd.DataFrame({"file": str(path.relative_to(landing)), "student_hash": hashes, "columns": df.shape[1],
                            "row_json": [json.dumps(r, ensure_ascii=False, default=str)
                                         for r in df.drop(columns="c0").to_dict("records")]})
        con.execute("INSERT INTO peer_rows SELECT * FROM out")
        rows += len(df)
    con.execute("CHECKPOINT")
    con.close()
    database.unlink(missing_ok=True)
    return {"seconds": time.perf_counter() - t0, "setup_seconds": setup, "files": len(files), "rows": rows,
            "files_failing_checks": failed, "files_unreadable": unreadable}


if __name__ == "__main__":
    print("BENCH_JSON " + json.dumps(run(Path(sys.argv[1]), Path(sys.argv[2]))))
