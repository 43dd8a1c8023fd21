"""The data-contract suites, run through real Great Expectations (no mocks)."""

import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from transforms.contract.suites import (
    DEGREE_YEARS,
    DERIVED_COLUMNS,
    ENROLLMENT_COLUMNS,
    ERROR,
    LOAD,
    PLACEMENT_COLUMNS,
    RULES,
    WARNING,
    ContractReference,
    build_enrollment_summary_suite,
    build_enrollment_suite,
    build_placement_summary_suite,
    build_placement_suite,
    build_reference_suites,
    rules_table,
    validate,
)

REF = ContractReference(
    university_codes={"BKA", "QHI"},
    programme_codes={"7520207", "7480201"},
    host_codes={"SKH", "SAMSUNG"},
)
ENR_INT = ["intake_year", "study_year", "birth_year", "term_year", "degree_years", "prev_study_year",
           "prev_intake_year"]
ENR_STR = ["file_id", "university_code", "term", "student_key", "gender", "programme_code",
           "degree_level", "status", "prev_term", "prev_status"]


@pytest.fixture(scope="module")
def enr_suite():
    return build_enrollment_suite(REF)


@pytest.fixture(scope="module")
def plc_suite():
    return build_placement_suite(REF)


def enrollment_frame(n=4, changes=None, start=100):
    """n clean rows (row_id start, start+1, ...); `changes` maps row_id -> {column: value}."""
    rows = []
    for i in range(n):
        intake = 2021 + i % 4
        rows.append({
            "row_id": start + i, "file_id": "f1", "university_code": "BKA", "term": "2024-1",
            "line": i + 2, "student_key": f"{i:064x}", "gender": "MF"[i % 2],
            "programme_code": "7520207", "degree_level": "bachelor", "intake_year": intake,
            "study_year": 2024 - intake + 1, "status": "studying", "gpa": 3.1,
            "birth_year": intake - 18, "term_year": 2024,
        })
    for row in rows:
        row.update((changes or {}).get(row["row_id"], {}))
        row.setdefault("degree_years", DEGREE_YEARS.get(row["degree_level"]))
    df = pd.DataFrame(rows, columns=[c for c in ENROLLMENT_COLUMNS if c not in DERIVED_COLUMNS])
    return df.astype({"row_id": "int64", "line": "int64", "gpa": "Float64",
                      **{c: "Int64" for c in ENR_INT}, **{c: "str" for c in ENR_STR}})


def placement_frame(n=4, changes=None, start=100):
    rows = []
    for i in range(n):
        completed = i % 2 == 0
        rows.append({
            "row_id": start + i, "file_id": "p1", "round": "2025H2", "line": i + 2,
            "university_code": "BKA", "student_key": f"{i:064x}", "host_code": "SKH",
            "track": "design", "outcome": "completed" if completed else "withdrew",
            "semiconductor_job": "yes" if completed else None,
        })
    for row in rows:
        row.update((changes or {}).get(row["row_id"], {}))
    return pd.DataFrame(rows, columns=PLACEMENT_COLUMNS).astype(
        {"row_id": "int64", "line": "int64",
         **{c: "str" for c in PLACEMENT_COLUMNS if c not in ("row_id", "line")}})


def failures(report):
    return sorted(zip(report.row_failures["row_id"], report.row_failures["rule_id"],
                      report.row_failures["severity"]))


def test_clean_frames_pass(enr_suite, plc_suite):
    for df, suite in ((enrollment_frame(8), enr_suite), (placement_frame(8), plc_suite)):
        report = validate(df, suite)
        assert report.success
        assert report.row_failures.empty
        assert report.rules["success"].all()
        assert len(report.rules) == len(suite.expectations)


ENROLLMENT_CASES = [
    ({"student_key": None}, "ENR.student_key.present"),
    ({"gender": None}, "ENR.gender.present"),
    ({"gender": "Q"}, "ENR.gender.recognised"),
    ({"programme_code": None}, "ENR.programme_code.present"),
    ({"programme_code": "9999999"}, "ENR.programme_code.catalogue"),
    ({"degree_level": None}, "ENR.degree_level.present"),
    ({"degree_level": "diploma"}, "ENR.degree_level.recognised"),
    ({"intake_year": None}, "ENR.intake_year.present"),
    ({"intake_year": 1985}, "ENR.intake_year.range"),
    ({"intake_year": 2025, "study_year": 1}, "ENR.intake_year.not_future"),
    ({"study_year": None}, "ENR.study_year.present"),
    ({"study_year": 0}, "ENR.study_year.range"),
    ({"study_year": 8, "intake_year": 2017}, "ENR.study_year.range"),
    ({"study_year": 3, "intake_year": 2023}, "ENR.study_year.since_intake"),
    ({"study_year": 7, "intake_year": 2017}, "ENR.study_year.long_running"),
    ({"study_year": 6, "intake_year": 2015}, "ENR.intake_year.max_duration"),
    ({"programme_code": "7480201", "degree_level": "master"}, "ENR.degree_level.programme_level"),
    ({"prev_term": "2023-2", "prev_status": "graduated"}, "ENR.status.after_graduation"),
    ({"prev_term": "2023-2", "prev_status": "dropped_out"}, "ENR.status.readmitted"),
    ({"prev_term": "2023-2", "prev_status": "transferred", "status": "on_leave"}, "ENR.status.readmitted"),
    ({"prev_term": "2023-2", "prev_status": "studying", "prev_study_year": 3, "study_year": 2, "intake_year": 2023}, "ENR.study_year.not_decreasing"),
    ({"prev_term": "2023-2", "prev_status": "studying", "prev_intake_year": 2020}, "ENR.intake_year.unchanged"),
    ({"status": None}, "ENR.status.present"),
    ({"status": "expelled"}, "ENR.status.recognised"),
    ({"gpa": 4.5}, "ENR.gpa.range"),
    ({"gpa": -0.1}, "ENR.gpa.range"),
    ({"birth_year": 2015}, "ENR.birth_year.plausible"),
    ({"birth_year": 1950}, "ENR.birth_year.plausible"),
    ({"university_code": "XXX"}, "ENR.university_code.registry"),
    ({"term": "2024-3"}, "ENR.term.format"),
]


@pytest.mark.parametrize("change,rule_id", ENROLLMENT_CASES, ids=[f"{r}:{c}" for c, r in ENROLLMENT_CASES])
def test_enrollment_rule_catches_exactly_the_bad_row(enr_suite, change, rule_id):
    report = validate(enrollment_frame(6, {102: change}), enr_suite)
    severity = RULES[rule_id].severity
    assert failures(report) == [(102, rule_id, severity)]
    assert report.success == (severity == WARNING)
    row = report.row_failures.iloc[0]
    assert row["column"] == RULES[rule_id].column
    assert row["message_en"] and row["message_vi"]
    failed = report.rules.set_index("rule_id").loc[rule_id]
    assert not failed["success"] and failed["unexpected_count"] == 1


PLACEMENT_CASES = [
    ({"round": None}, "PLC.round.present"),
    ({"round": "2025H3"}, "PLC.round.format"),
    ({"round": "25H1"}, "PLC.round.format"),
    ({"university_code": None}, "PLC.university_code.present"),
    ({"university_code": "XXX"}, "PLC.university_code.registry"),
    ({"student_key": None}, "PLC.student_key.present"),
    ({"host_code": None}, "PLC.host_code.present"),
    ({"host_code": "NOPE"}, "PLC.host_code.registry"),
    ({"track": None}, "PLC.track.present"),
    ({"track": "fab"}, "PLC.track.valid"),
    ({"outcome": None}, "PLC.outcome.present"),
    ({"outcome": "failed"}, "PLC.outcome.valid"),
    ({"semiconductor_job": "maybe"}, "PLC.semiconductor_job.valid"),
    ({"outcome": "withdrew", "semiconductor_job": "no"}, "PLC.semiconductor_job.only_when_completed"),
]


@pytest.mark.parametrize("change,rule_id", PLACEMENT_CASES, ids=[f"{r}:{c}" for c, r in PLACEMENT_CASES])
def test_placement_rule_catches_exactly_the_bad_row(plc_suite, change, rule_id):
    report = validate(placement_frame(6, {102: change}), plc_suite)
    assert failures(report) == [(102, rule_id, RULES[rule_id].severity)]


def test_observed_value_is_reported(enr_suite):
    report = validate(enrollment_frame(4, {101: {"gpa": 4.5}, 102: {"intake_year": 2026, "study_year": 1}}), enr_suite)
    observed = dict(zip(report.row_failures["rule_id"], report.row_failures["observed"]))
    assert observed["ENR.gpa.range"] == "4.5"
    assert observed["ENR.intake_year.not_future"] == "term_year=2024; intake_year=2026"


def test_range_rules_judge_a_row_alike_whether_or_not_its_column_has_nulls(enr_suite):
    # Range rules run on NumPy numbers when a column allows it (no nulls in an integer column):
    # a null elsewhere in the column, which keeps pandas' nullable type, changes nothing for the other rows.
    bad = {101: {"gpa": 4.5, "study_year": 9}, 102: {"intake_year": 1985}, 103: {"birth_year": 2015}}
    with_nulls = {**bad, 104: dict.fromkeys(["gpa", "study_year", "intake_year", "birth_year"])}
    plain, nullable = (validate(enrollment_frame(6, c), enr_suite).row_failures for c in (bad, with_nulls))
    ranges = ["ENR.gpa.range", "ENR.study_year.range", "ENR.intake_year.range", "ENR.birth_year.plausible"]
    plain, nullable = (f[f["rule_id"].isin(ranges)].reset_index(drop=True) for f in (plain, nullable))
    assert list(zip(plain["row_id"], plain["rule_id"], plain["observed"])) == [
        (101, "ENR.gpa.range", "4.5"), (101, "ENR.study_year.range", "9"),
        (102, "ENR.intake_year.range", "1985"), (103, "ENR.birth_year.plausible", "age_at_term=9")]
    pd.testing.assert_frame_equal(plain, nullable)


def test_every_copy_of_a_duplicate_is_flagged(enr_suite, plc_suite):
    same = {"student_key": "ab" * 32}
    other_term = {**same, "term": "2023-2", "term_year": 2023, "intake_year": 2021, "study_year": 2}
    df = enrollment_frame(6, {100: same, 102: same, 104: same, 105: other_term})
    assert failures(validate(df, enr_suite)) == [(k, "ENR.student_key.unique", ERROR) for k in (100, 102, 104)]

    # A resubmission (another file for the same university and term) in the same batch is not a duplicate.
    df = enrollment_frame(6, {100: same, 102: {**same, "file_id": "resubmitted"}})
    assert failures(validate(df, enr_suite)) == []

    other_round = {**same, "round": "2026H1"}
    df = placement_frame(6, {101: same, 103: same, 105: other_round})
    assert failures(validate(df, plc_suite)) == [(k, "PLC.student.once_per_round", ERROR) for k in (101, 103)]


@pytest.mark.parametrize("text_dtype", ["str", "string"])  # NaN-backed and pd.NA-backed text
def test_nulls_are_reported_once_by_the_presence_rule(enr_suite, plc_suite, text_dtype):
    blank = dict.fromkeys(["student_key", "gender", "programme_code", "degree_level", "intake_year",
                           "study_year", "status", "gpa", "birth_year"])
    # Two rows without a student key are not "duplicates" of each other.
    df = enrollment_frame(4, {101: blank, 103: {"student_key": None}}).astype(dict.fromkeys(ENR_STR, text_dtype))
    report = validate(df, enr_suite)
    expected = [(101, f"ENR.{c}.present", ERROR) for c in
                ("degree_level", "gender", "intake_year", "programme_code", "status", "student_key", "study_year")]
    assert failures(report) == sorted(expected + [(103, "ENR.student_key.present", ERROR)])
    assert set(report.row_failures["observed"]) == {""}

    blank = dict.fromkeys(["round", "university_code", "student_key", "host_code", "track", "outcome",
                           "semiconductor_job"])
    df = placement_frame(4, {101: blank, 102: {"student_key": None}})
    report = validate(df.astype({c: text_dtype for c in df.columns if c not in ("row_id", "line")}), plc_suite)
    # Without its university a student number cannot be keyed: row 101 is not also told its number is missing.
    assert failures(report) == [(101, f"PLC.{c}.present", ERROR) for c in
                                ("host_code", "outcome", "round", "track", "university_code")] + [
                                (102, "PLC.student_key.present", ERROR)]


def test_warnings_do_not_block_and_errors_quarantine(enr_suite):
    report = validate(enrollment_frame(4, {100: {"birth_year": 2015}}), enr_suite)
    assert report.success and report.error_keys() == set()
    report = validate(enrollment_frame(4, {100: {"birth_year": 2015}, 103: {"gpa": 9.0}}), enr_suite)
    assert not report.success and report.error_keys() == {103}


def test_rule_metadata_travels_with_the_suite(enr_suite, plc_suite):
    suites = [enr_suite, plc_suite, build_enrollment_summary_suite(), build_placement_summary_suite(),
              *build_reference_suites(["KR-A"], ["KR-A|design"]).values()]
    for suite in suites:
        ids = [e.meta["rule_id"] for e in suite.expectations]
        assert len(ids) == len(set(ids))
        for e in suite.expectations:
            rule = RULES[e.meta["rule_id"]]
            assert e.meta["severity"] == rule.severity and e.meta["scope"] == rule.scope
            assert e.severity.value == ("critical" if rule.severity == ERROR else "warning")
            assert rule.rule_id in e.notes and rule.message_vi in e.notes  # what Data Docs shows
    # Every rule is a GX expectation, except the load's accounting (SQL in the load transaction).
    in_suites = {e.meta["rule_id"] for s in suites for e in s.expectations}
    assert in_suites == {r.rule_id for r in RULES.values() if r.scope != LOAD}
    assert {r.rule_id for r in RULES.values() if r.scope == LOAD} == {"ENR.totals.by_programme", "ENR.totals.by_status"}


def test_rule_table_is_well_formed():
    import re

    for r in RULES.values():
        assert re.fullmatch(r"(ENR|PLC|REF)\.[a-z_]+\.[a-z_]+", r.rule_id), r.rule_id
        assert r.severity in (ERROR, WARNING) and r.scope in ("row", "file", "load", "reference")
        assert r.message_en.endswith(".") and r.message_vi.endswith(".")
        assert r.message_en != r.message_vi
    table = rules_table()
    assert len(table) == len(RULES) and table["rule_id"].is_unique


def test_suites_can_be_rebuilt_from_other_reference_lists(enr_suite):
    df = enrollment_frame(3)
    assert validate(df, build_enrollment_suite(REF)).success
    narrow = ContractReference(REF.university_codes, {"7480201"}, REF.host_codes)
    report = validate(df, build_enrollment_suite(narrow))
    assert failures(report) == [(k, "ENR.programme_code.catalogue", ERROR) for k in (100, 101, 102)]
    assert validate(df, enr_suite).success


def test_concurrent_calls_each_get_their_own_result(enr_suite):
    # Prefect runs tasks in threads; the shared GX context must not mix up batches.
    frames = {k: enrollment_frame(5, {100 + k: {"gpa": 9.0}}) for k in range(5)}
    with ThreadPoolExecutor(4) as pool:
        reports = dict(zip(frames, pool.map(lambda df: validate(df, enr_suite), frames.values())))
    for k, report in reports.items():
        assert failures(report) == [(100 + k, "ENR.gpa.range", ERROR)]


def test_empty_frame_passes(enr_suite, plc_suite):
    assert validate(enrollment_frame(0), enr_suite).success
    assert validate(placement_frame(0), plc_suite).success


def test_derived_columns_are_computed_and_input_untouched(enr_suite):
    df = enrollment_frame(3)
    before = df.copy()
    validate(df, enr_suite)
    pd.testing.assert_frame_equal(df, before)


def test_bad_frames_are_refused(enr_suite):
    with pytest.raises(ValueError, match="status"):
        validate(enrollment_frame(3).drop(columns="status"), enr_suite)
    df = enrollment_frame(3)
    df.loc[1, "row_id"] = 100
    with pytest.raises(ValueError, match="unique"):
        validate(df, enr_suite)


def test_large_frame(enr_suite):
    n = 200_000
    df = enrollment_frame(n, {7: {"gpa": 7.5}, 150_001: {"gpa": 7.5}, 99_999: {"study_year": 0}}, start=0)
    started = time.perf_counter()
    report = validate(df, enr_suite)
    print(f"\nvalidated {n:,} rows in {time.perf_counter() - started:.2f}s")
    assert failures(report) == [(7, "ENR.gpa.range", ERROR), (99_999, "ENR.study_year.range", ERROR),
                                (150_001, "ENR.gpa.range", ERROR)]


def test_every_rule_is_in_the_documented_rule_list():
    """docs/CONTRACT_RULES.md lists every rule an office can be told about, contract and ingest alike."""
    from transforms.contract.rules import INGEST_RULES

    doc = (Path(__file__).resolve().parent.parent / "docs" / "CONTRACT_RULES.md").read_text()
    ids = [*RULES, *INGEST_RULES]
    assert [i for i in ids if f"`{i}`" not in doc] == []


def test_the_validation_memos_are_checked_against_the_pinned_gx():
    """transforms/contract/suites.py memoises two GX internals during a validation; they were checked
    (identical issues, verdicts and quarantine) on one GX version and stay off on any other."""
    import great_expectations
    from great_expectations.expectations.expectation import Expectation

    from transforms.contract import suites

    suites._gx()
    assert great_expectations.__version__ == suites.MEMO_GX_VERSION, (
        "GX was upgraded: check suites._install_validation_memos gives the same outputs, then set MEMO_GX_VERSION")
    assert getattr(Expectation, "_lab2fab_memo", False)
