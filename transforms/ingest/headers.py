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
from itertools import chain, islice
from operator import itemgetter
from typing import Iterable, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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
    # The common types first (no other branch takes a str or a float: bool is an int, datetime a date).
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value).strip()
    if isinstance(value, float):
        if value != value or value in (_INF, _MINUS_INF):
            return ""
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    return unicodedata.normalize("NFC", str(value)).strip()


_INF, _MINUS_INF = float("inf"), float("-inf")


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
        copied = False
        for m, value in self.active:
            c0, r0, c1, r1 = m
            if r1 < line:
                continue
            keep.append((m, value))
            self.budget -= c1 - c0 + 1
            if self.budget < 0:
                raise SubmissionRejected(f"{self.name}: has more than {self.limit} merged cells; it was not read. "
                                         "Unmerge the cells and save it again.", rule="ING.file.size", format=self.fmt)
            if not copied:  # filled in a copy, never in the reader's row (it may be a tuple)
                cells, copied = list(cells), True
            if len(cells) < c1:
                cells.extend([""] * (c1 - len(cells)))
            for col in range(c0 - 1, c1):
                if not cells[col]:
                    cells[col] = value
        self.active = keep
        return cells


# Data rows are taken a batch at a time and their canonical columns picked whole: at most BATCH_ROWS rows
# (small enough to stay in the CPU cache) and about BATCH_CELLS cells (a wide file's rows come fewer at a time).
BATCH_ROWS = 512
BATCH_CELLS = 16_384


def build_table(rows: Iterable[tuple[int, Sequence[str]]], merges: list[Merge], aliases: AliasTable,
                required: set[str], name: str, fmt: str, encoding: str | None, sheet: str | None = None, *,
                max_rows: int, merged_cell_budget: int = 5_000_000, on_row=None) -> RawTable:
    """The table of a file's non-blank rows (line, cells), merged ranges filled.

    Only the first rows are kept whole (to find the header); below it only the canonical
    columns are kept, picked a batch of rows at a time (so a wide row costs no more than a
    narrow one, and no Python code runs per cell). `on_row(line, cells)` sees every non-blank
    row (the readers check their own accounting and the time limit there).
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
    rest: Iterator = it
    if on_row or fill:
        rest = _seen_and_filled(it, on_row, fill)
    data = chain([(ln, cells) for ln, cells in head if ln > last_header], rest)
    lines: list[int] = []
    picked: list[list[str]] = [[] for _ in picks]
    width = max(picks, default=-1) + 1
    getters = [itemgetter(j) for j in picks]
    pad = [""] * width
    size = min(16, BATCH_ROWS)  # the first batch, before the rows' width is known
    while len(lines) < max_rows:
        batch = list(islice(data, min(size, max_rows - len(lines))))
        if not batch:
            break
        batch_lines, batch_cells = zip(*batch)
        lines += batch_lines
        size = max(1, min(BATCH_ROWS, BATCH_CELLS * len(batch) // max(1, sum(map(len, batch_cells)))))
        if min(map(len, batch_cells)) < width:  # rows cut short (trailing empty cells): padded, only those
            batch_cells = [c if len(c) >= width else [*c, *pad[len(c):]] for c in batch_cells]
        for column, get in zip(picked, getters):
            column += map(get, batch_cells)
    over = 0  # data rows past max_rows: counted, not kept, so the reason can say how many
    for _ in data:
        over += 1
        if over > HEADER_SEARCH_ROWS:  # stop reading: the rest cannot be loaded anyway
            raise SubmissionRejected(f"{name}: more than {max_rows} rows; split the file (e.g. by programme).",
                                     rule="ING.file.size", format=fmt, encoding=encoding)
    if over:
        raise SubmissionRejected(f"{name}: {len(lines) + over} data rows exceed the limit of {max_rows}; split "
                                 "the file (e.g. by programme).", rule="ING.file.size", format=fmt, encoding=encoding)
    arrays = [_text_array(column) for column in picked]
    errors = _error_cells(picked, arrays, names, len(lines))
    if lines and names:
        frame = pd.DataFrame({c: array for c, (array, _) in zip(names, arrays)})
    elif lines:
        frame = pd.DataFrame([[] for _ in lines], columns=names, dtype="string")
    else:
        frame = pd.DataFrame({c: pd.Series(dtype="string") for c in names})
    frame.insert(0, "line", pd.array(lines, dtype="Int64"))
    return RawTable(frame, fmt, encoding, line, names, extra, sheet, len(lines), errors)


def _seen_and_filled(rows: Iterator, on_row, fill: MergeFill | None) -> Iterator:
    for line, cells in rows:
        if on_row:
            on_row(line, cells)
        yield line, (fill(line, cells) if fill else cells)


def _text_array(column: list[str]) -> tuple[pd.api.extensions.ExtensionArray, pa.Array | None]:
    """A column as pandas' "string" array, and the pyarrow array holding it (None if it is not one).

    What pd.array(column, dtype="string") gives, built by pyarrow directly (one pass over the cells)."""
    if _ARROW_STRINGS:
        try:
            arrow = pa.array(column, type=pa.large_string())
        except (pa.ArrowTypeError, pa.ArrowInvalid):  # a cell that is not text: pandas converts it
            pass
        else:
            return pd.arrays.ArrowStringArray(arrow), arrow
    return pd.array(column, dtype="string"), None


_ARROW_STRINGS = pd.api.types.pandas_dtype("string") == pd.StringDtype("pyarrow", na_value=pd.NA)


def _error_cells(picked: list[list[str]], arrays: list, names: list[str], n: int) -> list[str | None]:
    """Per row, "column=code|..." of its cells that hold a spreadsheet error code, or None.

    Only cells with '#' or 'Err:' in them are looked at one by one (rarely any), found a column at a time."""
    errors: list[str | None] = [None] * n
    for column_name, column, (_, arrow) in zip(names, picked, arrays):
        if arrow is not None:  # its text is in one buffer: searched whole, then cell by cell where it has a hit
            text = arrow.buffers()[2]
            text = text.to_pybytes() if text is not None else b""
            if b"#" not in text and b"Err:" not in text:
                continue
            maybe = pc.or_(pc.match_substring(arrow, "#"), pc.match_substring(arrow, "Err:"))
            rows = pc.indices_nonzero(maybe).to_pylist()
        else:
            joined = "\x00".join(column)
            if "#" not in joined and "Err:" not in joined:
                continue
            rows = range(n)
        for i in rows:
            v = column[i]
            if v and is_error_value(v):
                errors[i] = f"{errors[i]}|{column_name}={v}" if errors[i] else f"{column_name}={v}"
    return errors
