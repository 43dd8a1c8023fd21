"""Bounded memory and time for reading one file, and what a workbook holds before it is parsed.

Every file up to the size limit is read in at most `Limits.memory_budget(size)` extra memory
(max(256 MiB, 8x its size)) and `Limits.time_limit` seconds (`LAB2FAB_FILE_TIME_LIMIT`, default
60); past either the file is refused with a reason that names the limit.

python-calamine reads a sheet whole, into a dense grid of (rows x columns) cells, and it cannot be
stopped once started. So before calamine sees a workbook, `scan_workbook` inflates each part it
would read with a streaming cap (never a whole member at once, never trusting the sizes the zip
declares: a part must inflate to exactly its declared size and CRC, or the file is refused) and
counts, per sheet, the rows and cells, the grid a value reaches, and the merged ranges; from that
it estimates the memory calamine and the table will need. The scan also records what calamine
would lose: the position and code of every error cell (calamine reads them as empty), and row
numbers that repeat or go backwards (calamine would let one row overwrite another).

The scan matches tags with regular expressions to count them; it reads no cell text except
error codes. Values are read by calamine only.
"""
from __future__ import annotations

import io
import re
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Iterator

from transforms.ingest.headers import SubmissionRejected

MiB = 1024 * 1024
CHUNK = 1 << 20  # inflated bytes handled at a time
MAX_CARRY = 64 * MiB  # one row of a sheet larger than this is not an office's table
MAX_MANIFEST_PART = 16 * MiB  # workbook.xml and its relationships
# Bytes per unit of what a sheet holds, measured on python-calamine 0.9.1 (tests/test_reader_limits.py
# checks the resulting peak): a dense grid cell, a cell with a value, a row, a shared string.
GRID_CELL_BYTES = 40
VALUE_CELL_BYTES = 120
ROW_BYTES = 200
STRING_BYTES = 80


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_rows: int
    max_columns: int
    max_unpacked: int  # inflated bytes of a workbook's parts, in all
    max_members: int
    max_merged_cells: int
    max_merges: int
    time_limit: float
    min_memory: int = 256 * MiB
    memory_factor: int = 8

    def memory_budget(self, size: int) -> int:
        return max(self.min_memory, self.memory_factor * size)


class Deadline:
    """The per-file time limit; `check()` refuses the file once it has passed."""

    def __init__(self, seconds: float, name: str, fmt: str | None = None):
        self.seconds, self.name, self.fmt = seconds, name, fmt
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise SubmissionRejected(
                f"{self.name}: reading it would exceed the limit of {self.seconds:g} seconds per file (the time limit, "
                "LAB2FAB_FILE_TIME_LIMIT); it was not loaded. Split the file (e.g. by programme) and send the parts.",
                rule="ING.file.size", format=self.fmt)


def over_memory(name: str, fmt: str, needed: int, budget: int, what: str) -> SubmissionRejected:
    return SubmissionRejected(
        f"{name}: {what} would need about {needed // MiB} MiB to read, over the {budget}-byte limit on memory per "
        f"file (the memory limit: the larger of 256 MiB and 8 times the file's size); it was not read. Split the data into smaller files, "
        "or delete the unused rows and columns far from the table and save it again.", rule="ING.file.size",
        format=fmt)


def _unreadable(name: str, fmt: str, what: str, rule: str = "ING.file.damaged") -> SubmissionRejected:
    label = fmt.upper()
    return SubmissionRejected(f"{name}: is not a valid {label} file: {what}. Open it in the spreadsheet program and save "
                              "it again.", rule=rule, format=fmt)


# ---------------------------------------------------------------- what a sheet holds

@dataclass
class SheetScan:
    rows: int = 0  # row elements
    cells: int = 0  # cell elements
    value_cells: int = 0  # cells with a value (or a formula)
    max_row: int = 0  # 1-based extent of the cells with a value
    max_col: int = 0
    min_row: int = 0
    min_col: int = 0
    merges: int = 0
    errors: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, col), 1-based -> error code
    merge_ranges: list[tuple[int, int, int, int]] = field(default_factory=list)  # ODS: calamine gives none

    def see(self, row: int, col: int, count: int = 1, rows: int = 1) -> None:
        self.value_cells += count * rows
        last_row, last_col = row + rows - 1, col + max(count, 1) - 1
        if not self.max_row:
            self.min_row, self.min_col = row, col
        self.min_row, self.min_col = min(self.min_row, row), min(self.min_col, col)
        self.max_row, self.max_col = max(self.max_row, last_row), max(self.max_col, last_col)

    @property
    def grid(self) -> int:
        if not self.max_row:
            return 0
        return (self.max_row - self.min_row + 1) * (self.max_col - self.min_col + 1)

    def memory(self) -> int:
        return GRID_CELL_BYTES * self.grid + VALUE_CELL_BYTES * self.value_cells + ROW_BYTES * self.rows


@dataclass
class WorkbookScan:
    sheets: dict[str, SheetScan]  # by sheet name
    strings: int = 0
    string_bytes: int = 0
    unpacked: int = 0

    def memory(self, size: int) -> int:
        sheet = max((s.memory() for s in self.sheets.values()), default=0)
        return 2 * size + STRING_BYTES * self.strings + 2 * self.string_bytes + sheet


# ---------------------------------------------------------------- streaming inflate

class _Inflater:
    """Inflates a zip's parts chunk by chunk, under one cap for the whole archive."""

    def __init__(self, data: bytes, name: str, fmt: str, limits: Limits, deadline: Deadline):
        self.data, self.name, self.fmt, self.limits, self.deadline = data, name, fmt, limits, deadline
        self.total = 0
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
            self.infos = self.zip.infolist()
        except Exception:  # BadZipFile, NotImplementedError (unknown zip version), struct errors, ...
            raise _unreadable(name, fmt, "it is damaged, or not a workbook") from None
        if len(self.infos) > limits.max_members:
            raise _unreadable(name, fmt, f"it holds {len(self.infos)} parts, over the {limits.max_members} limit",
                              "ING.file.size")
        declared = sum(i.file_size for i in self.infos)
        if declared > limits.max_unpacked:
            raise SubmissionRejected(
                f"{name}: unpacks to {declared} bytes, over the {limits.max_unpacked}-byte limit (a damaged file or a "
                "zip bomb); it was not opened. Split the data into smaller files.", rule="ING.file.size", format=fmt)
        self.by_name = {i.filename: i for i in self.infos}

    def chunks(self, info: zipfile.ZipInfo) -> Iterator[bytes]:
        if info.flag_bits & 0x1:
            raise SubmissionRejected(f"{self.name}: is a password-protected workbook; remove the password and send it "
                                     "again.", rule="ING.file.type", format=self.fmt)
        start = info.header_offset
        head = self.data[start:start + 30]
        if len(head) < 30 or head[:4] != b"PK\x03\x04":
            raise _unreadable(self.name, self.fmt, f"part {info.filename} is damaged")
        n, e = int.from_bytes(head[26:28], "little"), int.from_bytes(head[28:30], "little")
        begin = start + 30 + n + e
        raw = memoryview(self.data)[begin:begin + info.compress_size]
        out = crc = 0
        if info.compress_type == zipfile.ZIP_STORED:
            for k in range(0, len(raw), CHUNK):
                piece = bytes(raw[k:k + CHUNK])
                if not k and (b"<!DOCTYPE" in piece or b"<!ENTITY" in piece):
                    raise SubmissionRejected(
                        f"{self.name}: contains XML entity declarations or external references, which are not "
                        "allowed (a crafted file); it was not read.", rule="ING.file.unsafe", format=self.fmt)
                out += len(piece)
                self._count(len(piece))
                crc = zlib.crc32(piece, crc)
                yield piece
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            z = zlib.decompressobj(-15)
            k = 0
            while not z.eof:
                if z.unconsumed_tail:
                    src = z.unconsumed_tail
                elif k < len(raw):
                    src, k = raw[k:k + CHUNK], k + CHUNK
                else:
                    break
                try:
                    piece = z.decompress(src, CHUNK)  # never more than CHUNK bytes at once
                except zlib.error:
                    raise _unreadable(self.name, self.fmt, f"part {info.filename} is damaged") from None
                if piece:
                    if not out and (b"<!DOCTYPE" in piece or b"<!ENTITY" in piece):
                        raise SubmissionRejected(
                            f"{self.name}: contains XML entity declarations or external references, which are not "
                            "allowed (a crafted file); it was not read.", rule="ING.file.unsafe", format=self.fmt)
                    out += len(piece)
                    if out > info.file_size:
                        break
                    self._count(len(piece))
                    crc = zlib.crc32(piece, crc)
                    yield piece
            if not z.eof and out <= info.file_size:
                raise _unreadable(self.name, self.fmt, f"part {info.filename} is cut short")
        else:
            raise _unreadable(self.name, self.fmt, f"part {info.filename} uses an unknown compression")
        if out != info.file_size or crc != info.CRC:
            raise SubmissionRejected(
                f"{self.name}: is not a valid {self.fmt.upper()} file: part {info.filename} unpacks to a different size "
                "or content than its zip headers declare (a damaged file or a zip bomb); it was not opened.",
                rule="ING.file.damaged", format=self.fmt)

    def read_small(self, member: str) -> bytes | None:
        info = self.by_name.get(member)
        if info is None:
            return None
        if info.file_size > MAX_MANIFEST_PART:
            raise _unreadable(self.name, self.fmt, f"part {member} is {info.file_size} bytes")
        return b"".join(self.chunks(info))

    def _count(self, n: int) -> None:
        self.total += n
        if self.total > self.limits.max_unpacked:
            raise SubmissionRejected(
                f"{self.name}: unpacks to more than {self.limits.max_unpacked} bytes, over the {self.limits.max_unpacked}"
                "-byte limit (a damaged file or a zip bomb); it was not read. Split the data into smaller files.",
                rule="ING.file.size", format=self.fmt)
        self.deadline.check()


def _carry_rows(chunks: Iterator[bytes], row_start: re.Pattern, name: str, fmt: str) -> Iterator[bytes]:
    """The inflated text in pieces that each end before a row's start tag (a row is never split)."""
    buf = b""
    for piece in chunks:
        buf += piece
        window = max(0, len(buf) - 256 * 1024)
        last = None
        for m in row_start.finditer(buf, window):
            last = m
        if last is None and window:
            for m in row_start.finditer(buf):
                last = m
        if last is None or last.start() == 0:
            if len(buf) > MAX_CARRY:
                raise _unreadable(name, fmt, f"one row of it is longer than {MAX_CARRY} bytes")
            continue
        yield buf[:last.start()]
        buf = buf[last.start():]
    if buf:
        yield buf


# ---------------------------------------------------------------- XLSX / XLSM

_P = rb"(?:[\w.-]+:)?"
_X_ROW_START = re.compile(rb"<" + _P + rb"row[\s>/]")
_X_TOKEN = re.compile(rb"<" + _P + rb"(row|c|mergeCell)\b([^>]*)>(\s*<" + _P + rb"(?:v>\s*[^<\s]|f\b|is\b))?")
_X_REF = re.compile(rb"""\br=["']([A-Za-z]*)([0-9]+)["']""")
_X_ERROR = re.compile(rb"""\bt=["']e["']""")
_X_VALUE = re.compile(rb"<" + _P + rb"v>([^<]*)</")
_X_STRING = re.compile(rb"<" + _P + rb"si[\s>/]")


def _column(letters: bytes, cache: dict = {}) -> int:
    n = cache.get(letters)
    if n is None:
        n = 0
        for ch in letters.upper():
            n = n * 26 + ch - 64
        cache[letters] = n
    return n


_X_ROW_TAG = re.compile(rb"<" + _P + rb"row[\s>/]")
_X_CELL_TAG = re.compile(rb"<" + _P + rb"c[\s>/]")
_X_ROW_REF = re.compile(rb"<" + _P + rb"""row\b[^>]*?\br=["']([0-9]+)["']""")
_X_CELL_COORD = re.compile(rb"<" + _P + rb"""c\b[^>]*?\br=["']([A-Za-z]+[0-9]+)["']""")
_X_CELL_DIGITS = re.compile(rb"<" + _P + rb"""c\b[^>]*?\br=["'][A-Za-z]+([0-9]+)["']""")
_X_VALUE_LETTERS = re.compile(rb"<" + _P + rb"""c\b[^>]*?\br=["']([A-Za-z]+)[0-9]+["'][^>]*>(?=\s*<""" + _P
                              + rb"(?:v>\s*[^<\s]|f\b|is\b))")
# The same, for the usual writing (no prefix, the coordinate first: Excel, openpyxl, LibreOffice), which
# the regular expression engine finds by its literal start, several times faster.
_F_ROW_REF = re.compile(rb'<row r="([0-9]+)"')
_F_CELL_COORD = re.compile(rb'<c r="([A-Z]+[0-9]+)"')
_F_CELL_DIGITS = re.compile(rb'<c r="[A-Z]+([0-9]+)"')
_F_VALUE_LETTERS = re.compile(rb'<c r="([A-Z]+)[0-9]+"[^>]*>(?=<(?:v>[^<]|f[ >]|is>))')
_X_ERROR_CELL = re.compile(rb"<" + _P + rb"""c\b([^>]*\bt=["']e["'][^>]*)>""")
_X_MERGE = re.compile(rb"<" + _P + rb"mergeCell\b")
_LETTERS = bytes(range(65, 91)) + bytes(range(97, 123))


def _overwrite(name: str, fmt: str, sheet: str, where: str) -> SubmissionRejected:
    return SubmissionRejected(
        f"{name}: sheet '{sheet}': {where}; one row or cell would overwrite another (a file written by a faulty "
        "program, or edited by hand), so it was not read and no row of it is loaded. Open it in Excel, check those "
        "rows, and save it again.", rule="ING.file.records", format=fmt)


def _scan_xlsx_sheet(chunks: Iterator[bytes], name: str, fmt: str, limits: Limits, deadline: Deadline,
                     sheet: str, budget: int = 1 << 62) -> SheetScan:
    """Counts, extent, error cells and merged ranges of one sheet's XML; refuses rows or cells
    whose coordinates repeat (calamine places each cell by its coordinate, so the later would
    silently replace the earlier) and row numbers that go backwards.

    Rows are never split between pieces, so: row numbers increase; within a piece no coordinate
    repeats and every cell names a row of that piece; hence no coordinate repeats in the sheet.
    All of it with regular expressions and sets (no Python loop per cell).
    """
    s = SheetScan()
    last_row = 0
    for text in _carry_rows(chunks, _X_ROW_START, name, fmt):
        deadline.check()
        patterns = _X_ROW_REF, _X_CELL_COORD, _X_CELL_DIGITS, _X_VALUE_LETTERS
        if b":row" in text or b":c " in text:  # a namespace prefix on the tags
            rows, cells = len(_X_ROW_TAG.findall(text)), len(_X_CELL_TAG.findall(text))
            row_refs, coords = _X_ROW_REF.findall(text), _X_CELL_COORD.findall(text)
        else:
            rows = text.count(b"<row ") + text.count(b"<row>")
            cells = text.count(b"<c ") + text.count(b"<c>")
            row_refs, coords = _F_ROW_REF.findall(text), _F_CELL_COORD.findall(text)
            if len(coords) == cells and len(row_refs) == rows:
                patterns = _F_ROW_REF, _F_CELL_COORD, _F_CELL_DIGITS, _F_VALUE_LETTERS
            else:
                row_refs, coords = _X_ROW_REF.findall(text), _X_CELL_COORD.findall(text)
        s.rows += rows
        s.cells += cells
        if len(coords) != cells or len(row_refs) != rows:  # some without coordinates: one by one
            last_row = _scan_positions(text, s, name, fmt, sheet, last_row)
        else:
            numbers = list(map(int, row_refs))
            if numbers and (numbers[0] <= last_row or not all(map(int.__lt__, numbers, numbers[1:]))):
                prev = last_row
                for r in numbers:
                    if r <= prev:
                        raise _overwrite(name, fmt, sheet, f"row number {r} comes after row {prev}")
                    prev = r
            if len(set(coords)) != len(coords):
                seen = set()
                dup = next(c for c in coords if c in seen or seen.add(c))
                raise _overwrite(name, fmt, sheet, f"cell {dup.decode().upper()} is written twice")
            # the cells' row numbers: their coordinates without the column letters (what patterns[2] finds)
            digits = set(b" ".join(coords).translate(None, _LETTERS).split())
            if not digits <= set(row_refs):
                stray = min(digits - set(row_refs), key=int)
                raise _overwrite(name, fmt, sheet, f"a cell of row {int(stray)} is written inside another row")
            letters = patterns[3].findall(text)
            if letters:
                cols = [_column(c) for c in set(letters)]
                first = min(int(d) for d in digits) if digits else numbers[0]
                s.see(first, min(cols))
                s.see(max(numbers), max(cols))
                s.value_cells += len(letters) - 2
            if numbers:
                last_row = numbers[-1]
        # (both searches only where their literal text occurs: a pattern starting at every '<' is slow)
        for m in _X_ERROR_CELL.finditer(text) if b't="e' in text or b"t='e" in text else ():
            ref = _X_REF.search(m.group(1))
            if ref is None:
                raise _overwrite(name, fmt, sheet, "an error cell has no coordinate")
            v = _X_VALUE.search(text, m.end())
            s.errors[(int(ref.group(2)), _column(ref.group(1)))] = \
                (v.group(1).decode("utf-8", "replace").strip() if v else "") or "#ERROR"
        if s.memory() > budget:  # refused as soon as it is clear, not after inflating the rest
            raise over_memory(name, fmt, s.memory(), budget, f"its sheet '{sheet}'")
        s.merges += len(_X_MERGE.findall(text)) if b"mergeCell" in text else 0
        if s.merges > limits.max_merges:
            raise SubmissionRejected(
                f"{name}: sheet '{sheet}' has more than {limits.max_merges} merged ranges, over the limit; it was "
                "not read. Unmerge the cells and save it again.", rule="ING.file.size", format=fmt)
    return s


def _ref(key: int) -> str:
    col, letters = key & 0x7FFF, ""
    while col:
        col, rem = divmod(col - 1, 26)
        letters = chr(65 + rem) + letters
    return f"{letters}{key >> 15}"


def _scan_positions(text: bytes, s: SheetScan, name: str, fmt: str, sheet: str, row: int) -> int:
    """The slow way, for rows or cells written without coordinates (placed one after another)."""
    col, last_key = 0, (row << 15) + (1 << 15) - 1
    for m in _X_TOKEN.finditer(text):
        tag, attrs = m.group(1), m.group(2)
        ref = _X_REF.search(attrs)
        if tag == b"row":
            r = int(ref.group(2)) if ref is not None else row + 1
            if r <= row:
                raise _overwrite(name, fmt, sheet, f"row number {r} comes after row {row}")
            row, col = r, 0
        elif tag == b"c":
            if ref is not None:
                r, col = int(ref.group(2)), _column(ref.group(1))
            else:
                r, col = row, col + 1
            key = (r << 15) + col
            if key <= last_key:
                raise _overwrite(name, fmt, sheet, f"cell {_ref(key)} comes after cell {_ref(last_key)}")
            last_key = key
            if m.group(3):
                s.see(r, col)
    return row


def _xml(data: bytes):
    import defusedxml.ElementTree as ET

    return ET.fromstring(data, forbid_dtd=True)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xlsx_sheet_parts(z: _Inflater) -> list[tuple[str, str]]:
    """(sheet name, zip member) of every worksheet, from workbook.xml and its relationships."""
    import posixpath

    wb, rels = z.read_small("xl/workbook.xml"), z.read_small("xl/_rels/workbook.xml.rels")
    if wb is None or rels is None:
        raise _unreadable(z.name, z.fmt, "it has no workbook part")
    targets = {}
    for el in _xml(rels).iter():
        if _local(el.tag) == "Relationship":
            t = el.get("Target") or ""
            targets[el.get("Id")] = t.lstrip("/") if t.startswith("/") else posixpath.normpath(posixpath.join("xl", t))
    out = []
    for el in _xml(wb).iter():
        if _local(el.tag) == "sheet":
            rid = next((v for k, v in el.attrib.items() if _local(k) == "id"), None)
            out.append((el.get("name") or "", targets.get(rid, "")))
    return out


def scan_xlsx(data: bytes, name: str, fmt: str, limits: Limits, deadline: Deadline) -> WorkbookScan:
    z = _Inflater(data, name, fmt, limits, deadline)
    try:
        parts = _xlsx_sheet_parts(z)
    except SubmissionRejected:
        raise
    except Exception as e:
        what = type(e).__name__
        if what in ("EntitiesForbidden", "DTDForbidden", "ExternalReferenceForbidden", "NotSupportedError"):
            raise SubmissionRejected(f"{name}: contains XML entity declarations or external references, which are not "
                                     "allowed (a crafted file); it was not read.", rule="ING.file.unsafe",
                                     format=fmt) from None
        raise _unreadable(name, fmt, f"its workbook part cannot be read ({what})") from None
    scan = WorkbookScan({})
    budget = limits.memory_budget(len(data))
    rest = []
    for info in z.infos:  # shared strings first: calamine holds them all, whichever sheet it reads
        low = info.filename.lower()
        if low.endswith("sharedstrings.xml"):
            tail = b""
            for piece in z.chunks(info):
                scan.strings += len(_X_STRING.findall(tail + piece))
                scan.string_bytes += len(piece)
                tail = piece[-8:] if not piece[-8:].count(b"<") else b""
                if scan.memory(len(data)) > budget:
                    raise over_memory(name, fmt, scan.memory(len(data)), budget, "its table of shared strings")
        elif low.endswith((".xml", ".rels")) and not low.startswith("xl/worksheets/") and info.file_size:
            rest.append(info)
    for sheet, member in parts:
        info = z.by_name.get(member)
        if info is None or not member.endswith(".xml"):
            continue
        scan.sheets[sheet] = _scan_xlsx_sheet(z.chunks(info), name, fmt, limits, deadline, sheet,
                                              budget - scan.memory(len(data)))
    for info in rest:  # styles and the rest calamine reads: their sizes and CRCs are checked too
        for _ in z.chunks(info):
            pass
    scan.unpacked = z.total
    return scan


# ---------------------------------------------------------------- ODS

_O_ROW_START = re.compile(rb"<table:table-row[\s>/]")
_O_TOKEN = re.compile(rb"<(/?)(table:table-row|table:table-cell|table:covered-table-cell|table:table)(?=[\s>/])([^>]*?)(/?)>"
                      rb"(\s*<text:[ph]\b)?")
_O_ATTR = {k: re.compile(rb'table:' + k + rb'="(\d+)"') for k in
           (b"number-rows-repeated", b"number-columns-repeated", b"number-columns-spanned", b"number-rows-spanned")}
_O_NAME = re.compile(rb'table:name="([^"]*)"')


def _num(attrs: bytes, key: bytes) -> int:
    m = _O_ATTR[key].search(attrs)
    return int(m.group(1)) if m else 1


def scan_ods(data: bytes, name: str, limits: Limits, deadline: Deadline) -> WorkbookScan:
    from html import unescape

    fmt = "ods"
    z = _Inflater(data, name, fmt, limits, deadline)
    info = z.by_name.get("content.xml")
    if info is None:
        raise _unreadable(name, fmt, "it has no content part")
    scan = WorkbookScan({})
    s = SheetScan()
    row = col = 0  # rows and columns passed, 0-based
    row_repeat, row_values = 1, []  # the cells with a value in the current row: (col, count)
    budget = limits.memory_budget(len(data))
    for text in _carry_rows(z.chunks(info), _O_ROW_START, name, fmt):
        deadline.check()
        if s.memory() > budget:
            raise over_memory(name, fmt, s.memory(), budget, "a sheet")
        for m in _O_TOKEN.finditer(text):
            closing, tag, attrs, selfclosing, content = m.groups()
            if tag == b"table:table":
                if not closing:
                    s = SheetScan()
                    nm = _O_NAME.search(attrs)
                    scan.sheets[unescape(nm.group(1).decode("utf-8", "replace")) if nm else ""] = s
                    row = col = 0
            elif tag == b"table:table-row":
                if not closing:
                    row_repeat, row_values, col = _num(attrs, b"number-rows-repeated"), [], 0
                    s.rows += 1
                if closing or selfclosing:
                    for c, count in row_values:
                        s.see(row + 1, c + 1, count, row_repeat)
                    row += row_repeat
                    if row > 1 << 24:
                        raise _unreadable(name, fmt, "it repeats rows past the largest sheet")
            elif not closing:
                repeat = _num(attrs, b"number-columns-repeated")
                s.cells += repeat
                if b"value-type" in attrs or (content and not selfclosing):
                    row_values.append((col, repeat))
                cs, rs = _num(attrs, b"number-columns-spanned"), _num(attrs, b"number-rows-spanned")
                if (cs > 1 or rs > 1) and tag == b"table:table-cell":
                    s.merges += 1
                    if s.merges > limits.max_merges:
                        raise SubmissionRejected(
                            f"{name}: a sheet has more than {limits.max_merges} merged ranges, over the limit; it was "
                            "not read. Unmerge the cells and save it again.", rule="ING.file.size", format=fmt)
                    s.merge_ranges.append((col + 1, row + 1, col + cs, row + rs))
                col += repeat
                if col > 1 << 16:
                    raise _unreadable(name, fmt, "it repeats cells past the widest sheet")
    for member in ("styles.xml", "meta.xml", "settings.xml"):
        if member in z.by_name:
            for _ in z.chunks(z.by_name[member]):
                pass
    scan.unpacked = z.total
    return scan


def check_memory(scan: WorkbookScan, size: int, name: str, fmt: str, limits: Limits) -> None:
    budget = limits.memory_budget(size)
    needed = scan.memory(size)
    if needed > budget:
        biggest = max(scan.sheets.items(), key=lambda kv: kv[1].memory(), default=(None, None))[0]
        what = f"its sheet '{biggest}'" if biggest is not None else "it"
        raise over_memory(name, fmt, needed, budget, what)
