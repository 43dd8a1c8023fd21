"""Binary workbooks: what an Excel 97-2003 (.xls) or Excel binary (.xlsb) workbook holds, before
python-calamine reads it (transforms/ingest/limits.py says why: bounded memory, error cells that
calamine reads as empty, cells that would overwrite each other).

Both formats are sequences of binary records; only the record headers and the few fixed-size
fields that give a cell's position, an error code or a merged range are read here (the layouts
are those of [MS-XLS] and [MS-XLSB]). Cell values are read by calamine only.
"""
from __future__ import annotations

import io
import struct

from transforms.ingest import limits as L
from transforms.ingest.headers import SubmissionRejected

# [MS-XLS] 2.5.12 BErr / [MS-XLSB] 2.5.97.2: error codes of error cells
ERRORS = {0x00: "#NULL!", 0x07: "#DIV/0!", 0x0F: "#VALUE!", 0x17: "#REF!", 0x1D: "#NAME?", 0x24: "#NUM!",
          0x2A: "#N/A", 0x2B: "#GETTING_DATA"}

# BIFF8 record types
_BOUNDSHEET, _BOF, _EOF, _FILEPASS, _MERGEDCELLS = 0x0085, 0x0809, 0x000A, 0x002F, 0x00E5
_BOOLERR, _FORMULA, _MULRK = 0x0205, 0x0006, 0x00BD
_VALUE_CELLS = {0x0203, 0x027E, 0x00FD, 0x0204, 0x00D6, _BOOLERR, _FORMULA}  # NUMBER RK LABELSST LABEL RSTRING


def _xls_error(name: str, what: str) -> SubmissionRejected:
    return SubmissionRejected(f"{name}: is not a valid Excel 97-2003 (.xls) workbook: {what}. Open it in Excel and save "
                              "it again as an Excel Workbook (.xlsx).", rule="ING.file.damaged", format="xls")


class _Cells:
    """Positions of one sheet's value cells, which must not repeat (calamine keeps the last)."""

    def __init__(self, scan: L.SheetScan, name: str, fmt: str, sheet: str):
        self.scan, self.name, self.fmt, self.sheet = scan, name, fmt, sheet
        self.last = -1
        self.seen: set[int] | None = None  # only when cells come out of order

    def add(self, row: int, col: int) -> None:  # 1-based
        key = (row << 15) + col
        if key <= self.last:
            if self.seen is None:  # out of order is allowed in these formats; repeated is not
                self.seen = set()
            if key in self.seen:
                raise SubmissionRejected(
                    f"{self.name}: sheet '{self.sheet}': cell at row {row}, column {col} is written twice; one would "
                    "overwrite the other, so the file was not read. Open it in Excel, check that row, and save it "
                    "again.", rule="ING.file.records", format=self.fmt)
        if self.seen is not None:
            self.seen.add(key)
        else:
            self.last = key
        self.scan.cells += 1
        self.scan.see(row, col)


def scan_xls(data: bytes, name: str, limits: L.Limits, deadline: L.Deadline) -> L.WorkbookScan:
    import olefile

    try:
        ole = olefile.OleFileIO(io.BytesIO(data))
        stream = "Workbook" if ole.exists("Workbook") else "Book" if ole.exists("Book") else None
        if stream is None:
            raise _xls_error(name, "it holds no workbook")
        if ole.get_size(stream) > 2 * len(data) + (1 << 20):
            raise _xls_error(name, "its workbook stream is larger than the file")
        book = ole.openstream(stream).read()
    except SubmissionRejected:
        raise
    except Exception as e:  # olefile's errors for a damaged container
        raise _xls_error(name, f"its container is damaged ({type(e).__name__})") from None
    scan = L.WorkbookScan({})
    at: dict[int, str] = {}  # stream offset of each sheet's BOF -> sheet name
    sheet: L.SheetScan | None = None
    cells: _Cells | None = None
    pos, n, k = 0, len(book), 0
    unpack = struct.unpack_from
    while pos + 4 <= n:
        kind, size = unpack("<HH", book, pos)
        body = pos + 4
        k += 1
        if not k & 0xFFFF:
            deadline.check()
        if kind == _BOUNDSHEET and size >= 8:
            offset, _state, dt, cch = unpack("<IBBB", book, body)
            if dt == 0:  # a worksheet
                wide = book[body + 7] & 1 if size > 7 else 0
                raw = book[body + 8:body + 8 + cch * (2 if wide else 1)]
                at[offset] = raw.decode("utf-16-le" if wide else "latin-1", "replace")
        elif kind == _FILEPASS:
            raise SubmissionRejected(f"{name}: is a password-protected workbook; remove the password and send it again.",
                                     rule="ING.file.type", format="xls")
        elif kind == _BOF:
            title = at.get(pos)
            if title is not None:
                sheet = scan.sheets[title] = L.SheetScan()
                cells = _Cells(sheet, name, "xls", title)
            else:
                sheet = cells = None
        elif sheet is not None and size >= 6:
            if kind in _VALUE_CELLS:
                row, col = unpack("<HH", book, body)
                cells.add(row + 1, col + 1)
                if kind == _BOOLERR and size >= 8 and book[body + 7] == 1:
                    sheet.errors[(row + 1, col + 1)] = ERRORS.get(book[body + 6], "#ERROR")
                elif kind == _FORMULA and size >= 14 and book[body + 12:body + 14] == b"\xff\xff" and book[body + 6] == 2:
                    sheet.errors[(row + 1, col + 1)] = ERRORS.get(book[body + 8], "#ERROR")
            elif kind == _MULRK:
                row, first = unpack("<HH", book, body)
                last = unpack("<H", book, body + size - 2)[0]
                for col in range(first, last + 1):
                    cells.add(row + 1, col + 1)
            elif kind == _MERGEDCELLS:
                count = unpack("<H", book, body)[0]
                sheet.merges += count
                if sheet.merges > limits.max_merges:
                    raise SubmissionRejected(f"{name}: a sheet has more than {limits.max_merges} merged ranges, over the "
                                             "limit; it was not read. Unmerge the cells and save it again.",
                                             rule="ING.file.size", format="xls")
            elif kind == _EOF:
                sheet = cells = None
        pos = body + size
    return scan


# ---------------------------------------------------------------- XLSB

_X_ROW, _X_MERGE, _X_BUNDLE_SHEET = 0, 176, 156
_X_CELLS = set(range(1, 12))  # BrtCellBlank .. BrtFmlaError
_X_ERROR_CELLS = {3, 11}  # BrtCellError, BrtFmlaError


def _records(buf: bytes, pos: int, n: int):
    """(type, body start, body size) of each [MS-XLSB] record from pos (7-bit variable-length header)."""
    while pos < n:
        kind = buf[pos]
        pos += 1
        if kind & 0x80:
            if pos >= n:
                return
            kind = (kind & 0x7F) | ((buf[pos] & 0x7F) << 7)
            pos += 1
        size = shift = 0
        for _ in range(4):
            if pos >= n:
                return
            b = buf[pos]
            pos += 1
            size |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        yield kind, pos, size
        pos += size


def _wide(buf: bytes, pos: int) -> tuple[str, int]:
    cch = struct.unpack_from("<I", buf, pos)[0]
    if cch == 0xFFFFFFFF:
        return "", pos + 4
    end = pos + 4 + 2 * cch
    return buf[pos + 4:end].decode("utf-16-le", "replace"), end


def scan_xlsb(data: bytes, name: str, limits: L.Limits, deadline: L.Deadline) -> L.WorkbookScan:
    import posixpath

    fmt = "xlsb"
    z = L._Inflater(data, name, fmt, limits, deadline)
    book = z.read_small("xl/workbook.bin")
    rels = z.read_small("xl/_rels/workbook.bin.rels")
    if book is None or rels is None:
        raise L._unreadable(name, fmt, "it has no workbook part")
    targets = {}
    for el in L._xml(rels).iter():
        if L._local(el.tag) == "Relationship":
            t = el.get("Target") or ""
            targets[el.get("Id")] = t.lstrip("/") if t.startswith("/") else posixpath.normpath(posixpath.join("xl", t))
    parts = []
    for kind, body, size in _records(book, 0, len(book)):
        if kind == _X_BUNDLE_SHEET and size >= 12:
            rid, p = _wide(book, body + 8)
            title, _ = _wide(book, p)
            parts.append((title, targets.get(rid, "")))
    scan = L.WorkbookScan({})
    for title, member in parts:
        info = z.by_name.get(member)
        if info is None:
            continue
        s = scan.sheets[title] = L.SheetScan()
        cells = _Cells(s, name, fmt, title)
        budget = limits.memory_budget(len(data))
        if info.file_size > budget // 2:
            raise L.over_memory(name, fmt, info.file_size * 2, budget, f"its sheet '{title}'")
        sheet = b"".join(z.chunks(info))  # binary records are compact: the part is at most the cells themselves
        row = -1
        unpack = struct.unpack_from
        for kind, body, size in _records(sheet, 0, len(sheet)):
            if kind == _X_ROW and size >= 4:
                row = unpack("<I", sheet, body)[0]
                s.rows += 1
            elif kind in _X_CELLS and size >= 8:
                if kind == 1:  # blank (a style only)
                    continue
                col = unpack("<I", sheet, body)[0]
                cells.add(row + 1, col + 1)
                if kind in _X_ERROR_CELLS and size >= 9:
                    s.errors[(row + 1, col + 1)] = ERRORS.get(sheet[body + 8], "#ERROR")
            elif kind == _X_MERGE and size >= 16:
                r0, r1, c0, c1 = unpack("<IIII", sheet, body)
                s.merges += 1
                if s.merges > limits.max_merges:
                    raise SubmissionRejected(f"{name}: sheet '{title}' has more than {limits.max_merges} merged ranges, "
                                             "over the limit; it was not read. Unmerge the cells and save it again.",
                                             rule="ING.file.size", format=fmt)
                s.merge_ranges.append((c0 + 1, r0 + 1, c1 + 1, r1 + 1))
        deadline.check()
    for info in z.infos:  # the rest calamine may read: sizes and CRCs checked, within the cap
        if info.filename.lower().endswith((".bin", ".xml", ".rels")) and not info.filename.startswith("xl/worksheets/"):
            for _ in z.chunks(info):
                pass
    return scan
