"""Turn a file's text rows into the canonical, pseudonymised shape (vectorised, per file).

Values that cannot be understood become null here and keep their original text in a
`raw_*` column; the data contract (transforms/expectations.py) then quarantines the row
with a reason that names the field. Names, national ids and birth dates do not survive
this step: only keyed hashes and the birth year do.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from transforms.pseudonym import pseudonymise
from transforms.readers import header_key
from transforms.terms import parse_term

DEGREE_YEARS = {"bachelor": 4, "engineer": 5, "master": 2, "doctor": 4}
ENROLLMENT_REQUIRED = {"student_id", "national_id", "gender", "programme_code", "degree_level",
                       "intake_year", "study_year", "status"}
PLACEMENT_REQUIRED = {"round", "university_code", "student_id", "host_code", "track", "outcome"}
# Original values kept for quarantine: never personal data.
ENROLLMENT_RAW = ["gender", "programme_code", "degree_level", "intake_year", "study_year", "status", "gpa"]
PLACEMENT_RAW = ["round", "university_code", "host_code", "track", "outcome", "semiconductor_job"]


@dataclass(frozen=True)
class ValueAliases:
    """Value aliases (from `data/reference/value_aliases.csv`): field -> normalised alias -> code."""

    by_field: dict[str, dict[str, str]]

    @classmethod
    def from_csv(cls, path: Path) -> "ValueAliases":
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        out: dict[str, dict[str, str]] = {}
        for f, a, c in zip(table["field"], table["alias"], table["canonical"]):
            out.setdefault(f, {})[header_key(a)] = c
        return cls(out)

    def map(self, field: str, values: pd.Series) -> pd.Series:
        lookup = self.by_field[field]
        uniques = values.dropna().unique()
        codes = {v: lookup.get(header_key(v)) for v in uniques}
        return values.map(codes).astype("string")


def _text(frame: pd.DataFrame, col: str) -> pd.Series:
    if col not in frame:
        return pd.Series(pd.NA, index=frame.index, dtype="string")
    s = frame[col].astype("string").str.strip()
    return s.mask(s == "")


def _integer(s: pd.Series, pattern: str = r"^\D{0,12}?(\d{1,4})(?:\.0+)?\s*$") -> pd.Series:
    return pd.to_numeric(s.str.extract(pattern, expand=False), errors="coerce").astype("Int64")


def birth_year(s: pd.Series) -> pd.Series:
    """Year from ISO dates, dd/mm/yyyy, a bare year, or an Excel date serial."""
    iso = s.str.extract(r"^(\d{4})-\d{1,2}-\d{1,2}", expand=False)
    dmy = s.str.extract(r"^\d{1,2}[/.\-]\d{1,2}[/.\-](\d{4})$", expand=False)
    bare = s.str.extract(r"^(\d{4})$", expand=False)
    serial = pd.to_numeric(s.str.extract(r"^(\d{5})(?:\.0+)?$", expand=False), errors="coerce")
    from_serial = (pd.Timestamp("1899-12-30") + pd.to_timedelta(serial, unit="D")).dt.year
    year = pd.to_numeric(iso.fillna(dmy).fillna(bare), errors="coerce")
    return year.fillna(from_serial).astype("Int64")


def gpa_on_4(s: pd.Series) -> pd.Series:
    """GPA on the 4-point scale. A file whose GPAs are mostly above 4 uses the 10-point scale.

    The 10-point scale is converted linearly (x 0.4); universities' own conversion tables
    differ slightly, which matters little for a completeness check.
    """
    g = pd.to_numeric(s.str.replace(",", ".", regex=False), errors="coerce").astype("Float64")
    present = g.dropna()
    if len(present) and (present > 4).mean() > 0.2:
        g = (g * 0.4).round(2)
    return g


def normalise_enrollment(raw: pd.DataFrame, *, key: bytes, values: ValueAliases, file_id: str,
                         university_code: str, term: str) -> pd.DataFrame:
    term_year, _ = parse_term(term)
    out = pd.DataFrame(index=raw.index)
    out["file_id"] = file_id
    out["university_code"] = university_code
    out["term"] = term
    out["line"] = raw["line"].astype("Int64")
    out["student_key"] = pseudonymise(key, _text(raw, "student_id"), university_code)
    national_id = _text(raw, "national_id").str.replace(r"\D", "", regex=True)
    out["person_key"] = pseudonymise(key, national_id.mask(national_id == ""))
    out["gender"] = values.map("gender", _text(raw, "gender"))
    out["programme_code"] = _text(raw, "programme_code").str.replace(r"\s", "", regex=True)
    out["degree_level"] = values.map("degree_level", _text(raw, "degree_level"))
    out["intake_year"] = _integer(_text(raw, "intake_year"), r"^(\d{4})(?:\.0+)?$")
    out["study_year"] = _integer(_text(raw, "study_year"))
    out["status"] = values.map("status", _text(raw, "status"))
    out["gpa"] = gpa_on_4(_text(raw, "gpa"))
    out["birth_year"] = birth_year(_text(raw, "birth_date"))
    out["term_year"] = pd.array([term_year] * len(raw), dtype="Int64")
    out["degree_years"] = out["degree_level"].map(DEGREE_YEARS).astype("Int64")
    out["years_since_intake"] = (out["term_year"] - out["intake_year"] + 1).astype("Int64")
    for col in ENROLLMENT_RAW:
        out[f"raw_{col}"] = _text(raw, col)
    return out.reset_index(drop=True)


def normalise_placements(raw: pd.DataFrame, *, key: bytes, values: ValueAliases, file_id: str,
                         round_: str) -> pd.DataFrame:
    out = pd.DataFrame(index=raw.index)
    out["file_id"] = file_id
    out["line"] = raw["line"].astype("Int64")
    out["round"] = _text(raw, "round").fillna(round_).str.upper()
    out["university_code"] = _text(raw, "university_code").str.upper()
    out["student_key"] = pseudonymise(key, _text(raw, "student_id"), out["university_code"])
    out["host_code"] = _text(raw, "host_code").str.upper()
    out["track"] = _text(raw, "track").str.lower()
    out["outcome"] = values.map("outcome", _text(raw, "outcome"))
    out["semiconductor_job"] = values.map("semiconductor_job", _text(raw, "semiconductor_job"))
    for col in PLACEMENT_RAW:
        out[f"raw_{col}"] = _text(raw, col)
    return out.reset_index(drop=True)
