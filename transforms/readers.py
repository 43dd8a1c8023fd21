"""Read what university offices send (CSV or XLSX, many encodings) into a table of text.

The reader knows nothing of the meaning of the columns beyond the alias table: it finds the
header row, maps header names to canonical columns, and returns every data row as text with
its line number in the file, so that each row can later be loaded or quarantined with a reason.
"""
from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path

import pandas as pd

# Limits checked before a file is read whole.
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_ROWS = 2_000_000
MAX_XLSX_UNCOMPRESSED = 1024 * 1024 * 1024  # zip-bomb guard: sum of the members' declared sizes
HEADER_SEARCH_ROWS = 15  # title or logo rows an office may put above the header


class SubmissionRejected(Exception):
    """The whole file cannot be read; `reason` says why and what to do next."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def header_key(text: object) -> str:
    """Compare headers and values without case, spacing, punctuation or Vietnamese diacritics."""
    s = unicodedata.normalize("NFD", str(text)).replace("đ", "d").replace("Đ", "D")
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).lower()
    return re.sub(r"[^a-z0-9]+", " ", s).strip()


@dataclass(frozen=True)
class AliasTable:
    """Header aliases (from `data/reference/column_aliases.csv`): normalised alias -> canonical column."""

    by_key: dict[str, str]

    @classmethod
    def from_csv(cls, path: Path) -> "AliasTable":
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        return cls({header_key(a): c for c, a in zip(table["canonical"], table["alias"])})

    def canonical(self, header: object) -> str | None:
        return self.by_key.get(header_key(header)) if header is not None else None


@dataclass
class RawTable:
    """A file's data rows as text, under canonical column names."""

    frame: pd.DataFrame  # one column per canonical column found, plus `line`
    format: str
    encoding: str | None
    header_line: int
    found_columns: list[str]
    extra_columns: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- encodings

VIETNAMESE_LETTERS = set(
    "ăâđêôơưĂÂĐÊÔƠƯ"
    "àáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ"
    "ÀÁẢÃẠẰẮẲẴẶẦẤẨẪẬÈÉẺẼẸỀẾỂỄỆÌÍỈĨỊÒÓỎÕỌỒỐỔỖỘỜỚỞỠỢÙÚỦŨỤỪỨỬỮỰỲÝỶỸỴ"
)


def _plausibility(text: str) -> int:
    """How much a decoding looks like Vietnamese or Western text rather than mojibake."""
    score = 0
    for ch in text:
        if ord(ch) < 128:
            continue
        if ch in VIETNAMESE_LETTERS:
            score += 2
        elif unicodedata.combining(ch):
            score -= 4  # a tone mark that did not compose with a vowel
        elif unicodedata.category(ch).startswith("L"):
            score += 1
        else:
            score -= 3  # symbols and control characters in the middle of names
    return score


def decode(data: bytes, name: str) -> tuple[str, str]:
    """Decode a text file; returns (NFC text, encoding). Rejects what cannot be determined."""
    for bom, enc in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            try:
                return unicodedata.normalize("NFC", data.decode(enc)), enc
            except UnicodeDecodeError as e:
                raise SubmissionRejected(
                    f"{name}: starts with a {enc} byte-order mark but is not valid {enc} "
                    f"(byte {e.start}). Export it again as 'CSV UTF-8'."
                ) from None
    if b"\x00" in data:
        raise SubmissionRejected(
            f"{name}: contains NUL bytes, so it is binary or UTF-16 without a byte-order mark; "
            "the encoding cannot be determined. Export it again as 'CSV UTF-8'."
        )
    try:
        return unicodedata.normalize("NFC", data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    # Legacy Windows code pages decode almost any byte string: choose the one that reads as text.
    best: tuple[int, str, str] | None = None
    for enc in ("cp1258", "cp1252"):
        try:
            text = unicodedata.normalize("NFC", data.decode(enc))
        except UnicodeDecodeError:
            continue
        score = _plausibility(text)
        if best is None or score > best[0]:
            best = (score, text, enc)
    if best is None or best[0] <= 0:
        raise SubmissionRejected(
            f"{name}: the text encoding cannot be determined (not UTF-8, UTF-16, Windows-1258 or "
            "Windows-1252). Export it again as 'CSV UTF-8'."
        )
    return best[1], best[2]


# ---------------------------------------------------------------- cell text

def cell_text(value: object) -> str:
    """One spreadsheet or CSV cell as trimmed NFC text ('' when empty)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    return unicodedata.normalize("NFC", str(value)).strip()


# ---------------------------------------------------------------- rows -> table

def _find_header(rows: list[list[str]], aliases: AliasTable, name: str) -> int:
    """Index of the header row: the first of the top rows naming at least three known columns."""
    best_i, best_n = -1, 0
    for i, row in enumerate(rows[:HEADER_SEARCH_ROWS]):
        n = len({aliases.canonical(c) for c in row if c} - {None})
        if n >= 3 and n > best_n:
            best_i, best_n = i, n
            break
    if best_i < 0:
        shown = " | ".join(c for c in (rows[0] if rows else []) if c)[:200]
        raise SubmissionRejected(
            f"{name}: no header row found in the first {HEADER_SEARCH_ROWS} rows "
            f"(first row reads: {shown or 'nothing'}). Put the column names in one row above the data."
        )
    return best_i


def _to_table(rows: list[list[str]], aliases: AliasTable, required: set[str], name: str,
              fmt: str, encoding: str | None, first_line: int = 1) -> RawTable:
    h = _find_header(rows, aliases, name)
    header = rows[h]
    columns: dict[str, int] = {}
    extra: list[str] = []
    for j, title in enumerate(header):
        canon = aliases.canonical(title) if title else None
        if canon and canon not in columns:
            columns[canon] = j
        elif title:
            extra.append(title)
    missing = sorted(required - columns.keys())
    if missing:
        found = ", ".join(f"'{t}'" for t in header if t)
        raise SubmissionRejected(
            f"{name}: missing required column(s) {', '.join(missing)}; header row {h + first_line} "
            f"has {found}. Add the missing columns (see docs/DATA_CONTRACT.md for accepted names)."
        )
    data_rows, lines = [], []
    for i in range(h + 1, len(rows)):
        row = rows[i]
        if not any(row):  # blank rows (e.g. trailing rows Excel keeps) carry no data
            continue
        data_rows.append([row[j] if j < len(row) else "" for j in columns.values()])
        lines.append(i + first_line)
    if len(data_rows) > MAX_ROWS:
        raise SubmissionRejected(f"{name}: {len(data_rows)} data rows exceed the limit of {MAX_ROWS}; split the file.")
    frame = pd.DataFrame(data_rows, columns=list(columns.keys()), dtype="string")
    frame.insert(0, "line", pd.array(lines, dtype="Int64"))
    return RawTable(frame, fmt, encoding, h + first_line, list(columns.keys()), extra)


def _read_csv_rows(text: str, name: str) -> list[list[str]]:
    sample = "\n".join(text.splitlines()[:HEADER_SEARCH_ROWS + 5])
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        delimiter = dialect.delimiter
    except csv.Error:
        counts = {d: sample.count(d) for d in ",;\t"}
        delimiter = max(counts, key=counts.get)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return [[cell_text(c) for c in row] for row in reader]
    except csv.Error as e:
        raise SubmissionRejected(f"{name}: not a readable CSV file near line {reader.line_num}: {e}") from None


def _check_xlsx_safe(path: Path, name: str) -> None:
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(i.file_size for i in z.infolist())
    except zipfile.BadZipFile:
        raise SubmissionRejected(f"{name}: is not a valid XLSX file (damaged or not a zip). Save it again from Excel.") from None
    if total > MAX_XLSX_UNCOMPRESSED:
        raise SubmissionRejected(f"{name}: unpacks to {total} bytes, over the {MAX_XLSX_UNCOMPRESSED} limit; split the file.")


def _read_xlsx_rows(path: Path, name: str, sheet: str | None) -> list[list[str]]:
    import openpyxl  # defusedxml is installed, so openpyxl parses the XML with entity protection

    _check_xlsx_safe(path, name)
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises many kinds on damaged files
        raise SubmissionRejected(f"{name}: cannot be opened as XLSX ({type(e).__name__}: {e}). Save it again from Excel.") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise SubmissionRejected(f"{name}: has no sheet named {sheet!r} (sheets: {', '.join(book.sheetnames)}).")
        ws = book[sheet] if sheet else book.worksheets[0]
        rows = []
        for r in ws.iter_rows(values_only=True):
            row = [cell_text(v) for v in r]
            while row and not row[-1]:  # trailing empty columns
                row.pop()
            rows.append(row)
            if len(rows) > MAX_ROWS + HEADER_SEARCH_ROWS:
                raise SubmissionRejected(f"{name}: more than {MAX_ROWS} rows; split the file.")
        return rows
    finally:
        book.close()


def read_submission(path: Path, aliases: AliasTable, required: set[str], *, name: str | None = None,
                    sheet: str | None = None) -> RawTable:
    """Read one landed file. Raises SubmissionRejected with a reason the sender can act on."""
    name = name or path.name
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SubmissionRejected(f"{name}: {size} bytes is over the {MAX_FILE_BYTES}-byte limit; split the file by term or programme.")
    if size == 0:
        raise SubmissionRejected(f"{name}: the file is empty.")
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return _to_table(_read_xlsx_rows(path, name, sheet), aliases, required, name, "xlsx", None)
    if suffix == ".xls":
        raise SubmissionRejected(
            f"{name}: legacy Excel 97-2003 (.xls) is not accepted. In Excel choose File > Save As > "
            "'Excel Workbook (*.xlsx)' or 'CSV UTF-8 (Comma delimited)' and send that file."
        )
    if suffix in (".csv", ".txt", ".tsv"):
        text, encoding = decode(path.read_bytes(), name)
        return _to_table(_read_csv_rows(text, name), aliases, required, name, "csv", encoding)
    raise SubmissionRejected(f"{name}: file type '{suffix or 'none'}' is not accepted; send CSV or XLSX.")
