"""Nothing personal leaves the landing step, whatever a university's file holds (issue 13 items 1 and 6).

Unit properties of the content screen (transforms/contract/privacy.py) and of the safe outputs
(transforms/publish/safe_csv.py, feedback Markdown, GX Data Docs), then the whole pipeline on the
hostile corpus of tests/hostile_corpus.py: `lab2fab run` in its own process, then a scan of every
output for every planted name, national id and birth date, in NFC and NFD forms.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import hostile_corpus as H
from transforms.contract.privacy import mask_json, mask_text, mask_value
from transforms.publish import feedback, safe_csv

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ the screen

@pytest.mark.parametrize("value,label", [
    ("Nguyễn Văn An", "[name]"), (unicodedata.normalize("NFD", "Trần Thị Bích Ngọc"), "[name]"),
    ("NGUYEN VAN AN", "[name]"), ("nguyen van an", "[name]"), ("An Nguyễn", "[name]"), ("Nguyễn Văn", "[name]"),
    ("Nguyễn", "[name]"), ("012345678901", "[national_id]"), ("123456789", "[national_id]"),
    ("012 345 678 901", "[national_id]"), ("0\u200b12345678901", "[national_id]"),
    ("０１２３４５６７８９０１", "[national_id]"), ("12345678901", "[id_number]"), ("1.23456789012E+11", "[id_number]"),
    ("B21DCCN123", "[student_number]"), ("202100123", "[national_id]"), ("17/05/2003", "[date]"),
    ("2003-05-17", "[date]"), ("17.5.03", "[date]"), ("17 May 2003", "[date]"), ("May 17, 2003", "[date]"),
    ("17 tháng 5 năm 2003", "[date]"), ("20030517", "[date]"), ("37758", "[date]"),
    ("an.nguyen@hust.edu.vn", "[email]"), ("0912 345 678", "[phone]"), ("+84 912 345 678", "[phone]"),
    ("024 3869 2222", "[phone]"),
])
def test_personal_data_is_masked_by_its_content(value, label):
    assert mask_value(value) == label


@pytest.mark.parametrize("value", ["Nam", "Nữ", "Male", "7520207", "7520207CLC", "2025H1", "K66", "QH-2021", "2021-2025",
                                   "2021.0", "3.2999999999999998", "8.2/10", "3,25", "Cử nhân", "Bảo lưu", "Đang học",
                                   "Họ và tên", "Ghi chú", "Số CCCD", "HUST", "KR-NNFC", "fabrication", "<script>",
                                   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "12 of 340 rows"])
def test_the_programmes_own_values_are_kept(value):
    assert mask_value(value) == value


def test_texts_keep_their_words_and_lose_the_values():
    reason = "x.csv: missing required column(s) status; header row 3 has 'Mã sinh viên', 'Nguyễn Văn', '123456789'."
    assert mask_text(reason) == ("x.csv: missing required column(s) status; header row 3 has 'Mã sinh viên', "
                                 "'[name]', '[national_id]'.")
    assert mask_text("gender=17/05/2003; programme_code=012345678901") == "gender=[date]; programme_code=[national_id]"
    assert mask_json({"gender": "Trần Văn Bình", "intake_year": "2021", "n": 3}) == \
        {"gender": "[name]", "intake_year": "2021", "n": 3}


# ------------------------------------------------------------------ outputs safe to open

def test_csv_cells_are_neutralised_and_numbers_stay_numbers():
    got = safe_csv.neutralise_row(["=1+1", "+84 912", "-5", "+3.5", "-1e3", "-2+3", "@SUM(A1)", "\t=x", "\rx", "Nam",
                                   "", 3, -2.5, None])
    assert got == ["'=1+1", "'+84 912", "-5", "+3.5", "-1e3", "'-2+3", "'@SUM(A1)", "'\t=x", "'\rx", "Nam", "", 3,
                   -2.5, None]
    frame = safe_csv.neutralise_frame(pd.DataFrame({"a": ["=x", "y"], "n": [-1, 2]}))
    assert frame["a"].tolist() == ["'=x", "y"] and frame["n"].tolist() == [-1, 2]
    assert feedback.neutralise is safe_csv.neutralise  # one definition


def test_feedback_markdown_escapes_university_strings():
    doc = {"university_code": "HUST", "term": "2024-1", "status": "accepted_with_warnings",
           "status_en": "Accepted with warnings", "status_vi": "Đã chấp nhận, có cảnh báo",
           "summary_en": "Accepted: '<img src=x onerror=alert(1)>.csv'", "summary_vi": "x",
           "files": [{"file": "<b>x</b>.csv", "received_at": None, "status": "loaded", "rows_read": 1,
                      "rows_loaded": 1, "rows_quarantined": 0}],
           "reasons": [{"file": "x.csv", "line": 2, "field": "programme_code", "rule_id": "ENR.programme_code.catalogue",
                        "severity": "error", "message_en": "m", "message_vi": "m", "observed": "<script>alert(1)</script>",
                        "original_values": {"programme_code": "[x](javascript:alert(1))"}}]}
    md = feedback.render_markdown(doc)
    assert "<script" not in md and "<img" not in md and "<b>" not in md
    assert not re.search(r"(?<!\\)\]\(", md)  # no link: the brackets are escaped
    assert "&lt;script&gt;" in md and "| 2 | programme\\_code |" in md


# ------------------------------------------------------------------ the hostile corpus, end to end

def _run(data: Path, prefect_home: Path, *args: str, name: str) -> tuple[int, Path, Path]:
    out, err = data.parent / f"{name}.stdout", data.parent / f"{name}.stderr"
    # the machine may be busy: give the ephemeral Prefect server time to start
    env = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300", **os.environ, "PREFECT_HOME": str(prefect_home)}
    with open(out, "w") as o, open(err, "w") as e:
        p = subprocess.run([sys.executable, "-m", "flows.cli", "--data-dir", str(data), *args], env=env, stdout=o,
                           stderr=e, cwd=REPO, timeout=900)
    return p.returncode, out, err


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    data, prefect_home = root / "data", root / "prefect"
    planted = H.write_corpus(data / "landing")
    rc, out, err = _run(data, prefect_home, "run", name="run")
    assert rc == 0, out.read_text()[-3000:] + err.read_text()[-3000:]
    logs = [out, err]
    queries = ["SELECT * FROM ops.quarantine", "SELECT * FROM ops.manifest", "SELECT * FROM ops.validation_results",
               "SELECT * FROM analytics.quarantine_by_rule"]
    # four read-only `lab2fab query` processes on the snapshot, side by side rather than one after another
    with ThreadPoolExecutor(len(queries)) as pool:
        done = list(pool.map(lambda q: _run(data, prefect_home, "query", q[1], "--csv", name=f"query-{q[0]}"),
                             enumerate(queries)))
    for rc, q_out, q_err in done:
        assert rc == 0, q_err.read_text()
        logs += [q_out, q_err]
    return data, prefect_home, logs, planted


@pytest.mark.slow
def test_nothing_planted_is_found_in_anything_the_run_leaves(hostile_run):
    """Warehouse and snapshot (every table of every schema), Parquet, data/published (report, feedback,
    Data Docs, dictionary) and data/history, the Prefect database (every table), the run's stdout and
    stderr, and `lab2fab query ... --csv`: no planted name, national id or birth date, NFC or NFD."""
    data, prefect_home, logs, planted = hostile_run
    pii = planted.as_pii()
    detect = H.Detector(pii)
    # The detector finds them where they are: in the files as sent.
    sent = "\n".join(p.read_bytes().decode("utf-8", errors="replace") for p in (data / "landing").rglob("*.csv"))
    assert {kind for kind, _ in detect(sent)} == {"full_name", "national_id", "birth_date"}
    assert len(detect(sent)) > 50
    scanned, leaks = [], []
    for where, text in H.texts(data, prefect_home, logs):
        scanned.append(where)
        leaks += [(where, *hit) for hit in detect(text)]
    assert not leaks, leaks[:20]
    for expected in ("warehouse/lab2fab.duckdb", "published/lab2fab.duckdb", ".parquet", "report.html", "feedback",
                     "data_docs", "history/", "prefect.db:artifact", "prefect.db:log", "run.stdout", "run.stderr",
                     "query-0.stdout"):
        assert any(expected in w for w in scanned), f"nothing scanned for {expected}"


@pytest.mark.slow
def test_the_office_still_learns_line_field_and_rule(hostile_run):
    data, *_ = hostile_run
    con = duckdb.connect(str(data / "published" / "lab2fab.duckdb"), read_only=True)
    try:
        issues = con.execute("""SELECT m.university_code, i.line, i.field, i.rule_id, i.observed, i.original_values
                                FROM ops.row_issues i JOIN ops.manifest m USING (file_id)""").df()
        manifest = con.execute("SELECT university_code, status, rows_read, rows_loaded, rows_quarantined, reason "
                               "FROM ops.manifest").df()
    finally:
        con.close()
    agu = issues[(issues.university_code == "AGU") & (issues.rule_id == "ENR.programme_code.catalogue")]
    assert sorted(agu["line"]) == [3, 4, 6] and set(agu["observed"]) == {"[national_id]", "[id_number]"}
    assert set(agu["field"]) == {"programme_code"}
    bvu = issues[issues.university_code == "BVU"]
    assert {"ENR.student_id.unreadable", "ENR.national_id.unreadable", "ENR.student_key.unique"} <= set(bvu.rule_id)
    # the same student spelled twice is one student (a duplicate once canonical), lines 2 and 3
    assert sorted(bvu.loc[bvu.rule_id == "ENR.student_key.unique", "line"]) == [2, 3]
    # every file is accounted for: refused with its reason, or rows read = loaded + quarantined
    for r in manifest.itertuples():
        assert (r.status == "rejected" and r.reason) or r.rows_read == r.rows_loaded + r.rows_quarantined, r
    cmc = manifest[manifest.university_code == "CMC"].iloc[0]
    assert cmc.status == "rejected" and "missing required column" in cmc.reason and "[name]" in cmc.reason


@pytest.mark.slow
def test_data_docs_and_feedback_are_safe_to_open(hostile_run):
    data, *_ = hostile_run
    published = data / "published"
    for page in (published / "data_docs").rglob("*.html"):
        assert "<script>alert(" not in page.read_text(encoding="utf-8"), page
    assert any("&lt;script&gt;alert(" in p.read_text(encoding="utf-8") for p in (published / "data_docs").rglob("*.html"))
    md = (published / "feedback" / "BUV" / f"{H.TERM}.md").read_text(encoding="utf-8")
    assert "<script" not in md and "&lt;script&gt;" in md
    for path in (published / "feedback").rglob("*.csv"):
        for cell in (c for row in csv.reader(path.read_text(encoding="utf-8-sig").splitlines()) for c in row):
            assert not cell.startswith(safe_csv.FORMULA_START) or safe_csv._PLAIN_NUMBER.fullmatch(cell), (path, cell)
    doc = json.loads((published / "feedback" / "BUV" / f"{H.TERM}.json").read_text(encoding="utf-8"))
    gender = next(r for r in doc["reasons"] if r["line"] == 3 and r["field"] == "gender")
    assert gender["rule_id"] == "ENR.gender.present" and gender["original_values"]["gender"].startswith("'=")
