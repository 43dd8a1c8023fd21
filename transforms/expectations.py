"""The lab2fab data contract (docs/DATA_CONTRACT.md) as Great Expectations 1.x suites.

Each rule has a stable ``rule_id``, a ``severity`` ("error": the row is quarantined;
"warning": reported only) and a one-line explanation for university officers in English and
Vietnamese.  All of it is stored in the expectation's ``meta``, so it travels with GX results.

Canonical enrollment frame (normalised by ingest before validation):
    row_id int64 unique | file_id str | university_code str | term str "YYYY-S" | line int
    student_key str|null (hex) | gender M/F/X|null | programme_code str|null
    degree_level bachelor/engineer/master/doctor|null | intake_year Int64 | study_year Int64
    status studying/graduated/dropped_out/on_leave/transferred|null | gpa Float64 (4-point)
    birth_year Int64 | term_year Int64 (year the term starts) | degree_years Int64 (4/5/2/4)
  derived (ingest may provide them; validate() computes any that are absent):
    years_since_intake = term_year - intake_year + 1
    study_year_limit   = degree_years + 2
    age_at_term        = term_year - birth_year
Canonical placement frame:
    row_id, file_id, round, line, university_code, student_key, host_code, track,
    outcome (completed/withdrew), semiconductor_job (yes/no/null)

Null handling: GX column-map expectations skip nulls, so a missing value is reported once, by
the column's ``.present`` rule; range/set rules only judge values that are there.  Pair and
compound rules are told to skip rows with a missing value for the same reason.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

# Before GX is imported: no analytics, and no DEBUG/INFO chatter from its import-time registries.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
logging.getLogger("great_expectations").setLevel(logging.WARNING)

import great_expectations as gx  # noqa: E402
import pandas as pd  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.expectations.row_conditions import Column  # noqa: E402

ERROR, WARNING = "error", "warning"
GENDERS = ("F", "M", "X")
DEGREE_YEARS = {"bachelor": 4, "engineer": 5, "master": 2, "doctor": 4}
STATUSES = ("dropped_out", "graduated", "on_leave", "studying", "transferred")
TRACKS = frozenset({"design", "fabrication", "packaging_testing", "equipment"})
OUTCOMES = ("completed", "withdrew")
JOB_ANSWERS = ("no", "yes")

ENROLLMENT_COLUMNS = (
    "row_id", "file_id", "university_code", "term", "line", "student_key", "gender",
    "programme_code", "degree_level", "intake_year", "study_year", "status", "gpa",
    "birth_year", "term_year", "degree_years", "years_since_intake", "study_year_limit",
    "age_at_term",
)
PLACEMENT_COLUMNS = (
    "row_id", "file_id", "round", "line", "university_code", "student_key", "host_code",
    "track", "outcome", "semiconductor_job",
)
# Derived enrollment columns: computed here when ingest did not provide them, so the
# definition lives in one place.
DERIVED_COLUMNS = {
    "years_since_intake": lambda d: d["term_year"] - d["intake_year"] + 1,
    "study_year_limit": lambda d: d["degree_years"] + 2,
    "age_at_term": lambda d: d["term_year"] - d["birth_year"],
}


@dataclass(frozen=True)
class Rule:
    rule_id: str
    severity: str  # ERROR quarantines the row, WARNING is reported only
    column: str  # the column an officer should look at in the submitted file
    message_en: str
    message_vi: str


_R = Rule
RULES: dict[str, Rule] = {r.rule_id: r for r in (
    # --- enrollment ---
    _R("ENR.university_code.registry", ERROR, "university_code", "University code is not in the university registry.", "Mã trường không có trong danh mục các trường."),
    _R("ENR.term.format", ERROR, "term", "Term must look like 2024-1 (start year, then semester 1 or 2).", "Học kỳ phải có dạng 2024-1 (năm bắt đầu, rồi học kỳ 1 hoặc 2)."),
    _R("ENR.student_key.present", ERROR, "student_key", "Student number is missing.", "Thiếu mã số sinh viên."),
    _R("ENR.student_key.unique", ERROR, "student_key", "The same student appears more than once in this submission.", "Một sinh viên xuất hiện nhiều lần trong cùng một tệp nộp."),
    _R("ENR.gender.present", ERROR, "gender", "Gender is missing or not recognised (use Nam/Nữ, Male/Female or M/F/X).", "Thiếu giới tính hoặc không nhận dạng được (dùng Nam/Nữ, Male/Female hoặc M/F/X)."),
    _R("ENR.gender.recognised", ERROR, "gender", "Gender must be M, F or X.", "Giới tính phải là M, F hoặc X."),
    _R("ENR.programme_code.present", ERROR, "programme_code", "Programme (major) code is missing.", "Thiếu mã ngành đào tạo."),
    _R("ENR.programme_code.catalogue", ERROR, "programme_code", "Programme code is not in the MOET programme catalogue.", "Mã ngành không có trong danh mục ngành của Bộ GD&ĐT."),
    _R("ENR.degree_level.present", ERROR, "degree_level", "Degree level is missing or not recognised.", "Thiếu trình độ đào tạo hoặc không nhận dạng được."),
    _R("ENR.degree_level.recognised", ERROR, "degree_level", "Degree level must be bachelor, engineer, master or doctor.", "Trình độ đào tạo phải là cử nhân, kỹ sư, thạc sĩ hoặc tiến sĩ."),
    _R("ENR.intake_year.present", ERROR, "intake_year", "Intake year is missing or could not be read.", "Thiếu năm nhập học hoặc không đọc được."),
    _R("ENR.intake_year.range", ERROR, "intake_year", "Intake year is earlier than 1990.", "Năm nhập học sớm hơn năm 1990."),
    _R("ENR.intake_year.not_future", ERROR, "intake_year", "Intake year is after the reported term; an intake cannot be in the future.", "Năm nhập học sau học kỳ báo cáo; không thể nhập học trong tương lai."),
    _R("ENR.study_year.present", ERROR, "study_year", "Year of study is missing.", "Thiếu thông tin sinh viên năm thứ mấy."),
    _R("ENR.study_year.range", ERROR, "study_year", "Year of study must be between 1 and 7.", "Sinh viên năm thứ phải từ 1 đến 7."),
    _R("ENR.study_year.since_intake", ERROR, "study_year", "Year of study is higher than the number of years since intake.", "Năm học cao hơn số năm kể từ khi nhập học."),
    _R("ENR.study_year.long_running", WARNING, "study_year", "Student is more than two years past the normal length of the degree.", "Sinh viên đã học quá thời gian chuẩn của chương trình hơn hai năm."),
    _R("ENR.status.present", ERROR, "status", "Study status is missing or not recognised.", "Thiếu tình trạng học tập hoặc không nhận dạng được."),
    _R("ENR.status.recognised", ERROR, "status", "Status must be studying, graduated, dropped out, on leave or transferred.", "Tình trạng phải là đang học, đã tốt nghiệp, thôi học, bảo lưu hoặc chuyển trường."),
    _R("ENR.gpa.range", ERROR, "gpa", "GPA is outside the 0–4 scale (0–10 before conversion).", "Điểm trung bình tích lũy nằm ngoài thang 0–4 (thang 0–10 trước khi quy đổi)."),
    _R("ENR.birth_year.plausible", WARNING, "birth_year", "Birth year gives an age under 15 or over 70 in this term.", "Năm sinh cho thấy tuổi dưới 15 hoặc trên 70 trong học kỳ này."),
    # --- placements ---
    _R("PLC.round.present", ERROR, "round", "Round is missing.", "Thiếu đợt thực tập."),
    _R("PLC.round.format", ERROR, "round", "Round must look like 2025H2 (year, then H1 or H2).", "Đợt thực tập phải có dạng 2025H2 (năm, rồi H1 hoặc H2)."),
    _R("PLC.university_code.present", ERROR, "university_code", "University code is missing.", "Thiếu mã trường."),
    _R("PLC.university_code.registry", ERROR, "university_code", "University code is not in the university registry.", "Mã trường không có trong danh mục các trường."),
    _R("PLC.student_key.present", ERROR, "student_key", "Student number is missing.", "Thiếu mã số sinh viên."),
    _R("PLC.student.once_per_round", ERROR, "student_key", "The same student is placed more than once in this round.", "Một sinh viên được xếp thực tập nhiều lần trong cùng một đợt."),
    _R("PLC.host_code.present", ERROR, "host_code", "Host company code is missing.", "Thiếu mã doanh nghiệp tiếp nhận."),
    _R("PLC.host_code.registry", ERROR, "host_code", "Host company is not in the list of Korean hosts.", "Doanh nghiệp tiếp nhận không có trong danh sách doanh nghiệp Hàn Quốc."),
    _R("PLC.track.present", ERROR, "track", "Track is missing.", "Thiếu lĩnh vực thực tập."),
    _R("PLC.track.valid", ERROR, "track", "Track must be design, fabrication, packaging_testing or equipment.", "Lĩnh vực phải là thiết kế, chế tạo, đóng gói–kiểm thử hoặc thiết bị."),
    _R("PLC.outcome.present", ERROR, "outcome", "Outcome is missing.", "Thiếu kết quả thực tập."),
    _R("PLC.outcome.valid", ERROR, "outcome", "Outcome must be completed or withdrew.", "Kết quả phải là hoàn thành (completed) hoặc rút lui (withdrew)."),
    _R("PLC.semiconductor_job.valid", ERROR, "semiconductor_job", "Semiconductor job must be yes, no or empty.", "Việc làm bán dẫn phải là yes, no hoặc để trống."),
    _R("PLC.semiconductor_job.only_when_completed", WARNING, "semiconductor_job", "A semiconductor job is recorded for a student who withdrew; record it only after completion.", "Có ghi việc làm bán dẫn cho sinh viên đã rút lui; chỉ ghi khi đã hoàn thành thực tập."),
)}


@dataclass(frozen=True)
class ContractReference:
    """Reference lists the rules check against (loaded by the caller from data/reference)."""

    university_codes: frozenset[str]
    programme_codes: frozenset[str]
    host_codes: frozenset[str]
    tracks: frozenset[str] = TRACKS
    min_intake_year: int = 1990

    def __post_init__(self) -> None:  # accept any iterable; keep the object hashable
        for name in ("university_codes", "programme_codes", "host_codes", "tracks"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))


def _expect(rule_id: str, cls: type, **kwargs: Any):
    """One expectation carrying its rule; GX's own severity mirrors ours for GX-side tooling."""
    r = RULES[rule_id]
    meta = {"rule_id": r.rule_id, "severity": r.severity, "column": r.column,
            "message_en": r.message_en, "message_vi": r.message_vi}
    return cls(**kwargs, meta=meta, severity="critical" if r.severity == ERROR else "warning")


def _suite(name: str, columns: tuple[str, ...], expectations: list) -> gx.ExpectationSuite:
    return gx.ExpectationSuite(name=name, expectations=expectations,
                               meta={"required_columns": list(columns)})


def build_enrollment_suite(ref: ContractReference) -> gx.ExpectationSuite:
    E = gx.expectations
    present = [(f"ENR.{c}.present", c) for c in
               ("student_key", "gender", "programme_code", "degree_level", "intake_year",
                "study_year", "status")]
    return _suite("enrollment", ENROLLMENT_COLUMNS, [
        *(_expect(rid, E.ExpectColumnValuesToNotBeNull, column=c) for rid, c in present),
        _expect("ENR.university_code.registry", E.ExpectColumnValuesToBeInSet, column="university_code", value_set=sorted(ref.university_codes)),
        _expect("ENR.term.format", E.ExpectColumnValuesToMatchRegex, column="term", regex=r"^\d{4}-[12]$"),
        # All copies are flagged (GX uses duplicated(keep=False)); rows without a key are
        # left to ENR.student_key.present.
        _expect("ENR.student_key.unique", E.ExpectCompoundColumnsToBeUnique, column_list=["file_id", "university_code", "term", "student_key"], ignore_row_if="any_value_is_missing"),
        _expect("ENR.gender.recognised", E.ExpectColumnValuesToBeInSet, column="gender", value_set=list(GENDERS)),
        _expect("ENR.programme_code.catalogue", E.ExpectColumnValuesToBeInSet, column="programme_code", value_set=sorted(ref.programme_codes)),
        _expect("ENR.degree_level.recognised", E.ExpectColumnValuesToBeInSet, column="degree_level", value_set=sorted(DEGREE_YEARS)),
        _expect("ENR.intake_year.range", E.ExpectColumnValuesToBeBetween, column="intake_year", min_value=ref.min_intake_year),
        # The upper bound depends on the row's term, so it is a pair rule, not a scalar range.
        _expect("ENR.intake_year.not_future", E.ExpectColumnPairValuesAToBeGreaterThanB, column_A="term_year", column_B="intake_year", or_equal=True, ignore_row_if="either_value_is_missing"),
        _expect("ENR.study_year.range", E.ExpectColumnValuesToBeBetween, column="study_year", min_value=1, max_value=7),
        # The row conditions keep one bad value from being reported twice: a future intake is
        # ENR.intake_year.not_future's, a study year above 7 is ENR.study_year.range's.
        _expect("ENR.study_year.since_intake", E.ExpectColumnPairValuesAToBeGreaterThanB, column_A="years_since_intake", column_B="study_year", or_equal=True, ignore_row_if="either_value_is_missing", row_condition=Column("years_since_intake") >= 1),
        _expect("ENR.study_year.long_running", E.ExpectColumnPairValuesAToBeGreaterThanB, column_A="study_year_limit", column_B="study_year", or_equal=True, ignore_row_if="either_value_is_missing", row_condition=Column("study_year") <= 7),
        _expect("ENR.status.recognised", E.ExpectColumnValuesToBeInSet, column="status", value_set=list(STATUSES)),
        _expect("ENR.gpa.range", E.ExpectColumnValuesToBeBetween, column="gpa", min_value=0, max_value=4),
        _expect("ENR.birth_year.plausible", E.ExpectColumnValuesToBeBetween, column="age_at_term", min_value=15, max_value=70),
    ])


def build_placement_suite(ref: ContractReference) -> gx.ExpectationSuite:
    E = gx.expectations
    present = [(f"PLC.{c}.present", c) for c in
               ("round", "university_code", "student_key", "host_code", "track", "outcome")]
    return _suite("placement", PLACEMENT_COLUMNS, [
        *(_expect(rid, E.ExpectColumnValuesToNotBeNull, column=c) for rid, c in present),
        _expect("PLC.round.format", E.ExpectColumnValuesToMatchRegex, column="round", regex=r"^\d{4}H[12]$"),
        _expect("PLC.university_code.registry", E.ExpectColumnValuesToBeInSet, column="university_code", value_set=sorted(ref.university_codes)),
        _expect("PLC.student.once_per_round", E.ExpectCompoundColumnsToBeUnique, column_list=["file_id", "round", "university_code", "student_key"], ignore_row_if="any_value_is_missing"),
        _expect("PLC.host_code.registry", E.ExpectColumnValuesToBeInSet, column="host_code", value_set=sorted(ref.host_codes)),
        _expect("PLC.track.valid", E.ExpectColumnValuesToBeInSet, column="track", value_set=sorted(ref.tracks)),
        _expect("PLC.outcome.valid", E.ExpectColumnValuesToBeInSet, column="outcome", value_set=list(OUTCOMES)),
        _expect("PLC.semiconductor_job.valid", E.ExpectColumnValuesToBeInSet, column="semiconductor_job", value_set=list(JOB_ANSWERS)),
        # Only a known "withdrew" is judged; a missing or invalid outcome is already an error.
        _expect("PLC.semiconductor_job.only_when_completed", E.ExpectColumnValuesToBeNull, column="semiconductor_job", row_condition=Column("outcome") == "withdrew"),
    ])


# ---------------------------------------------------------------------------------------------
# Running GX: one ephemeral context, one pandas data source, one dataframe asset and one
# whole-dataframe batch definition for the whole process; each call hands its DataFrame over as
# a batch parameter, so nothing is re-created per call.
#
# Batch.validate() rather than ValidationDefinition.run(): run() also writes every result into
# the context's results store, serialising it through marshmallow, which took two thirds of the
# time when many rows fail (12.7 of 20 s for 120,000 failing values) and would keep every report
# alive in an ephemeral context.  Batch.validate() runs the same GX Validator without storing.
# GX contexts are not thread-safe and Prefect runs tasks in threads, hence the lock.
_LOCK = threading.Lock()
_BATCH_DEFINITION: list = []


def _batch_definition():
    if not _BATCH_DEFINITION:
        context = gx.get_context(mode="ephemeral")
        # Validator._determine_progress_bars() reads this; without it every run draws tqdm
        # "Calculating Metrics" bars on stderr.
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = context.data_sources.add_pandas("lab2fab").add_dataframe_asset("frame")
        _BATCH_DEFINITION.append(asset.add_batch_definition_whole_dataframe("whole"))
    return _BATCH_DEFINITION[0]


def result_format(key_column: str) -> dict:
    # COMPLETE gives every failing row's key in unexpected_index_list; the query text that
    # GX can build for SQL back-ends is useless for an in-memory frame.
    return {"result_format": "COMPLETE", "unexpected_index_column_names": [key_column],
            "return_unexpected_index_query": False}


@dataclass(frozen=True)
class ValidationReport:
    row_failures: pd.DataFrame  # key, rule_id, severity, column, message_en, message_vi, observed
    rules: pd.DataFrame  # one row per expectation
    success: bool  # True when no *error* rule failed; warnings never block
    key_column: str = "row_id"

    def error_keys(self) -> set:
        """Keys of the rows to quarantine."""
        f = self.row_failures
        return set(f.loc[f["severity"] == ERROR, self.key_column].tolist())


def _text(value: Any) -> str:
    if value is None or (not isinstance(value, (str, list, tuple, dict)) and pd.isna(value)):
        return ""
    return str(value.item() if hasattr(value, "item") else value)


def _with_required_columns(df: pd.DataFrame, suite: gx.ExpectationSuite, key_column: str) -> pd.DataFrame:
    required = list(dict.fromkeys([key_column, *(suite.meta or {}).get("required_columns", [])]))
    missing = [c for c in required if c not in df.columns and c not in DERIVED_COLUMNS]
    if missing:
        raise ValueError(f"frame lacks canonical columns for suite {suite.name!r}: {missing}")
    if not df[key_column].is_unique:
        raise ValueError(f"key column {key_column!r} must be unique to report failing rows")
    derive = {c: f for c, f in DERIVED_COLUMNS.items() if c in required and c not in df.columns}
    # assign() returns a new frame (copy-on-write, so cheap); the caller's frame is untouched.
    return df.assign(**{c: f(df) for c, f in derive.items()}) if derive else df


FAILURE_COLUMNS = ("rule_id", "severity", "column", "message_en", "message_vi", "observed")


def validate(df: pd.DataFrame, suite: gx.ExpectationSuite, *, key_column: str = "row_id") -> ValidationReport:
    """Run ``suite`` once over the whole frame and report failures per row and per rule.

    ``row_failures`` is keyed by a column named like ``key_column`` so it merges straight back
    onto the frame.  Raises ValueError for a frame that breaks the canonical shape and
    RuntimeError when GX could not evaluate a rule (neither a pass nor a row failure).
    """
    df = _with_required_columns(df, suite, key_column)
    with _LOCK:
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(suite, result_format=result_format(key_column))

    failures, rules = [], []
    for r in result.results:
        meta, res = r.expectation_config.meta, r.result
        if r.exception_info.get("raised_exception"):
            raise RuntimeError(f"{meta['rule_id']} could not be evaluated: {r.exception_info.get('exception_message')}")
        rules.append({"rule_id": meta["rule_id"], "severity": meta["severity"], "column": meta["column"],
                      "expectation": r.expectation_config.type, "success": bool(r.success),
                      "element_count": res.get("element_count", 0),
                      "unexpected_count": res.get("unexpected_count", 0),
                      "unexpected_percent": float(res.get("unexpected_percent") or 0.0),
                      "message_en": meta["message_en"], "message_vi": meta["message_vi"]})
        for hit in res.get("unexpected_index_list") or []:
            # GX gives the key plus the checked column(s).  A bare value when that is the rule's
            # own column, otherwise "column=value" pairs (pair/compound rules, or a derived
            # column such as age_at_term).
            values = {c: v for c, v in hit.items() if c != key_column}
            observed = (_text(values[meta["column"]]) if list(values) == [meta["column"]]
                        else "; ".join(f"{c}={_text(v)}" for c, v in values.items()))
            failures.append((hit[key_column], *(meta[k] for k in FAILURE_COLUMNS[:-1]), observed))

    row_failures = (pd.DataFrame(failures, columns=[key_column, *FAILURE_COLUMNS])
                    .astype({key_column: df[key_column].dtype})
                    .sort_values([key_column, "rule_id"], ignore_index=True))
    success = not any(r["severity"] == ERROR and not r["success"] for r in rules)
    return ValidationReport(row_failures, pd.DataFrame(rules), success, key_column)
