"""The column-at-once normaliser gives exactly what the per-value rules give (issue 17).

transforms/ingest/normalise.py holds a file's columns as Arrow text, runs each rule once per distinct
value and spreads the results back in C; student numbers and national ids already in canonical form
are recognised for a whole column at once (pseudonym.canonical_ids), and HMAC is computed from two
keyed SHA-256 states (pseudonym.keyed_digests). Each shortcut is checked here against the plain rule
on hostile values: other-script look-alikes, NBSP and every other space, invisible characters,
full-width and other-script digits, ".0", scientific notation, labels ("CCCD:"), lower case, dates,
emails, blanks and cells that are not text; and whole files against a per-cell reference normaliser
(the rules applied cell by cell, as the code did before the shortcuts).
"""
from __future__ import annotations

import hashlib
import hmac
import math
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.contract.privacy import mask_values
from transforms.ingest import normalise as N
from transforms.ingest.pseudonym import (WHITESPACE, canonical_ids, canonical_national_id, canonical_student_number,
                                         keyed_digests, pseudonymise_arrow, pseudonymise_list)
from transforms.vocabulary import parse_term

REF = Path(__file__).resolve().parent.parent / "data" / "reference"
VALUES = N.ValueAliases.from_csv(REF / "value_aliases.csv")
COHORTS = N.CohortConventions.from_csv(REF / "cohort_conventions.csv")
KEY = os.environ["LAB2FAB_PSEUDONYM_KEY"].encode()
TEXT = pa.large_string()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILES = settings(SETTINGS, max_examples=120)  # a whole file per example, and its reference

# ------------------------------------------------------------------ hostile values

SPACES = [" ", "\u00a0", "\u202f", "\u3000", "\u2009", "\t", "\n", "\x1c", "\x85", "\u2028"]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u200e", "\u2060", "\u00ad", "\ufeff", "\u202a", "\u180e", "\ufe0f"]
LOOKALIKES = ["В", "Β", "О", "Ο", "А", "С", "Е", "Н", "К", "М", "Р", "Т", "Х", "о", "а", "е", "і", "ο"]
DIGITS = ["0", "1", "5", "9", "０", "９", "٣", "۷", "३", "৫", "๑", "၀", "𝟗"]  # ASCII, full-width, ..., math bold
LETTERS = ["A", "B", "Z", "a", "q", "z", "Ａ", "ｂ", "ß", "ﬁ", "é", "Đ", "đ", "I", "l", "O", "o", "E", "e"]
PIECES = (DIGITS * 3 + LETTERS + SPACES + INVISIBLE + LOOKALIKES
          + [".", ",", "-", "/", ":", "#", "@", "+", "_", "E+", "e+", ".0", ".00", "CCCD:", "CMND ", "Số ",
             "số CCCD/CMND: ",
             "cmt#", "Nguyễn Văn An", "2003-05-17", "17/05/2003", "a.b@x.vn", "1.23456789012E+11", "1.23457E+11"])


@st.composite
def hostile(draw) -> str:
    return "".join(draw(st.lists(st.sampled_from(PIECES), min_size=0, max_size=8)))


def digits(n: int):
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


# Values already canonical (the fast path), the same with a twist, and anything at all.
national_ids = st.one_of(digits(12), digits(9), digits(11), digits(10), digits(8), digits(13),
                         st.builds(lambda a, b: a + b, digits(12), st.sampled_from([".0", " ", "\u00a0", "E+11", "O"])),
                         st.builds(lambda a, b: a + b, st.sampled_from(["CCCD:", " ", "số ", "٣"]), digits(12)),
                         hostile(), st.text(max_size=14))
student_numbers = st.one_of(st.from_regex(r"[A-Za-z]{0,4}[0-9]{1,8}[A-Za-z]{0,4}[0-9]{0,3}", fullmatch=True),
                            st.from_regex(r"[A-Za-z]{1,8}", fullmatch=True),
                            st.builds(lambda a, b, c: a + b + c, st.sampled_from(["", " ", "В", "ｂ"]),
                                      st.from_regex(r"[A-Z]{1,3}[0-9]{3,6}", fullmatch=True),
                                      st.sampled_from(["", ".0", " 1", "\u200b", "@x.vn", "/05/2003", "ß"])),
                            hostile(), st.text(max_size=12))
cells = st.one_of(st.none(), st.sampled_from(["", " ", "\u00a0", "\u3000 \t"]), hostile(), st.text(max_size=10))


def arrow(values: list) -> pa.Array:
    return pa.array(values, type=TEXT)


def test_whitespace_is_what_str_strip_removes():
    assert WHITESPACE == "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
    assert len(set(WHITESPACE)) == len(WHITESPACE)


@SETTINGS
@given(st.lists(cells, max_size=30))
def test_a_column_is_stripped_as_python_strips_each_cell(values):
    column = N._Cells(N._cells(pd.Series(values, dtype="string")))
    by_row = [column.distinct[i] if i < len(column.distinct) else None for i in column._encoded[1]]
    assert by_row == [(v.strip() or None) if isinstance(v, str) else None for v in values]
    assert column.stripped.to_pylist() == [v.strip() if isinstance(v, str) else None for v in values]


# ------------------------------------------------------------------ identifiers and digests

@SETTINGS
@given(st.lists(national_ids, max_size=20))
def test_national_ids_at_once_are_the_rule_per_value(values):
    ids, problems = canonical_ids(arrow(values), canonical_national_id)
    expected = [canonical_national_id(v) for v in values]
    assert list(zip(ids.to_pylist(), problems.to_pylist())) == expected


@SETTINGS
@given(st.lists(student_numbers, max_size=20))
def test_student_numbers_at_once_are_the_rule_per_value(values):
    ids, problems = canonical_ids(arrow(values), canonical_student_number)
    expected = [canonical_student_number(v) for v in values]
    assert list(zip(ids.to_pylist(), problems.to_pylist())) == expected


@SETTINGS
@given(st.one_of(digits(12), digits(9)))
def test_twelve_or_nine_ascii_digits_are_their_own_national_id(value):
    assert canonical_national_id(value) == (value, None)


@SETTINGS
@given(st.from_regex(r"[A-Za-z0-9]*[0-9][A-Za-z0-9]*", fullmatch=True))
def test_ascii_letters_and_digits_with_a_digit_are_their_own_upper_case(value):
    assert canonical_student_number(value) == (value.upper(), None)


def test_ids_that_are_missing_blank_or_not_ids():
    values = [None, "", "   ", "\u00a0", "001203012345", "0О1203012347", "b21dccn001", "B21DCCN001", "В21DCCN002",
              "1.23457E+11", "CCCD: 001203012345", "1203012345", "12345678", "17/05/2003", "x@y.vn", "abc"]
    for canonical in (canonical_student_number, canonical_national_id):
        ids, problems = canonical_ids(arrow(values), canonical)
        assert list(zip(ids.to_pylist(), problems.to_pylist())) == [canonical(v) if v is not None else (None, None)
                                                                    for v in values]
        empty, none = canonical_ids(arrow([]), canonical)
        assert empty.to_pylist() == [] and none.to_pylist() == []


def reference_digest(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.lists(st.one_of(st.none(), st.binary(max_size=300)), max_size=10))
def test_keyed_digests_are_hmac_sha256(key, messages):
    assert keyed_digests(key, messages) == [None if m is None else reference_digest(key, m) for m in messages]


@pytest.mark.parametrize("key_length", [0, 1, 32, 63, 64, 65, 128, 1000])
def test_keyed_digests_for_keys_of_every_length(key_length):
    key = bytes(range(256))[:key_length] * (1 + key_length // 256)
    assert keyed_digests(key, [b"HUST:B21DCCN001", b""]) == [reference_digest(key, b"HUST:B21DCCN001"),
                                                              reference_digest(key, b"")]


prefixes = st.one_of(st.none(), st.sampled_from(["HUST", "", "PTIT"]),
                     st.lists(st.one_of(st.none(), st.sampled_from(["HUST", "VNU", "", "Đ"])), min_size=20, max_size=20))


@SETTINGS
@given(st.lists(cells, min_size=20, max_size=20), prefixes)
def test_pseudonymise_arrow_is_pseudonymise_list(values, prefix):
    got = pseudonymise_arrow(KEY, arrow(values), prefix if not isinstance(prefix, list) else arrow(prefix))
    assert got.to_pylist() == pseudonymise_list(KEY, values, prefix)
    expected = []  # and both are HMAC-SHA256 of "prefix:value", the rule of docs/DATA_CONTRACT.md
    for i, v in enumerate(values):
        p = prefix[i] if isinstance(prefix, list) else prefix
        ok = isinstance(v, str) and v.strip() and not (isinstance(prefix, list) and p is None)
        message = (p + ":" if p is not None else "") + v.strip() if ok else None
        expected.append(reference_digest(KEY, message.encode()) if ok else None)
    assert got.to_pylist() == expected


# ------------------------------------------------------------------ whole files against a per-cell reference

def _ref_values(s) -> list:
    cells = s.tolist() if isinstance(s, pd.Series) else s
    return [(v.strip() or None) if isinstance(v, str) else None for v in cells]


def _ref_per_value(values: list, fn) -> list:
    return [None if v is None else fn(v) for v in values]


def _ref_ids(values: list, canonical) -> tuple[list, list]:
    pairs = _ref_per_value(values, canonical)
    return [p[0] if p else None for p in pairs], [p[1] if p else None for p in pairs]


def _ref_keys(key: bytes, values: list, prefix) -> list:
    out = []
    for i, v in enumerate(values):
        p = prefix if isinstance(prefix, str) or prefix is None else prefix[i]
        if not isinstance(v, str) or not v.strip() or (prefix is not None and not isinstance(p, str)):
            out.append(None)
        else:
            out.append(reference_digest(key, (v.strip() if prefix is None else p + ":" + v.strip()).encode()))
    return out


def _ref_gpa(values: list) -> list:
    parsed = _ref_per_value(values, N._gpa_value)
    plain = [p[0] for p in parsed if p is not None and p[1] is None]
    ten = bool(plain) and sum(g > 4 for g in plain) > N.GPA_10_SHARE * len(plain)
    return [None if p is None else round(p[0] * 0.4, 2) if (p[1] == 10 or (p[1] is None and ten)) else p[0]
            for p in parsed]


def _s(values: list, dtype: str, idx) -> pd.Series:
    return pd.Series(pd.array(values, dtype=dtype), index=idx)


def reference_enrollment(raw: pd.DataFrame, file_id: str, university_code: str, term: str) -> pd.DataFrame:
    """normalise_enrollment, one cell at a time (the committed code before issue 17's shortcuts)."""
    term_year, _ = parse_term(term)
    idx = pd.RangeIndex(len(raw))
    col = {c: _ref_values(raw[c]) if c in raw else [None] * len(raw)
           for c in N.ENROLLMENT_REQUIRED | {"gpa", "birth_date"}}
    code = lambda f: _s(_ref_per_value(col[f], lambda v: VALUES.code(f, v)), "string", idx)  # noqa: E731
    intake = _ref_per_value(col["intake_year"], lambda v: N.intake_year(v, university_code, COHORTS))
    degree = _ref_per_value(col["degree_level"], lambda v: VALUES.code("degree_level", v))
    sid, sprob = _ref_ids(col["student_id"], canonical_student_number)
    nid, nprob = _ref_ids(col["national_id"], canonical_national_id)
    return pd.DataFrame({
        "file_id": file_id, "university_code": university_code, "term": term,
        "line": pd.array(raw["line"].to_numpy(), dtype="Int64"),
        "student_key": _s(_ref_keys(KEY, sid, university_code), "string", idx),
        "person_key": _s(_ref_keys(KEY, nid, None), "string", idx),
        "gender": code("gender"),
        "programme_code": _s(_ref_per_value(mask_values(col["programme_code"]), N.programme_code), "string", idx),
        "degree_level": _s(degree, "string", idx),
        "intake_year": _s(intake, "Int64", idx),
        "study_year": _s(_ref_per_value(col["study_year"], N.study_year), "Int64", idx),
        "status": code("status"),
        "gpa": _s(_ref_gpa(col["gpa"]), "Float64", idx),
        "birth_year": _s(_ref_per_value(col["birth_date"], N.birth_year), "Int64", idx),
        "term_year": _s([term_year] * len(raw), "Int64", idx),
        "degree_years": _s([N.DEGREE_YEARS.get(d) for d in _ref_values(degree)], "Int64", idx),
        "years_since_intake": _s([None if y is None else term_year - y + 1 for y in intake], "Int64", idx),
        "student_id_problem": _s(sprob, "string", idx),
        "national_id_problem": _s(nprob, "string", idx),
        **{f"raw_{c}": _s(mask_values(col[c]), "string", idx) for c in N.ENROLLMENT_RAW},
    }, index=idx)


def reference_placements(raw: pd.DataFrame, file_id: str, round_: str) -> pd.DataFrame:
    idx = pd.RangeIndex(len(raw))
    col = {c: _ref_values(raw[c]) if c in raw else [None] * len(raw)
           for c in N.PLACEMENT_REQUIRED | {"semiconductor_job"}}
    upper = lambda v: "".join(v.split()).upper()  # noqa: E731
    sid, sprob = _ref_ids(col["student_id"], canonical_student_number)
    return pd.DataFrame({
        "file_id": file_id,
        "line": pd.array(raw["line"].to_numpy(), dtype="Int64"),
        "round": _s([v.upper() if v else round_ for v in mask_values(col["round"])], "string", idx),
        "university_code": _s(_ref_per_value(mask_values(col["university_code"]), upper), "string", idx),
        "student_key": _s(_ref_keys(KEY, sid, _ref_per_value(col["university_code"], upper)), "string", idx),
        "host_code": _s(_ref_per_value(mask_values(col["host_code"]), upper), "string", idx),
        "track": _s(_ref_per_value(mask_values(col["track"]), lambda v: v.lower()), "string", idx),
        "outcome": _s(_ref_per_value(col["outcome"], lambda v: VALUES.code("outcome", v)), "string", idx),
        "semiconductor_job": _s(_ref_per_value(col["semiconductor_job"], lambda v: VALUES.code("semiconductor_job", v)),
                                "string", idx),
        "student_id_problem": _s(sprob, "string", idx),
        **{f"raw_{c}": _s(mask_values(col[c]), "string", idx) for c in N.PLACEMENT_RAW},
    }, index=idx)


def column(*typical: str):
    """A column's cells: the office's usual values, or anything hostile."""
    return st.one_of(st.sampled_from(list(typical)), cells)


FIELDS = {
    "student_id": student_numbers, "national_id": national_ids,
    "gender": column("Nam", "nữ", " Nu ", "Male", "F", "Khác"),
    "programme_code": column("7520207", "7520207.0", "75 20 207", "0123456789012", "Nguyễn Văn An", "17/05/2003"),
    "degree_level": column("Kỹ sư", "Cử nhân", "cu nhan", "Thạc sĩ", "Engineer"),
    "intake_year": column("2021", "2021.0", "2021-2025", "K66", "Khóa 66", "D21", "QH-2021", "K2021", "66"),
    "study_year": column("3", "Năm 3", "3.0", "năm thứ 2", "10"),
    "status": column("Đang học", "Bảo lưu", "Đã tốt nghiệp", "graduated", "Thôi học"),
    "gpa": column("3.2", "2,85", "8.2/10", "3.1/4", "9.25", "35", "7,5", "abc", "4", "4.0"),
    "birth_date": column("2003-05-17", "17/05/2003", "37695", "37695.0", "2003", "3/15/03", "2003-03-15 00:00:00"),
    "round": column("2025-R1", "r2", "Đợt 1"),
    "university_code": column("HUST", " hust ", "VNU HN", "PTIT"),
    "host_code": column("h01", "H 02", "ABC-Semi"),
    "track": column("Design", "FAB", "test"),
    "outcome": column("completed", "Hoàn thành", "withdrew"),
    "semiconductor_job": column("yes", "Có", "no", "không"),
}
ENROLLMENT_COLUMNS = sorted(N.ENROLLMENT_REQUIRED | {"gpa", "birth_date"})
PLACEMENT_COLUMNS = sorted(N.PLACEMENT_REQUIRED | {"semiconductor_job"})


ODD = [None, math.nan, pd.NA, 3, 2021.0, True]  # cells of a frame built by hand that are not text


@st.composite
def raw_data(draw, names: list[str]):
    """Cells by column (now and then a column is missing), and whether they are a reader's "string" columns
    or object cells some of which are not text."""
    n = draw(st.integers(0, 25))
    present = [c for c in names if draw(st.integers(0, 9))]
    as_text = draw(st.booleans())
    odd = st.sampled_from(ODD) if not as_text else st.nothing()
    return n, as_text, {c: draw(st.lists(st.one_of(FIELDS[c], odd), min_size=n, max_size=n)) for c in present}


def raw_frame(data) -> pd.DataFrame:
    n, as_text, columns = data
    dtype = "string" if as_text else object
    frame = pd.DataFrame({c: pd.Series(v, dtype=dtype) for c, v in columns.items()}, index=pd.RangeIndex(n))
    frame.insert(0, "line", pd.array(range(2, n + 2), dtype="Int64"))
    return frame


@FILES
@given(raw_data(ENROLLMENT_COLUMNS), st.sampled_from(["HUST", "PTIT", "UET", "VNUA"]),
       st.sampled_from(["2024-1", "2025-2"]))
def test_an_enrollment_file_is_normalised_as_cell_by_cell(data, university, term):
    raw = raw_frame(data)
    got = N.normalise_enrollment(raw, key=KEY, values=VALUES, file_id="f", university_code=university, term=term,
                                 conventions=COHORTS)
    pd.testing.assert_frame_equal(got, reference_enrollment(raw, "f", university, term), check_exact=True)


@FILES
@given(raw_data(PLACEMENT_COLUMNS), st.sampled_from(["2025-R1", "2025-R2"]))
def test_a_placement_file_is_normalised_as_cell_by_cell(data, round_):
    raw = raw_frame(data)
    got = N.normalise_placements(raw, key=KEY, values=VALUES, file_id="p", round_=round_)
    pd.testing.assert_frame_equal(got, reference_placements(raw, "p", round_), check_exact=True)


def test_a_ten_point_file_is_told_by_its_rows_not_its_distinct_values():
    # Three rows of 8.0 and four GPAs below 4: 3 in 7 rows above 4 (more than 20 %), 1 in 5 distinct values.
    small = ["3.1", "3.2", "3.3", "3.4"]
    assert N.gpa_on_4(["8.0"] * 3 + small).tolist() == [3.2] * 3 + [round(float(g) * 0.4, 2) for g in small]
    # Nine rows of 3.5, two of 8.0 and 9.0: two in eleven (18 %) is not "mostly above 4".
    assert N.gpa_on_4(["3.5"] * 9 + ["8.0", "9.0"]).tolist() == [3.5] * 9 + [8.0, 9.0]
    assert N.gpa_on_4(pd.Series([], dtype="string")).tolist() == []
