"""How the snapshot is written (issue 17): real DuckDB files, no pipeline run.

A warehouse this code creates is written in the snapshot's storage version, and its checkpointed file
is copied as the snapshot. A warehouse in DuckDB's newer default storage (made before, which the
duckdb-cli shell cannot read) is published from the previous snapshot: a publish starts from a copy of
the last snapshot when the record beside the warehouse describes that very file, and rewrites only the
tables (or files' rows) whose content changed; the result holds what a full copy holds, table by table,
with the same views and comments. Anything in doubt (another file at the snapshot's path, a changed
catalog) and it is a full copy again."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tables import RUN_LOG_STATE, assert_same, contents
from transforms.warehouse import db as warehouse


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fill(con) -> None:
    con.execute("CREATE TABLE staging.rows_by_file (file_id VARCHAR, line INTEGER, value DOUBLE, "
                "UNIQUE (file_id, line))")
    con.execute("INSERT INTO staging.rows_by_file SELECT 'f' || (i % 5), i, i / 3 FROM range(1000) t(i)")
    con.execute("INSERT INTO staging.rows_by_file VALUES (NULL, -1, 0.5)")  # a NULL file_id is a file of its own
    con.execute("CREATE TABLE marts.totals AS SELECT i AS term, i * 10 AS students FROM range(20) t(i)")
    con.execute("CREATE SCHEMA IF NOT EXISTS analytics")  # made by the curated views at publish
    con.execute("CREATE VIEW analytics.big_terms AS SELECT * FROM marts.totals WHERE students > 50")
    con.execute("COMMENT ON TABLE marts.totals IS 'Students by term.'")
    con.execute("COMMENT ON COLUMN marts.totals.students IS 'Students enrolled.'")
    con.execute("COMMENT ON COLUMN analytics.big_terms.term IS 'The term.'")


def _storage_version(con, database: str | None = None) -> str:
    return con.execute("SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = "
                       + ("?" if database else "current_database()"), [database] if database else []).fetchone()[0]


@pytest.fixture
def wh(tmp_path):
    """A warehouse made before (DuckDB's default storage) with the real schema, a table kept by file, a whole
    table, a view and comments."""
    path = tmp_path / "warehouse" / "lab2fab.duckdb"
    path.parent.mkdir(parents=True)
    duckdb.connect(str(path)).close()
    con = warehouse.connect(path)
    assert not _storage_version(con).startswith(warehouse.SNAPSHOT_STORAGE_VERSION)
    _fill(con)
    yield con
    con.close()


def test_a_new_warehouse_is_published_as_a_copy_of_its_file(tmp_path):
    con = warehouse.connect(tmp_path / "warehouse" / "lab2fab.duckdb")
    try:
        assert _storage_version(con).startswith(warehouse.SNAPSHOT_STORAGE_VERSION)
        _fill(con)
        snap = _snapshot(tmp_path)
        for run, change in (("r1", None), ("r2", "UPDATE marts.totals SET students = students + 1 WHERE term = 3"),
                            ("r3", "DELETE FROM staging.rows_by_file WHERE file_id = 'f2'")):
            if change:
                con.execute(change)
            warehouse.publish(con, snap, run)
            assert _record(con)["rewritten"] is None
            # The snapshot holds what the warehouse holds, table by table (tables.contents' columns and rows).
            published = contents(snap)
            assert set(published) == set(warehouse.table_names(con)) - {"ops.runs"}
            for name, frame in published.items():
                where = f"WHERE name NOT IN {RUN_LOG_STATE}" if name == "ops.state" else ""
                pd.testing.assert_frame_equal(frame, con.execute(
                    f"SELECT {', '.join(frame.columns)} FROM {name} {where} ORDER BY ALL").df())
            check = duckdb.connect(str(snap), read_only=True)
            try:
                assert _storage_version(check).startswith(warehouse.SNAPSHOT_STORAGE_VERSION)  # the shell reads it
                assert _catalog(snap) == warehouse._catalog(con, con.execute("SELECT current_database()").fetchone()[0])
            finally:
                check.close()
        assert not list(snap.parent.glob(".*.tmp*"))
    finally:
        con.close()


def _snapshot(tmp_path: Path) -> Path:
    return tmp_path / "published" / "lab2fab.duckdb"


def _record(con) -> dict:
    return json.loads(warehouse._record_path(con).read_text())


def _full_copy(con, tmp_path: Path) -> Path:
    """What the same warehouse gives as a complete copy (no record describes this path)."""
    other = tmp_path / "full" / "lab2fab.duckdb"
    warehouse.publish(con, other, "full-copy")
    return other


def _catalog(path: Path) -> list:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return warehouse._catalog(con, con.execute("SELECT current_database()").fetchone()[0])
    finally:
        con.close()


def _assert_equal_to_full_copy(con, tmp_path: Path) -> None:
    snap, full = _snapshot(tmp_path), _full_copy(con, tmp_path)
    assert_same(contents(snap), contents(full))
    assert _catalog(snap) == _catalog(full)  # tables' DDL, columns, comments, views
    check = duckdb.connect(str(snap), read_only=True)
    try:
        version = check.execute("SELECT tags['storage_version'] FROM duckdb_databases() "
                                "WHERE database_name = current_database()").fetchone()[0]
        assert version.startswith(warehouse.SNAPSHOT_STORAGE_VERSION)  # the duckdb-cli shell still reads it
        assert check.execute("SELECT count(*) FROM analytics.big_terms").fetchone()[0] == \
            con.execute("SELECT count(*) FROM analytics.big_terms").fetchone()[0]
    finally:
        check.close()


def test_a_snapshot_written_from_the_last_one_equals_a_full_copy(wh, tmp_path):
    snap = _snapshot(tmp_path)
    warehouse.publish(wh, snap, "run1")
    assert _record(wh)["rewritten"] is None  # no snapshot before: a full copy
    # a resubmission: one file's rows change, a new file arrives, one file goes, a mart moves
    wh.execute("UPDATE staging.rows_by_file SET value = value + 1 WHERE file_id = 'f1' AND line < 100")
    wh.execute("INSERT INTO staging.rows_by_file SELECT 'f9', i, i FROM range(7) t(i)")
    wh.execute("DELETE FROM staging.rows_by_file WHERE file_id = 'f3'")
    wh.execute("UPDATE staging.rows_by_file SET value = 9 WHERE file_id IS NULL")
    wh.execute("UPDATE marts.totals SET students = students + 1 WHERE term = 3")
    warehouse.publish(wh, snap, "run2")
    assert sorted(_record(wh)["rewritten"]) == ["marts.totals", "staging.rows_by_file (4 files)"]
    _assert_equal_to_full_copy(wh, tmp_path)


def test_a_changed_table_is_replaced_and_an_unchanged_one_kept(wh, tmp_path):
    snap = _snapshot(tmp_path)
    warehouse.publish(wh, snap, "run1")
    warehouse.publish(wh, snap, "run2")
    assert _record(wh)["rewritten"] == []  # nothing changed: the last snapshot as it was
    # the same rows written again (a mart rebuilt whole) are no change; other rows are
    wh.execute("CREATE OR REPLACE TABLE marts.totals AS SELECT i AS term, i * 10 AS students FROM range(20) t(i)")
    wh.execute("COMMENT ON TABLE marts.totals IS 'Students by term.'")
    wh.execute("COMMENT ON COLUMN marts.totals.students IS 'Students enrolled.'")
    wh.execute("INSERT INTO ops.state VALUES ('example', 'changed')")
    warehouse.publish(wh, snap, "run3")
    assert _record(wh)["rewritten"] == ["ops.state"]
    _assert_equal_to_full_copy(wh, tmp_path)


@pytest.mark.parametrize("how", ["written to", "replaced by another file"])
def test_a_snapshot_that_is_not_the_recorded_one_falls_back_to_a_full_copy(how, wh, tmp_path):
    snap = _snapshot(tmp_path)
    warehouse.publish(wh, snap, "run1")
    if how == "written to":  # someone opened it read-write and changed it: the record no longer describes it
        other = duckdb.connect(str(snap))
        other.execute("DELETE FROM marts.totals WHERE term < 10")
        other.close()
    else:  # a copy put in its place (a restore): same bytes, another file
        shutil.copyfile(snap, snap.with_name("restored.duckdb"))
        con = duckdb.connect(str(snap.with_name("restored.duckdb")))
        con.execute("DELETE FROM staging.rows_by_file WHERE file_id = 'f2'")
        con.close()
        snap.with_name("restored.duckdb").replace(snap)
    assert warehouse.snapshot_record(wh, snap) is None
    warehouse.publish(wh, snap, "run2")
    assert _record(wh)["rewritten"] is None
    _assert_equal_to_full_copy(wh, tmp_path)


@pytest.mark.parametrize("change", ["comment", "view", "table"])
def test_a_changed_catalog_falls_back_to_a_full_copy(change, wh, tmp_path):
    snap = _snapshot(tmp_path)
    warehouse.publish(wh, snap, "run1")
    if change == "comment":  # the dictionary changed
        wh.execute("COMMENT ON COLUMN marts.totals.students IS 'Students enrolled in the term.'")
    elif change == "view":
        wh.execute("CREATE OR REPLACE VIEW analytics.big_terms AS SELECT * FROM marts.totals WHERE students > 90")
    else:  # a new column (a migration)
        wh.execute("ALTER TABLE marts.totals ADD COLUMN note VARCHAR")
    warehouse.publish(wh, snap, "run2")
    assert _record(wh)["rewritten"] is None
    _assert_equal_to_full_copy(wh, tmp_path)


def test_a_publish_that_fails_before_the_swap_leaves_the_snapshot_and_the_next_one_recovers(wh, tmp_path):
    snap = _snapshot(tmp_path)
    warehouse.publish(wh, snap, "run1")
    before, record = _digest(snap), _record(wh)
    wh.execute("UPDATE marts.totals SET students = 0 WHERE term = 1")

    def full_disk(point: str) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        warehouse.publish(wh, snap, "run2", on_step=full_disk)
    assert _digest(snap) == before and _record(wh) == record  # the old snapshot, and the record of it
    assert list(snap.parent.glob(".*.tmp"))  # what the failed run left ...
    warehouse.publish(wh, snap, "run3")
    assert not list(snap.parent.glob(".*.tmp*"))  # ... the next one clears
    assert _record(wh)["rewritten"] == ["marts.totals"]  # still from the untouched last snapshot
    _assert_equal_to_full_copy(wh, tmp_path)


def test_parquet_exports_link_unchanged_tables_and_write_changed_ones(wh, tmp_path):
    published = tmp_path / "published"
    published.mkdir()
    wh.execute("CREATE TABLE marts.hosts AS SELECT i AS host FROM range(3) t(i)")
    first = warehouse.export_parquet(wh, published, "run1").resolve()
    wh.execute("UPDATE marts.totals SET students = 0 WHERE term = 1")
    second = warehouse.export_parquet(wh, published, "run2").resolve()
    assert (first / "marts.hosts.parquet").stat().st_ino == (second / "marts.hosts.parquet").stat().st_ino
    assert (first / "marts.totals.parquet").stat().st_ino != (second / "marts.totals.parquet").stat().st_ino
    for name in ("marts.hosts", "marts.totals", "analytics.big_terms"):
        got = wh.execute(f"SELECT * FROM '{second / (name + '.parquet')}' ORDER BY ALL").fetchall()
        assert got == wh.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall(), name


def test_feedback_rewrites_only_the_terms_whose_inputs_changed(demo_run, tmp_path):
    """On a real run's snapshot: a second write builds nothing again, a term whose row issues changed
    and a file someone edited are written again, and the result is what a write from scratch gives."""
    from transforms.publish import feedback

    copy = tmp_path / "lab2fab.duckdb"
    shutil.copyfile(demo_run[0] / "published" / "lab2fab.duckdb", copy)
    con = duckdb.connect(str(copy))
    try:
        out, fresh = tmp_path / "feedback", tmp_path / "fresh"
        n = feedback.write_feedback(con, out)
        files = sorted(p for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))
        stamps = {p: p.stat().st_mtime_ns for p in files}
        code, term, file_id = con.execute("""SELECT university_code, term, file_id FROM intermediate.current_submissions
                                             WHERE file_id IN (SELECT file_id FROM ops.row_issues)
                                             ORDER BY ALL LIMIT 1""").fetchone()
        con.execute("UPDATE ops.row_issues SET message_en = message_en || ' (corrected)' WHERE file_id = ?", [file_id])
        edited = next(p for p in files if p.parent.name != code and p.suffix == ".md")
        edited.write_text("edited by hand", encoding="utf-8")
        assert feedback.write_feedback(con, out) == n
        changed = {p for p in files if p.stat().st_mtime_ns != stamps[p]}
        assert {p for p in changed if p != edited} <= {out / code / f"{term}{s}" for s in (".json", ".md", ".csv")}
        assert "(corrected)" in (out / code / f"{term}.json").read_text(encoding="utf-8")
        assert edited.read_text(encoding="utf-8") != "edited by hand"
        assert feedback.write_feedback(con, fresh) == n
        for path in files:
            assert path.read_bytes() == (fresh / path.relative_to(out)).read_bytes(), path
    finally:
        con.close()


def test_when_most_rows_changed_a_full_copy_is_written(wh, tmp_path):
    """A backfill that replaces most files: a full copy is cheaper, and leaves no freed space behind."""
    snap = _snapshot(tmp_path)
    warehouse.publish(wh, snap, "run1")
    wh.execute("UPDATE staging.rows_by_file SET value = -value WHERE file_id <> 'f0'")
    warehouse.publish(wh, snap, "run2")
    assert _record(wh)["rewritten"] is None
    _assert_equal_to_full_copy(wh, tmp_path)
