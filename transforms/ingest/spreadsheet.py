"""Workbooks (.xlsx, .xlsm, .xls, .xlsb, .ods), read by python-calamine.

calamine gives each sheet's cell values, merged ranges (XLSX, XLS) and visibility; this module
keeps the project's own choices on top: the first visible sheet with a header (hidden sheets,
such as lookup lists, last) or the sheet named for the university, title rows, merged and
two-row headers (transforms/ingest/headers.py). Before calamine reads a zip-based workbook,
transforms/ingest/limits.py scans it with a streaming cap, so memory and time stay bounded; the
scan also gives what calamine does not: error cells (calamine reads them as empty; here they
stay errors and the row is quarantined by rule ENR.cell.error / PLC.cell.error), merged ranges
of ODS and XLSB files, and refusals of rows that would overwrite each other.
docs/READERS.md lists every intended difference from openpyxl.
"""
from __future__ import annotations

import io
import logging
import unicodedata
from datetime import date
from functools import partial
from itertools import islice

from transforms.ingest import limits as L
from transforms.ingest.headers import AliasTable, RawTable, SubmissionRejected, build_table, cell_text, header_key

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
FORMATS = ("xlsx", "xlsm", "xls", "xlsb", "ods")


def _error(name: str, fmt: str, what: str, rule: str = "ING.file.damaged") -> SubmissionRejected:
    return SubmissionRejected(f"{name}: {what}. Open it in Excel and save it again as an Excel Workbook (.xlsx).",
                              rule=rule, format=fmt)


def scan(data: bytes, fmt: str, name: str, limits: L.Limits, deadline: L.Deadline) -> L.WorkbookScan:
    """What the workbook holds, before any value is parsed; refuses what would exceed a limit."""
    if fmt == "xls":
        if not data.startswith(OLE_MAGIC):
            raise _error(name, fmt, "is not a valid Excel 97-2003 (.xls) workbook (damaged, or another kind of file)")
        from transforms.ingest import legacy
        found = legacy.scan_xls(data, name, limits, deadline)
    else:
        if data.startswith(OLE_MAGIC):
            raise _error(name, fmt, "is a password-protected workbook or an old Excel 97-2003 file with an "
                                    f".{fmt} name; remove the password", "ING.file.type")
        if not data.startswith(b"PK"):
            raise _error(name, fmt, f"is not a valid {fmt.upper()} file (damaged, or not a workbook)")
        if fmt == "ods":
            found = L.scan_ods(data, name, limits, deadline)
        elif fmt == "xlsb":
            from transforms.ingest import legacy
            found = legacy.scan_xlsb(data, name, limits, deadline)
        else:
            found = L.scan_xlsx(data, name, fmt, limits, deadline)
    L.check_memory(found, len(data), name, fmt, limits)
    return found


# Sheet rows are turned into text together, column by column, and the time limit is checked between:
# at most ROWS_AT_A_TIME rows and about CELLS_AT_A_TIME cells (a wide sheet's rows come fewer at a time).
ROWS_AT_A_TIME = 1024
CELLS_AT_A_TIME = 65_536


class _CellTexts(dict):
    """Cell value -> text, remembered: a column's years, codes and grades repeat. Keys are only str,
    float and date values, which never compare equal across types (True == 1 == 1.0 would)."""

    LIMIT = 200_000

    def __missing__(self, value):
        text = _value_text(value)
        if len(self) < self.LIMIT:
            self[value] = text
        return text


_MEMO_TYPES = frozenset({str, float, date})


def _value_text(value) -> str:
    """One calamine value as the table's text: trimmed, NFC (what `cell_text` gives)."""
    text = value.strip() if type(value) is str else cell_text(value)
    return cell_text(text) if text and not text.isascii() else text


def _column_texts(column: tuple, texts: _CellTexts) -> list[str]:
    """`_value_text` of each value of a column, without a Python call per cell for the usual types."""
    kinds = set(map(type, column))
    if kinds == {str}:  # trim, NFC, trim: what _value_text does to a str (NFC leaves ASCII as it is)
        return list(map(str.strip, map(_nfc, map(str.strip, column))))
    if kinds <= _MEMO_TYPES:
        return list(map(texts.__getitem__, column))
    return list(map(_value_text, column))


_nfc = partial(unicodedata.normalize, "NFC")


def _rows(sheet, found: L.SheetScan | None, max_columns: int, deadline: L.Deadline):
    """(line, cell texts) of the sheet's non-blank rows; error cells as their error code."""
    if sheet.start is None:  # an empty sheet
        return
    # iter_rows gives the grid from A1, whatever `start` says (empty rows and columns before the data included)
    errors: dict[int, list[tuple[int, str]]] = {}
    for (row, col), code in (found.errors.items() if found is not None else ()):
        errors.setdefault(row, []).append((col, code))
    texts = _CellTexts()
    values = sheet.iter_rows()
    line = 0
    size = min(16, ROWS_AT_A_TIME)  # the first rows, before the sheet's width is known
    while True:
        deadline.check()
        batch = list(islice(values, size))
        if not batch:
            return
        widths = set(map(len, batch))
        size = max(1, min(ROWS_AT_A_TIME, CELLS_AT_A_TIME // max(1, max(widths))))
        if widths == {0}:
            rows = [()] * len(batch)
        elif len(widths) == 1:  # calamine's grid: every row as wide
            rows = zip(*[_column_texts(c, texts) for c in islice(zip(*batch), max_columns)])
        else:
            rows = [list(map(_value_text, v[:max_columns])) for v in batch]
        for cells in rows:
            line += 1
            if line in errors:
                cells = list(cells)
                for col, code in errors.pop(line):
                    if col <= max_columns:
                        if len(cells) < col:
                            cells.extend([""] * (col - len(cells)))
                        cells[col - 1] = cell_text(code) if code and not code.isascii() else code
            if not any(cells):
                continue
            if not cells[-1]:
                cells = list(cells)
                while not cells[-1]:
                    cells.pop()
            yield line, cells


def read_workbook(data: bytes, fmt: str, name: str, aliases: AliasTable, required: set[str], sheet: str | None,
                  limits: L.Limits, deadline: L.Deadline) -> RawTable:
    from python_calamine import CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum

    found = scan(data, fmt, name, limits, deadline)
    try:
        wb = CalamineWorkbook.from_filelike(io.BytesIO(data))
    except Exception as e:  # calamine's XmlError, ZipError, PasswordError, CalamineError, ...
        raise _unreadable(name, fmt, e) from None
    try:
        sheets = [(m.name, m.visible == SheetVisibleEnum.Visible) for m in wb.sheets_metadata
                  if m.typ == SheetTypeEnum.WorkSheet]
        if not sheets:
            raise _error(name, fmt, "has no worksheet", "ING.file.sheet")
        if sheet is not None:
            chosen = [s for s in sheets if s[0] == sheet] or [s for s in sheets if header_key(s[0]) == header_key(sheet)]
            if not chosen:
                raise SubmissionRejected(
                    f"{name}: has no sheet named '{sheet}' (its sheets: {', '.join(s[0] for s in sheets)}). Put the "
                    f"data in a sheet named '{sheet}', or ask the programme office to change the sheet setting.",
                    rule="ING.file.sheet", format=fmt)
            candidates = chosen[:1]
        else:  # the first visible sheet with a header; hidden sheets (lookup lists) last
            candidates = [s for s in sheets if s[1]] + [s for s in sheets if not s[1]]
        first_problem = None
        for title, _ in candidates:
            try:
                ws = wb.get_sheet_by_name(title)
            except Exception as e:
                raise _unreadable(name, fmt, e) from None
            sheet_scan = found.sheets.get(title)
            ranges = ws.merged_cell_ranges
            if ranges:
                merges = [(c0 + 1, r0 + 1, c1 + 1, r1 + 1) for (r0, c0), (r1, c1) in ranges]
            else:  # ODS and XLSB: calamine gives none, the scan found them
                merges = list(sheet_scan.merge_ranges) if sheet_scan is not None else []
            merges = [(c0, r0, min(c1, limits.max_columns), r1) for c0, r0, c1, r1 in merges if c0 <= limits.max_columns]
            if len(merges) > limits.max_merges:
                raise SubmissionRejected(f"{name}: sheet '{title}' has more than {limits.max_merges} merged ranges, over "
                                         "the limit; it was not read. Unmerge the cells and save it again.",
                                         rule="ING.file.size", format=fmt)
            try:
                return build_table(_rows(ws, sheet_scan, limits.max_columns, deadline), merges, aliases, required,
                                   name, fmt, None, title, max_rows=limits.max_rows,
                                   merged_cell_budget=limits.max_merged_cells)
            except SubmissionRejected as e:
                if first_problem is None:
                    first_problem = e
                if e.rule != "ING.file.header":  # only a sheet without a header lets the next sheet try
                    raise
        if len(candidates) > 1:
            raise SubmissionRejected(first_problem.reason.replace(
                ": no header row found:", f": no header row found in any of its {len(candidates)} sheets:", 1),
                rule=first_problem.rule, format=fmt)
        raise first_problem
    finally:
        wb.close()


def _unreadable(name: str, fmt: str, e: Exception) -> SubmissionRejected:
    what = type(e).__name__
    # The exception text may quote cell contents: it goes to the log, not into the manifest.
    logging.getLogger(__name__).info("%s: cannot be read as %s: %s: %s", name, fmt.upper(), what, str(e)[:500])
    if what == "PasswordError":
        return _error(name, fmt, "is a password-protected workbook; remove the password", "ING.file.type")
    return _error(name, fmt, f"cannot be read as {fmt.upper()} ({what})")
