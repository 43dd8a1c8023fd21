"""CSV cells that are safe to open in a spreadsheet: the one definition for every CSV lab2fab writes.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by Excel,
LibreOffice and Google Sheets as a formula (``=HYPERLINK(...)``, ``-2+3+cmd|'/C calc'!A0``); the
values are universities' own cells and file names, and the files go back to people who open them.
Such a cell gets a leading single quote, which spreadsheets show as text. Numbers stay numbers:
ints and floats are untouched, and so is a text that is a plain number (``-12``, ``+3.5``, ``-1e3``),
which a spreadsheet reads as that number, not as a formula.

Used by the feedback files (transforms/publish/feedback.py) and ``lab2fab query --csv``.
"""
from __future__ import annotations

import csv
import io
import re
from typing import Any, Iterable

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def neutralise(value: Any) -> Any:
    """A text a spreadsheet would read as a formula, made inert with a leading single quote."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def neutralise_row(values: Iterable[Any]) -> list[Any]:
    return [neutralise(v) for v in values]


def neutralise_frame(frame):
    """A copy of a pandas DataFrame with every text cell neutralised (numeric columns untouched)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or str(out[col].dtype) in ("string", "str"):
            out[col] = out[col].map(neutralise, na_action="ignore")
    return out


def write_rows(f, rows: Iterable[Iterable[Any]], **writer_options) -> None:
    """Rows through csv.writer with every cell neutralised (the header row too)."""
    w = csv.writer(f, **writer_options)
    for row in rows:
        w.writerow(neutralise_row(row))


def to_csv_text(rows: Iterable[Iterable[Any]], **writer_options) -> str:
    buf = io.StringIO()
    write_rows(buf, rows, **writer_options)
    return buf.getvalue()
