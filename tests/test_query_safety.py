"""`lab2fab query` is read-only for the file system too, and its --csv is safe to open (issue 13, items 6 and 7).

A real snapshot file (DuckDB, written the way publish writes it) beside a landing zone holding a
name and a national id; the command is run as analysts run it, in its own process.
"""
from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from transforms.warehouse import db as warehouse

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SECRET_NAME, SECRET_ID = "Nguyễn Thị Hồng Nhung", "001203004567"
TRICKY = ["=HYPERLINK(\"http://x\")", "+84912", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd", "plain", None, "-12.5"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("query-data")
    term = data / "landing" / "enrollment" / "HUST" / "2024-1"
    term.mkdir(parents=True)
    (term / "danh_sach.csv").write_text(f"ho_ten,cccd\n{SECRET_NAME},{SECRET_ID}\n", encoding="utf-8")
    snapshot = data / "published" / "lab2fab.duckdb"
    snapshot.parent.mkdir(parents=True)
    con = duckdb.connect(":memory:")
    con.execute(f"ATTACH '{snapshot}' AS snap (STORAGE_VERSION '{warehouse.SNAPSHOT_STORAGE_VERSION}')")
    con.execute("CREATE SCHEMA snap.marts")
    con.execute("CREATE TABLE snap.marts.cells (id INTEGER, label VARCHAR, delta INTEGER, share DOUBLE)")
    con.executemany("INSERT INTO snap.marts.cells VALUES (?, ?, ?, ?)",
                    [(i, label, -5 * i, -0.25 * i) for i, label in enumerate(TRICKY)])
    con.execute("DETACH snap")
    con.close()
    return data


def lab2fab(data: Path, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([str(VENV_BIN / "lab2fab"), "--data-dir", str(data), "query", *args],
                         capture_output=True, timeout=120)
    # decoded without newline translation: a CR inside a cell must stay what it is
    out.stdout, out.stderr = out.stdout.decode("utf-8"), out.stderr.decode("utf-8")
    return out


def test_ordinary_queries_work(data_dir):
    out = lab2fab(data_dir, "select count(*) AS n, min(delta) AS low from marts.cells", "--json")
    assert out.returncode == 0, out.stderr
    assert '"n":9' in out.stdout and '"low":-40' in out.stdout


@pytest.mark.parametrize("sql", [
    "select * from read_csv('{landing}/enrollment/HUST/2024-1/danh_sach.csv')",
    "select * from read_text('{landing}/enrollment/HUST/2024-1/danh_sach.csv')",
    "select * from glob('{landing}/**')",
    "select * from '{landing}/enrollment/HUST/2024-1/danh_sach.csv'",
    "ATTACH '{landing}/../warehouse/lab2fab.duckdb' AS w",
])
def test_reading_files_beside_the_snapshot_fails_clearly(data_dir, sql):
    out = lab2fab(data_dir, sql.format(landing=data_dir / "landing"), "--csv")
    assert out.returncode == 1
    assert "query failed: Permission Error" in out.stderr and "out of its reach" in out.stderr
    assert "Traceback" not in out.stderr
    for text in (out.stdout, out.stderr):
        assert SECRET_NAME not in text and SECRET_ID not in text
    assert not (data_dir / "warehouse").exists()


@pytest.mark.parametrize("sql", [
    "COPY (select * from marts.cells) TO '{out}'",
    "COPY marts.cells TO '{out}' (FORMAT parquet)",
    "EXPORT DATABASE '{out}'",
])
def test_writing_files_fails_clearly(data_dir, tmp_path, sql):
    target = tmp_path / "written"
    out = lab2fab(data_dir, sql.format(out=target))
    assert out.returncode == 1 and "Permission Error" in out.stderr and "Traceback" not in out.stderr
    assert not target.exists()


def test_the_settings_cannot_be_undone_from_a_query(data_dir):
    for sql in ("SET enable_external_access = true", "SET lock_configuration = false",
                f"SET temp_directory = '{data_dir}'"):
        out = lab2fab(data_dir, sql)
        assert out.returncode == 1 and "the configuration has been locked" in out.stderr, (sql, out.stderr)
        assert "Traceback" not in out.stderr


def test_csv_cells_are_neutralised_and_numbers_stay_numbers(data_dir):
    out = lab2fab(data_dir, 'select id, label, delta, share, label AS "=evil" from marts.cells order by id', "--csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0] == ["id", "label", "delta", "share", "'=evil"]
    labels = [r[1] for r in rows[1:]]
    # a text that is a plain number (a phone number, -12.5) is read as that number, not a formula: kept
    assert labels == ["'=HYPERLINK(\"http://x\")", "+84912", "'-2+3", "'@SUM(A1)", "'\tcmd", "'\rcmd", "plain", "",
                      "-12.5"]
    assert [r[2] for r in rows[1:]] == [str(-5 * i) for i in range(len(TRICKY))]  # -5, not '-5
    assert [float(r[3]) for r in rows[1:]] == [-0.25 * i for i in range(len(TRICKY))]
    assert out.stdout.count("\r\n") == len(TRICKY) + 1  # the CR inside a cell is quoted, not a line break


def test_the_documented_recipes_are_read_only_too(data_dir, tmp_path):
    """README's Python and DuckDB-shell recipes, as written there."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "config=warehouse.SNAPSHOT_QUERY_CONFIG" in readme or "enable_external_access" in readme
    snapshot = data_dir / "published" / "lab2fab.duckdb"
    con = warehouse.connect_snapshot(snapshot)
    try:
        assert con.execute("select count(*) from marts.cells").fetchone()[0] == len(TRICKY)
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"select * from read_csv('{data_dir / 'landing' / 'enrollment' / 'HUST' / '2024-1'}/*.csv')")
    finally:
        con.close()
    shell = VENV_BIN / "duckdb"
    if not shell.exists():
        pytest.skip("the duckdb-cli shell is not installed in this venv")
    assert warehouse.SNAPSHOT_SHELL_SETTINGS in readme  # the shell recipe sets exactly these
    target = tmp_path / "from-shell.csv"
    ran = subprocess.run([str(shell), "-readonly", "-cmd", warehouse.SNAPSHOT_SHELL_SETTINGS, str(snapshot), "-csv",
                          "-c", f"COPY marts.cells TO '{target}'"], capture_output=True, text=True, timeout=60)
    assert "file system operations are disabled" in ran.stdout + ran.stderr and not target.exists()
    ok = subprocess.run([str(shell), "-readonly", "-cmd", warehouse.SNAPSHOT_SHELL_SETTINGS, str(snapshot), "-csv",
                         "-c", "select count(*) AS n from marts.cells"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.split()[-1] == str(len(TRICKY)), ok.stderr
