"""Validation at national scale (issue 8): the bounded-memory history and the narrower GX frames
give exactly the results of the full history and the whole frame — real DuckDB, real GX.

* ``History(ordered=True)`` (what the pipeline uses) keeps each student's latest earlier row and
  each university's latest earlier file instead of every earlier row; it is compared with
  ``History(ordered=False)``, which keeps every earlier row and ASOF-joins each batch against it.
* ``expectations.validate`` hands GX only the columns the suite names; it is compared with GX
  run over the whole frame.
"""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from transforms.contract import suites as contract
from transforms.ingest import stage as ing
from transforms.contract import checks
from transforms.warehouse import db as warehouse
from transforms.contract.suites import ContractReference

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "data" / "reference"
SCHEMA = (REPO / "transforms" / "sql" / "schema.sql").read_text()
REF = ContractReference.from_dir(REFERENCE)
SUITES = checks.Suites.build("enrollment", REF)
KEY = b"test-key-not-secret"


# ------------------------------------------------------------------------------ canonical frames

def canon(students: dict, *, file_id: str, uni: str, term: str) -> pd.DataFrame:
    """Rows as ingest stages them; `students` maps a key to overrides of a plain studying row."""
    rows = []
    for i, (k, values) in enumerate(students.items()):
        row = {"file_id": file_id, "university_code": uni, "term": term, "line": i + 2, "student_key": k,
               "gender": "MF"[i % 2], "programme_code": "7520207", "degree_level": "bachelor", "intake_year": 2021,
               "study_year": 2, "status": "studying", "gpa": 3.0, "birth_year": 2003, "term_year": int(term[:4])}
        row.update(values)
        row["degree_years"] = contract.DEGREE_YEARS.get(row["degree_level"])
        rows.append(row)
    cols = ["file_id", "university_code", "term", "line", "student_key", "gender", "programme_code", "degree_level",
            "intake_year", "study_year", "status", "gpa", "birth_year", "term_year", "degree_years"]
    return pd.DataFrame(rows, columns=cols).astype({"line": "int64", "gpa": "Float64", **dict.fromkeys(
        ["intake_year", "study_year", "birth_year", "term_year", "degree_years"], "Int64")})


def cohort(n: int, prefix: str = "s", **values) -> dict:
    return {f"{prefix}{i:03d}": dict(values) for i in range(n)}


def warehouse_with(files: list[tuple[pd.DataFrame, float]]) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse whose loaded submissions are `files` (frame, mtime)."""
    con = duckdb.connect()
    con.execute(SCHEMA)
    for f, mtime in files:
        first = f.iloc[0]
        con.execute("""INSERT INTO ops.manifest (file_id, dataset, path, size_bytes, mtime, university_code, term,
                       received_at, rows_read, rows_loaded, rows_quarantined, rows_with_warnings, status, run_id, ingested_at)
                       VALUES (?, 'enrollment', ?, 1, ?, ?, ?, now(), ?, ?, 0, 0, 'loaded', 'r0', now())""",
                    [first["file_id"], f"{first['file_id']}.csv", mtime, first["university_code"], first["term"],
                     len(f), len(f)])
        con.register("rows", f.drop(columns=["term_year", "degree_years"]))
        con.execute("INSERT INTO staging.enrollment BY NAME SELECT * FROM rows")
        con.unregister("rows")
    return con


def _wh_files():
    """Earlier terms in the warehouse: two universities, a superseded copy, a later (late-loaded) term."""
    h21 = cohort(60) | cohort(10, "g", study_year=4, intake_year=2018) | cohort(5, "d")
    h22 = (cohort(60, study_year=3) | cohort(10, "g", status="graduated", study_year=4, intake_year=2018)
           | cohort(5, "d", status="dropped_out") | cohort(8, "skip"))
    h22_old = cohort(40, status="on_leave")  # an older upload for the same term: superseded
    p21 = cohort(30, "p") | cohort(4, "pg", status="graduated", study_year=4, intake_year=2018)
    later = cohort(50, study_year=5)  # a term after the run's terms, loaded already
    return [(canon(h21, file_id="w-h21", uni="HUST", term="2021-2"), 1.0),
            (canon(h22_old, file_id="w-h22-old", uni="HUST", term="2022-1"), 2.0),
            (canon(h22, file_id="w-h22", uni="HUST", term="2022-1"), 3.0),
            (canon(p21, file_id="w-p21", uni="PTIT", term="2021-2"), 4.0),
            (canon(later, file_id="w-h24", uni="HUST", term="2024-1"), 5.0)]


def _run_batches() -> list[list[tuple[pd.DataFrame, str]]]:
    """This run's batches, terms in order (as validate_staged forms them): [(frame, path)] per batch."""
    h22b = (cohort(55, study_year=3) | cohort(3, "g", status="studying", study_year=4, intake_year=2018)  # after graduation
            | cohort(5, "d", status="studying") | cohort(6, "new", intake_year=2022, study_year=1))  # readmitted
    h23a = cohort(50, study_year=2) | cohort(8, "skip", study_year=4)  # study year down; back after a gap
    p23 = cohort(28, "p", programme_code="7480201") | cohort(4, "pg", status="studying")  # a programme change
    bad = cohort(20, "x", gpa=9.0)  # every row breaks an error rule: rejected, never history
    h23b = cohort(45, study_year=4, intake_year=2020) | cohort(6, "new", intake_year=2022, study_year=2)
    p23b = cohort(26, "p", programme_code="7480201", status="on_leave")
    return [
        [(canon(h22b, file_id="r-h22", uni="HUST", term="2022-2"), "h22.csv")],
        # two batches of one term
        [(canon(h23a, file_id="r-h23", uni="HUST", term="2023-1"), "h23.csv")],
        [(canon(p23, file_id="r-p23", uni="PTIT", term="2023-1"), "p23.csv"),
         (canon(bad, file_id="r-bad", uni="VNU", term="2023-1"), "bad.csv")],
        [(canon(h23b, file_id="r-h23b", uni="HUST", term="2023-2"), "h23b.csv"),
         (canon(p23b, file_id="r-p23b", uni="PTIT", term="2023-2"), "p23b.csv")],
        # a backfill takes a warehouse file again (same file_id): the run's copy replaces it
        [(canon(cohort(70, study_year=5), file_id="w-h24", uni="HUST", term="2024-1"), "h24.csv")],
    ]


def _outcomes(ordered: bool) -> list[checks.BatchOutcome]:
    con = warehouse_with(_wh_files())
    out, row_id = [], 0
    with checks.History(con, universities=["HUST", "PTIT", "VNU"], ordered=ordered) as history:
        for i, batch in enumerate(_run_batches()):
            frame = pd.concat([f for f, _ in batch], ignore_index=True)
            frame.insert(0, "row_id", range(row_id, row_id + len(frame)))
            row_id += len(frame)
            files = checks.files_frame({"file_id": f["file_id"].iloc[0], "university_code": f["university_code"].iloc[0],
                                        "term": f["term"].iloc[0], "rows": len(f), "mtime": 10.0 + i, "path": p}
                                       for f, p in batch)
            outcome = checks.check_batch(frame, files, SUITES, history)
            history.add(outcome, files)
            out.append(outcome)
    con.close()
    return out


def test_ordered_history_judges_every_batch_like_the_full_history():
    full, ordered = _outcomes(False), _outcomes(True)
    fired = set()
    for a, b in zip(full, ordered, strict=True):
        pd.testing.assert_frame_equal(a.frame, b.frame)  # prev_* of every row
        pd.testing.assert_frame_equal(a.row_failures, b.row_failures)
        pd.testing.assert_frame_equal(a.report.rules, b.report.rules)
        pd.testing.assert_frame_equal(a.summary, b.summary)
        pd.testing.assert_frame_equal(a.file_results, b.file_results)
        pd.testing.assert_frame_equal(a.verdicts, b.verdicts)
        fired |= set(a.row_failures["rule_id"]) | set(a.file_results.loc[~a.file_results["success"], "rule_id"])
    # The scenario exercises the history: transitions, baselines and a skipped term.
    assert {"ENR.status.after_graduation", "ENR.status.readmitted", "ENR.study_year.not_decreasing",
            "ENR.file.mostly_invalid"} <= fired
    assert fired & {"ENR.file.rows_drop", "ENR.file.rows_growth", "ENR.file.status_shares",
                    "ENR.file.programme_shares", "ENR.file.unaccounted_students"}
    prev = pd.concat([o.frame for o in full])
    assert prev["prev_term"].notna().any()
    assert (prev.loc[prev["student_key"].str.startswith("skip") & (prev["term"] == "2023-1"), "prev_term"] == "2022-1").all()


def test_ordered_history_refuses_to_go_back_a_term():
    con = warehouse_with(_wh_files())
    with checks.History(con, universities=["HUST"], ordered=True) as history:
        history.enrich(pd.concat([canon(cohort(3), file_id="a", uni="HUST", term="2023-2")]).assign(row_id=range(3)))
        with pytest.raises(ValueError, match="ordered history"):
            history.enrich(canon(cohort(3), file_id="b", uni="HUST", term="2023-1").assign(row_id=range(3)))
        with pytest.raises(ValueError, match="one term per batch"):
            history.enrich(pd.concat([canon(cohort(2), file_id="c", uni="HUST", term="2024-1"),
                                      canon(cohort(2, "z"), file_id="d", uni="HUST", term="2024-2")],
                                     ignore_index=True).assign(row_id=range(4)))
    con.close()


# ------------------------------------------------------------------------------ end to end

def _gx_json(folder: Path) -> dict:
    """GX results as saved for Data Docs, without what differs per call (ids, times, batch markers)."""
    volatile = {"run_id", "validation_time", "batch_id", "active_batch_definition", "batch_spec", "batch_markers",
                "validation_id", "checkpoint_id", "id"}

    def norm(d):
        if isinstance(d, dict):
            return {k: norm(v) for k, v in d.items() if k not in volatile}
        return [norm(v) for v in d] if isinstance(d, list) else d
    return {p.name: norm(json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))}


def _assert_same_parquet(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.glob("*.parquet"))
    assert names == sorted(p.name for p in b.glob("*.parquet")) and names
    for name in names:
        pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name), obj=name)


def _assert_same_outputs(a: Path, b: Path) -> None:
    _assert_same_parquet(a, b)
    ga, gb = _gx_json(a / "gx_results"), _gx_json(b / "gx_results")
    assert list(ga) == list(gb) and ga
    for name in ga:
        assert ga[name] == gb[name], name


@pytest.fixture(scope="module")
def staged_demo(small_demo, tmp_path_factory):
    from transforms.ingest import landing

    data_dir, _ = small_demo
    work = tmp_path_factory.mktemp("staged")
    files = ing.new_files(landing.scan(data_dir / "landing"), ing.KnownFiles({}, {}))
    subs = ing.stage_submissions(files, ing.KnownFiles({}, {}), work, key=KEY, reference_dir=REFERENCE)
    assert sum(s.status == "staged" for s in subs) > 20
    return subs


def _validate(subs, out: Path, wh: Path, ordered: bool) -> None:
    out.mkdir(parents=True)
    con = warehouse.connect(wh)
    try:
        ing.validate_staged(subs, out, REF, con=con, ordered_history=ordered)
    finally:
        con.close()


@pytest.mark.parametrize("batch_rows", [ing.VALIDATION_BATCH_ROWS, 700])
def test_validate_staged_gives_the_full_history_results_into_an_empty_warehouse(staged_demo, tmp_path, monkeypatch,
                                                                                 batch_rows):
    monkeypatch.setattr(ing, "VALIDATION_BATCH_ROWS", batch_rows)  # 700: several batches per term
    for ordered in (False, True):
        _validate(staged_demo, tmp_path / f"out-{ordered}", tmp_path / f"wh-{ordered}.duckdb", ordered)
    _assert_same_outputs(tmp_path / "out-False", tmp_path / "out-True")
    issues = pd.read_parquet(tmp_path / "out-True" / "issues_enrollment.parquet")
    assert len(issues) > 0


def _first_terms_loaded(subs, tmp_path: Path) -> tuple[Path, list]:
    """A warehouse holding the first two terms of `subs` (validated and loaded), and the later terms' submissions."""
    terms = sorted({s.landed.term for s in subs if s.landed.term})
    first = [s for s in subs if s.landed.term in terms[:2]]
    base = tmp_path / "base.duckdb"
    _validate(first, tmp_path / "base", base, True)
    con = warehouse.connect(base)
    try:
        ing.load_batch(con, first, tmp_path / "base", "r-base")
    finally:
        con.close()
    return base, [s for s in subs if s.landed.term not in terms[:2]]


def test_validate_staged_gives_the_full_history_results_over_a_loaded_warehouse(staged_demo, tmp_path):
    base, later = _first_terms_loaded(staged_demo, tmp_path)
    # an incremental run (later terms), and a backfill taking every file again over the warehouse
    for name, subs in (("incremental", later), ("backfill", staged_demo)):
        for ordered in (False, True):
            wh = tmp_path / f"{name}-{ordered}.duckdb"
            wh.write_bytes(base.read_bytes())
            _validate(subs, tmp_path / f"{name}-{ordered}", wh, ordered)
        _assert_same_outputs(tmp_path / f"{name}-False", tmp_path / f"{name}-True")


def test_validation_in_parts_by_university_writes_what_one_process_writes(staged_demo, tmp_path, monkeypatch):
    """transforms/ingest/validate.py: the staged files split by university, each part in its own process
    (spawned, its own read-only connection), give the issues, results and verdicts of one process, in the
    same order, over a warehouse holding the first terms: the later terms' history comes from the
    warehouse for the first of them and from the run itself for the next."""
    from transforms.ingest import validate as parts

    workers = 2
    # Several batches a term in this process; the spawned part keeps the default (one a term): the
    # outputs must not depend on the batches either.
    monkeypatch.setattr(ing, "VALIDATION_BATCH_ROWS", 700)
    base, later = _first_terms_loaded(staged_demo, tmp_path)
    assert len(parts.split_by_university(later, workers)) == workers
    for n in (1, workers):
        out, db = tmp_path / f"run-{n}", tmp_path / f"run-{n}.duckdb"
        out.mkdir()
        db.write_bytes(base.read_bytes())
        counts = parts.validate(later, out, REF, db, workers=n)
        assert counts["enrollment"] == len(pd.read_parquet(out / "issues_enrollment.parquet"))
    assert not list((tmp_path / "run-2").glob("validate-part-*"))           # the parts' folders are merged away
    assert {p.name.split("-")[1] for p in (tmp_path / "run-2" / "gx_results").glob("enrollment-p*.json")} == {"p0", "p1"}
    _assert_same_parquet(tmp_path / "run-1", tmp_path / "run-2")
    issues = pd.read_parquet(tmp_path / "run-1" / "issues_enrollment.parquet")
    assert issues["university_code"].nunique() > 1


def test_validation_parts_pay_only_on_large_work(staged_demo):
    from transforms.ingest import validate as parts

    for n in (2, 3):   # whole universities, every staged file once, each part in the run's order
        split = parts.split_by_university(staged_demo, n)
        assert len(split) == n
        assert sorted(id(s) for g in split for s in g) == sorted(id(s) for s in staged_demo if s.status == "staged")
        owners = [{s.landed.university_code for s in g} for g in split]
        assert all(not (a & b) for i, a in enumerate(owners) for b in owners[i + 1:])
        for g in split:
            assert [staged_demo.index(s) for s in g] == sorted(staged_demo.index(s) for s in g)

    assert parts.part_count(staged_demo) == 1                       # a small collection: one process
    big = [ing.Submission(s.landed, s.status, rows_read=parts.PARALLEL_MIN_ROWS) for s in staged_demo]
    universities = len({s.landed.university_code for s in staged_demo if s.status == "staged"})
    import os
    assert parts.part_count(big) == max(1, min(os.cpu_count() or 1, parts.MAX_PARTS, universities))
    assert parts.part_count(staged_demo, workers=99) == universities   # never more parts than universities


# ------------------------------------------------------------------------------ GX frames

def test_gx_is_handed_only_the_suite_columns_with_the_same_result():
    frame = pd.concat([canon(cohort(40), file_id="a", uni="HUST", term="2023-1"),
                       canon(cohort(10, "e", gpa=7.5, study_year=9, gender=None), file_id="a", uni="HUST", term="2023-1"),
                       canon(cohort(5, "f", status="graduated", programme_code="9999999"), file_id="b", uni="XX",
                             term="2023-1")], ignore_index=True)
    frame.insert(0, "row_id", range(len(frame)))
    frame["raw_gender"] = "Nam"  # staged columns no rule reads
    frame["person_key"] = "p"
    narrow = contract.validate(frame, SUITES.row)
    assert set(contract.suite_columns(SUITES.row, "row_id")) == set(contract.ENROLLMENT_COLUMNS)
    # GX over the whole frame, as before
    whole = contract._with_required_columns(frame, SUITES.row, "row_id")
    assert "raw_gender" in whole
    with contract._LOCK:
        batch = contract._batch_definition().get_batch(batch_parameters={"dataframe": whole})
        result = batch.validate(SUITES.row, result_format=contract.result_format("row_id"))
    strip = lambda r: {k: v for k, v in r.to_json_dict().items() if k not in ("meta", "id")}  # noqa: E731
    assert [strip(r) for r in narrow.gx_result.results] == [strip(r) for r in result.results]
    assert narrow.gx_result.statistics == result.statistics
    assert len(narrow.row_failures) > 10


@pytest.mark.parametrize("seed", range(4))
def test_reading_a_batch_of_staged_files_equals_reading_each(tmp_path, seed):
    """checks.read_staged: one Arrow read of files of one schema, or file by file when their schemas
    differ, gives what pandas reading each file and concatenating gives (generated files)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(int(rng.integers(1, 6))):
        n = int(rng.integers(0, 50))
        frame = pd.DataFrame({"file_id": [f"f{i}"] * n, "line": np.arange(2, n + 2),
                              "gpa": rng.uniform(0, 4, n).round(2), "status": rng.choice(["studying", "graduated"], n)})
        if seed % 2 and i % 2:  # another schema: a column more, one typed differently
            frame["note"] = "x"
            frame["line"] = frame["line"].astype("float64")
        paths.append(tmp_path / f"{i}.parquet")
        frame.to_parquet(paths[-1], index=False)
    expected = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    pd.testing.assert_frame_equal(checks.read_staged(paths), expected)
