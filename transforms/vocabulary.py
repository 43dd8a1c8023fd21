"""Terms (`2024-1`) and internship rounds (`2026H1`): parsing, ordering, ranges.

A term `YYYY-S` is semester S (1 = Sep-Jan, 2 = Feb-Jun) of the academic year starting in YYYY.
A round `YYYYHn` is calendar half n of year YYYY.
"""
from __future__ import annotations

import re

TERM_RE = re.compile(r"^(\d{4})-([12])$")
ROUND_RE = re.compile(r"^(\d{4})H([12])$")


def parse_term(term: str) -> tuple[int, int]:
    m = TERM_RE.match(term or "")
    if not m:
        raise ValueError(f"term {term!r} is not of the form YYYY-S, e.g. 2024-1 (academic year 2024-2025, semester 1)")
    return int(m.group(1)), int(m.group(2))


def parse_round(round_: str) -> tuple[int, int]:
    m = ROUND_RE.match(round_ or "")
    if not m:
        raise ValueError(f"round {round_!r} is not of the form YYYYHn, e.g. 2026H1 (January-June 2026)")
    return int(m.group(1)), int(m.group(2))


def term_index(term: str) -> int:
    year, sem = parse_term(term)
    return year * 2 + (sem - 1)


def term_from_index(i: int) -> str:
    return f"{i // 2}-{i % 2 + 1}"


def terms_between(first: str, last: str) -> list[str]:
    a, b = term_index(first), term_index(last)
    if a > b:
        raise ValueError(f"first term {first} is after last term {last}")
    return [term_from_index(i) for i in range(a, b + 1)]


def round_index(round_: str) -> int:
    year, half = parse_round(round_)
    return year * 2 + (half - 1)


def round_from_index(i: int) -> str:
    return f"{i // 2}H{i % 2 + 1}"


def rounds_between(first: str, last: str) -> list[str]:
    a, b = round_index(first), round_index(last)
    if a > b:
        raise ValueError(f"first round {first} is after last round {last}")
    return [round_from_index(i) for i in range(a, b + 1)]


def first_round_after_term(term: str) -> str:
    """The first internship round a student finishing in `term` can join.

    Semester 1 of YYYY ends in January YYYY+1 -> round (YYYY+1)H1... but placements run
    after the academic year, so semester 1 finishers join (YYYY+1)H1 and semester 2
    finishers (June YYYY+1) join (YYYY+1)H2.
    """
    year, sem = parse_term(term)
    return f"{year + 1}H{sem}"
