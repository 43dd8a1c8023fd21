"""The lab2fab data contract (docs/DATA_CONTRACT.md, docs/CONTRACT_RULES.md) as Great Expectations 1.x suites.

Each rule has a stable ``rule_id``, a ``severity`` and a one-line explanation for university
officers in English and Vietnamese.  All of it is stored in the expectation's ``meta``, so it
travels with GX results (and into Data Docs).

Severity by scope:
* ``row`` rules (suites ``enrollment``, ``placement``): an ``error`` quarantines the row, a
  ``warning`` is reported on the row and never blocks.
* ``file`` rules (suites ``enrollment_submission``, ``placement_submission``, validated over a
  one-row-per-file summary frame keyed by ``file_id``): an ``error`` rejects the whole submission;
  a ``warning`` loads it as ``accepted_with_warnings`` until a programme officer accepts the
  warning in the overrides file (transforms/contract/checks.py).
* ``load`` rules: accounting checks of the load transaction (totals by programme and status);
  an ``error`` there rolls the load back.
* ``reference`` rules (suites ``ref_<file>``): an ``error`` fails the pipeline run before the
  reference data is used (transforms/contract/reference.py).

Canonical enrollment frame (normalised by ingest before validation):
    row_id int64 unique | file_id str | university_code str | term str "YYYY-S" | line int
    student_key str|null (hex) | gender M/F/X|null | programme_code str|null
    degree_level bachelor/engineer/master/doctor|null | intake_year Int64 | study_year Int64
    status studying/graduated/dropped_out/on_leave/transferred|null | gpa Float64 (4-point)
    birth_year Int64 | term_year Int64 (year the term starts) | degree_years Int64 (4/5/2/4)
  derived (ingest may provide them; validate() computes any that are absent):
    years_since_intake = term_year - intake_year + 1
    study_year_limit   = degree_years + 2
    max_study_years    = 2 * degree_years
    age_at_term        = term_year - birth_year
    degree_code_level  = degree_level "|" first digit of programme_code (7 university, 8 master, 9 doctor)
  history (the student's latest earlier row in the same university and programme; added by
  transforms/submission_checks.History; all null when the history is unknown):
    prev_term str | prev_status str | prev_study_year Int64 | prev_intake_year Int64
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
from pathlib import Path
from typing import Any

# Before GX is imported: no analytics, and no DEBUG/INFO chatter from its import-time registries.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
logging.getLogger("great_expectations").setLevel(logging.WARNING)

import pandas as pd  # noqa: E402

from transforms import vocabulary  # noqa: E402

# GX itself (about 3 s to import) is loaded by the first suite or validation that needs it, so that
# a run with nothing new, or a stage that only reads the rule table, never pays for it.
_GX: list = []


def _gx():
    """great_expectations and its row-condition `Column`, imported once, quietly."""
    if not _GX:
        import great_expectations as gx
        from great_expectations.expectations.row_conditions import Column

        quiet_gx_logging()
        _install_validation_memos()
        _GX.extend((gx, Column))
    return _GX[0], _GX[1]


def preload() -> None:
    """Import GX now: for a run that is waiting for something else (flows/server.py)."""
    _gx()



def quiet_gx_logging() -> None:
    """Some GX modules set their own logger to INFO when imported (e.g. "Created temporary directory
    ... for ephemeral docs site"): raise them to WARNING, so pipeline logs carry lab2fab's messages."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("great_expectations") and isinstance(logger, logging.Logger) and 0 < logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


# The contract's rules (ids, severity, column, both languages) are data in the one catalogue.
from transforms.contract.rules import ERROR, FILE, LOAD, REFERENCE, ROW, RULES, WARNING, Rule  # noqa: E402,F401
# The programme's words come from transforms/vocabulary.py; sorted here, as the suites list them.
GENDERS = tuple(sorted(vocabulary.GENDERS))
DEGREE_YEARS = vocabulary.NORMAL_YEARS
# MOET major codes: the first digit is the level (7 university, 8 master, 9 doctor).
DEGREE_CODE_LEVEL = (("bachelor", "7"), ("engineer", "7"), ("master", "8"), ("doctor", "9"))
STATUSES = tuple(sorted(vocabulary.STATUSES))
ACTIVE_STATUSES = vocabulary.ACTIVE_STATUSES
EXIT_STATUSES = vocabulary.EXIT_STATUSES
TRACKS = frozenset(vocabulary.TRACKS)
OUTCOMES = vocabulary.PLACEMENT_OUTCOMES
JOB_ANSWERS = ("no", "yes")

ENROLLMENT_COLUMNS = (
    "row_id", "file_id", "university_code", "term", "line", "student_key", "gender",
    "programme_code", "degree_level", "intake_year", "study_year", "status", "gpa",
    "birth_year", "term_year", "degree_years", "years_since_intake", "study_year_limit",
    "max_study_years", "age_at_term", "degree_code_level",
    "prev_term", "prev_status", "prev_study_year", "prev_intake_year",
    "student_id_problem", "national_id_problem", "cell_error",
)
PLACEMENT_COLUMNS = (
    "row_id", "file_id", "round", "line", "university_code", "student_key", "host_code",
    "track", "outcome", "semiconductor_job", "student_id_problem", "cell_error",
)
# Derived enrollment columns: computed here when ingest did not provide them, so the
# definition lives in one place.
DERIVED_COLUMNS = {
    "years_since_intake": lambda d: d["term_year"] - d["intake_year"] + 1,
    "study_year_limit": lambda d: d["degree_years"] + 2,
    "max_study_years": lambda d: d["degree_years"] * 2,
    "age_at_term": lambda d: d["term_year"] - d["birth_year"],
    "degree_code_level": lambda d: d["degree_level"].astype("string") + "|" + d["programme_code"].astype("string").str[:1],
}
# History columns: null (history unknown) when the caller did not add them.
OPTIONAL_COLUMNS = {"prev_term": "string", "prev_status": "string", "prev_study_year": "Int64",
                    "prev_intake_year": "Int64",
                    # why an id could not be hashed (transforms/ingest/pseudonym.py); null when it could
                    "student_id_problem": "string", "national_id_problem": "string",
                    # the fields whose spreadsheet cell held an error (#DIV/0!, #N/A), from the reader
                    "cell_error": "string"}

# File-level tolerances (docs/CONTRACT_RULES.md explains each choice).
ROWS_DROP_MIN_RATIO = 0.70  # fewer than 70% of the previous accepted term's rows: warning
ROWS_GROWTH_MAX_RATIO = 2.0  # more than twice: warning
ROWS_BASE_MIN = 20  # row-count and unaccounted-student comparisons need this many rows before
SHARES_BASE_MIN = 50  # share comparisons need this many rows before
STATUS_SHIFT_MAX = 0.15  # share of a status among non-graduates moved by more than 15 points
PROGRAMME_SHIFT_MAX = 0.20  # share of a programme moved by more than 20 points
GRADUATE_TOLERANCE = (1.05, 2)  # graduates may exceed last term's final-year students by 5% + 2
UNACCOUNTED_MAX = 0.10  # more than 10% of last term's active students missing without an exit
MOSTLY_INVALID_SHARE = 0.5  # more than half the rows break an error rule: the file is rejected
QUARANTINE_WARN_SHARE = 0.05  # more than 5% of the rows quarantined: warning (files of 20+ rows)




def rules_table() -> pd.DataFrame:
    """The rule table as a frame (docs, the kit, the reference check)."""
    return pd.DataFrame([{"rule_id": r.rule_id, "scope": r.scope, "severity": r.severity, "column": r.column,
                          "message_en": r.message_en, "message_vi": r.message_vi} for r in RULES.values()])


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

    @classmethod
    def from_dir(cls, reference_dir: Path) -> "ContractReference":
        """The same lists straight from the reference CSVs (what `ref.*` is loaded from)."""
        col = lambda name, c: pd.read_csv(Path(reference_dir) / f"{name}.csv", dtype=str,  # noqa: E731
                                          keep_default_na=False)[c].str.strip()
        return cls(university_codes=set(col("universities", "university_code")) - {""},
                   programme_codes=set(col("programmes", "programme_code")) - {""},
                   host_codes=set(col("hosts", "host_code")) - {""})


def _expect(rule_id: str, cls: type, **kwargs: Any):
    """One expectation carrying its rule; GX's own severity mirrors ours for GX-side tooling."""
    r = RULES[rule_id]
    meta = {"rule_id": r.rule_id, "severity": r.severity, "scope": r.scope, "column": r.column,
            "message_en": r.message_en, "message_vi": r.message_vi}
    context = kwargs.pop("context", None)
    if context:
        meta["context_columns"] = list(context)  # shown beside the failing value in `observed`
    # notes: what Data Docs shows beside the expectation (GX renders `notes`, not `meta`).
    notes = f"**{r.rule_id}** ({r.severity}, {r.scope}): {r.message_en} / {r.message_vi}"
    return cls(**kwargs, meta=meta, notes=notes, severity="critical" if r.severity == ERROR else "warning")


def _suite(name: str, columns: tuple[str, ...], expectations: list) -> gx.ExpectationSuite:
    gx, _ = _gx()
    return gx.ExpectationSuite(name=name, expectations=expectations,
                               meta={"required_columns": list(columns)})


def build_enrollment_suite(ref: ContractReference) -> gx.ExpectationSuite:
    gx, Column = _gx()
    E = gx.expectations
    present = [(f"ENR.{c}.present", c) for c in
               ("student_key", "gender", "programme_code", "degree_level", "intake_year",
                "study_year", "status")]
    catalogue = sorted(ref.programme_codes)
    # A student number that could not be hashed is ENR.student_id.unreadable's, not a missing one.
    readable = {"student_key": {"row_condition": Column("student_id_problem").is_null()}}
    return _suite("enrollment", ENROLLMENT_COLUMNS, [
        *(_expect(rid, E.ExpectColumnValuesToNotBeNull, column=c, **readable.get(c, {})) for rid, c in present),
        _expect("ENR.student_id.unreadable", E.ExpectColumnValuesToBeNull, column="student_id_problem"),
        _expect("ENR.national_id.unreadable", E.ExpectColumnValuesToBeNull, column="national_id_problem"),
        _expect("ENR.cell.error", E.ExpectColumnValuesToBeNull, column="cell_error"),
        _expect("ENR.university_code.registry", E.ExpectColumnValuesToBeInSet, column="university_code", value_set=sorted(ref.university_codes)),
        _expect("ENR.term.format", E.ExpectColumnValuesToMatchRegex, column="term", regex=r"^\d{4}-[12]$"),
        # All copies are flagged (GX uses duplicated(keep=False)); rows without a key are
        # left to ENR.student_key.present.
        _expect("ENR.student_key.unique", E.ExpectCompoundColumnsToBeUnique, column_list=["file_id", "university_code", "term", "student_key"], ignore_row_if="any_value_is_missing"),
        _expect("ENR.gender.recognised", E.ExpectColumnValuesToBeInSet, column="gender", value_set=list(GENDERS)),
        _expect("ENR.programme_code.catalogue", E.ExpectColumnValuesToBeInSet, column="programme_code", value_set=catalogue),
        _expect("ENR.degree_level.recognised", E.ExpectColumnValuesToBeInSet, column="degree_level", value_set=sorted(DEGREE_YEARS)),
        # Only known codes and levels are judged: an unknown one is reported by its own rule.
        # (A column-map rule on a derived "degree|digit" column: GX 1.24's column-pair map
        # expectations count rows outside the row_condition as unexpected.)
        _expect("ENR.degree_level.programme_level", E.ExpectColumnValuesToBeInSet, column="degree_code_level", value_set=[f"{d}|{c}" for d, c in DEGREE_CODE_LEVEL], row_condition=Column("programme_code").is_in(catalogue or [""]) & Column("degree_level").is_in(DEGREE_YEARS), context=["programme_code"]),
        _expect("ENR.intake_year.range", E.ExpectColumnValuesToBeBetween, column="intake_year", min_value=ref.min_intake_year),
        # The upper bound depends on the row's term, so it is a pair rule, not a scalar range.
        _expect("ENR.intake_year.not_future", E.ExpectColumnPairValuesAToBeGreaterThanB, column_A="term_year", column_B="intake_year", or_equal=True, ignore_row_if="either_value_is_missing"),
        # An intake before 1990 is ENR.intake_year.range's.
        _expect("ENR.intake_year.max_duration", E.ExpectColumnPairValuesAToBeGreaterThanB, column_A="max_study_years", column_B="years_since_intake", or_equal=True, ignore_row_if="either_value_is_missing", row_condition=Column("intake_year") >= ref.min_intake_year, context=["degree_level"]),
        _expect("ENR.intake_year.unchanged", E.ExpectColumnPairValuesToBeEqual, column_A="intake_year", column_B="prev_intake_year", ignore_row_if="either_value_is_missing", row_condition=(Column("intake_year") >= ref.min_intake_year) & (Column("years_since_intake") >= 1), context=["prev_term"]),
        _expect("ENR.study_year.range", E.ExpectColumnValuesToBeBetween, column="study_year", min_value=1, max_value=7),
        # The row conditions keep one bad value from being reported twice: a future intake is
        # ENR.intake_year.not_future's, a study year above 7 is ENR.study_year.range's.
        _expect("ENR.study_year.since_intake", E.ExpectColumnPairValuesAToBeGreaterThanB, column_A="years_since_intake", column_B="study_year", or_equal=True, ignore_row_if="either_value_is_missing", row_condition=Column("years_since_intake") >= 1),
        _expect("ENR.study_year.long_running", E.ExpectColumnPairValuesAToBeGreaterThanB, column_A="study_year_limit", column_B="study_year", or_equal=True, ignore_row_if="either_value_is_missing", row_condition=Column("study_year") <= 7),
        _expect("ENR.study_year.not_decreasing", E.ExpectColumnPairValuesAToBeGreaterThanB, column_A="study_year", column_B="prev_study_year", or_equal=True, ignore_row_if="either_value_is_missing", row_condition=Column("study_year") >= 1, context=["prev_term"]),
        _expect("ENR.status.recognised", E.ExpectColumnValuesToBeInSet, column="status", value_set=list(STATUSES)),
        # Status transitions, judged against the student's latest earlier row in the same
        # university and programme (prev_*; null when there is none or it is unknown).
        _expect("ENR.status.after_graduation", E.ExpectColumnValuesToNotBeInSet, column="status", value_set=list(STATUSES), row_condition=Column("prev_status") == "graduated", context=["prev_term", "prev_status"]),
        _expect("ENR.status.readmitted", E.ExpectColumnValuesToNotBeInSet, column="status", value_set=list(ACTIVE_STATUSES), row_condition=Column("prev_status").is_in(EXIT_STATUSES), context=["prev_term", "prev_status"]),
        _expect("ENR.gpa.range", E.ExpectColumnValuesToBeBetween, column="gpa", min_value=0, max_value=4),
        _expect("ENR.birth_year.plausible", E.ExpectColumnValuesToBeBetween, column="age_at_term", min_value=15, max_value=70),
    ])


def build_placement_suite(ref: ContractReference) -> gx.ExpectationSuite:
    gx, Column = _gx()
    E = gx.expectations
    present = [(f"PLC.{c}.present", c) for c in ("round", "university_code", "host_code", "track", "outcome")]
    return _suite("placement", PLACEMENT_COLUMNS, [
        *(_expect(rid, E.ExpectColumnValuesToNotBeNull, column=c) for rid, c in present),
        # A student number is pseudonymised with its university's code: without the code there
        # is no key, and that row is PLC.university_code.present's, not a missing student number.
        _expect("PLC.student_key.present", E.ExpectColumnValuesToNotBeNull, column="student_key",
                row_condition=Column("university_code").is_not_null() & Column("student_id_problem").is_null(), context=["university_code"]),
        _expect("PLC.student_id.unreadable", E.ExpectColumnValuesToBeNull, column="student_id_problem"),
        _expect("PLC.cell.error", E.ExpectColumnValuesToBeNull, column="cell_error"),
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


# Submission summaries: one row per file, computed by transforms/contract/checks.py.  Every
# measure is a float (NaN when it cannot be judged, e.g. no previous accepted term), so GX
# skips it; the row conditions say how large the base must be for a comparison to mean anything.
ENROLLMENT_SUMMARY_COLUMNS = (
    "file_id", "university_code", "term", "rows", "error_share", "prev_term", "prev_rows", "row_ratio",
    "status_shift", "programme_shift", "graduates", "graduates_allowed", "prev_active", "unaccounted_share",
)
PLACEMENT_SUMMARY_COLUMNS = ("file_id", "university_code", "term", "rows", "error_share")


def build_enrollment_summary_suite() -> gx.ExpectationSuite:
    gx, Column = _gx()
    E = gx.expectations
    return _suite("enrollment_submission", ENROLLMENT_SUMMARY_COLUMNS, [
        _expect("ENR.file.has_rows", E.ExpectColumnValuesToBeBetween, column="rows", min_value=1),
        _expect("ENR.file.mostly_invalid", E.ExpectColumnValuesToBeBetween, column="error_share", max_value=MOSTLY_INVALID_SHARE),
        _expect("ENR.file.quarantine_share", E.ExpectColumnValuesToBeBetween, column="error_share", max_value=QUARANTINE_WARN_SHARE, row_condition=Column("rows") >= ROWS_BASE_MIN),
        _expect("ENR.file.rows_drop", E.ExpectColumnValuesToBeBetween, column="row_ratio", min_value=ROWS_DROP_MIN_RATIO, row_condition=Column("prev_rows") >= ROWS_BASE_MIN),
        _expect("ENR.file.rows_growth", E.ExpectColumnValuesToBeBetween, column="row_ratio", max_value=ROWS_GROWTH_MAX_RATIO, row_condition=Column("prev_rows") >= ROWS_BASE_MIN),
        _expect("ENR.file.status_shares", E.ExpectColumnValuesToBeBetween, column="status_shift", max_value=STATUS_SHIFT_MAX, row_condition=Column("prev_rows") >= SHARES_BASE_MIN),
        _expect("ENR.file.programme_shares", E.ExpectColumnValuesToBeBetween, column="programme_shift", max_value=PROGRAMME_SHIFT_MAX, row_condition=Column("prev_rows") >= SHARES_BASE_MIN),
        _expect("ENR.file.graduates_vs_final_year", E.ExpectColumnPairValuesAToBeGreaterThanB, column_A="graduates_allowed", column_B="graduates", or_equal=True, ignore_row_if="either_value_is_missing"),
        _expect("ENR.file.unaccounted_students", E.ExpectColumnValuesToBeBetween, column="unaccounted_share", max_value=UNACCOUNTED_MAX, row_condition=Column("prev_active") >= ROWS_BASE_MIN),
    ])


def build_placement_summary_suite() -> gx.ExpectationSuite:
    gx, Column = _gx()
    E = gx.expectations
    return _suite("placement_submission", PLACEMENT_SUMMARY_COLUMNS, [
        _expect("PLC.file.has_rows", E.ExpectColumnValuesToBeBetween, column="rows", min_value=1),
        _expect("PLC.file.mostly_invalid", E.ExpectColumnValuesToBeBetween, column="error_share", max_value=MOSTLY_INVALID_SHARE),
        _expect("PLC.file.quarantine_share", E.ExpectColumnValuesToBeBetween, column="error_share", max_value=QUARANTINE_WARN_SHARE, row_condition=Column("rows") >= ROWS_BASE_MIN),
    ])


# Reference suites: one per reference CSV, over the file read as text with `line` (the line in
# the CSV, header = 1) as key.  Columns prefixed `_` are derived by reference_checks.prepare().
def build_reference_suites(host_codes: list[str], host_tracks: list[str]) -> dict[str, gx.ExpectationSuite]:
    """``host_codes`` and ``host_tracks`` ("KR-NNFC|fabrication") come from hosts.csv itself."""
    gx, Column = _gx()
    E = gx.expectations
    track_re = "|".join(sorted(TRACKS))
    return {
        "universities": _suite("ref_universities", ("line", "university_code", "name_vi", "participates"), [
            _expect("REF.universities.code_present", E.ExpectColumnValuesToNotBeNull, column="university_code"),
            _expect("REF.universities.code_format", E.ExpectColumnValuesToMatchRegex, column="university_code", regex=r"^[A-Z0-9]{2,12}$"),
            _expect("REF.universities.code_unique", E.ExpectColumnValuesToBeUnique, column="university_code"),
            _expect("REF.universities.name_present", E.ExpectColumnValuesToNotBeNull, column="name_vi"),
            _expect("REF.universities.participates_valid", E.ExpectColumnValuesToBeInSet, column="participates", value_set=["false", "true"]),
        ]),
        "programmes": _suite("ref_programmes", ("line", "programme_code", "level", "track", "normal_years", "_code_level"), [
            _expect("REF.programmes.code_present", E.ExpectColumnValuesToNotBeNull, column="programme_code"),
            _expect("REF.programmes.code_format", E.ExpectColumnValuesToMatchRegex, column="programme_code", regex=r"^\d{7}$"),
            _expect("REF.programmes.code_unique", E.ExpectColumnValuesToBeUnique, column="programme_code"),
            _expect("REF.programmes.level_valid", E.ExpectColumnValuesToBeInSet, column="level", value_set=["doctor", "master", "undergraduate"]),
            _expect("REF.programmes.level_matches_code", E.ExpectColumnPairValuesToBeInSet, column_A="level", column_B="_code_level", value_pairs_set=[["undergraduate", "7"], ["master", "8"], ["doctor", "9"]], ignore_row_if="either_value_is_missing"),
            _expect("REF.programmes.track_valid", E.ExpectColumnValuesToBeInSet, column="track", value_set=sorted(TRACKS)),
            _expect("REF.programmes.normal_years_range", E.ExpectColumnValuesToBeInSet, column="normal_years", value_set=[str(i) for i in range(1, 8)]),
        ]),
        "hosts": _suite("ref_hosts", ("line", "host_code", "host_type", "tracks"), [
            _expect("REF.hosts.code_present", E.ExpectColumnValuesToNotBeNull, column="host_code"),
            _expect("REF.hosts.code_unique", E.ExpectColumnValuesToBeUnique, column="host_code"),
            _expect("REF.hosts.type_valid", E.ExpectColumnValuesToBeInSet, column="host_type", value_set=["company", "domestic_lab", "research_centre", "university"]),
            _expect("REF.hosts.tracks_valid", E.ExpectColumnValuesToMatchRegex, column="tracks", regex=rf"^(?:{track_re})(?:\|(?:{track_re}))*$"),
        ]),
        "host_slots": _suite("ref_host_slots", ("line", "round", "host_code", "track", "slots", "_host_track", "_known_host"), [
            _expect("REF.host_slots.round_format", E.ExpectColumnValuesToMatchRegex, column="round", regex=r"^\d{4}H[12]$"),
            _expect("REF.host_slots.host_exists", E.ExpectColumnValuesToBeInSet, column="host_code", value_set=sorted(host_codes)),
            _expect("REF.host_slots.track_offered", E.ExpectColumnValuesToBeInSet, column="_host_track", value_set=sorted(host_tracks), row_condition=Column("_known_host") == "yes", context=["host_code", "track"]),
            _expect("REF.host_slots.slots_non_negative", E.ExpectColumnValuesToMatchRegex, column="slots", regex=r"^\d+$"),
            _expect("REF.host_slots.unique", E.ExpectCompoundColumnsToBeUnique, column_list=["round", "host_code", "track"]),
        ]),
        "targets": _suite("ref_targets", ("line", "target_year", "dimension", "category", "target", "_dimension_sum", "_year_total"), [
            _expect("REF.targets.dimension_valid", E.ExpectColumnValuesToBeInSet, column="dimension", value_set=["degree_level", "total", "track_group"]),
            _expect("REF.targets.target_non_negative", E.ExpectColumnValuesToMatchRegex, column="target", regex=r"^\d+$"),
            _expect("REF.targets.unique", E.ExpectCompoundColumnsToBeUnique, column_list=["target_year", "dimension", "category"]),
            _expect("REF.targets.dimensions_sum_to_total", E.ExpectColumnPairValuesToBeEqual, column_A="_dimension_sum", column_B="_year_total", ignore_row_if="either_value_is_missing", context=["target_year", "dimension"]),
        ]),
    }


# ---------------------------------------------------------------------------------------------
# Running GX: one ephemeral context, one pandas data source, one dataframe asset and one
# whole-dataframe batch definition for the whole process; each call hands its DataFrame over as
# a batch parameter, so nothing is re-created per call.
#
# Batch.validate() rather than ValidationDefinition.run(): run() also writes every result into
# the context's results store, serialising it through marshmallow, which took two thirds of the
# time when many rows fail (12.7 of 20 s for 120,000 failing values) and would keep every report
# alive in an ephemeral context.  Batch.validate() runs the same GX Validator without storing;
# transforms/contract/datadocs.py puts the (trimmed) results it needs into a Data Docs context itself.
# GX contexts are not thread-safe and Prefect runs tasks in threads, hence the lock.
_LOCK = threading.Lock()
_BATCH_DEFINITION: list = []


# Two memos that GX 1.x's pandas engine lacks, active only inside validate() (on its thread, for
# one suite over one frame) and dropped after it, so every other use of GX behaves as shipped:
# * Expectation.configuration rebuilds an ExpectationConfiguration (pydantic dict() plus a deep
#   copy of every kwarg, value sets included) each time it is read, and GX reads it once per
#   kwarg key while it plans the metrics: 59,000 rebuilds, a third of the GX time, at 1/16 scale.
# * Each metric of an expectation with a row_condition filters the whole frame again
#   (DataFrame.query, then a copy of every column); the filter of one condition over one frame is
#   now computed once per validation.
# Neither changes what GX computes: during a validation nothing mutates an expectation or the
# frame (GX already hands the unfiltered batch frame itself to every metric).
_MEMO = threading.local()


MEMO_GX_VERSION = "1.24.1"  # the GX the memos were checked against (requirements.lock); any other runs as shipped


def _install_validation_memos() -> None:
    import great_expectations
    from great_expectations.execution_engine.pandas_execution_engine import PandasExecutionEngine
    from great_expectations.expectations.expectation import Expectation

    if getattr(Expectation, "_lab2fab_memo", False) or great_expectations.__version__ != MEMO_GX_VERSION:
        return
    built = Expectation.configuration.fget
    row_filter = PandasExecutionEngine._apply_row_condition_filter

    def configuration(self):
        memo = getattr(_MEMO, "configurations", None)
        if memo is None:
            return built(self)
        hit = memo.get(id(self))
        if hit is None:  # the entry keeps `self` alive, so its id is not reused within the scope
            hit = memo[id(self)] = (self, built(self))
        return hit[1]

    def apply_row_condition_filter(self, data, row_condition, domain_kwargs):
        memo = getattr(_MEMO, "filtered", None)
        if memo is None:
            return row_filter(self, data, row_condition, domain_kwargs)
        key = (id(data), repr(row_condition), domain_kwargs.get("condition_parser"))
        hit = memo.get(key)
        if hit is None:
            hit = memo[key] = (data, row_filter(self, data, row_condition, domain_kwargs))
        return hit[1]

    Expectation.configuration = property(configuration, doc=Expectation.configuration.__doc__)
    PandasExecutionEngine._apply_row_condition_filter = apply_row_condition_filter
    Expectation._lab2fab_memo = True


class _validation_memos:
    """The scope of the two memos: one validation on this thread."""

    def __enter__(self):
        _MEMO.configurations, _MEMO.filtered = {}, {}

    def __exit__(self, *exc):
        _MEMO.configurations = _MEMO.filtered = None


def quiet_context(context):
    """Progress bars off: Validator._determine_progress_bars() reads this; without it every run
    draws tqdm "Calculating Metrics" bars on stderr."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    quiet_gx_logging()
    return context


def _batch_definition():
    if not _BATCH_DEFINITION:
        gx, _ = _gx()
        context = quiet_context(gx.get_context(mode="ephemeral"))
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
    gx_result: Any = None  # the GX ExpectationSuiteValidationResult, for Data Docs

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
    missing = [c for c in required if c not in df.columns and c not in DERIVED_COLUMNS and c not in OPTIONAL_COLUMNS]
    if missing:
        raise ValueError(f"frame lacks canonical columns for suite {suite.name!r}: {missing}")
    if not df[key_column].is_unique:
        raise ValueError(f"key column {key_column!r} must be unique to report failing rows")
    add = {c: f(df) for c, f in DERIVED_COLUMNS.items() if c in required and c not in df.columns}
    add |= {c: pd.Series(pd.NA, index=df.index, dtype=t) for c, t in OPTIONAL_COLUMNS.items()
            if c in required and c not in df.columns}
    # assign() returns a new frame (copy-on-write, so cheap); the caller's frame is untouched.
    return df.assign(**add) if add else df


def _referenced(value: Any) -> set[str]:
    """Column names in an expectation's kwargs as JSON (column, column_A/B, column_list, row_condition)."""
    if isinstance(value, dict):
        found = set()
        for k, v in value.items():
            if k in ("column", "column_A", "column_B") and isinstance(v, str):
                found.add(v)
            elif k == "column" and isinstance(v, dict) and isinstance(v.get("name"), str):
                found.add(v["name"])
            elif k == "column_list" and isinstance(v, list):
                found.update(c for c in v if isinstance(c, str))
            elif k in ("row_condition", "conditions") or isinstance(v, (dict, list)):
                found |= _referenced(v)
        return found
    if isinstance(value, list):
        return set().union(*(_referenced(v) for v in value)) if value else set()
    return set()


def suite_columns(suite: gx.ExpectationSuite, key_column: str) -> list[str]:
    """What GX needs of a frame for ``suite``: the key, the canonical columns and every column an
    expectation names (its row condition included).  GX's pandas engine copies the frame for each
    expectation with a row condition, so the other columns (e.g. the raw_* values kept for the
    issue rows) are left out of what it is handed; the results do not depend on them."""
    named = set().union(*(_referenced(e.configuration.to_json_dict().get("kwargs", {})) for e in suite.expectations))
    return list(dict.fromkeys([key_column, *(suite.meta or {}).get("required_columns", []), *sorted(named)]))


def _numpy_between_columns(frame: pd.DataFrame, suite: gx.ExpectationSuite) -> pd.DataFrame:
    """The columns of range rules as NumPy numbers where that changes nothing but speed.

    GX's pandas range check is vectorised only for NumPy int/float columns; on pandas' nullable
    Int64/Float64 it calls Python once per value (about 1 s a national term). An Int64 column
    without nulls is exactly an int64 one; a Float64 column's nulls become NaN, which GX skips as
    it skips nulls. The failing values it reports are the same numbers (tests/test_expectations.py)."""
    gx, _ = _gx()
    cols = {e.column for e in suite.expectations if isinstance(e, gx.expectations.ExpectColumnValuesToBeBetween)}
    cast = {}
    for c in cols:
        if c not in frame:
            continue
        t = frame[c].dtype
        if isinstance(t, pd.Int64Dtype) and not frame[c].hasnans:
            cast[c] = "int64"
        elif isinstance(t, pd.Float64Dtype):
            cast[c] = "float64"
    return frame.astype(cast) if cast else frame


FAILURE_COLUMNS = ("rule_id", "severity", "column", "message_en", "message_vi", "observed")


def validate(df: pd.DataFrame, suite: gx.ExpectationSuite, *, key_column: str = "row_id") -> ValidationReport:
    """Run ``suite`` once over the whole frame and report failures per row and per rule.

    ``row_failures`` is keyed by a column named like ``key_column`` so it merges straight back
    onto the frame.  Raises ValueError for a frame that breaks the canonical shape and
    RuntimeError when GX could not evaluate a rule (neither a pass nor a row failure).
    """
    df = _with_required_columns(df, suite, key_column)
    wanted = set(suite_columns(suite, key_column))
    gx_frame = df[[c for c in df.columns if c in wanted]] if not wanted.issuperset(df.columns) else df
    gx_frame = _numpy_between_columns(gx_frame, suite)
    with _LOCK:
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": gx_frame})
        with _validation_memos():
            result = batch.validate(suite, result_format=result_format(key_column))

    failures, rules, context = [], [], {}
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
        start = len(failures)
        for hit in res.get("unexpected_index_list") or []:
            # GX gives the key plus the checked column(s).  A bare value when that is the rule's
            # own column, otherwise "column=value" pairs (pair/compound rules, or a derived
            # column such as age_at_term).
            values = {c: v for c, v in hit.items() if c != key_column}
            observed = (_text(values[meta["column"]]) if list(values) == [meta["column"]]
                        else "; ".join(f"{c}={_text(v)}" for c, v in values.items()))
            failures.append([hit[key_column], *(meta[k] for k in FAILURE_COLUMNS[:-1]), observed])
        if meta.get("context_columns") and len(failures) > start:
            context[(start, len(failures))] = meta["context_columns"]

    # Context (e.g. the previous term's status) is looked up once per rule, vectorised.
    if context:
        indexed = df.set_index(key_column)
        for (lo, hi), cols in context.items():
            keys = [f[0] for f in failures[lo:hi]]
            extra = indexed.loc[keys, cols]
            for f, row in zip(failures[lo:hi], extra.itertuples(index=False)):
                shown = "; ".join(f"{c}={_text(v)}" for c, v in zip(cols, row))
                f[-1] = f"{f[-1]} ({shown})" if f[-1] else shown

    row_failures = (pd.DataFrame(failures, columns=[key_column, *FAILURE_COLUMNS])
                    .astype({key_column: df[key_column].dtype})
                    .sort_values([key_column, "rule_id"], ignore_index=True))
    success = not any(r["severity"] == ERROR and not r["success"] for r in rules)
    return ValidationReport(row_failures, pd.DataFrame(rules), success, key_column, result)
