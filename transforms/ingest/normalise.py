"""Turn a file's text rows into the canonical, pseudonymised shape (per file).

Values that cannot be understood become null here and keep their original text in a
`raw_*` column; the data contract (transforms/contract/suites.py) then quarantines the row
with a reason that names the field. Names, national ids and birth dates do not survive
this step: only keyed hashes and the birth year do.

A file's columns are held as Arrow text; a value is a cell's text stripped (str.strip()), or none
when that is empty. Each distinct value of a column is interpreted once, in Python (files repeat the
same few genders, statuses, programmes and years), and the results are spread back to the rows by
Arrow and numpy, in C. Student numbers and national ids are all distinct: those already in canonical
form are recognised for the whole column at once (transforms/ingest/pseudonym.py: canonical_ids),
the rest go through the full rule; tests/test_normalise_fast.py checks both against the plain rules.

Value rules (docs/DATA_CONTRACT.md):
* gender, degree level, status, outcome: `data/reference/value_aliases.csv`, Vietnamese or
  English, any case, with or without diacritics;
* intake year: a 4-digit year (also `2021.0`, or a span such as `2021-2025`), or a cohort label
  (`K66`, `Khóa 66`, `D21`, `QH-2021`) for a university whose convention is listed in
  `data/reference/cohort_conventions.csv`; anything else stays null (rule ENR.intake_year.present);
* GPA: decimal point or comma; a file whose GPAs are mostly above 4 uses the 10-point scale and
  is converted to 4 (x 0.4); `8.2/10` or `3.1/4` says its own scale;
* student number and national id: canonicalised before hashing, the same for every format
  (transforms/ingest/pseudonym.py: NFKC, invisible characters out, ASCII digits, upper case, the
  leading-zero rule); an id with a look-alike letter from another script is not hashed and its
  row is quarantined (`*_problem` columns, rules ENR/PLC.student_id.unreadable, ENR.national_id.unreadable).

Every text kept from a cell past this step (programme and host codes, the raw_* values kept for
quarantine) is screened by content (transforms/contract/privacy.py): a national id, name or
birth date under any header is masked before validation sees it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.contract.privacy import mask_values
from transforms.ingest.pseudonym import (WHITESPACE, canonical_ids, canonical_national_id, canonical_student_number,
                                         pseudonymise_arrow)
from transforms.ingest.readers import AliasLookup, header_key
from transforms.vocabulary import NORMAL_YEARS, parse_term

DEGREE_YEARS = NORMAL_YEARS
ENROLLMENT_REQUIRED = {"student_id", "national_id", "gender", "programme_code", "degree_level",
                       "intake_year", "study_year", "status"}
PLACEMENT_REQUIRED = {"round", "university_code", "student_id", "host_code", "track", "outcome"}
# Original values kept for quarantine: never personal data.
ENROLLMENT_RAW = ["gender", "programme_code", "degree_level", "intake_year", "study_year", "status", "gpa"]
PLACEMENT_RAW = ["round", "university_code", "host_code", "track", "outcome", "semiconductor_job"]
GPA_10_SHARE = 0.2  # a file with more than this share of GPAs above 4 is on the 10-point scale


@dataclass(frozen=True)
class ValueAliases:
    """Value aliases (from `data/reference/value_aliases.csv`): field -> alias lookup -> code."""

    by_field: dict[str, AliasLookup]

    @classmethod
    def from_csv(cls, path: Path) -> "ValueAliases":
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        pairs: dict[str, list[tuple[str, str]]] = {}
        for f, a, c in zip(table["field"], table["alias"], table["canonical"]):
            pairs.setdefault(f, []).append((a, c))
        return cls({f: AliasLookup(p) for f, p in pairs.items()})

    def code(self, field: str, value: str | None) -> str | None:
        return self.by_field[field].lookup(value) if value else None

    def map(self, field: str, values: pd.Series) -> pd.Series:
        return pd.Series(_Cells(_cells(values)).text(self.by_field[field].lookup), index=values.index)


@dataclass(frozen=True)
class CohortConventions:
    """How a university writes intake cohorts (`data/reference/cohort_conventions.csv`).

    A label is an optional `Khóa`, the university's prefix (`K`, `D`, `QH`), and a number:
    intake year = number + offset (`K66` at HUST: 66 + 1955 = 2021). A 4-digit number after
    the prefix is the year itself (`QH-2021`, `K2021`).
    """

    by_university: dict[str, tuple[tuple[re.Pattern, int], ...]]

    @classmethod
    def from_csv(cls, path: Path) -> "CohortConventions":
        if not path.exists():
            return cls({})
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        out: dict[str, list] = {}
        for code, prefix, offset in zip(table["university_code"], table["label_prefix"], table["year_offset"]):
            prefixes = "|".join(re.escape(header_key(p)) for p in prefix.split("|") if header_key(p))
            pattern = re.compile(rf"(khoa\s?)?({prefixes})?\s?(\d{{1,4}})")
            out.setdefault(code.strip(), []).append((pattern, int(offset)))
        return cls({k: tuple(v) for k, v in out.items()})

    def year(self, university_code: str, label: str) -> int | None:
        key = header_key(label)
        for pattern, offset in self.by_university.get(university_code, ()):
            m = pattern.fullmatch(key)
            if m and (m.group(1) or m.group(2)):
                n = m.group(3)
                return int(n) if len(n) == 4 else int(n) + offset
        return None


NO_CONVENTIONS = CohortConventions({})

# ---------------------------------------------------------------- value parsers (one value -> one result)

_YEAR = re.compile(r"(\d{4})(?:\.0+)?")
_YEAR_SPAN = re.compile(r"(\d{4})\s*[-–—/]\s*(?:\d{4}|\d{2})")  # 2021-2025 (niên khóa), 2021-22
_STUDY_YEAR = re.compile(r"\D{0,12}?(\d{1,4})(?:\.0+)?\s*")
_BIRTH = re.compile(r"(?:(\d{4})-\d{1,2}-\d{1,2}|\d{1,2}[/.\-]\d{1,2}[/.\-](\d{4})|(\d{4})|(\d{5})(?:\.0+)?)"
                    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")
_EXCEL_EPOCH = pd.Timestamp("1899-12-30").toordinal()
_DOT_ZERO = re.compile(r"(\d+)\.0+")
_GPA = re.compile(r"(\d{1,2}(?:[.,]\d+)?)\s*(?:/\s*(10|4)(?:[.,]0+)?)?")


def intake_year(value: str, university_code: str = "", conventions: CohortConventions = NO_CONVENTIONS) -> int | None:
    m = _YEAR.fullmatch(value) or _YEAR_SPAN.fullmatch(value)
    if m:
        return int(m.group(1))
    return conventions.year(university_code, value)


def study_year(value: str) -> int | None:
    m = _STUDY_YEAR.fullmatch(value)
    return int(m.group(1)) if m else None


def birth_year(value: str) -> int | None:
    """Year from ISO dates, dd/mm/yyyy, a bare year, or an Excel date serial (1900 date system)."""
    m = _BIRTH.fullmatch(value)
    if not m:
        return None
    year = m.group(1) or m.group(2) or m.group(3)
    if year:
        return int(year)
    return pd.Timestamp.fromordinal(_EXCEL_EPOCH + int(m.group(4))).year


def student_number(value: str) -> str | None:
    return canonical_student_number(value)[0]


def national_number(value: str) -> str | None:
    return canonical_national_id(value)[0]


def programme_code(value: str) -> str | None:
    s = "".join(value.split())
    m = _DOT_ZERO.fullmatch(s)
    return (m.group(1) if m else s) or None


def _gpa_value(value: str) -> tuple[float, int | None] | None:
    m = _GPA.fullmatch(value)
    if not m:
        return None
    return float(m.group(1).replace(",", ".")), (int(m.group(2)) if m.group(2) else None)


def gpa_on_4(values: pd.Series | list) -> pd.Series:
    """GPA on the 4-point scale. A file whose GPAs are mostly above 4 uses the 10-point scale.

    The 10-point scale is converted linearly (x 0.4); universities' own conversion tables
    differ slightly, which matters little for a completeness check. Values out of range stay
    out of range, so that the contract quarantines them (ENR.gpa.range).
    """
    index = values.index if isinstance(values, pd.Series) else pd.RangeIndex(len(values))
    return pd.Series(_gpa_on_4(_Cells(_cells(values))), index=index)


def _gpa_on_4(gpa: "_Cells") -> pd.api.extensions.ExtensionArray:
    parsed = gpa.each(_gpa_value)
    rows = gpa.counts()  # the share above 4 counts rows, not distinct values
    plain = [(p[0], n) for p, n in zip(parsed, rows) if p is not None and p[1] is None]
    n_plain = sum(n for _, n in plain)
    ten = n_plain > 0 and sum(n for g, n in plain if g > 4) > GPA_10_SHARE * n_plain
    out = [None if p is None else round(p[0] * 0.4, 2) if (p[1] == 10 or (p[1] is None and ten)) else p[0]
           for p in parsed]
    return gpa.spread(out, "Float64")


# ---------------------------------------------------------------- columns

_TEXT = pa.large_string()  # what pandas' "string" dtype holds


def _cells(values) -> pa.Array:
    """A column's cells as Arrow text, as read (not stripped), null where a cell is not text."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.StringDtype):
        cells = pa.array(values.array)  # the readers' columns: no copy
    else:  # anything else: only text cells are values
        cells = pa.array([v if isinstance(v, str) else None for v in
                          (values.tolist() if isinstance(values, pd.Series) else values)], type=_TEXT)
    if isinstance(cells, pa.ChunkedArray):
        cells = cells.combine_chunks()
    return cells if cells.type == _TEXT else cells.cast(_TEXT)


def _column(raw: pd.DataFrame, col: str) -> "_Cells":
    return _Cells(_cells(raw[col]) if col in raw else pa.nulls(len(raw), _TEXT))


class _Cells:
    """One column of a file. A value is a cell's text stripped (str.strip()), None when that is empty.

    A rule runs once per distinct value (`each`), and its results are spread back to the rows
    (`rows`, `spread`) by Arrow or numpy, not by a Python loop over the rows."""

    def __init__(self, cells: pa.Array):
        self.cells = cells

    @cached_property
    def stripped(self) -> pa.Array:
        """Every cell stripped, in Arrow (for columns whose values are all distinct: the ids)."""
        return pc.utf8_trim(self.cells, characters=WHITESPACE)

    @cached_property
    def _encoded(self) -> tuple[list, np.ndarray, pa.Array]:
        enc = pc.dictionary_encode(self.cells)
        # Stripped here, once per distinct cell: " Nam" and "Nam" are two entries with one value.
        distinct = [v.strip() or None for v in enc.dictionary.to_pylist()]
        # A cell that is not text points one past the distinct values, where each result list holds its value.
        codes = enc.indices if not enc.indices.null_count else pc.fill_null(enc.indices, len(distinct))
        return distinct, codes.to_numpy(zero_copy_only=False), codes

    @property
    def distinct(self) -> list:
        """The distinct values (None for a cell that is empty once stripped)."""
        return self._encoded[0]

    def each(self, fn: Callable) -> list:
        """fn of each distinct value (None, fn not called, for an empty one), in the order of `distinct`."""
        return [None if v is None else fn(v) for v in self.distinct]

    def counts(self) -> list:
        """Rows holding each distinct value."""
        return np.bincount(self._encoded[1], minlength=len(self.distinct) + 1)[:-1].tolist()

    def rows(self, results: list, empty: str | None = None) -> pa.Array:
        """A text per distinct value (or None) as the column's rows; a cell that is not text gets `empty`."""
        return pa.array(results + [empty], type=_TEXT).take(self._encoded[2])

    def spread(self, results: list, dtype: str) -> pd.api.extensions.ExtensionArray:
        """A result per distinct value (None for none) as the column's rows: "string", "Int64" or "Float64"."""
        if dtype == "string":
            return _text(self.rows(results))
        codes = self._encoded[1]
        known = np.array([r is not None for r in results] + [False])
        numbers = np.array([r if r is not None else 0 for r in results] + [0],
                           dtype=np.int64 if dtype == "Int64" else np.float64)
        array = pd.arrays.IntegerArray if dtype == "Int64" else pd.arrays.FloatingArray
        return array(numbers[codes], ~known[codes])

    def text(self, fn: Callable | None = None, *, masked: bool = False) -> pd.api.extensions.ExtensionArray:
        """The values (screened for personal data when `masked`), through fn per value, as text."""
        values = mask_values(self.distinct) if masked else self.distinct
        return self.spread(values if fn is None else [None if v is None else fn(v) for v in values], "string")


_STRING = pd.StringDtype("pyarrow", na_value=pd.NA)  # "string"


def _text(cells: pa.Array) -> pd.api.extensions.ExtensionArray:
    return pd.arrays.ArrowStringArray(cells, dtype=_STRING)  # over the Arrow array, no copy


# ---------------------------------------------------------------- files

def normalise_enrollment(raw: pd.DataFrame, *, key: bytes, values: ValueAliases, file_id: str,
                         university_code: str, term: str,
                         conventions: CohortConventions = NO_CONVENTIONS) -> pd.DataFrame:
    # Student keys are prefixed by the folder's university code, which the landing scan guarantees;
    # without it every key would silently be unprefixed (prefix None means "no prefix").
    if not isinstance(university_code, str) or not university_code.strip():
        raise ValueError(f"{file_id}: an enrollment file needs its university code to pseudonymise student numbers")
    term_year, _ = parse_term(term)
    idx = pd.RangeIndex(len(raw))
    col = {c: _column(raw, c) for c in ENROLLMENT_REQUIRED | {"gpa", "birth_date"}}
    code = lambda field: col[field].text(lambda v: values.code(field, v))  # noqa: E731
    intake = col["intake_year"].each(lambda v: intake_year(v, university_code, conventions))
    degrees = col["degree_level"].each(lambda v: values.code("degree_level", v))
    degree_years = [DEGREE_YEARS.get((d.strip() or None) if isinstance(d, str) else None) for d in degrees]
    student_ids, student_problems = canonical_ids(col["student_id"].stripped, canonical_student_number)
    national_ids, national_problems = canonical_ids(col["national_id"].stripped, canonical_national_id)
    out = pd.DataFrame({
        "file_id": file_id,
        "university_code": university_code,
        "term": term,
        "line": pd.array(raw["line"].to_numpy(), dtype="Int64"),
        "student_key": _text(pseudonymise_arrow(key, student_ids, university_code)),
        "person_key": _text(pseudonymise_arrow(key, national_ids)),
        "gender": code("gender"),
        "programme_code": col["programme_code"].text(programme_code, masked=True),
        "degree_level": col["degree_level"].spread(degrees, "string"),
        "intake_year": col["intake_year"].spread(intake, "Int64"),
        "study_year": col["study_year"].spread(col["study_year"].each(study_year), "Int64"),
        "status": code("status"),
        "gpa": _gpa_on_4(col["gpa"]),
        "birth_year": col["birth_date"].spread(col["birth_date"].each(birth_year), "Int64"),
        "term_year": pd.array([term_year] * len(raw), dtype="Int64"),
        "degree_years": col["degree_level"].spread(degree_years, "Int64"),
        "years_since_intake": col["intake_year"].spread([None if y is None else term_year - y + 1 for y in intake],
                                                        "Int64"),
        "student_id_problem": _text(student_problems),
        "national_id_problem": _text(national_problems),
        **{f"raw_{c}": col[c].text(masked=True) for c in ENROLLMENT_RAW},
    }, index=idx, copy=False)  # fresh arrays: no copy needed
    return out


def normalise_placements(raw: pd.DataFrame, *, key: bytes, values: ValueAliases, file_id: str,
                         round_: str) -> pd.DataFrame:
    idx = pd.RangeIndex(len(raw))
    col = {c: _column(raw, c) for c in PLACEMENT_REQUIRED | {"semiconductor_job"}}
    upper = lambda v: "".join(v.split()).upper()  # noqa: E731
    # A row's student key is prefixed by its own university code. A row without one (null here)
    # gets no student key: its university_code stays null, and the contract quarantines that row
    # (PLC.university_code.present); the rest of the file is loaded.
    universities = col["university_code"]
    university_codes = universities.rows(universities.each(upper))
    student_ids, student_problems = canonical_ids(col["student_id"].stripped, canonical_student_number)
    out = pd.DataFrame({
        "file_id": file_id,
        "line": pd.array(raw["line"].to_numpy(), dtype="Int64"),
        "round": _text(col["round"].rows([v.upper() if v else round_ for v in mask_values(col["round"].distinct)],
                                         empty=round_)),
        "university_code": universities.text(upper, masked=True),
        "student_key": _text(pseudonymise_arrow(key, student_ids, university_codes)),
        "host_code": col["host_code"].text(upper, masked=True),
        "track": col["track"].text(lambda v: v.lower(), masked=True),
        "outcome": col["outcome"].text(lambda v: values.code("outcome", v)),
        "semiconductor_job": col["semiconductor_job"].text(lambda v: values.code("semiconductor_job", v)),
        "student_id_problem": _text(student_problems),
        **{f"raw_{c}": col[c].text(masked=True) for c in PLACEMENT_RAW},
    }, index=idx, copy=False)  # fresh arrays: no copy needed
    return out
