"""The readers' column-wise paths (issue 17) give what the row-by-row code they replaced gave.

`build_table` picks the canonical columns of a batch of rows at a time and looks for error codes a
column at a time; workbook rows are turned into text a column at a time; CSV records are counted
with a search that jumps from quote to quote. Each is compared here with the straightforward
row-by-row (or cell-by-cell) version, written out below as the reference, on generated rows, cells,
texts and real workbooks. The staged output of whole landing folders is compared the same way
outside the test suite (issue 17's notes).
"""
from __future__ import annotations

import io
import re
from datetime import date, datetime, time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from transforms.ingest import delimited as D
from transforms.ingest import headers as H
from transforms.ingest import limits as L
from transforms.ingest import readers
from transforms.ingest import spreadsheet as S

REPO = Path(__file__).resolve().parent.parent
ALIASES = readers.AliasTable.from_csv(REPO / "data" / "reference" / "column_aliases.csv")
REQ = {"student_id", "national_id"}
HEADER = ["Mã sinh viên", "Số CCCD", "Giới tính", "Họ và tên", "Năm nhập học", "Ghi chú"]
SETTINGS = dict(deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


# ================================================================ the reference: row by row

def reference_table(rows, merges, required, *, max_rows):
    """build_table as it was: each data row's canonical cells taken one row at a time."""
    fill = H.MergeFill(merges, 5_000_000, "t", "csv") if merges else None
    it = iter(rows)
    head = []
    for line, cells in it:
        head.append((line, fill(line, list(cells)) if fill else cells))
        if len(head) >= H.HEADER_SEARCH_ROWS + H.HEADER_BAND_ROWS + 1:
            break
    line, last_header, titles = H.find_header(head, merges, ALIASES, "t")
    columns = {}
    for j, title in enumerate(titles):
        canon = ALIASES.canonical(title) if title else None
        if canon and canon not in columns:
            columns[canon] = j
    if required - columns.keys():
        raise H.SubmissionRejected("t: missing required column(s)", rule="ING.file.columns")
    picks, names = list(columns.values()), list(columns)
    data_rows, lines, errors, over = [], [], [], 0

    def take(ln, cells):
        nonlocal over
        if len(data_rows) >= max_rows:
            over += 1
            if over > H.HEADER_SEARCH_ROWS:
                raise H.SubmissionRejected(f"t: more than {max_rows} rows", rule="ING.file.size")
            return
        row = [cells[j] if j < len(cells) else "" for j in picks]
        bad = None
        for k, v in enumerate(row):
            if v and H.is_error_value(v):
                bad = f"{bad}|{names[k]}={v}" if bad else f"{names[k]}={v}"
        data_rows.append(row)
        lines.append(ln)
        errors.append(bad)

    for ln, cells in head:
        if ln > last_header:
            take(ln, cells)
    for ln, cells in it:
        take(ln, fill(ln, list(cells)) if fill else cells)
    if over:
        raise H.SubmissionRejected(f"t: {len(data_rows) + over} data rows exceed the limit of {max_rows}; split",
                                   rule="ING.file.size")
    frame = pd.DataFrame(data_rows, columns=names, dtype="string") if data_rows else \
        pd.DataFrame({c: pd.Series(dtype="string") for c in names})
    frame.insert(0, "line", pd.array(lines, dtype="Int64"))
    return frame, line, names, errors


def outcome(fn):
    """What a build gives, or ("rejected", rule, the reason's first clause: the counts it names)."""
    try:
        return fn()
    except H.SubmissionRejected as e:
        return ("rejected", e.rule, re.split(r"[;(]", e.reason)[0] if e.rule == "ING.file.size" else "")


cell = st.one_of(st.sampled_from(["", "", "B2100123", "012345678901", "Nam", "Nữ", "2021", "#N/A", "#DIV/0!",
                                  "Err:502", "Err:5023", "a#b", "#", "Err:", "x"]), st.text(max_size=4))


@settings(max_examples=150, **SETTINGS)
@given(st.lists(st.lists(cell, max_size=8), max_size=40), st.permutations(HEADER), st.integers(0, 3),
       st.integers(1, 30), st.sampled_from([1, 2, 3, 512]), st.booleans())
def test_build_table_is_the_row_by_row_table(data, header, above, max_rows, batch, merged):
    rows = [(i + 1, ["Báo cáo"]) for i in range(above)] + [(above + 1, list(header))]
    rows += [(above + 2 + i, cells) for i, cells in enumerate(data) if any(cells)]
    merges = [(1, 1, 3, 1), (2, above + 3, 2, above + 6)] if merged else []
    # the readers hand over lists (CSV) or tuples (workbooks): both, and neither is changed
    given_rows = [(ln, tuple(c)) if ln % 2 else (ln, c) for ln, c in rows]
    before = [list(c) for _, c in given_rows]

    def fast():
        with pytest.MonkeyPatch.context() as m:  # batches of one, two, three rows: every batch boundary
            m.setattr(H, "BATCH_ROWS", batch)
            raw = H.build_table(iter(given_rows), merges, ALIASES, REQ, "t", "csv", None, max_rows=max_rows)
        assert raw.physical_records == len(raw.frame)
        return raw.frame, raw.header_line, raw.found_columns, raw.cell_errors

    got = outcome(fast)
    expected = outcome(lambda: reference_table(rows, merges, REQ, max_rows=max_rows))
    assert [list(c) for _, c in given_rows] == before
    event("rejected" if isinstance(expected[0], str) else "read")
    if isinstance(got[0], str) or isinstance(expected[0], str):  # ("rejected", ...)
        assert got == expected
        return
    pd.testing.assert_frame_equal(got[0], expected[0], check_exact=True)
    assert [str(t) for t in got[0].dtypes] == [str(t) for t in expected[0].dtypes]
    assert got[1:] == expected[1:]


def test_error_codes_are_found_in_any_column_and_only_there():
    rows = [(1, HEADER), (2, ["B1", "0123456789", "#N/A", "", "", "note #3"]), (3, ["B2", "Err:502", "Nam"]),
            (4, ["B3", "0123456789", "Nam", "", "Err:50", "#DIV/0!"]), (5, ["B4", "1", "#REF!", "", "#NAME?"])]
    raw = H.build_table(rows, [], ALIASES, REQ, "t", "csv", None, max_rows=10)
    assert raw.cell_errors[0] == "gender=#N/A"
    assert raw.cell_errors[1] == "national_id=Err:502"
    assert raw.cell_errors[2] is None  # "Err:50" is no code, and 'Ghi chú' is not a canonical column
    assert raw.cell_errors[3] == "gender=#REF!|intake_year=#NAME?"


def test_a_column_is_what_pandas_makes_of_it():
    for column in (["a", "", "Đ"], ["a", None, "Đ"], ["a", 1, "Đ"], []):
        array, arrow = H._text_array(column)
        expected = pd.array(column, dtype="string")
        assert array.dtype == expected.dtype and type(array) is type(expected)
        assert list(array.astype(object)) == list(expected.astype(object))
        assert (arrow is None) == (1 in column)  # a cell that is not text: converted by pandas


# ================================================================ workbook cells

values = st.one_of(st.text(max_size=5), st.sampled_from(["", " ", "  x ", "Nguyễn", "Nguye\u0301n", " \u00a0"]),
                   st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 2021.0, 7.5, 1e17]),
                   st.booleans(), st.integers(-10**6, 10**6), st.none(), st.dates(),
                   st.datetimes(min_value=datetime(1900, 1, 1)), st.times())


def reference_cell(v):
    """The two passes the workbook reader made over each cell."""
    c = v.strip() if type(v) is str else H.cell_text(v)
    return H.cell_text(c) if c and not c.isascii() else c


def old_cell_text(value):
    """cell_text as it was, before the common types were tested first."""
    if value is None:
        return ""
    if isinstance(value, str):
        import unicodedata
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
    import unicodedata
    return unicodedata.normalize("NFC", str(value)).strip()


@settings(max_examples=300, **SETTINGS)
@given(st.lists(values, max_size=30), st.sampled_from(["mixed", "str", "float", "date"]))
def test_a_column_of_cells_is_the_cells_one_by_one(column, kind):
    keep = {"mixed": object, "str": str, "float": float, "date": date}[kind]
    column = tuple(v for v in column if kind == "mixed" or type(v) is keep)
    assert S._column_texts(column, S._CellTexts()) == [reference_cell(v) for v in column]
    assert [H.cell_text(v) for v in column] == [old_cell_text(v) for v in column]


def test_remembered_texts_keep_numbers_and_truth_values_apart():
    texts = S._CellTexts()
    assert S._column_texts((1.0, 2.5, ""), texts) == ["1", "2.5", ""]
    assert S._column_texts((True, 1, 1.0), texts) == ["TRUE", "1", "1"]  # never the text remembered for 1.0
    assert S._column_texts((float("nan"), -0.0), texts) == ["", "0"]


def reference_rows(sheet, found, max_columns):
    """spreadsheet._rows as it was: each row's cells turned into text one by one."""
    errors = {}
    for (row, col), code in (found.errors.items() if found is not None else ()):
        errors.setdefault(row, []).append((col, code))
    for i, row_values in enumerate(sheet.iter_rows()):
        line = i + 1
        cells = [v.strip() if type(v) is str else H.cell_text(v) for v in row_values[:max_columns]]
        for col, code in errors.pop(line, []):
            if col <= max_columns:
                cells.extend([""] * (col - len(cells)))
                cells[col - 1] = code
        while cells and not cells[-1]:
            cells.pop()
        if cells:
            yield line, [H.cell_text(c) if c and not c.isascii() else c for c in cells]


sheet_cells = st.one_of(st.none(), st.text(alphabet="ab Đ\u0301 ", max_size=4), st.integers(-5, 3000),
                        st.floats(min_value=-1e6, max_value=1e6), st.booleans(), st.sampled_from(["#N/A", "#DIV/0!", "=1/0"]),
                        st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2030, 1, 1)))


@settings(max_examples=25, **SETTINGS)
@given(st.lists(st.lists(sheet_cells, max_size=7), min_size=1, max_size=12), st.sampled_from([3, 1024]),
       st.sampled_from([2, 1024]))
def test_workbook_rows_are_the_rows_cell_by_cell(grid, max_columns, at_a_time):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for r, row in enumerate(grid, start=1):
        for c, v in enumerate(row, start=1):
            if v is not None:
                ws.cell(r, c, v)
    buf = io.BytesIO()
    wb.save(buf)
    data = buf.getvalue()
    lim = readers.limits()
    found = S.scan(data, "xlsx", "t.xlsx", lim, L.Deadline(60, "t.xlsx"))
    from python_calamine import CalamineWorkbook

    book = CalamineWorkbook.from_filelike(io.BytesIO(data))
    sheet = book.get_sheet_by_name(book.sheet_names[0])
    scan = found.sheets.get(book.sheet_names[0])
    with pytest.MonkeyPatch.context() as m:
        m.setattr(S, "ROWS_AT_A_TIME", at_a_time)
        got = [(ln, list(c)) for ln, c in S._rows(sheet, scan, max_columns, L.Deadline(60, "t.xlsx"))]
    assert got == list(reference_rows(sheet, scan, max_columns))


# ================================================================ CSV records

def reference_count_records(text, delimiter):
    """count_records as it was: the quote pattern tried at every position."""
    d = re.escape(delimiter)
    quoted = re.compile(rf'(?<![^{d}\r\n])"[^"]*(?:""[^"]*)*(")?')
    inside, spans, pos_line = 0, [], (0, 1)
    for m in quoted.finditer(text):
        if m.group(1) is None:
            p, ln = pos_line
            return ("never closed", ln + D._line_breaks(text, p, m.start()))
        n = D._line_breaks(text, m.start(), m.end())
        if n:
            p, ln = pos_line
            line = ln + D._line_breaks(text, p, m.start())
            pos_line = (m.start(), line)
            spans.append((line, line + n))
            inside += n
    return D._line_breaks(text) - inside + (1 if text and text[-1] not in "\r\n" else 0), spans


@settings(max_examples=400, **SETTINGS)
@given(st.text(alphabet='"ab,;\t\r\n =', max_size=40), st.sampled_from([",", ";", "\t"]))
def test_records_are_counted_as_before(text, delimiter):
    try:
        got = D.count_records(text, delimiter)
    except H.SubmissionRejected as e:
        got = ("never closed", int(re.search(r"on line (\d+)", e.reason).group(1)))
    assert got == reference_count_records(text, delimiter)


@settings(max_examples=200, **SETTINGS)
@given(st.lists(st.text(alphabet='ab =" \u00a0#', max_size=6), max_size=8))
def test_csv_cells_without_excel_text(row):
    cells = D._csv_cells(list(row))
    assert cells == D._csv_cells(list(row), excel_text=any('="' in c for c in row))
    expected = [c.strip() for c in row]
    expected = [re.sub(r'^="(.*)"$', r"\1", c).strip() if c[:2] == '="' and c[-1:] == '"' else c for c in expected]
    while expected and not expected[-1]:
        expected.pop()
    assert cells == expected


def test_over_the_row_limit_still_counts_every_row_it_reads():
    rows = [(1, HEADER)] + [(i, ["B1", str(10**9 + i), "Nam"]) for i in range(2, 12)]
    with pytest.raises(H.SubmissionRejected) as e:
        H.build_table(rows, [], ALIASES, REQ, "t", "csv", None, max_rows=7)
    assert "10 data rows exceed the limit of 7" in e.value.reason
    rows = [(1, HEADER)] + [(i, ["B1", str(10**9 + i), "Nam"]) for i in range(2, 40)]
    with pytest.raises(H.SubmissionRejected) as e:
        H.build_table(rows, [], ALIASES, REQ, "t", "csv", None, max_rows=7)
    assert "more than 7 rows" in e.value.reason
