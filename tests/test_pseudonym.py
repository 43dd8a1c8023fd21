"""One student, one pseudonym, whatever the spelling (issue 13 item 3).

Identifiers are canonicalised before hashing (transforms/ingest/pseudonym.py): the properties below
spell one student number and one national id in the ways offices' software does (case, invisible
characters, NBSP and other spaces, full-width and other-script digits, Excel's lost leading zeros
and ".0") and check that every spelling gets the same pseudonym: through the functions, and through
the production readers and normaliser from a CSV and from an XLSX written with openpyxl.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.ingest import normalise as N
from transforms.ingest import readers
from transforms.ingest.pseudonym import (LOOKALIKE, NOT_A_NUMBER, canonical_national_id, canonical_student_number,
                                         pseudonymise_list)

REF = Path(__file__).resolve().parent.parent / "data" / "reference"
ALIASES = readers.AliasTable.from_csv(REF / "column_aliases.csv")
VALUES = N.ValueAliases.from_csv(REF / "value_aliases.csv")
KEY = os.environ["LAB2FAB_PSEUDONYM_KEY"].encode()

INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\u00ad", "\ufeff", "\u202a", "\u202c",
             "\u2066", "\u2069", "\u061c", "\u180e"]
SPACES = ["", " ", "  ", "\u00a0", "\u202f", "\u3000", "\u2009"]
DIGIT_ZEROS = [0x30, 0xFF10, 0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0x1040]  # ASCII, full-width, Arabic-Indic, ...

student_numbers = st.from_regex(r"[A-Z]{1,3}[0-9]{2}[A-Z]{0,4}[0-9]{3,5}", fullmatch=True)
# A CCCD: a province code 001–096 first, so it always starts with 0 (Excel drops it); a CMND: 9 digits.
cccds = st.builds(lambda p, rest: f"{p:03d}{rest:09d}", st.integers(1, 96), st.integers(0, 10**9 - 1))
cmnds = st.builds(lambda p, rest: f"{p:02d}{rest:07d}", st.integers(1, 38), st.integers(0, 10**7 - 1))


@st.composite
def spelled(draw, canonical: str, *, numeric_id: bool = False):
    """`canonical` as an office's software may have written it."""
    out = []
    for c in canonical:
        if c.isdigit():
            c = chr(draw(st.sampled_from(DIGIT_ZEROS)) + int(c))
        elif c.isalpha():
            c = draw(st.sampled_from([c, c.lower(), chr(0xFF21 + ord(c) - ord("A"))]))  # full-width Ａ
        out.append(c)
        if draw(st.integers(0, 4)) == 0:
            out.append(draw(st.sampled_from(INVISIBLE)))
    text = "".join(out)
    if numeric_id and draw(st.booleans()):
        # Written as a number: Excel dropped the leading zero(s), and may have added ".0".
        text = canonical.lstrip("0") + draw(st.sampled_from(["", ".0"]))
    return draw(st.sampled_from(SPACES)) + text + draw(st.sampled_from(SPACES))


@given(st.data(), student_numbers)
def test_every_spelling_of_a_student_number_is_one_canonical_number(data, number):
    spelling = data.draw(spelled(number))
    assert canonical_student_number(spelling) == (number, None)
    assert pseudonymise_list(KEY, [canonical_student_number(spelling)[0]], "HUST") == \
        pseudonymise_list(KEY, [number], "HUST")


@given(st.data(), st.one_of(cccds, cmnds))
def test_every_spelling_of_a_national_id_is_one_canonical_id(data, national_id):
    spelling = data.draw(spelled(national_id, numeric_id=True))
    assert canonical_national_id(spelling) == (national_id, None), spelling


@given(st.lists(st.text(max_size=12), min_size=2, max_size=4))
def test_spellings_that_canonicalise_equal_get_one_pseudonym(values):
    """Pseudonyms depend on the canonical form only: equal canonical forms, equal keys; different, different."""
    canon = [canonical_student_number(v)[0] for v in values]
    keys = pseudonymise_list(KEY, canon, "HUST")
    for c1, k1 in zip(canon, keys):
        for c2, k2 in zip(canon, keys):
            assert (k1 == k2) == (c1 == c2)


@pytest.mark.parametrize("value", ["B21DCCN0О1",  # Cyrillic О
                                   "В21DCCN001",  # Cyrillic В
                                   "Β21DCCN001",  # Greek Beta
                                   "SV2021ΟΟ1"])  # Greek Omicron
def test_lookalike_letters_from_other_scripts_are_not_hashed(value):
    assert canonical_student_number(value) == (None, LOOKALIKE)


@pytest.mark.parametrize("value", ["Nguyen Van An", "Trần Thị Bích", "17/05/2003", "2003-05-17", "an.nv@hust.edu.vn"])
def test_a_value_from_another_column_is_no_student_number(value):
    assert canonical_student_number(value) == (None, NOT_A_NUMBER)


@pytest.mark.parametrize("value,expected", [
    ("0О1203012345", (None, LOOKALIKE)),  # Cyrillic О for a zero
    ("O01203012345", (None, LOOKALIKE)),  # Latin O for a zero
    ("1.23457E+11", (None, "a number in scientific notation whose digits were lost (send the id as text)")),
    ("1.20301234567E+11", ("120301234567", None)),
    ("7.9303004567E+10", ("079303004567", None)),
    ("1203012345", ("001203012345", None)),  # a CCCD of province 001 read as a number
    ("79303004567.0", ("079303004567", None)),
    ("12345678", ("012345678", None)),  # a CMND of province 01 read as a number
    ("012345678", ("012345678", None)),
    ("0912345678", (None, "a national id has 12 digits (CCCD) or 9 (CMND); this one has 10")),  # a phone
    ("1234567", (None, "a national id has 12 digits (CCCD) or 9 (CMND); this one has 7")),
    ("2003-05-17", (None, "a national id has 12 digits (CCCD) or 9 (CMND); this one has 8")),  # a date
    ("Nguyễn Văn An", (None, "not a national id: it holds characters other than digits and separators")),
    ("AB123456789012", (None, "not a national id: it holds characters other than digits and separators")),
    ("Số CCCD: 001203012345", ("001203012345", None)),
    ("0012 0301 2345", ("001203012345", None)),
    ("CCCD: 001203012345", ("001203012345", None)),
])
def test_national_id_rules(value, expected):
    assert canonical_national_id(value) == expected


def test_a_lookalike_id_is_quarantined_with_its_rule():
    from transforms.contract import suites as contract

    raw = pd.DataFrame({"line": [2, 3, 4], "student_id": ["B21DCCN001", "В21DCCN002", "B21DCCN003"],
                        "national_id": ["001203012345", "001203012346", "0О1203012347"],
                        "gender": "Nam", "programme_code": "7520207", "degree_level": "Cử nhân",
                        "intake_year": "2021", "study_year": "3", "status": "Đang học"})
    frame = N.normalise_enrollment(raw, key=KEY, values=VALUES, file_id="f", university_code="HUST", term="2024-1")
    assert frame["student_key"].isna().tolist() == [False, True, False]
    assert frame["person_key"].isna().tolist() == [False, False, True]
    frame.insert(0, "row_id", range(len(frame)))
    ref = contract.ContractReference({"HUST"}, {"7520207"}, set())
    f = contract.validate(frame, contract.build_enrollment_suite(ref)).row_failures
    assert sorted(zip(f["row_id"], f["rule_id"])) == [(1, "ENR.student_id.unreadable"),
                                                     (2, "ENR.national_id.unreadable")]
    assert set(f["column"]) == {"student_id", "national_id"}


# ------------------------------------------------------------------ through the production readers

HEADER = ["Mã sinh viên", "Số CCCD", "Giới tính", "Mã ngành", "Trình độ", "Năm nhập học", "Năm thứ", "Tình trạng"]


def _rows(spellings: list[tuple[str, object]]) -> list[list]:
    return [[sid, nid, "Nam", "7520207", "Cử nhân", "2021", "3", "Đang học"] for sid, nid in spellings]


def _keys(path: Path) -> tuple[set, set, int]:
    raw = readers.read_submission(path, ALIASES, N.ENROLLMENT_REQUIRED, name=path.name)
    frame = N.normalise_enrollment(raw.frame, key=KEY, values=VALUES, file_id="f", university_code="HUST",
                                   term="2024-1")
    return set(frame["student_key"]), set(frame["person_key"]), len(frame)


def _expected(number: str, national_id: str) -> tuple[set, set]:
    return set(pseudonymise_list(KEY, [number], "HUST")), set(pseudonymise_list(KEY, [national_id]))


# Spellings a CSV cell can hold: no tab, CR or quote trouble (the CSV writer quotes what it must).
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data(), student_numbers, cccds)
def test_one_student_one_pseudonym_in_csv(tmp_path, data, number, national_id):
    spellings = [(data.draw(spelled(number)), data.draw(spelled(national_id, numeric_id=True)))
                 for _ in range(data.draw(st.integers(2, 5)))]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([HEADER, *_rows(spellings)])
    path = tmp_path / "ds.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    students, people, n = _keys(path)
    assert n == len(spellings)
    assert (students, people) == _expected(number, national_id), spellings


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data(), student_numbers, cccds)
def test_one_student_one_pseudonym_in_xlsx(tmp_path, data, number, national_id):
    """The same, from a workbook: text cells, and the national id also as a number cell (Excel's way)."""
    from openpyxl import Workbook

    spellings = []
    for _ in range(data.draw(st.integers(2, 5))):
        nid = data.draw(spelled(national_id))
        if data.draw(st.booleans()):
            nid = int(national_id)  # a number cell: the leading zero is gone
        spellings.append((data.draw(spelled(number)), nid))
    wb = Workbook()
    ws = wb.active
    for row in [HEADER, *_rows(spellings)]:
        ws.append(row)
    path = tmp_path / "ds.xlsx"
    wb.save(path)
    students, people, n = _keys(path)
    assert n == len(spellings)
    assert (students, people) == _expected(number, national_id), spellings
