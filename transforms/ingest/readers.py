"""Read what university offices send (CSV or a workbook, many encodings) into a table of text.

The reader knows nothing of the meaning of the columns beyond the alias table: it finds the
header row, maps header names to canonical columns, and returns every data row as text with
its line number in the file, so that each row can later be loaded or quarantined with a reason.
A file that cannot be read as a whole raises `SubmissionRejected` with a reason the office can
act on; nothing is ever read as mojibake or dropped row by row, and the rows read are the file's
physical records (counted from the file itself; see docs/READERS.md).

What is accepted (tests/test_ingestion.py and tests/test_readers_physical.py build every case):
* CSV, TSV and text exports: transforms/ingest/delimited.py (delimiters, encodings, quotes).
* Workbooks .xlsx, .xlsm, .xls, .xlsb and .ods, read by python-calamine:
  transforms/ingest/spreadsheet.py (sheet choice, error cells), after a bounded scan of the file
  (transforms/ingest/limits.py). Title rows, merged and two-row headers: transforms/ingest/headers.py.
* Every file within `max_file_bytes()`, at most max(256 MiB, 8x its size) of extra memory and
  `file_time_limit()` seconds; past a limit the file is refused with a reason naming it.

The limits are module constants here (tests lower them); a deployment sets the size limit with
LAB2FAB_MAX_FILE_BYTES and the time limit with LAB2FAB_FILE_TIME_LIMIT, which staging worker
processes read too.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from transforms.config import settings
from transforms.ingest import limits as _limits
from transforms.ingest.landing import read_within
from transforms.ingest.delimited import decode, is_vietnamese_syllable, read_csv
from transforms.ingest.headers import (EXPORT_HINT, HEADER_SEARCH_ROWS, MIN_HEADER_COLUMNS, AliasLookup, AliasTable,
                                       RawTable, SubmissionRejected, SubmissionSettings, cell_text, exact_key,
                                       header_key)
from transforms.ingest.spreadsheet import OLE_MAGIC, read_workbook

__all__ = ["AliasLookup", "AliasTable", "RawTable", "SubmissionRejected", "SubmissionSettings", "cell_text", "decode",
           "exact_key", "header_key", "is_vietnamese_syllable", "parse_submission", "read_landed_bytes",
           "read_submission", "EXPORT_HINT", "HEADER_SEARCH_ROWS", "MIN_HEADER_COLUMNS"]

def max_file_bytes() -> int:
    """The size limit on one file (`LAB2FAB_MAX_FILE_BYTES`), read when asked, not at import."""
    return settings().max_file_bytes


def file_time_limit() -> float:
    """Seconds to read one file (`LAB2FAB_FILE_TIME_LIMIT`)."""
    return settings().file_time_limit
MAX_ROWS = 2_000_000
MAX_COLUMNS = 1024  # cells further right than this are outside any table an office sends
MAX_XLSX_UNCOMPRESSED = 1024 * 1024 * 1024  # zip-bomb guard: what a workbook's parts inflate to, in all
MAX_XLSX_MEMBERS = 10_000
MAX_MERGED_CELLS = 5_000_000  # cells filled from merged ranges, per sheet
MAX_MERGES = 100_000  # merged ranges in one sheet

SPREADSHEET_SUFFIXES = {".xlsx": "xlsx", ".xlsm": "xlsm", ".xls": "xls", ".xlsb": "xlsb", ".ods": "ods"}
TEXT_SUFFIXES = (".csv", ".txt", ".tsv")


def limits() -> _limits.Limits:
    """The limits in force (read at each call, so that tests and deployments can change them)."""
    return _limits.Limits(max_file_bytes=max_file_bytes(), max_rows=MAX_ROWS, max_columns=MAX_COLUMNS,
                          max_unpacked=MAX_XLSX_UNCOMPRESSED, max_members=MAX_XLSX_MEMBERS,
                          max_merged_cells=MAX_MERGED_CELLS, max_merges=MAX_MERGES, time_limit=file_time_limit())


def read_landed_bytes(path: Path, name: str, expected_sha256: str | None = None) -> bytes:
    """A landed file's bytes, opened without following a symbolic link and size-checked first."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SubmissionRejected(f"{name}: is a symbolic link, not a file; it was not read.",
                                     rule="ING.file.link") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise SubmissionRejected(f"{name}: is not a regular file (a pipe, socket or device); it was not read.",
                                     rule="ING.file.link")
        return read_within(fh, name, max_file_bytes(), expected_sha256, SubmissionRejected)


def parse_submission(data: bytes, suffix: str, aliases: AliasTable, required: set[str], *, name: str,
                     sheet: str | None = None) -> RawTable:
    """A file's bytes as a RawTable, by its type. Raises SubmissionRejected with a reason the sender can act on."""
    suffix = suffix.lower()
    if len(data) > (limit := max_file_bytes()):
        raise SubmissionRejected(f"{name}: {len(data)} bytes is over the {limit}-byte limit; split the file.",
                                 rule="ING.file.size")
    if not data:
        raise SubmissionRejected(f"{name}: the file is empty.", rule="ING.file.type")
    lim = limits()
    fmt = SPREADSHEET_SUFFIXES.get(suffix)
    if fmt is not None:
        deadline = _limits.Deadline(lim.time_limit, name, fmt)
        raw = read_workbook(data, fmt, name, aliases, required, sheet, lim, deadline)
    elif suffix in TEXT_SUFFIXES:
        if data.startswith(b"PK\x03\x04") or data.startswith(OLE_MAGIC):
            raise SubmissionRejected(f"{name}: is a spreadsheet saved with a '{suffix}' name, not text; send it as "
                                     "'.xlsx' or export it as 'CSV UTF-8'.", rule="ING.file.type", format="csv")
        deadline = _limits.Deadline(lim.time_limit, name, "csv")
        text, encoding = decode(data, name)
        deadline.check()
        raw = read_csv(text, name, aliases, required, encoding, max_rows=lim.max_rows, max_columns=lim.max_columns,
                       deadline=deadline)
    else:
        raise SubmissionRejected(f"{name}: file type '{suffix or 'none'}' is not accepted; send CSV (.csv) or Excel "
                                 "(.xlsx, .xls) or OpenDocument (.ods).", rule="ING.file.type")
    deadline.check()
    if raw.physical_records != len(raw.frame):  # the accounting every later step relies on
        raise SubmissionRejected(f"{name}: {raw.physical_records} records in the file but {len(raw.frame)} rows read; "
                                 "it was not loaded (an internal check).", rule="ING.file.records", format=raw.format,
                                 encoding=raw.encoding)
    return raw


def read_submission(path: Path, aliases: AliasTable, required: set[str], *, name: str | None = None,
                    sheet: str | None = None, expected_sha256: str | None = None) -> RawTable:
    """Read one landed file. Raises SubmissionRejected with a reason the sender can act on."""
    name = name or path.name
    return parse_submission(read_landed_bytes(path, name, expected_sha256), path.suffix, aliases, required,
                            name=name, sheet=sheet)
