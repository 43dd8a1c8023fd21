"""The fast paths of issue 17 do the same work as the slow ones, only when it is needed: the model
is kept when nothing it reads changed and re-run when one input did; the data dictionary's
comments are written in one transaction and only where they differ. Real DuckDB and Prefect."""
from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from test_model import build_warehouse
from transforms.config import get_paths
from transforms.model import inputs as model_inputs
from transforms.warehouse import db as warehouse

REPO = Path(__file__).resolve().parent.parent
SCHEMA = (REPO / "transforms" / "sql" / "schema.sql").read_text()
COHORTS = [(60, 1, 2023), (40, 3, 2021)]


def _fingerprint(con, data_dir=None, **kw) -> str:
    args = {"scenarios": None, "draws": 30, "seed": 7, "decisions": True, "scale": 1.0} | kw
    return model_inputs.fingerprint(con, data_dir=data_dir, **args)


def test_model_fingerprint_follows_what_the_model_reads(tmp_path):
    path = build_warehouse(tmp_path / "w.duckdb", COHORTS)
    con = duckdb.connect(str(path))
    try:
        fp = _fingerprint(con)
        assert _fingerprint(con) == fp
        # Columns the model never names (gender, gpa, birth_year) and where a row came from do not count.
        con.execute("UPDATE staging.enrollment SET gpa = 1.5, gender = 'X', birth_year = 1999, line = line + 1000")
        assert _fingerprint(con) == fp
        # One student's status does, and so does undoing it.
        sid = con.execute("SELECT student_key FROM staging.enrollment WHERE status = 'studying' LIMIT 1").fetchone()[0]
        con.execute("UPDATE staging.enrollment SET status = 'dropped_out' WHERE student_key = ? AND status = 'studying'",
                    [sid])
        changed = _fingerprint(con)
        assert changed != fp
        con.execute("UPDATE staging.enrollment SET status = 'studying' WHERE student_key = ? AND status = 'dropped_out'",
                    [sid])
        assert _fingerprint(con) == fp
        # A duplicated row counts (a sum of row hashes, not an xor that would cancel it).
        con.execute("INSERT INTO staging.enrollment SELECT * FROM staging.enrollment LIMIT 1")
        assert _fingerprint(con) != fp
        con.execute("DELETE FROM staging.enrollment WHERE rowid = (SELECT max(rowid) FROM staging.enrollment)")
        assert _fingerprint(con) == fp
        # Reference data, how the model is asked to run, and the data folder's own scenarios.
        con.execute("UPDATE ref.host_slots SET slots = slots + 1 WHERE rowid = 0")
        assert _fingerprint(con) != fp
        con.execute("UPDATE ref.host_slots SET slots = slots - 1 WHERE rowid = 0")
        assert _fingerprint(con) == fp
        assert len({fp, _fingerprint(con, draws=31), _fingerprint(con, seed=8), _fingerprint(con, decisions=False),
                    _fingerprint(con, scale=0.5), _fingerprint(con, scenarios=["more_slots"])}) == 6
        own = tmp_path / "data" / "scenarios"
        shutil.copytree(REPO / "data" / "scenarios", own)
        assert _fingerprint(con, data_dir=tmp_path / "data") == fp  # the same files, copied
        more = own / "more_slots.yaml"
        more.write_text(more.read_text(encoding="utf-8") + "\n# reviewed again\n", encoding="utf-8")
        assert _fingerprint(con, data_dir=tmp_path / "data") != fp
    finally:
        con.close()


def _marker(wh_path: Path, add: bool = False) -> bool:
    """A row only this test writes into marts.model_parameters: it survives only if the marts are kept."""
    con = duckdb.connect(str(wh_path))
    try:
        if add:
            cols = con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = 'marts' "
                               "AND table_name = 'model_parameters' ORDER BY column_index").fetchall()
            con.execute(f"INSERT INTO marts.model_parameters ({', '.join(c for c, _ in cols)}) VALUES "
                        f"({', '.join('?' for _ in cols)})",
                        ["speed-path-marker" if t == "VARCHAR" else None for _, t in cols])
        return con.execute("SELECT count(*) FROM marts.model_parameters WHERE name = 'speed-path-marker'").fetchone()[0] > 0
    finally:
        con.close()


def test_model_stage_keeps_its_marts_until_an_input_changes(prefect_harness, tmp_path):
    from flows.pipeline import model_stage as stage

    data_dir = tmp_path / "data"
    wh_path = get_paths(data_dir).warehouse
    build_warehouse(wh_path, COHORTS)
    first = stage(str(data_dir), draws=30)
    _marker(wh_path, add=True)
    # Nothing it reads changed: the marts are kept (the marker is still there) and it answers the same.
    assert stage(str(data_dir), draws=30) == first
    assert _marker(wh_path)
    # Asked for other draws: run again, and the marts are the model's own again.
    stage(str(data_dir), draws=31)
    assert not _marker(wh_path)
    _marker(wh_path, add=True)
    # One student's status changed in the warehouse: run again.
    con = duckdb.connect(str(wh_path))
    try:
        con.execute("UPDATE staging.enrollment SET status = 'dropped_out' WHERE rowid = (SELECT min(rowid) FROM "
                    "staging.enrollment WHERE status = 'studying')")
    finally:
        con.close()
    stage(str(data_dir), draws=31)
    assert not _marker(wh_path)
    # Forced (`lab2fab run --rebuild`): run again though nothing changed.
    _marker(wh_path, add=True)
    stage(str(data_dir), draws=31, force=True)
    assert not _marker(wh_path)


def test_dictionary_comments_are_written_only_where_they_differ(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        con.execute(SCHEMA)
        comments = lambda: con.execute("SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() "  # noqa: E731
                                       "WHERE schema_name IN ('ops', 'staging') ORDER BY ALL").fetchall()
        n = warehouse.apply_dictionary(con)
        assert n > 0
        first = comments()
        assert any(c for *_, c in first)
        assert warehouse.apply_dictionary(con) == n and comments() == first
        # A comment changed or lost (a table replaced) is written again.
        con.execute("COMMENT ON COLUMN staging.enrollment.status IS 'stale'")
        con.execute("COMMENT ON TABLE staging.enrollment IS NULL")
        assert warehouse.apply_dictionary(con) == n and comments() == first
        assert con.execute("SELECT comment FROM duckdb_tables() WHERE schema_name = 'staging' "
                           "AND table_name = 'enrollment'").fetchone()[0]
    finally:
        con.close()


def _sorted(frame, keys):
    return frame.sort_values(keys, ignore_index=True).astype(str)


def test_one_batch_per_term_gives_each_file_what_it_gets_alone(small_demo, tmp_path):
    # validate_staged checks all staged files of a term in one GX call per suite; each file's
    # issues, per-rule results and verdict must be what the file gets when it is validated alone.
    from transforms.contract.suites import ContractReference
    from transforms.ingest import landing
    from transforms.ingest import stage as ing

    import pandas as pd

    reference = REPO / "data" / "reference"
    known = ing.KnownFiles({}, {})
    files = ing.new_files([f for f in landing.scan(small_demo[0] / "landing") if f.term == "2024-2"], known)
    subs = ing.stage_submissions(files, known, tmp_path / "work", key=b"speed-paths-key", reference_dir=reference)
    staged = [s_ for s_ in subs if s_.status == "staged"]
    assert len(staged) >= 4
    ref = ContractReference.from_dir(reference)
    together = tmp_path / "together"
    together.mkdir()
    ing.validate_staged(staged, together, ref)
    alone = {name: [] for name in ("issues", "results", "verdicts")}
    for i, sub in enumerate(staged):
        out = tmp_path / f"alone-{i}"
        out.mkdir()
        ing.validate_staged([sub], out, ref)
        for name in alone:
            alone[name].append(pd.read_parquet(out / f"{name}_enrollment.parquet"))
    keys = {"issues": ["file_id", "line", "rule_id", "observed"], "results": ["file_id", "rule_id"],
            "verdicts": ["file_id"]}
    for name, key in keys.items():
        one = _sorted(pd.read_parquet(together / f"{name}_enrollment.parquet"), key)
        each = _sorted(pd.concat(alone[name], ignore_index=True), key)
        pd.testing.assert_frame_equal(one, each, check_dtype=False, obj=name)
    issues = pd.read_parquet(together / "issues_enrollment.parquet")
    assert issues["file_id"].nunique() > 1  # the demo's files have issues to attribute


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__]))
