"""The programme's words, defined once: tracks, degree levels, statuses, codes, terms and rounds.

Every module that needs one of these imports it from here (the SQL models' yml tests too:
`accepted_values: {values: vocabulary.STATUSES}`), so a new track or status is added in one place.

A term `YYYY-S` is semester S (1 = Sep-Jan, 2 = Feb-Jun) of the academic year starting in YYYY.
A round `YYYYHn` is calendar half n of year YYYY.
"""
from __future__ import annotations

import re

TERM_RE = re.compile(r"^(\d{4})-([12])$")
ROUND_RE = re.compile(r"^(\d{4})H([12])$")
CODE_RE = re.compile(r"^[A-Z0-9]{2,12}$")  # a university registry code (and its landing folder)

# Internship and study tracks of the semiconductor programmes (ref.programmes.track, placements).
TRACKS = ("design", "fabrication", "packaging_testing", "equipment")
# How the 2030 targets (Decision 1017/QĐ-TTg, ref.targets) group tracks and degree levels.
TRACK_GROUP = {"design": "design", "fabrication": "fab_pkg_test", "packaging_testing": "fab_pkg_test",
               "equipment": "fab_pkg_test"}
DEGREE_LEVELS = ("bachelor", "engineer", "master", "doctor")
LEVEL_GROUP = {"bachelor": "bachelor_engineer", "engineer": "bachelor_engineer", "master": "master",
               "doctor": "doctor"}
# Normal length of each degree, in years. Per degree level, not ref.programmes.normal_years: a
# programme code (7xxxxxx) is taught both as a 4-year bachelor and a 5-year engineer degree, so
# the catalogue's one figure per programme cannot tell a final-year engineer from a bachelor.
NORMAL_YEARS = {"bachelor": 4, "engineer": 5, "master": 2, "doctor": 4}
# A student's status in a term, in the order of a study life.
STATUSES = ("studying", "on_leave", "graduated", "dropped_out", "transferred")
ACTIVE_STATUSES = ("on_leave", "studying")      # still enrolled
EXIT_STATUSES = ("dropped_out", "transferred")  # left without graduating
GENDERS = ("M", "F", "X")
PLACEMENT_OUTCOMES = ("completed", "withdrew")
# What became of a landed file (ops.manifest.status) and the contract's verdict on it.
FILE_STATUSES = ("loaded", "superseded", "rejected", "duplicate")
VERDICTS = ("accepted", "accepted_with_warnings", "rejected")
# A university's submission for a term (intermediate.current_submissions, marts.submission_status, the
# feedback files, the portal and the report); `late` only in marts.submission_status.status_with_late.
SUBMISSION_STATUSES = ("accepted", "accepted_with_issues", "accepted_with_warnings", "late", "rejected", "missing")


def _parse(pattern: re.Pattern, text: str, what: str, form: str) -> tuple[int, int]:
    m = pattern.match(text or "")
    if not m:
        raise ValueError(f"{what} {text!r} is not of the form {form}")
    return int(m.group(1)), int(m.group(2))


def _between(index, from_index, first: str, last: str, what: str) -> list[str]:
    a, b = index(first), index(last)
    if a > b:
        raise ValueError(f"first {what} {first} is after last {what} {last}")
    return [from_index(i) for i in range(a, b + 1)]


def parse_term(term: str) -> tuple[int, int]:
    return _parse(TERM_RE, term, "term", "YYYY-S, e.g. 2024-1 (academic year 2024-2025, semester 1)")


def parse_round(round_: str) -> tuple[int, int]:
    return _parse(ROUND_RE, round_, "round", "YYYYHn, e.g. 2026H1 (January-June 2026)")


def term_index(term: str) -> int:
    year, sem = parse_term(term)
    return year * 2 + (sem - 1)


def term_from_index(i: int) -> str:
    return f"{i // 2}-{i % 2 + 1}"


def terms_between(first: str, last: str) -> list[str]:
    return _between(term_index, term_from_index, first, last, "term")


def round_index(round_: str) -> int:
    year, half = parse_round(round_)
    return year * 2 + (half - 1)


def round_from_index(i: int) -> str:
    return f"{i // 2}H{i % 2 + 1}"


def rounds_between(first: str, last: str) -> list[str]:
    return _between(round_index, round_from_index, first, last, "round")


def first_round_after_term(term: str) -> str:
    """The first internship round a student finishing in `term` can join.

    Semester 1 of YYYY ends in January YYYY+1 -> round (YYYY+1)H1... but placements run
    after the academic year, so semester 1 finishers join (YYYY+1)H1 and semester 2
    finishers (June YYYY+1) join (YYYY+1)H2.
    """
    year, sem = parse_term(term)
    return f"{year + 1}H{sem}"
