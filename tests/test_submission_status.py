"""A submission's status is defined once (intermediate.current_submissions, marts.submission_status)
and every reader says the same: each university's feedback file, the portal's office matrix (page and
CSV) and university page, and the mart, for every university and term of a demo run and of a corpus
built for the hard cases (a rejected correction after an accepted file, a duplicate, a superseded
file, quarantined rows, a warning verdict, a lock file, a late file, a file outside a term folder)."""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import duckdb

from test_portal_api import add_users, logged_in
from transforms.contract.rules import INGEST_RULES
from transforms.publish import feedback
from transforms.vocabulary import SUBMISSION_STATUSES
from transforms.warehouse import db, models

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "data" / "reference"

# (code, term, file, minutes after 1 Oct, status, verdict, rows_quarantined, rows_with_warnings, rule)
CORPUS = [
    ("AGU", "2024-1", "first.csv", 0, "loaded", "accepted", 0, 0, None),
    ("AGU", "2024-1", "corrected.csv", 60, "rejected", "rejected", 0, 0, "ING.file.columns"),
    ("AGU", "2024-2", "rows.csv", 0, "loaded", "accepted", 3, 0, None),
    ("AGU", "2024-2", "rows_again.csv", 60, "duplicate", None, 0, 0, "ING.file.duplicate"),
    ("AUV", "2024-1", "v1.csv", 0, "superseded", "accepted", 0, 0, "ING.file.superseded"),
    ("AUV", "2024-1", "v2.csv", 60, "loaded", "accepted_with_warnings", 2, 0, None),
    ("AUV", "2024-2", "good.csv", 0, "loaded", "accepted", 0, 0, None),
    ("AUV", "2024-2", "~$good.xlsx", 60, "rejected", "rejected", 0, 0, "ING.file.hidden"),
    ("BAFU", "2024-1", "bad.csv", 0, "rejected", "rejected", 0, 0, "ING.file.encoding"),
    ("BAFU", "2024-2", "~$lock.xlsx", 0, "rejected", "rejected", 0, 0, "ING.file.hidden"),
    ("BDU", "2024-1", "late.csv", 90 * 24 * 60, "loaded", "accepted", 0, 2, None),
    ("AJC", "2024-1", "not_participating.csv", 0, "loaded", "accepted", 0, 0, None),
    ("CMC", None, "loose.csv", 0, "rejected", "rejected", 0, 0, "ING.file.location"),
]
EXPECTED = {  # feedback's and the mart's status; the file in use
    ("AGU", "2024-1"): ("rejected", "first.csv"), ("AGU", "2024-2"): ("accepted_with_issues", "rows.csv"),
    ("AUV", "2024-1"): ("accepted_with_warnings", "v2.csv"), ("AUV", "2024-2"): ("accepted", "good.csv"),
    ("BAFU", "2024-1"): ("rejected", None), ("BAFU", "2024-2"): ("rejected", None),
    ("BDU", "2024-1"): ("accepted", "late.csv"), ("AJC", "2024-1"): ("accepted", "not_participating.csv"),
    ("CMC", feedback.NO_TERM): ("rejected", None),
}


def _corpus_warehouse(path: Path) -> None:
    con = db.connect(path)
    db.load_reference(con, REFERENCE)
    for i, (code, term, name, minutes, status, verdict, quarantined, warned, rule) in enumerate(CORPUS):
        received = datetime(2024, 10, 1).timestamp() + minutes * 60
        con.execute("""INSERT INTO ops.manifest (file_id, dataset, path, sha256, size_bytes, mtime, university_code, term,
                           received_at, format, rows_read, rows_loaded, rows_quarantined, rows_with_warnings, status,
                           reason, run_id, ingested_at, verdict, verdict_note, reason_rule_id)
                       VALUES (?, 'enrollment', ?, ?, 100, ?, ?, ?, to_timestamp(?)::TIMESTAMP, 'csv', 10, ?, ?, ?, ?, ?,
                               'r', now()::TIMESTAMP, ?, ?, ?)""",
                    [f"f{i}", f"enrollment/{code}/{term or 'x'}/{name}", f"sha{i}", received, code, term, received,
                     0 if status not in ("loaded", "superseded") else 10 - quarantined, quarantined, warned, status,
                     rule and f"reason of {rule}", verdict,
                     "ENR.file.rows_drop pending" if verdict == "accepted_with_warnings" else None, rule])
    db.build_marts(con)
    con.execute("CREATE TABLE marts.model_headline (scenario VARCHAR, dimension VARCHAR, category VARCHAR, "
                "target DOUBLE, p10 DOUBLE, p50 DOUBLE, p90 DOUBLE, probability_meeting_target DOUBLE, "
                "practice_ready_p50 DOUBLE)")
    db.build_marts(con, "views")
    con.close()


def _name(path: str | None) -> str | None:
    return path.rsplit("/", 1)[-1] if path else None


def _statuses_agree(data_dir: Path, code: str, other: str) -> dict:
    """Feedback, mart and portal for every university and term of the published snapshot: asserts
    they agree and returns (code, term) -> (status, file in use) as feedback says it."""
    snap = data_dir / "published" / "lab2fab.duckdb"
    con = duckdb.connect(str(snap), read_only=True)
    docs = feedback.build_feedback(con)
    mart = {(r[0], r[1]): r[2:] for r in con.execute(
        "SELECT university_code, term, submission_status, status_with_late, late, path, path_in_use "
        "FROM marts.submission_status").fetchall()}
    view = {(r[0], r[1]): r[2:] for r in con.execute(
        "SELECT university_code, term, submission_status, file, file_in_use FROM analytics.submissions").fetchall()}
    participating = {r[0] for r in con.execute("SELECT university_code FROM ref.universities WHERE participates").fetchall()}
    try:
        feedback.write_feedback(con, data_dir / "published" / "feedback")
    finally:
        con.close()

    for key, doc in docs.items():
        assert doc["status"] in SUBMISSION_STATUSES and doc["status"] in feedback.STATUS_TEXT, key
        written = json.loads((data_dir / "published" / "feedback" / key[0] / f"{key[1]}.json").read_text("utf-8"))
        assert written["status"] == doc["status"], key
        if key[0] in participating and key[1] != feedback.NO_TERM:
            status, with_late, late, path, in_use = mart[key]
            assert (doc["status"], doc["latest_file"]["path"]) == (status, path), key
            assert (doc["file_in_use"] or {}).get("path") == in_use, key
            assert view[key] == (status, path, in_use), key
    # every submission the mart has a file for is in the feedback: no office is left without word
    assert {k for k, v in mart.items() if v[0] != "missing"} <= set(docs)

    # the portal: the office's matrix page and its CSV export, and each university's own page
    add_users(data_dir, code, other)
    from portal.app import create_app

    app = create_app(data_dir)
    office = logged_in(app, "office")
    table = list(csv.DictReader(io.StringIO(office.get("/office/matrix.csv").content.decode("utf-8-sig"))))
    assert {(t["university_code"], t["term"]): (t["status"], t["file_in_use"] or None) for t in table} == \
        {k: (v[1], _name(v[4])) for k, v in mart.items()}
    page = office.get("/office").text
    cells = re.findall(r'<td class="[^"]*" data-status="([^"]+)"', page)
    assert sorted(cells) == sorted(v[1] for v in mart.values())
    for (c, term), doc in docs.items():
        if term == feedback.NO_TERM:
            continue
        shown = re.findall(r'data-term="([^"]+)" data-term-status="([^"]+)"', office.get(f"/u/{c}").text)
        assert (term, doc["status"]) in shown, (c, term, shown)
    return {k: (d["status"], (d["file_in_use"] or {}).get("file")) for k, d in docs.items()}


def test_the_sql_list_of_non_attempts_is_the_rule_catalogues():
    sql = (models.SQL_DIR / "intermediate" / "current_submissions.sql").read_text(encoding="utf-8")
    listed = set(re.findall(r"\('(ING\.[a-z_.]+)'\)", sql.split("files AS", 1)[0]))
    assert listed == {rule_id for rule_id, r in INGEST_RULES.items() if not r.attempt}


def test_feedback_portal_and_mart_agree_on_the_hard_cases(tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "published").mkdir(parents=True)
    _corpus_warehouse(data_dir / "published" / "lab2fab.duckdb")
    assert _statuses_agree(data_dir, "AGU", "AUV") == EXPECTED
    con = duckdb.connect(str(data_dir / "published" / "lab2fab.duckdb"), read_only=True)
    late = dict(((r[0], r[1]), r[2]) for r in con.execute(
        "SELECT university_code, term, status_with_late FROM marts.submission_status").fetchall())
    summary = dict(con.execute("SELECT university_code, terms_rejected FROM marts.university_summary").fetchall())
    con.close()
    assert late[("BDU", "2024-1")] == "late" and late[("BDU", "2024-2")] == "missing"
    assert late[("AGU", "2024-1")] == "rejected"  # the office must act, though first.csv's rows still count
    assert summary["AGU"] == 0 and summary["BAFU"] == 2  # a term is counted rejected only with no file in use
    doc = json.loads((data_dir / "published" / "feedback" / "AGU" / "2024-1.json").read_text("utf-8"))
    assert "'first.csv' stays in use" in doc["summary_en"] and doc["latest_file"]["file"] == "corrected.csv"
    assert doc["status_vi"] == "Bị từ chối"


def test_feedback_portal_and_mart_agree_on_a_demo_run(demo_run, tmp_path):
    source, _ = demo_run
    data_dir = tmp_path / "data"
    shutil.copytree(source / "published", data_dir / "published")
    codes = sorted({p.name for p in (data_dir / "published" / "feedback").iterdir() if p.is_dir()})
    seen = _statuses_agree(data_dir, codes[0], codes[1])
    assert len(seen) > 10 and {s for s, _ in seen.values()} >= {"accepted", "rejected"}
