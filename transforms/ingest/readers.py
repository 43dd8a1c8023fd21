"""Read what university offices send (CSV or XLSX, many encodings) into a table of text.

The reader knows nothing of the meaning of the columns beyond the alias table: it finds the
header row, maps header names to canonical columns, and returns every data row as text with
its line number in the file, so that each row can later be loaded or quarantined with a reason.
A file that cannot be read as a whole raises `SubmissionRejected` with a reason the office can
act on; nothing is ever read as mojibake or dropped row by row.

What is accepted (tests/test_ingestion.py builds every case):
* CSV with `,` `;` `|` or tab, chosen by which one splits a header row into known column names;
  Excel's `sep=;` first line and `="00123"` cells (text kept as text) are understood.
* Encodings: UTF-8 with or without BOM, UTF-16/32 with BOM (Excel "Unicode text"), UTF-16 without
  BOM, Windows-1258 (Vietnamese, tone marks as combining characters) and Windows-1252. All text
  is normalised to Unicode NFC. See `decode` for how the legacy code pages are told apart.
* XLSX: the first visible sheet with a header, or the sheet named for the university in
  `data/reference/submission_settings.csv`; title or logo rows above the header; merged header
  cells and two-row headers (group row + sub-header); trailing empty rows and columns.
  Cells are read by a lean expat reader that refuses any DTD (see `_lean_cells`), the rest of
  the workbook and anything unusual by openpyxl over defusedxml (no XML entity expansion); all
  after a zip-bomb check of the archive's declared sizes.
* Legacy `.xls` is refused with instructions to save as `.xlsx` or CSV UTF-8.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import io
import logging
import os
import re
import stat
import unicodedata
import warnings
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path

import pandas as pd

# Limits, checked before a file is read whole (module constants: tests lower them).
# A deployment may set its own size limit; worker processes read it from the environment too.
MAX_FILE_BYTES = int(os.environ.get("LAB2FAB_MAX_FILE_BYTES") or 200 * 1024 * 1024)
MAX_ROWS = 2_000_000
MAX_COLUMNS = 1024  # cells further right than this are outside any table an office sends
MAX_XLSX_UNCOMPRESSED = 1024 * 1024 * 1024  # zip-bomb guard: sum of the members' declared sizes
MAX_XLSX_MEMBERS = 10_000
MAX_MERGED_CELLS = 5_000_000  # cells filled from merged ranges, per sheet
HEADER_SEARCH_ROWS = 15  # non-blank rows (title, logo, notes) an office may put above the header
MIN_HEADER_COLUMNS = 3  # a header row names at least this many known columns
LEGACY_VOTES = 5_000  # words enough to tell Windows-1258 from Windows-1252

EXPORT_HINT = "Export it again as 'CSV UTF-8 (Comma delimited)' or save it as an Excel Workbook (.xlsx)."

# openpyxl warns about workbook features it drops (data validation, extensions); they do not matter here.
warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl(\..*)?")


class SubmissionRejected(Exception):
    """The whole file cannot be read; `reason` says why and what to do next."""

    def __init__(self, reason: str, *, format: str | None = None, encoding: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.format = format
        self.encoding = encoding


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
    """A file's data rows as text, under canonical column names."""

    frame: pd.DataFrame  # one column per canonical column found, plus `line`
    format: str
    encoding: str | None
    header_line: int
    found_columns: list[str]
    extra_columns: list[str] = field(default_factory=list)
    sheet: str | None = None


# ---------------------------------------------------------------- encodings

_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile("[\u200b\ufeff]")  # zero-width space, stray BOMs of concatenated exports
# Valid UTF-8 multi-byte sequences: in real Windows-125x text they almost never occur.
_UTF8_SEQ = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xef][\x80-\xbf]{2}"
                       rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}")
_HIGH = re.compile(rb"[\x80-\xff]")
# Bytes that Windows-1258 and Windows-1252 decode differently (tone marks, ă ơ ư đ ...).
_CONTESTED = re.compile(rb"[\x8a\x8e\x9a\x9e\xc3\xcc\xd0\xd2\xd5\xdd\xde\xe3\xec\xf0\xf2\xf5\xfd\xfe]")
_BYTE_WORDS = re.compile(rb"[A-Za-z\x80-\xff]+")

# A Vietnamese syllable, toneless and lower case: initial consonant, vowel nucleus, final consonant.
_VI_NUCLEI = sorted("""a ă â e ê i y o ô ơ u ư ai ao au ay âu ây eo êu ia iê yê iu oa oă oe oi ôi ơi oo ua uâ uê
    ui uô uơ uy ưa ưi ươ ưu iêu yêu oai oao oay oeo uây uôi uya uyê uyu ươi ươu""".split(), key=len, reverse=True)
_VI_SYLLABLE = re.compile(
    r"(ngh|ng|gh|gi|kh|nh|ph|qu|th|tr|ch|[bcdđghklmnpqrstvx])?(" + "|".join(_VI_NUCLEI) + r")(ch|ng|nh|[cmnpt])?")
_TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}


def is_vietnamese_syllable(word: str) -> bool:
    """Whether `word` is a well-formed Vietnamese syllable (at most one tone mark)."""
    d = unicodedata.normalize("NFD", word.lower())
    tones = sum(ch in _TONES for ch in d)
    if tones > 1:
        return False
    base = unicodedata.normalize("NFC", "".join(ch for ch in d if ch not in _TONES))
    if base == "gi":  # "gì": initial gi with an implied i
        return True
    return _VI_SYLLABLE.fullmatch(base) is not None


def _cannot_determine(name: str, why: str) -> SubmissionRejected:
    return SubmissionRejected(
        f"{name}: the text encoding cannot be determined ({why}); it was not read, so no row of it is "
        f"loaded. Accepted: UTF-8, UTF-16, Windows-1258, Windows-1252. {EXPORT_HINT}", format="csv")


def _check_text(text: str, name: str, encoding: str) -> str:
    controls = len(_CONTROL.findall(text, 0, 1 << 20))
    if controls > max(2, min(len(text), 1 << 20) // 1000):
        raise _cannot_determine(name, f"read as {encoding} it is full of control characters, so it is binary, "
                                      "not text")
    if "\u200b" in text or "\ufeff" in text:
        text = _INVISIBLE.sub("", text)
    return unicodedata.normalize("NFC", text)


def _legacy_votes(data: bytes) -> tuple[int, int]:
    """Words that only Windows-1258 (resp. only Windows-1252) reads as Vietnamese.

    Each word with a byte the two code pages decode differently votes for the code page under
    which it is a well-formed Vietnamese syllable; words that are Vietnamese under neither (or
    both) vote for Windows-1252, so Western text stays Western.
    """
    vi = we = 0
    for m in _BYTE_WORDS.finditer(data):
        word = m.group()
        if not _CONTESTED.search(word):
            continue
        if vi + we >= LEGACY_VOTES:
            break
        try:
            as_vi = is_vietnamese_syllable(unicodedata.normalize("NFC", word.decode("cp1258")))
        except UnicodeDecodeError:
            as_vi = False
        try:
            as_we = is_vietnamese_syllable(unicodedata.normalize("NFC", word.decode("cp1252")))
        except UnicodeDecodeError:
            as_we = False
        if as_vi and not as_we:
            vi += 1
        else:
            we += 1
    return vi, we


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 without a byte-order mark: text that is mostly ASCII has a zero in every other byte."""
    sample = data[:8192]
    if len(data) % 2 or len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    z_even, z_odd = even.count(0) / len(even), odd.count(0) / len(odd)
    if z_odd > 0.4 and z_even < 0.02:
        return "utf-16-le"
    if z_even > 0.4 and z_odd < 0.02:
        return "utf-16-be"
    return None


def decode(data: bytes, name: str) -> tuple[str, str]:
    """Decode a text file; returns (NFC text, encoding). Rejects what cannot be determined.

    1. A byte-order mark decides (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE); the rest must then be valid.
    2. NUL bytes: UTF-16 without BOM if every other byte is zero, otherwise binary (rejected).
    3. Valid UTF-8 is UTF-8.
    4. Mostly valid UTF-8 with a few bad bytes is a damaged or mixed file (rejected, never mojibake).
    5. Otherwise Windows-1258 or Windows-1252: the words whose bytes the two decode differently vote
       (see `_legacy_votes`); Windows-1258 wins only when they read as Vietnamese syllables in it.
    Any decoding full of control characters is binary (rejected).
    """
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom):].decode(enc.replace("-sig", ""))
            except UnicodeDecodeError as e:
                raise _cannot_determine(name, f"it starts with a {enc} byte-order mark but byte {e.start + len(bom)} "
                                              f"is not valid {enc}") from None
            return _check_text(text, name, enc), enc
    if b"\x00" in data:
        enc = _utf16_without_bom(data)
        if enc is None:
            raise _cannot_determine(name, "it contains NUL bytes but is not UTF-16 text: a binary file")
        try:
            return _check_text(data.decode(enc), name, enc), enc
        except UnicodeDecodeError as e:
            raise _cannot_determine(name, f"it looks like UTF-16 without a byte-order mark but byte {e.start} is "
                                          "not valid UTF-16") from None
    try:
        return _check_text(data.decode("utf-8"), name, "utf-8"), "utf-8"
    except UnicodeDecodeError as e:
        first_bad = e.start
    high = len(_HIGH.findall(data))
    in_utf8 = sum(len(m) for m in _UTF8_SEQ.findall(data))
    if high and in_utf8 >= 0.5 * high:
        raise _cannot_determine(name, f"it is mostly UTF-8 but byte {first_bad} is not: a damaged file or one "
                                      "that mixes encodings")
    candidates = {}
    for enc in ("cp1258", "cp1252"):
        try:
            candidates[enc] = data.decode(enc)
        except UnicodeDecodeError:
            continue
    if not candidates:
        raise _cannot_determine(name, f"byte {first_bad} is not valid UTF-8 and the file is not Windows-1258 or "
                                      "Windows-1252 either")
    if len(candidates) == 2:
        vi, we = _legacy_votes(data)
        enc = "cp1258" if vi > we else "cp1252"
    else:
        (enc,) = candidates
    text = _check_text(candidates[enc], name, enc)
    high_chars = [ch for ch in text[:1 << 20] if ord(ch) > 127]
    symbols = sum(not unicodedata.category(ch).startswith(("L", "M")) for ch in high_chars)
    if len(high_chars) >= 20 and symbols > 0.25 * len(high_chars):
        raise _cannot_determine(name, f"byte {first_bad} is not valid UTF-8, and read as Windows-1258 or Windows-1252 "
                                      f"{symbols} of its {len(high_chars)} accented characters are symbols, not letters")
    return text, enc


# ---------------------------------------------------------------- cell text

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


# ---------------------------------------------------------------- rows -> table

Rows = list[tuple[int, list[str]]]  # (line number in the file, cells), blank rows left out
Merge = tuple[int, int, int, int]  # min_col, min_row, max_col, max_row (1-based, as in Excel)


def _titles(rows: Rows, i: int) -> list[str]:
    """Row i's cells; an empty one takes the cell above it (a two-row header, exported without merges)."""
    line, cells = rows[i]
    if i == 0 or rows[i - 1][0] != line - 1:
        return cells
    above = rows[i - 1][1]
    width = max(len(cells), len(above))
    return [(cells[j] if j < len(cells) else "") or (above[j] if j < len(above) else "") for j in range(width)]


def _header(rows: Rows, merges: list[Merge], aliases: AliasTable, name: str) -> tuple[int, int, list[str]]:
    """(header line, last header line, one title per column).

    The header row is the one among the first non-blank rows that names the most known columns.
    Merged cells that cross it (a two-row header: group row + sub-headers, or a title cell merged
    over two rows) make the rows they span part of the header; each column takes the lowest title
    in that band that is a known column name.
    """
    best_i, best_n, stop = -1, 0, min(len(rows), HEADER_SEARCH_ROWS)
    i = 0
    while i < stop:
        n = len({aliases.canonical(t) for t in _titles(rows, i) if t} - {None})
        if n > best_n:
            if best_n < MIN_HEADER_COLUMNS <= n:  # a header: only the next rows can still be part of it
                stop = min(stop, i + 3)
            best_i, best_n = i, n
        i += 1
    if best_n < MIN_HEADER_COLUMNS:
        raise SubmissionRejected(
            f"{name}: no header row found: none of the first {HEADER_SEARCH_ROWS} non-blank rows names at least "
            f"{MIN_HEADER_COLUMNS} known columns (such as 'Mã sinh viên', 'Số CCCD', 'Giới tính'). Put the column "
            "names in one row above the data (see docs/DATA_CONTRACT.md for accepted names).")
    line = rows[best_i][0]
    top = bottom = line
    for c0, r0, c1, r1 in merges:
        if r0 <= line <= r1 and r1 - r0 <= 3:
            top, bottom = min(top, r0), max(bottom, r1)
    bottom = min(bottom, line + 3)
    titles = _titles(rows, best_i)
    band = [cells for ln, cells in rows if top <= ln <= bottom and ln != line]
    if band:
        width = max([len(titles)] + [len(c) for c in band])
        stack = [c for ln, c in rows if top <= ln <= bottom and ln < line] + [titles] + \
                [c for ln, c in rows if top <= ln <= bottom and ln > line]
        merged_titles = []
        for j in range(width):
            cells = [c[j] for c in stack if j < len(c) and c[j]]
            known = [t for t in reversed(cells) if aliases.canonical(t)]
            merged_titles.append(known[0] if known else " / ".join(dict.fromkeys(cells)))
        titles = merged_titles
    return line, bottom, titles


def _to_table(rows: Rows, merges: list[Merge], aliases: AliasTable, required: set[str], name: str,
              fmt: str, encoding: str | None, sheet: str | None = None) -> RawTable:
    try:
        line, last_header, titles = _header(rows, merges, aliases, name)
    except SubmissionRejected as e:
        raise SubmissionRejected(e.reason, format=fmt, encoding=encoding) from None
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
            "Add the missing columns (see docs/DATA_CONTRACT.md for accepted names).", format=fmt, encoding=encoding)
    data_rows, lines = [], []
    picks = list(columns.values())
    for ln, cells in rows:
        if ln <= last_header:
            continue
        n = len(cells)
        data_rows.append([cells[j] if j < n else "" for j in picks])
        lines.append(ln)
    if len(data_rows) > MAX_ROWS:
        raise SubmissionRejected(f"{name}: {len(data_rows)} data rows exceed the limit of {MAX_ROWS}; split the file "
                                 "(e.g. by programme).", format=fmt, encoding=encoding)
    frame = pd.DataFrame(data_rows, columns=list(columns), dtype="string") if data_rows else \
        pd.DataFrame({c: pd.Series(dtype="string") for c in columns})
    frame.insert(0, "line", pd.array(lines, dtype="Int64"))
    return RawTable(frame, fmt, encoding, line, list(columns), extra, sheet)


# ---------------------------------------------------------------- CSV

_DELIMITERS = (",", ";", "\t", "|")
_EXCEL_TEXT = re.compile(r'^="(.*)"$')  # ="00123": Excel's way of keeping leading zeros


def _csv_cells(row: list[str]) -> list[str]:
    cells = [c.strip() for c in row]
    for j, c in enumerate(cells):
        if c[:2] == '="' and c[-1:] == '"':
            cells[j] = _EXCEL_TEXT.sub(r"\1", c).strip()
    while cells and not cells[-1]:
        cells.pop()
    return cells


def _choose_delimiter(text: str, aliases: AliasTable) -> str:
    """The delimiter that splits some top row into the most known column names."""
    sample = text[:65536]
    first = sample.split("\n", 1)[0].strip().lower()
    if first.startswith("sep=") and len(first) == 5 and first[4] in _DELIMITERS:
        return first[4]
    if len(sample) == 65536 and "\n" in sample:
        sample = sample[:sample.rfind("\n")]
    best, best_score = None, (-1, -1)
    for d in _DELIMITERS:
        count = sample.count(d)
        if not count:
            continue
        known, checked = 0, 0
        try:
            for row, _ in zip(csv.reader(io.StringIO(sample, newline=""), delimiter=d), range(HEADER_SEARCH_ROWS + 5)):
                if len(row) < MIN_HEADER_COLUMNS:
                    continue
                known = max(known, len({aliases.canonical(c) for c in row if c.strip()} - {None}))
                checked += 1
                if known >= MIN_HEADER_COLUMNS and checked >= 3:
                    break
        except csv.Error:
            continue
        score = (known, count)
        if score > best_score:
            best, best_score = d, score
    return best or ","


def _read_csv_rows(text: str, name: str, aliases: AliasTable, encoding: str | None = None) -> Rows:
    delimiter = _choose_delimiter(text, aliases)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: Rows = []
    limit = MAX_ROWS + HEADER_SEARCH_ROWS
    try:
        for i, row in enumerate(reader, start=1):
            cells = _csv_cells(row)
            if cells:
                rows.append((i, cells[:MAX_COLUMNS]))
                if len(rows) > limit:
                    raise SubmissionRejected(f"{name}: more than {MAX_ROWS} rows; split the file (e.g. by programme).",
                                             format="csv", encoding=encoding)
    except csv.Error as e:
        raise SubmissionRejected(f"{name}: not a readable CSV file near line {reader.line_num}: {e}. {EXPORT_HINT}",
                                 format="csv", encoding=encoding) from None
    return rows


# ---------------------------------------------------------------- XLSX

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class UnsafeXmlConfiguration(RuntimeError):
    """openpyxl would parse XML without defusedxml: refuse to read any XLSX (an operator's problem)."""


def _xlsx_error(name: str, what: str) -> SubmissionRejected:
    return SubmissionRejected(f"{name}: {what}. Open it in Excel and save it again as an Excel Workbook (.xlsx).",
                              format="xlsx")


def _check_xlsx_safe(data: bytes, name: str) -> None:
    """Refuse archives that would unpack to too much (zip bombs) before any XML is parsed.

    The declared sizes are binding: Python's zipfile never returns more than a member declares
    (a member that holds more fails its CRC check), so their sum bounds what is unpacked.
    """
    if data.startswith(_OLE_MAGIC):
        raise _xlsx_error(name, "is a password-protected workbook or an old Excel 97-2003 file with an .xlsx name; "
                                "remove the password")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
    except Exception:  # BadZipFile, NotImplementedError (unknown zip version), struct errors, ...
        raise _xlsx_error(name, "is not a valid XLSX file (damaged, or not an Excel workbook)") from None
    if len(infos) > MAX_XLSX_MEMBERS:
        raise _xlsx_error(name, f"holds {len(infos)} parts, over the {MAX_XLSX_MEMBERS} limit")
    total = sum(i.file_size for i in infos)
    if total > MAX_XLSX_UNCOMPRESSED:
        raise SubmissionRejected(
            f"{name}: unpacks to {total} bytes, over the {MAX_XLSX_UNCOMPRESSED}-byte limit (a damaged file or a "
            "zip bomb); it was not opened. Split the data into smaller files.", format="xlsx")


LEAN_XLSX = True  # read sheets with the lean parser below; False: openpyxl's parser only (tests compare the two)


def _open_xlsx(data: bytes, name: str):
    """An openpyxl reader with the workbook, shared strings and styles loaded, and its worksheets."""
    import openpyxl
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.styles.stylesheet import apply_stylesheet
    from openpyxl.xml.constants import SHARED_STRINGS

    if not openpyxl.DEFUSEDXML:  # configuration error, not the sender's
        raise UnsafeXmlConfiguration("XLSX files are only read with defusedxml installed and enabled "
                                     "(OPENPYXL_DEFUSEDXML)")
    reader = ExcelReader(io.BytesIO(data), read_only=True, data_only=True)
    reader.read_manifest()
    strings = reader.package.find(SHARED_STRINGS)
    try:
        if not LEAN_XLSX or strings is None:
            raise _Unsupported
        reader.shared_strings = _lean_shared_strings(reader.archive.read(strings.PartName[1:]))
    except Exception:  # rich text, a DTD, damage...: openpyxl reads them, and says what is wrong, as before
        reader.read_strings()
    reader.read_workbook()
    apply_stylesheet(reader.archive, reader.wb)
    sheets = [(s.name, rel.target, s.state or "visible") for s, rel in reader.parser.find_sheets()
              if rel.target in reader.valid_files and "chartsheet" not in (rel.Type or "")]
    return reader, sheets


# ------------------------------------------------ lean sheet reader
#
# openpyxl parses sheet XML with the pure-Python ElementTree parser that defusedxml wraps and
# builds objects per cell; expat called directly, with the same refusals, is about 4x faster.
# It understands only the plain layout of <sheetData> (rows of cells with a value, a formula
# and its cached value, or an unformatted inline string); anything else raises _Unsupported and
# the sheet is read by openpyxl instead, so the cells are always the ones openpyxl would give.
# Everything outside <sheetData> (merged ranges, and all that openpyxl validates) is still
# parsed by openpyxl, from the same XML with <sheetData> cut out.

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_SHEET_DATA, _ROW, _CELL, _VALUE, _FORMULA = (_MAIN + t for t in ("sheetData", "row", "c", "v", "f"))
_INLINE, _TEXT, _SST, _SI = (_MAIN + t for t in ("is", "t", "sst", "si"))
_SHEET_DATA_END = re.compile(rb"</(?:[A-Za-z_][\w.\-]*:)?sheetData\s*>")
_COORDINATE = re.compile(r"([A-Za-z]{1,3})([0-9]+)")


class _Unsupported(Exception):
    """Something the lean reader does not handle: openpyxl reads the part instead."""


def _refuse(*_):
    raise _Unsupported("DTD or entity declaration")  # openpyxl's defusedxml then refuses or reads it


def _expat():
    """An expat parser that stops at any DTD, as defusedxml would at an entity or external reference."""
    from xml.parsers import expat

    p = expat.ParserCreate(namespace_separator="}")
    p.StartDoctypeDeclHandler = p.EntityDeclHandler = p.UnparsedEntityDeclHandler = _refuse
    p.ExternalEntityRefHandler = _refuse
    p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    p.buffer_text = True
    return p


def _lean_shared_strings(xml: bytes) -> list[str]:
    """Shared strings as openpyxl's read_string_table gives them, for plain (not rich-text) strings."""
    out: list[str] = []
    buf: list[str] = []
    depth = 0  # 1 in <sst>, 2 in <si>, 3 in <t>
    text = None

    def start(tag, attrs):
        nonlocal depth, text
        depth += 1
        if depth == 1 and tag == _SST:
            return
        if depth == 2 and tag == _SI and not attrs:
            text = None
            return
        if depth == 3 and tag == _TEXT and text is None:
            buf.clear()
            return
        raise _Unsupported(tag)  # rich text runs, phonetic guides, extensions

    def end(tag):
        nonlocal depth, text
        depth -= 1
        if depth == 2:
            text = "".join(buf)
        elif depth == 1:
            out.append((text or "").replace("x005F_", ""))

    def chars(data):
        if depth == 3:
            buf.append(data)

    p = _expat()
    p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, chars
    p.Parse(xml, True)
    return out


def _lean_cells(xml: bytes, strings: list, wb, name: str) -> tuple[dict[int, list[str]], bytes]:
    """(the rows' text by line, the XML without <sheetData>), as openpyxl's WorkSheetParser reads them.

    Cutting out <sheetData> by byte offsets: should a cut ever be wrong, what is left is not
    well-formed XML, and openpyxl then reads the whole sheet.
    """
    from openpyxl.utils.cell import coordinate_to_tuple
    from openpyxl.utils.datetime import from_excel, from_ISO8601

    epoch, date_formats, timedelta_formats = wb.epoch, wb._date_formats, wb._timedelta_formats
    normalize = unicodedata.normalize
    columns: dict[str, int] = {}  # column letters -> number, for coordinates openpyxl would split the same way
    by_line: dict[int, list[str]] = {}
    values: dict[int, str] = {}
    buf: list[str] = []
    # state: 0 outside <sheetData>, 1 in it, 2 in <row>, 3 in <c>, 4 in <v>, 5 in <f>, 6 in <is>, 7 in <is><t>
    state = 0
    seen = False  # a second <sheetData> is not for this reader
    span = [0, 0]
    line = col = 0
    digits: str | None = ""  # the row number as text
    cell: dict = {}
    value = text = None
    inline = False

    def start(tag, attrs):
        nonlocal state, seen, line, digits, col, cell, value, text, inline
        if state == 2 and tag == _CELL:
            cell, value, text, inline, state = attrs, None, None, False, 3
        elif state == 3 and tag == _VALUE and value is None:
            buf.clear()
            state = 4
        elif state == 3 and tag == _INLINE and not inline and not attrs:
            inline, state = True, 6
        elif state == 6 and tag == _TEXT and text is None:
            buf.clear()
            state = 7
        elif state == 3 and tag == _FORMULA:
            state = 5
        elif state == 1 and tag == _ROW:  # as WorkSheetParser.parse_row
            r = attrs.get("r")
            if r is None:
                line += 1
            else:
                try:
                    line = int(r)
                except ValueError:
                    f = float(r)
                    if not f.is_integer():
                        raise
                    line = int(f)
            digits, col, state = str(line) if line >= 0 else None, 0, 2
            values.clear()
        elif state == 0:
            if tag == _SHEET_DATA:
                if seen:
                    raise _Unsupported("two sheetData")
                seen, state, span[0] = True, 1, p.CurrentByteIndex
        else:
            raise _Unsupported(tag)  # rich text, extensions, anything else in the grid

    def end(tag):
        nonlocal state, col, value, text
        if state == 3:  # the cell, as WorkSheetParser.parse_cell with data_only=True
            state = 2
            kind = cell.get("t", "n")
            style = cell.get("s", 0)
            if style:
                style = int(style)
            coordinate = cell.get("r")
            if coordinate:
                n = columns.get(coordinate[:-len(digits)]) if digits and coordinate.endswith(digits) else None
                if n is None:
                    m = _COORDINATE.fullmatch(coordinate)
                    n = coordinate_to_tuple(coordinate)[1]
                    if m:
                        columns[m.group(1)] = n
                col = n
            else:
                col += 1
            if kind == "inlineStr":
                if not inline:
                    return
                t = normalize("NFC", text).strip() if text else ""
            else:
                v = value
                if not v:
                    return
                if kind == "n":
                    v = float(v) if "." in v or "E" in v or "e" in v else int(v)
                    if style in date_formats:
                        try:
                            v = from_excel(v, epoch, timedelta=style in timedelta_formats)
                        except (OverflowError, ValueError):
                            v = "#VALUE!"
                elif kind == "s":
                    v = strings[int(v)]
                elif kind == "b":
                    v = bool(int(v))
                elif kind == "d":
                    v = from_ISO8601(v)
                t = cell_text(v)
            if t and col <= MAX_COLUMNS:
                values[col] = t
        elif state == 4:
            value, state = "".join(buf), 3
        elif state == 7:
            text, state = "".join(buf), 6
        elif state in (5, 6):
            state = 3
        elif state == 2:
            if values:
                _add_row(by_line, line, values, name)
            state = 1
        elif state == 1:
            span[1] = p.CurrentByteIndex
            state = 0

    p = _expat()
    # all text goes to buf, which each <v> and <t> starts empty (and they hold no elements)
    p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, buf.append
    p.Parse(xml, True)
    if not seen:
        return by_line, xml
    closing = _SHEET_DATA_END.match(xml, span[1])  # </sheetData>, or nothing after <sheetData/>
    return by_line, xml[:span[0]] + xml[closing.end() if closing else span[1]:]


def _sheet_rows(reader, target: str, name: str) -> tuple[Rows, list[Merge]]:
    if LEAN_XLSX:
        try:
            return _sheet_rows_lean(reader, target, name)
        except Exception:  # unsupported, damaged or over a limit: openpyxl's reading says what is wrong, as before
            pass
    return _sheet_rows_openpyxl(reader, target, name)


def _sheet_rows_lean(reader, target: str, name: str) -> tuple[Rows, list[Merge]]:
    from openpyxl.worksheet._reader import WorkSheetParser

    wb = reader.wb
    by_line, rest = _lean_cells(reader.archive.read(target), reader.shared_strings, wb, name)
    parser = WorkSheetParser(io.BytesIO(rest), reader.shared_strings, data_only=True, epoch=wb.epoch,
                             date_formats=wb._date_formats, timedelta_formats=wb._timedelta_formats)
    for _ in parser.parse():  # everything but the cells: merged ranges, and what openpyxl refuses
        raise _Unsupported("a row outside sheetData")
    return _merged(by_line, parser, name)


def _sheet_rows_openpyxl(reader, target: str, name: str) -> tuple[Rows, list[Merge]]:
    from openpyxl.worksheet._reader import WorkSheetParser

    wb = reader.wb
    by_line: dict[int, list[str]] = {}
    with reader.archive.open(target) as src:
        parser = WorkSheetParser(src, reader.shared_strings, data_only=True, epoch=wb.epoch,
                                 date_formats=wb._date_formats, timedelta_formats=wb._timedelta_formats)
        for line, cells in parser.parse():
            values = {}
            for c in cells:
                v, col = c["value"], c["column"]
                if v is not None and col <= MAX_COLUMNS:
                    t = cell_text(v)
                    if t:
                        values[col] = t
            if values:
                _add_row(by_line, line, values, name)
    return _merged(by_line, parser, name)


def _add_row(by_line: dict[int, list[str]], line: int, values: dict[int, str], name: str) -> None:
    """Put one row's non-empty cell texts (column -> text) at its line (a line may come twice)."""
    row = by_line.get(line)
    if row is None:
        row = by_line[line] = []
        if len(by_line) > MAX_ROWS + HEADER_SEARCH_ROWS:
            raise SubmissionRejected(f"{name}: more than {MAX_ROWS} rows; split the file (e.g. by programme).",
                                     format="xlsx")
    width = max(values)
    if len(row) < width:
        row.extend([""] * (width - len(row)))
    for col, t in values.items():
        row[col - 1] = t


def _merged(by_line: dict[int, list[str]], parser, name: str) -> tuple[Rows, list[Merge]]:
    """The rows with merged ranges filled from their top-left cell, and the ranges."""
    from openpyxl.utils.cell import range_boundaries

    ranges = parser.merged_cells.mergeCell if parser.merged_cells is not None else []
    merges: list[Merge] = []
    budget = MAX_MERGED_CELLS
    for m in ranges:
        try:
            c0, r0, c1, r1 = range_boundaries(str(m.ref))
        except (TypeError, ValueError):
            continue
        if None in (c0, r0, c1, r1) or c0 > MAX_COLUMNS:
            continue
        c1 = min(c1, MAX_COLUMNS)
        merges.append((c0, r0, c1, r1))
        anchor = by_line.get(r0)
        value = anchor[c0 - 1] if anchor and c0 <= len(anchor) else ""
        if not value:
            continue
        for line in range(r0, r1 + 1):
            row = by_line.get(line)
            if row is None:  # a blank row stays blank: it holds no data of its own
                continue
            budget -= c1 - c0 + 1
            if budget < 0:
                raise _xlsx_error(name, f"has more than {MAX_MERGED_CELLS} merged cells")
            if len(row) < c1:
                row.extend([""] * (c1 - len(row)))
            for col in range(c0, c1 + 1):
                if not row[col - 1]:
                    row[col - 1] = value
    return sorted(by_line.items()), merges


def _read_xlsx(data: bytes, name: str, aliases: AliasTable, required: set[str], sheet: str | None) -> RawTable:
    _check_xlsx_safe(data, name)
    reader = None
    try:
        reader, sheets = _open_xlsx(data, name)
        if not sheets:
            raise _xlsx_error(name, "has no worksheet")
        if sheet is not None:
            chosen = [s for s in sheets if s[0] == sheet] or [s for s in sheets if header_key(s[0]) == header_key(sheet)]
            if not chosen:
                raise SubmissionRejected(
                    f"{name}: has no sheet named '{sheet}' (its sheets: {', '.join(s[0] for s in sheets)}). Put the "
                    f"data in a sheet named '{sheet}', or ask the programme office to change the sheet setting.",
                    format="xlsx")
            candidates = chosen[:1]
        else:  # the first visible sheet with a header; hidden sheets (lookup lists) last
            candidates = [s for s in sheets if s[2] == "visible"] + [s for s in sheets if s[2] != "visible"]
        first_problem = None
        for title, target, _ in candidates:
            rows, merges = _sheet_rows(reader, target, name)
            try:
                return _to_table(rows, merges, aliases, required, name, "xlsx", None, title)
            except SubmissionRejected as e:
                if first_problem is None:
                    first_problem = e
                if not e.reason.startswith(f"{name}: no header row found"):
                    raise
        if len(candidates) > 1:
            raise SubmissionRejected(first_problem.reason.replace(
                ": no header row found:", f": no header row found in any of its {len(candidates)} sheets:", 1),
                format="xlsx")
        raise first_problem
    except (SubmissionRejected, UnsafeXmlConfiguration):
        raise
    except Exception as e:  # defusedxml's EntitiesForbidden, bad XML, bad zip members, CRC errors, ...
        what = type(e).__name__
        if what in ("EntitiesForbidden", "DTDForbidden", "ExternalReferenceForbidden", "NotSupportedError"):
            raise _xlsx_error(name, "contains XML entity declarations or external references, which are not "
                                    "allowed (a crafted file); it was not read") from None
        # The exception text may quote cell contents: it goes to the log, not into the manifest.
        logging.getLogger(__name__).info("%s: cannot be read as XLSX: %s: %s", name, what, str(e)[:500])
        raise _xlsx_error(name, f"cannot be read as XLSX ({what})") from None
    finally:
        if reader is not None:
            reader.archive.close()


# ---------------------------------------------------------------- files

def read_landed_bytes(path: Path, name: str, expected_sha256: str | None = None) -> bytes:
    """A landed file's bytes, opened without following a symbolic link and size-checked first."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SubmissionRejected(f"{name}: is a symbolic link, not a file; it was not read.") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SubmissionRejected(f"{name}: is not a regular file (a pipe, socket or device); it was not read.")
        if st.st_size > MAX_FILE_BYTES:
            raise SubmissionRejected(f"{name}: {st.st_size} bytes is over the {MAX_FILE_BYTES}-byte limit; it was not "
                                     "read. Split the file (e.g. by programme) and send the parts.")
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise SubmissionRejected(f"{name}: grew over the {MAX_FILE_BYTES}-byte limit while it was being read; split it.")
    if expected_sha256 and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise SubmissionRejected(f"{name}: changed while it was being ingested (it is probably still being uploaded); "
                                 "the next run reads it again.")
    return data


def parse_submission(data: bytes, suffix: str, aliases: AliasTable, required: set[str], *, name: str,
                     sheet: str | None = None) -> RawTable:
    """A file's bytes as a RawTable, by its type. Raises SubmissionRejected with a reason the sender can act on."""
    suffix = suffix.lower()
    if len(data) > MAX_FILE_BYTES:
        raise SubmissionRejected(f"{name}: {len(data)} bytes is over the {MAX_FILE_BYTES}-byte limit; split the file.")
    if not data:
        raise SubmissionRejected(f"{name}: the file is empty.")
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(data, name, aliases, required, sheet)
    if suffix == ".xls":
        raise SubmissionRejected(
            f"{name}: legacy Excel 97-2003 (.xls) files are not accepted. In Excel choose File > Save As > "
            "'Excel Workbook (*.xlsx)' (or 'CSV UTF-8 (Comma delimited) (*.csv)') and send that file.", format="xls")
    if suffix in (".csv", ".txt", ".tsv"):
        if data.startswith(b"PK\x03\x04") or data.startswith(_OLE_MAGIC):
            raise SubmissionRejected(f"{name}: is a spreadsheet saved with a '{suffix}' name, not text; send it as "
                                     "'.xlsx' or export it as 'CSV UTF-8'.", format="csv")
        text, encoding = decode(data, name)
        return _to_table(_read_csv_rows(text, name, aliases, encoding), [], aliases, required, name, "csv", encoding)
    raise SubmissionRejected(f"{name}: file type '{suffix or 'none'}' is not accepted; send CSV (.csv) or Excel (.xlsx).")


def read_submission(path: Path, aliases: AliasTable, required: set[str], *, name: str | None = None,
                    sheet: str | None = None, expected_sha256: str | None = None) -> RawTable:
    """Read one landed file. Raises SubmissionRejected with a reason the sender can act on."""
    name = name or path.name
    return parse_submission(read_landed_bytes(path, name, expected_sha256), path.suffix, aliases, required,
                            name=name, sheet=sheet)
