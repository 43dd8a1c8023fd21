"""Header names, aliases, and turning a file's rows into a table (shared by every file format).

The readers (`delimited.py` for CSV, `spreadsheet.py` for workbooks) hand over rows of cell
text with their physical line numbers; `build_table` finds the header row, maps header names to
canonical columns and keeps only those columns of the data rows, so a wide row costs no more
than a narrow one. It knows nothing of the meaning of the columns beyond the alias table.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from transforms.contract.rules import check_rule

HEADER_SEARCH_ROWS = 15  # non-blank rows (title, logo, notes) an office may put above the header
MIN_HEADER_COLUMNS = 3  # a header row names at least this many known columns
HEADER_BAND_ROWS = 3  # a merged header reaches at most this many rows below (or above) the header row

EXPORT_HINT = "Export it again as 'CSV UTF-8 (Comma delimited)' or save it as an Excel Workbook (.xlsx)."


class SubmissionRejected(Exception):
    """The whole file cannot be read; `reason` says why and what to do next, and `rule` is the
    `ING.*` id of transforms/contract/rules.py it is refused under (stored beside the reason)."""

    def __init__(self, reason: str, *, rule: str, format: str | None = None, encoding: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.rule = check_rule(rule)
        self.format = format
        self.encoding = encoding

    def __reduce__(self):  # keyword arguments survive pickling (staging may run in worker processes)
        from functools import partial

        return partial(type(self), rule=self.rule, format=self.format, encoding=self.encoding), (self.reason,)


# ---------------------------------------------------------------- names and aliases

_FOLD_DROP = re.compile(r"[^a-z0-9]+")
_EXACT_DROP = re.compile(r"[\W_]+")
_BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def header_key(text: object) -> str:
    """Compare headers and values without case, spacing, punctuation or Vietnamese diacritics."""
    s = unicodedata.normalize("NFD", str(text)).replace("đ", "d").replace("Đ", "D")
    return _FOLD_DROP.sub(" ", _COMBINING.sub("", s).lower()).strip()


def exact_key(text: object) -> str:
    """Compare without case, spacing or punctuation, but keeping diacritics (Khóa != Khoa)."""
    return _EXACT_DROP.sub(" ", unicodedata.normalize("NFC", str(text)).casefold()).strip()


class AliasLookup:
    """Alias -> canonical code, matched first with diacritics, then without.

    Without diacritics two aliases can collide (`Khóa` = cohort, `Khoa` = faculty): such a folded
    key is ambiguous and only the exact spelling matches. An alias whose canonical value is `-`
    is a known column or value that deliberately maps to nothing (e.g. `Khoa`, the faculty).
    """

    IGNORE = "-"

    CACHE_SIZE = 50_000

    def __init__(self, pairs):
        self.exact: dict[str, str] = {}
        self.folded: dict[str, str | None] = {}
        self._cache: dict[str, str | None] = {}
        for alias, canonical in pairs:
            e, f = exact_key(alias), header_key(alias)
            if not e:
                continue
            if self.exact.get(e, canonical) != canonical:
                raise ValueError(f"alias {alias!r} maps to both {self.exact[e]!r} and {canonical!r}")
            self.exact[e] = canonical
            self.folded[f] = canonical if self.folded.get(f, canonical) == canonical else None

    def lookup(self, text: object) -> str | None:
        if text is None:
            return None
        text = str(text)
        try:
            return self._cache[text]
        except KeyError:
            pass
        hit = self._lookup(text)
        if hit is None and ("(" in text or "[" in text):  # "Năm nhập học (YYYY)", "GPA [hệ 4]"
            hit = self._lookup(_BRACKETS.sub(" ", text))
        hit = None if hit == self.IGNORE else hit
        if len(self._cache) < self.CACHE_SIZE:
            self._cache[text] = hit
        return hit

    def _lookup(self, text: str) -> str | None:
        e = exact_key(text)
        if not e:
            return None
        if e in self.exact:
            return self.exact[e]
        return self.folded.get(header_key(text))


class AliasTable(AliasLookup):
    """Header aliases from `data/reference/column_aliases.csv` (columns `canonical`, `alias`)."""

    @classmethod
    def from_csv(cls, path: Path) -> "AliasTable":
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        return cls(zip(table["alias"], table["canonical"]))

    def canonical(self, header: object) -> str | None:
        return self.lookup(header)


@dataclass(frozen=True)
class SubmissionSettings:
    """Per-university reading settings (`data/reference/submission_settings.csv`): sheet to read."""

    sheets: dict[str, str]

    @classmethod
    def from_csv(cls, path: Path) -> "SubmissionSettings":
        if not path.exists():
            return cls({})
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        return cls({c.strip(): s.strip() for c, s in zip(table["university_code"], table["sheet_name"]) if s.strip()})

    def sheet_for(self, university_code: str | None) -> str | None:
        return self.sheets.get(university_code or "")


@dataclass
class RawTable:
    """A file's data rows as text, under canonical column names.

    `physical_records`: the data records below the header as counted from the file itself
    (independently of the parser for CSV); always equal to the rows of `frame`, or the file
    was refused. `cell_errors`: per row of `frame`, the canonical columns whose cell held a
    spreadsheet error (`#DIV/0!`, `#N/A`, ...) as "column=code|...", or None.
    """

    frame: pd.DataFrame  # one column per canonical column found, plus `line`
    format: str
    encoding: str | None
    header_line: int
    found_columns: list[str]
    extra_columns: list[str] = field(default_factory=list)
    sheet: str | None = None
    physical_records: int | None = None
    cell_errors: list[str | None] = field(default_factory=list)


# ---------------------------------------------------------------- cell text

# What spreadsheets show for a formula that failed; Excel writes the same text into a CSV export.
ERROR_CODES = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA",
                         "#SPILL!", "#CALC!", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!"})
_LIBREOFFICE_ERROR = re.compile(r"Err:\d{3}")


def is_error_value(text: str) -> bool:
    """Whether a cell's text is a spreadsheet error code (kept as an error, never as a value)."""
    return text in ERROR_CODES or (text[:4] == "Err:" and _LIBREOFFICE_ERROR.fullmatch(text) is not None)


def cell_text(value: object) -> str:
    """One spreadsheet or CSV cell as trimmed NFC text ('' when empty)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value).strip()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return ""
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    return unicodedata.normalize("NFC", str(value)).strip()


# ---------------------------------------------------------------- what a header is not

# A national id (CCCD 12 digits, CMND 9), a student number (20210001, B21DCCN123, SE150001), a
# date: one token with at least six digits. No column title looks like that.
_ID_SHAPED = re.compile(r"(?=(?:[^0-9]*[0-9]){6})[A-Za-z0-9][A-Za-z0-9._/-]{5,23}")
_NUMBER_OR_DATE = re.compile(r"[+-]?\d+(?:[.,]\d+)?|\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?")


def looks_like_id(text: str) -> bool:
    return bool(text) and _ID_SHAPED.fullmatch(text) is not None


def holds_data(cells: list[str]) -> bool:
    """A row with an id-shaped value, a number or a date: a data row, never part of a header."""
    return any(c and (_NUMBER_OR_DATE.fullmatch(c) or _ID_SHAPED.fullmatch(c)) for c in cells)


def holds_id(cells: list[str]) -> bool:
    return any(c and _ID_SHAPED.fullmatch(c) for c in cells)


# ---------------------------------------------------------------- rows -> table

Rows = list[tuple[int, list[str]]]  # (line number in the file, cells), blank rows left out
Merge = tuple[int, int, int, int]  # min_col, min_row, max_col, max_row (1-based, as in Excel)


def _titles(rows: Rows, i: int) -> list[str]:
    """Row i's cells; an empty one takes the cell above it (a two-row header, exported without merges)."""
    line, cells = rows[i]
    if i == 0 or rows[i - 1][0] != line - 1 or holds_id(rows[i - 1][1]):
        return cells
    above = rows[i - 1][1]
    width = max(len(cells), len(above))
    return [(cells[j] if j < len(cells) else "") or (above[j] if j < len(above) else "") for j in range(width)]


def find_header(rows: Rows, merges: list[Merge], aliases: AliasTable, name: str) -> tuple[int, int, list[str]]:
    """(header line, last header line, one title per column).

    The header row is the one among the first non-blank rows that names the most known columns;
    a row holding an id-shaped value is never a header. Merged cells that cross it (a two-row
    header: group row + sub-headers, or a title cell merged over two rows) make the rows they
    span part of the header, unless such a row holds data (an id, a number, a date): a cell
    merged down through the header never pulls student rows into it. Each column takes the
    lowest title in that band that is a known column name.
    """
    best_i, best_n, stop = -1, 0, min(len(rows), HEADER_SEARCH_ROWS)
    i = 0
    while i < stop:
        if not holds_id(rows[i][1]):
            n = len({aliases.canonical(t) for t in _titles(rows, i) if t} - {None})
            if n > best_n:
                if best_n < MIN_HEADER_COLUMNS <= n:  # a header: only the next rows can still be part of it
                    stop = min(stop, i + HEADER_BAND_ROWS)
                best_i, best_n = i, n
        i += 1
    if best_n < MIN_HEADER_COLUMNS:
        raise SubmissionRejected(
            f"{name}: no header row found: none of the first {HEADER_SEARCH_ROWS} non-blank rows names at least "
            f"{MIN_HEADER_COLUMNS} known columns (such as 'Mã sinh viên', 'Số CCCD', 'Giới tính'). Put the column "
            "names in one row above the data (see docs/DATA_CONTRACT.md for accepted names).", rule="ING.file.header")
    line = rows[best_i][0]
    top = bottom = line
    for c0, r0, c1, r1 in merges:
        if r0 <= line <= r1 and r1 - r0 <= HEADER_BAND_ROWS:
            top, bottom = min(top, r0), max(bottom, r1)
    bottom = min(bottom, line + HEADER_BAND_ROWS)
    by_line = {ln: cells for ln, cells in rows[max(0, best_i - HEADER_BAND_ROWS - 1):best_i + HEADER_BAND_ROWS + 2]}
    for ln in range(line + 1, bottom + 1):  # the band ends above the first row that holds data
        if ln in by_line and holds_data(by_line[ln]):
            bottom = ln - 1
            break
    for ln in range(line - 1, top - 1, -1):
        if ln in by_line and holds_data(by_line[ln]):
            top = ln + 1
            break
    titles = _titles(rows, best_i)
    band = [cells for ln, cells in by_line.items() if top <= ln <= bottom and ln != line]
    if band:
        width = max([len(titles)] + [len(c) for c in band])
        stack = [c for ln, c in by_line.items() if top <= ln < line] + [titles] + \
                [c for ln, c in by_line.items() if line < ln <= bottom]
        merged_titles = []
        for j in range(width):
            cells = [c[j] for c in stack if j < len(c) and c[j]]
            known = [t for t in reversed(cells) if aliases.canonical(t)]
            merged_titles.append(known[0] if known else " / ".join(dict.fromkeys(cells)))
        titles = merged_titles
    return line, bottom, titles


class MergeFill:
    """Fills each merged range with its top-left cell's text, row by row, in increasing line order.

    Repeated ranges count once; the work is bounded by `budget` cells filled (a file over it is
    refused), and rows a range covers but the file does not hold cost nothing.
    """

    def __init__(self, merges: list[Merge], budget: int, name: str, fmt: str):
        self.pending = sorted(set(merges), key=lambda m: (m[1], m[0]))
        self.active: list[tuple[Merge, str]] = []
        self.budget, self.limit, self.name, self.fmt = budget, budget, name, fmt
        self.k = 0

    def __call__(self, line: int, cells: list[str]) -> list[str]:
        while self.k < len(self.pending) and self.pending[self.k][1] <= line:
            m = self.pending[self.k]
            self.k += 1
            c0, r0, c1, r1 = m
            if r1 >= line and r0 == line and c0 <= len(cells) and cells[c0 - 1]:
                self.active.append((m, cells[c0 - 1]))
        if not self.active:
            return cells
        keep = []
        for m, value in self.active:
            c0, r0, c1, r1 = m
            if r1 < line:
                continue
            keep.append((m, value))
            self.budget -= c1 - c0 + 1
            if self.budget < 0:
                raise SubmissionRejected(f"{self.name}: has more than {self.limit} merged cells; it was not read. "
                                         "Unmerge the cells and save it again.", rule="ING.file.size", format=self.fmt)
            if len(cells) < c1:
                cells = cells + [""] * (c1 - len(cells))
            for col in range(c0 - 1, c1):
                if not cells[col]:
                    cells[col] = value
        self.active = keep
        return cells


def build_table(rows: Iterable[tuple[int, list[str]]], merges: list[Merge], aliases: AliasTable, required: set[str],
                name: str, fmt: str, encoding: str | None, sheet: str | None = None, *, max_rows: int,
                merged_cell_budget: int = 5_000_000, on_row=None) -> RawTable:
    """The table of a file's non-blank rows (line, cells), merged ranges filled.

    Only the first rows are kept whole (to find the header); below it only the canonical
    columns are kept. `on_row(line, cells)` sees every non-blank row (the readers check their
    own accounting and the time limit there).
    """
    fill = MergeFill(merges, merged_cell_budget, name, fmt) if merges else None
    it: Iterator = iter(rows)
    head: Rows = []
    look = HEADER_SEARCH_ROWS + HEADER_BAND_ROWS + 1
    for line, cells in it:
        if on_row:
            on_row(line, cells)
        head.append((line, fill(line, cells) if fill else cells))
        if len(head) >= look:
            break
    try:
        line, last_header, titles = find_header(head, merges, aliases, name)
    except SubmissionRejected as e:
        raise SubmissionRejected(e.reason, rule=e.rule, format=fmt, encoding=encoding) from None
    columns: dict[str, int] = {}
    extra: list[str] = []
    for j, title in enumerate(titles):
        canon = aliases.canonical(title) if title else None
        if canon and canon not in columns:
            columns[canon] = j
        elif title and not (j and titles[j - 1] == title):  # the same title again: one merged header cell
            extra.append(title)
    missing = sorted(required - columns.keys())
    if missing:
        found = ", ".join(f"'{t}'" for t in titles if t)
        raise SubmissionRejected(
            f"{name}: missing required column(s) {', '.join(missing)}; header row {line} has {found}. "
            "Add the missing columns (see docs/DATA_CONTRACT.md for accepted names).", rule="ING.file.columns",
            format=fmt, encoding=encoding)
    picks = list(columns.values())
    names = list(columns)
    data_rows: list[list[str]] = []
    lines: list[int] = []
    errors: list[str | None] = []

    over = [0]  # data rows past max_rows: counted, not kept, so the reason can say how many

    def take(ln: int, cells: list[str]) -> None:
        if len(data_rows) >= max_rows:
            over[0] += 1
            if over[0] > HEADER_SEARCH_ROWS:  # stop reading: the rest cannot be loaded anyway
                raise SubmissionRejected(f"{name}: more than {max_rows} rows; split the file (e.g. by programme).",
                                         rule="ING.file.size", format=fmt, encoding=encoding)
            return
        n = len(cells)
        row = [cells[j] if j < n else "" for j in picks]
        bad = None
        joined = "\x00".join(row)
        if "#" in joined or "Err:" in joined:  # rarely: only then look for error codes cell by cell
            for k, v in enumerate(row):
                if v and is_error_value(v):
                    bad = f"{bad}|{names[k]}={v}" if bad else f"{names[k]}={v}"
        data_rows.append(row)
        lines.append(ln)
        errors.append(bad)

    for ln, cells in head:
        if ln > last_header:
            take(ln, cells)
    for ln, cells in it:
        if on_row:
            on_row(ln, cells)
        take(ln, fill(ln, cells) if fill else cells)
    if over[0]:
        raise SubmissionRejected(f"{name}: {len(data_rows) + over[0]} data rows exceed the limit of {max_rows}; split "
                                 "the file (e.g. by programme).", rule="ING.file.size", format=fmt, encoding=encoding)
    frame = pd.DataFrame(data_rows, columns=names, dtype="string") if data_rows else \
        pd.DataFrame({c: pd.Series(dtype="string") for c in names})
    frame.insert(0, "line", pd.array(lines, dtype="Int64"))
    return RawTable(frame, fmt, encoding, line, names, extra, sheet, len(data_rows), errors)
