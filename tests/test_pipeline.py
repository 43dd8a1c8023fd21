"""The whole pipeline on a small demo collection, with real Prefect, DuckDB and GX."""
from __future__ import annotations

import json
import shutil

import duckdb
import pytest

from tables import assert_same, contents


def data_rows(path) -> int:
    """Data rows of a demo CSV (header on line 1, no blank lines), counted without lab2fab's reader."""
    return len([l for l in path.read_text(encoding="utf-8-sig").splitlines() if l.strip()]) - 1


@pytest.fixture()
def first_run(demo_run, small_demo):
    """The session's one pipeline run on the small demo collection (tests/conftest.py), read-only."""
    data_dir, result = demo_run
    return data_dir, small_demo[1], result


def test_every_file_and_row_is_accounted_for(first_run):
    data_dir, summary, result = first_run
    con = duckdb.connect(str(data_dir / "published" / "lab2fab.duckdb"), read_only=True)
    m = con.execute("SELECT * FROM ops.manifest").df().set_index("path")
    assert len(m) == summary["files_written"] == result["files_seen"]
    # per file: read = loaded + quarantined
    assert (m.rows_read == m.rows_loaded + m.rows_quarantined).all()
    # the injected file-level cases end as they should
    assert m.loc[summary["rejected_file"], "status"] == "rejected"
    assert "status" in m.loc[summary["rejected_file"], "reason"]
    assert m.loc[summary["superseded_file"], "status"] == "superseded"
    assert m.loc[summary["resubmitted_file"], "status"] == "loaded"
    pair = m.loc[[summary["duplicate_file"], summary["duplicate_of"]], "status"]
    assert sorted(pair) == ["duplicate", "loaded"]
    # every row written by the demo was read, except the two files refused whole
    unread = sum(data_rows(data_dir / "landing" / p) for p in
                 (summary["rejected_file"], pair[pair == "duplicate"].index[0]))
    enrollment = m[m.dataset == "enrollment"]
    assert enrollment.rows_read.sum() + unread == summary["rows_written"]
    assert m[m.dataset == "placements"].rows_read.sum() == sum(summary["placements"].values())
    # staging holds exactly the loaded rows of current submissions
    staged = con.execute("SELECT count(*) FROM staging.enrollment").fetchone()[0]
    current = m[(m.dataset == "enrollment") & (m.status == "loaded")].rows_loaded.sum()
    assert staged == current
    quarantined = con.execute("SELECT count(DISTINCT (file_id, line)) FROM ops.quarantine").fetchone()[0]
    assert quarantined == m.rows_quarantined.sum()


def test_injected_mistakes_are_quarantined_with_reasons(first_run):
    data_dir, summary, _ = first_run
    con = duckdb.connect(str(data_dir / "published" / "lab2fab.duckdb"), read_only=True)
    rules = dict(con.execute("""SELECT rule_id, count(*) FROM ops.quarantine q JOIN ops.manifest m USING (file_id)
                                WHERE m.status = 'loaded' GROUP BY 1""").fetchall())
    expected_rule = {"unknown_programme": "ENR.programme_code.catalogue", "study_year_12": "ENR.study_year.range",
                     "empty_student_id": "ENR.student_key.present", "gender_unknown": "ENR.gender.present",
                     "future_intake": "ENR.intake_year.not_future", "duplicate_row": "ENR.student_key.unique"}
    for kind, n in summary["row_mistakes"].items():
        if n:
            assert rules.get(expected_rule[kind], 0) >= n, (kind, rules)
    row = con.execute("SELECT file_id, line, field, message_en, message_vi, original_values FROM ops.quarantine LIMIT 1").fetchone()
    assert all(v is not None for v in row)


def test_layers_agree_and_model_runs(first_run):
    data_dir, summary, result = first_run
    con = duckdb.connect(str(data_dir / "published" / "lab2fab.duckdb"), read_only=True)
    staged = con.execute("SELECT count(*) FROM staging.enrollment").fetchone()[0]
    assert con.execute("SELECT sum(students) FROM marts.enrollment_by_term").fetchone()[0] == staged
    assert con.execute("SELECT count(*) FROM ref.universities WHERE participates").fetchone()[0] >= 160
    total = con.execute("SELECT engineers_by_horizon, target FROM marts.model_headline WHERE dimension = 'total'").fetchone()
    # The demo's national targets are scaled to its share of national size (issue 15: like with like).
    assert total[1] == pytest.approx(50000 * summary["national_fraction"]) and total[0] > 0
    assert result["engineers_2030"] == pytest.approx(total[0])
    # T, the Decision's measure, leads the result (issue 15): the persons trained against the target.
    t = con.execute("""SELECT p50, target FROM marts.model_measures
                       WHERE scenario = 'baseline' AND measure = 'trained' AND dimension = 'total'""").fetchone()
    assert result["trained_2030"] == pytest.approx(t[0]) and result["trained_target_2030"] == pytest.approx(t[1])
    rounds = con.execute("SELECT count(*), sum(placed > slots) FROM marts.model_rounds WHERE basis = 'projected'").fetchone()
    assert rounds[0] > 0 and rounds[1] == 0  # never more placed than slots offered
    # names, national ids and birth dates never reach the warehouse
    columns = {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns()").fetchall()}
    assert not columns & {"full_name", "national_id", "birth_date", "student_id"}
    assert (data_dir / "published" / "report.html").read_text().count("engineers") > 0
    # each university office gets its result back, per term, as JSON, Markdown and CSV
    rejected = json.loads((data_dir / "published" / "feedback" / summary["rejected_file"].split("/")[1] /
                           f"{summary['rejected_file'].split('/')[2]}.json").read_text())
    assert "rejected" in json.dumps(rejected)


def test_second_run_with_no_new_files_changes_nothing(first_run, tmp_path):
    from flows.pipeline import pipeline

    data_dir = tmp_path / "data"  # a copy: the first run's folder is shared with other tests
    shutil.copytree(first_run[0], data_dir, copy_function=shutil.copy2, symlinks=True)
    before = contents(data_dir / "warehouse" / "lab2fab.duckdb")
    snapshot_before = (data_dir / "published" / "lab2fab.duckdb").stat().st_mtime_ns
    result = pipeline(data_dir=str(data_dir))
    assert result["files_new"] == 0 and result["changed"] is False
    after = contents(data_dir / "warehouse" / "lab2fab.duckdb")
    assert_same(before, after)
    assert (data_dir / "published" / "lab2fab.duckdb").stat().st_mtime_ns == snapshot_before
