"""Turn a file's text rows into the canonical, pseudonymised shape (per file).

Values that cannot be understood become null here and keep their original text in a
`raw_*` column; the data contract (transforms/contract/suites.py) then quarantines the row
with a reason that names the field. Names, national ids and birth dates do not survive
this step: only keyed hashes and the birth year do.

Each distinct value of a column is interpreted once (files repeat the same few genders,
statuses, programmes and years), in plain Python over the column's values: offices' files are
small, and per-operation overhead, not per-value work, is what costs time here.

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
from pathlib import Path
from typing import Callable

import pandas as pd

from transforms.contract.privacy import mask_values
from transforms.ingest.pseudonym import canonical_national_id, canonical_student_number, pseudonymise_list
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

_MISSING = object()


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
        lookup = self.by_field[field].lookup
        return pd.Series(_per_value(_values(values), lookup), index=values.index, dtype="string")


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


def _ids(values: list, canonical: Callable) -> tuple[list, list]:
    """Canonical ids (None where missing or not hashable) and why one is not hashable (else None)."""
    pairs = _per_value(values, canonical)
    return [p[0] if p else None for p in pairs], [p[1] if p else None for p in pairs]


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
    index = values.index if isinstance(values, pd.Series) else None
    parsed = _per_value(_values(values), _gpa_value)
    plain = [p[0] for p in parsed if p is not None and p[1] is None]
    ten = bool(plain) and sum(g > 4 for g in plain) > GPA_10_SHARE * len(plain)
    out = []
    for p in parsed:
        if p is None:
            out.append(None)
        else:
            g, scale = p
            out.append(round(g * 0.4, 2) if (scale == 10 or (scale is None and ten)) else g)
    return pd.Series(pd.array(out, dtype="Float64"), index=index)


# ---------------------------------------------------------------- helpers

def _values(s) -> list:
    """A column's cells as stripped text, or None when empty."""
    out = []
    for v in (s.tolist() if isinstance(s, pd.Series) else s):
        if isinstance(v, str):
            v = v.strip()
            out.append(v or None)
        else:
            out.append(None)
    return out


def _column(raw: pd.DataFrame, col: str) -> list:
    return _values(raw[col]) if col in raw else [None] * len(raw)


def _per_value(values: list, fn: Callable) -> list:
    cache: dict = {}
    out = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        r = cache.get(v, _MISSING)
        if r is _MISSING:
            r = cache[v] = fn(v)
        out.append(r)
    return out


def _text(values: list, index) -> pd.Series:
    return pd.Series(values, index=index, dtype="string")


def _int(values: list, index) -> pd.Series:
    return pd.Series(pd.array(values, dtype="Int64"), index=index)


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
    code = lambda field: _text(_per_value(col[field], lambda v: values.code(field, v)), idx)  # noqa: E731
    intake = _per_value(col["intake_year"], lambda v: intake_year(v, university_code, conventions))
    degree = code("degree_level")
    degree_years = [DEGREE_YEARS.get(d) for d in _values(degree)]
    student_ids, student_problems = _ids(col["student_id"], canonical_student_number)
    national_ids, national_problems = _ids(col["national_id"], canonical_national_id)
    out = pd.DataFrame({
        "file_id": file_id,
        "university_code": university_code,
        "term": term,
        "line": pd.array(raw["line"].to_numpy(), dtype="Int64"),
        "student_key": _text(pseudonymise_list(key, student_ids, university_code), idx),
        "person_key": _text(pseudonymise_list(key, national_ids), idx),
        "gender": code("gender"),
        "programme_code": _text(_per_value(mask_values(col["programme_code"]), programme_code), idx),
        "degree_level": degree,
        "intake_year": _int(intake, idx),
        "study_year": _int(_per_value(col["study_year"], study_year), idx),
        "status": code("status"),
        "gpa": gpa_on_4(_text(col["gpa"], idx)),
        "birth_year": _int(_per_value(col["birth_date"], birth_year), idx),
        "term_year": _int([term_year] * len(raw), idx),
        "degree_years": _int(degree_years, idx),
        "years_since_intake": _int([None if y is None else term_year - y + 1 for y in intake], idx),
        "student_id_problem": _text(student_problems, idx),
        "national_id_problem": _text(national_problems, idx),
        **{f"raw_{c}": _text(mask_values(col[c]), idx) for c in ENROLLMENT_RAW},
    }, index=idx)
    return out


def normalise_placements(raw: pd.DataFrame, *, key: bytes, values: ValueAliases, file_id: str,
                         round_: str) -> pd.DataFrame:
    idx = pd.RangeIndex(len(raw))
    col = {c: _column(raw, c) for c in PLACEMENT_REQUIRED | {"semiconductor_job"}}
    upper = lambda v: "".join(v.split()).upper()  # noqa: E731
    # A row's student key is prefixed by its own university code. A row without one (None here)
    # gets no student key: its university_code stays null, and the contract quarantines that row
    # (PLC.university_code.present); the rest of the file is loaded.
    university_codes = _per_value(col["university_code"], upper)
    universities = _text(_per_value(mask_values(col["university_code"]), upper), idx)
    student_ids, student_problems = _ids(col["student_id"], canonical_student_number)
    out = pd.DataFrame({
        "file_id": file_id,
        "line": pd.array(raw["line"].to_numpy(), dtype="Int64"),
        "round": _text([v.upper() if v else round_ for v in mask_values(col["round"])], idx),
        "university_code": universities,
        "student_key": _text(pseudonymise_list(key, student_ids, university_codes), idx),
        "host_code": _text(_per_value(mask_values(col["host_code"]), upper), idx),
        "track": _text(_per_value(mask_values(col["track"]), lambda v: v.lower()), idx),
        "outcome": _text(_per_value(col["outcome"], lambda v: values.code("outcome", v)), idx),
        "semiconductor_job": _text(_per_value(col["semiconductor_job"], lambda v: values.code("semiconductor_job", v)),
                                   idx),
        "student_id_problem": _text(student_problems, idx),
        **{f"raw_{c}": _text(mask_values(col[c]), idx) for c in PLACEMENT_RAW},
    }, index=idx)
    return out
