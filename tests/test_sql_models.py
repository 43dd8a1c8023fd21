"""The SQL models (transforms/sql/<layer>/), their runner, their yml tests and docs, the schema's
migrations, and the one definitions they hold (submission status, verdicts)."""
from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from transforms.contract import checks
from transforms.warehouse import db, models

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "data" / "reference"
PUBLISHED_SCHEMAS = ("analytics", "marts", "intermediate", "ops", "staging", "ref")


def _warehouse(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = db.connect(tmp_path / "w.duckdb")
    db.load_reference(con, REFERENCE)
    return con


def _project_copy(tmp_path: Path) -> Path:
    sql_dir = tmp_path / "sql"
    shutil.copytree(models.SQL_DIR, sql_dir)
    return sql_dir


# ------------------------------------------------------------------------------ the project

def test_every_model_is_one_select_with_its_yml_entry():
    p = models.load_project()
    assert {m.layer for m in p.models.values()} == {"intermediate", "marts", "analytics"}
    for m in p.models.values():
        assert m.path.name == m.name.split(".")[1] + ".sql"
        assert m.description, m.name
        assert not models._COMMENT.sub("", m.sql).lstrip().upper().startswith("CREATE"), m.name


def test_models_are_ordered_after_what_they_read():
    ordered = [m.name for m in models.load_project().order()]
    p = models.load_project()
    for i, name in enumerate(ordered):
        for dep in p.models[name].depends_on:
            if dep in p.models:
                assert ordered.index(dep) < i, (name, dep)
    assert ordered.index("marts.submission_status") < ordered.index("marts.university_summary")
    assert ordered.index("intermediate.enrollment_tracks") < ordered.index("marts.graduates")


def test_dependencies_are_parsed_from_the_sql_not_its_comments():
    sql = """-- reads marts.not_this
    SELECT a.x, 'ref.nor_this' AS s FROM staging.enrollment a JOIN ref.programmes p USING (programme_code)
    /* marts.nor_that */ WHERE a.term IN (SELECT term FROM intermediate.term_windows)"""
    assert models.references(sql) == {"staging.enrollment", "ref.programmes", "intermediate.term_windows"}


def test_a_model_without_yml_entry_or_with_a_create_is_refused(tmp_path):
    sql_dir = _project_copy(tmp_path)
    (sql_dir / "marts" / "orphan.sql").write_text("SELECT 1 AS x")
    with pytest.raises(models.ModelError, match="no entry for model 'orphan'"):
        models.load_project(sql_dir)
    (sql_dir / "marts" / "orphan.sql").unlink()
    (sql_dir / "marts" / "graduates.sql").write_text("CREATE TABLE marts.graduates AS SELECT 1 AS x")
    with pytest.raises(models.ModelError, match="one SELECT"):
        models.load_project(sql_dir)


def test_a_cycle_is_refused_naming_the_models(tmp_path):
    sql_dir = _project_copy(tmp_path)
    (sql_dir / "intermediate" / "term_windows.sql").write_text("SELECT term FROM marts.submission_status")
    with pytest.raises(models.ModelError, match="cycle"):
        models.load_project(sql_dir).order()


# ------------------------------------------------------------------------------ running and testing

def test_models_build_and_pass_their_tests_on_an_empty_warehouse(tmp_path):
    con = _warehouse(tmp_path)
    built = db.build_marts(con)
    assert "submission_status" in built and "university_summary" in built
    con.execute("CREATE TABLE marts.model_headline (scenario VARCHAR, dimension VARCHAR, category VARCHAR, "
                "target DOUBLE, p10 DOUBLE, p50 DOUBLE, p90 DOUBLE, probability_meeting_target DOUBLE, "
                "practice_ready_p50 DOUBLE)")
    assert "gap_to_target" in db.build_marts(con, "views")


def test_a_bad_source_row_stops_the_run_naming_table_column_test_and_rows(tmp_path):
    con = _warehouse(tmp_path)
    con.execute("""INSERT INTO staging.enrollment VALUES
        ('f1', 'HUST', '2024-1', 2, 'k1', NULL, 'F', '7480106', 'bachelor', 2024, 1, 'studying', NULL, NULL),
        ('f1', 'HUST', '2024-1', 3, 'k2', NULL, 'F', '7480106', 'bachelor', 2024, 1, 'asleep', NULL, NULL),
        ('f1', 'HUST', '2024-1', 4, 'k3', NULL, 'F', '7480106', 'bachelor', 2024, 1, 'asleep', NULL, NULL)""")
    with pytest.raises(models.ModelTestFailed) as e:
        db.build_marts(con)
    message = str(e.value)
    assert "staging.enrollment, column status: test accepted_values" in message
    assert "failed on 2 rows" in message
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'marts'").fetchone()[0] == 0


def test_a_failing_model_test_stops_before_its_dependants(tmp_path):
    sql_dir = _project_copy(tmp_path)
    yml = sql_dir / "marts" / "_marts.yml"
    grain = "          combination_of_columns: [university_code, term]\n"
    assert grain in yml.read_text()
    yml.write_text(yml.read_text().replace(
        grain, grain + "      - expression_is_true: {expression: \"term <> '2024-1'\"}\n", 1))
    con = _warehouse(tmp_path)
    con.execute("""INSERT INTO ops.manifest (file_id, dataset, path, size_bytes, mtime, university_code, term,
                       received_at, rows_read, rows_loaded, rows_quarantined, rows_with_warnings, status, run_id,
                       ingested_at)
                   VALUES ('f1', 'enrollment', 'enrollment/AGU/2024-1/a.csv', 1, 0, 'AGU', '2024-1',
                           TIMESTAMP '2024-10-01', 0, 0, 0, 0, 'loaded', 'r', TIMESTAMP '2024-10-01')""")
    with pytest.raises(models.ModelTestFailed, match=r"marts.submission_status: test expression_is_true .* failed on \d+ rows"):
        models.run(con, ("staging", "intermediate", "marts"), sql_dir=sql_dir)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'marts'").fetchall()}
    assert "submission_status" in tables and "university_summary" not in tables


def test_accepted_values_come_from_the_vocabulary():
    from transforms import vocabulary

    p = models.load_project()
    status = next(c for c in p.sources["staging.enrollment"][2] if c.column == "status" and c.kind == "accepted_values")
    assert status.args["values"] == list(vocabulary.STATUSES)


# ------------------------------------------------------------------------------ schema and migrations

def test_a_new_warehouse_is_created_at_the_latest_schema_version(tmp_path):
    con = db.connect(tmp_path / "w.duckdb")
    assert db.get_state(con, "schema_version") == str(db.SCHEMA_VERSION) and db.SCHEMA_VERSION >= 1
    con.execute("DROP VIEW ops.quarantine")  # schema.sql is not run again on the next connect
    con.close()
    con = db.connect(tmp_path / "w.duckdb")
    assert not con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'quarantine'").fetchone()[0]


def test_a_changed_schema_file_is_run_again_once(tmp_path):
    con = db.connect(tmp_path / "w.duckdb")
    con.execute("DROP VIEW ops.quarantine")
    db.set_state(con, "schema_digest", "an older schema.sql")  # as if schema.sql had changed since
    con.close()
    con = db.connect(tmp_path / "w.duckdb")
    assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'quarantine'").fetchone()[0] == 1
    assert db.get_state(con, "schema_digest") != "an older schema.sql"


def test_a_warehouse_from_before_the_migrations_is_brought_up_to_date(tmp_path):
    path = tmp_path / "old.duckdb"
    old = duckdb.connect(str(path))
    old.execute("CREATE SCHEMA ops")
    old.execute("CREATE TABLE ops.state (name VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    old.execute("INSERT INTO ops.state VALUES ('key_fingerprint', 'abc')")
    old.execute("""CREATE TABLE ops.validation_results (run_id VARCHAR NOT NULL, dataset VARCHAR NOT NULL,
                   file_id VARCHAR NOT NULL, university_code VARCHAR, term VARCHAR, rule_id VARCHAR NOT NULL,
                   severity VARCHAR NOT NULL, success BOOLEAN NOT NULL, rows_checked BIGINT, rows_failing BIGINT NOT NULL)""")
    old.execute("INSERT INTO ops.validation_results VALUES ('r', 'enrollment', 'f', 'HUST', '2024-1', 'x', 'error', true, 1, 0)")
    old.close()
    con = db.connect(path)
    cols = {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'validation_results'").fetchall()}
    assert {"observed", "scope", "accepted_override", "override_note"} <= cols
    assert con.execute("SELECT count(*) FROM ops.validation_results").fetchone()[0] == 1
    assert db.get_state(con, "key_fingerprint") == "abc"
    assert db.get_state(con, "schema_version") == str(db.SCHEMA_VERSION)
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'manifest'").fetchone()[0] == 1


def test_a_warehouse_from_newer_code_is_refused(tmp_path):
    con = db.connect(tmp_path / "w.duckdb")
    db.set_state(con, "schema_version", str(db.SCHEMA_VERSION + 1))
    con.close()
    with pytest.raises(RuntimeError, match="newer than this lab2fab"):
        db.connect(tmp_path / "w.duckdb")


# ------------------------------------------------------------------------------ one definition

def test_verdicts_are_one_query_for_frames_and_the_warehouse():
    rules = checks.rules_frame().set_index("rule_id")["message_en"]
    err = next(r for r, rule in checks.RULES.items() if rule.severity == "error" and rule.scope == "file")
    warn = sorted(r for r, rule in checks.RULES.items() if rule.severity == "warning" and rule.scope == "file")[:2]
    results = pd.DataFrame([
        ("a", err, "error", "file", False, "3 rows", False),
        ("a", warn[0], "warning", "file", False, "40%", False),
        ("b", warn[1], "warning", "file", False, "x", False),
        ("b", warn[0], "warning", "file", False, "y", False),
        ("c", warn[0], "warning", "file", False, "z", True),   # accepted in the overrides file
        ("d", warn[0], "warning", "file", True, "", False),
    ], columns=["file_id", "rule_id", "severity", "scope", "success", "observed", "accepted_override"])
    v = checks.verdicts_of(results, pd.Series(["d", "c", "b", "a", "e"])).set_index("file_id")
    assert list(v.index) == ["d", "c", "b", "a", "e"]
    assert v["verdict"].to_dict() == {"a": "rejected", "b": "accepted_with_warnings", "c": "accepted",
                                      "d": "accepted", "e": "accepted"}
    assert v.loc["a", "reason"] == f"{err}: {rules[err]} (3 rows)"
    assert v.loc["b", "reason"] == f"{warn[0]}: {rules[warn[0]]} (y); {warn[1]}: {rules[warn[1]]} (x)"
    assert v.loc["c", "reason"] is None


@pytest.fixture()
def published(demo_run):
    data_dir, _ = demo_run
    con = duckdb.connect(str(data_dir / "published" / "lab2fab.duckdb"), read_only=True)
    yield con
    con.close()


def test_every_published_column_is_documented(published):
    rows = published.execute(f"""
        SELECT schema_name || '.' || table_name, column_name, comment FROM duckdb_columns()
        WHERE schema_name IN ({', '.join(repr(s) for s in PUBLISHED_SCHEMAS)})""").fetchall()
    assert len(rows) > 400
    undocumented = sorted(f"{t}.{c}" for t, c, comment in rows if not (comment or "").strip())
    assert not undocumented, f"add these to the layer's _<layer>.yml or transforms/sql/dictionary.yaml: {undocumented}"
    objects = published.execute(f"""
        SELECT schema_name || '.' || table_name, comment FROM duckdb_tables()
        WHERE schema_name IN ({', '.join(repr(s) for s in PUBLISHED_SCHEMAS)})
        UNION ALL SELECT schema_name || '.' || view_name, comment FROM duckdb_views()
        WHERE NOT internal AND schema_name IN ({', '.join(repr(s) for s in PUBLISHED_SCHEMAS)})""").fetchall()
    assert not sorted(t for t, comment in objects if not (comment or "").strip())


def test_the_report_and_the_analysts_read_one_submission_status(published):
    from transforms.publish import report

    subs = report.submissions(published)
    mart = published.execute("SELECT university_code, term, status_with_late, late FROM marts.submission_status "
                             "ORDER BY term, university_code").df()
    assert subs["status"].tolist() == mart["status_with_late"].tolist()
    assert subs["late"].tolist() == mart["late"].tolist()
    assert set(subs["status"]) <= set(report.STATUS_ORDER)
    view = published.execute("SELECT count(*) FROM analytics.submissions a JOIN marts.submission_status s "
                             "USING (university_code, term) WHERE a.late IS DISTINCT FROM s.late "
                             "OR a.submission_status IS DISTINCT FROM s.submission_status").fetchone()[0]
    assert view == 0


def test_the_manifest_verdict_is_the_kits_verdict_query(published):
    """ops.manifest.verdict, recomputed by the one verdict query over the recorded results."""
    published.register("l2f_rules", checks.rules_frame())
    recomputed = published.execute(f"""
        SELECT m.file_id, m.verdict, v.verdict AS query_verdict FROM ops.manifest m
        JOIN ({checks.file_verdicts_sql('(SELECT file_id, 0 AS ord FROM ops.manifest)', 'ops.validation_results',
                                        'l2f_rules')}) v USING (file_id)
        WHERE m.status NOT IN ('rejected', 'duplicate')""").df()
    assert len(recomputed) and (recomputed["verdict"] == recomputed["query_verdict"]).all()
