"""Rows read are the file's physical records, in every format (issue 13 item 2, issue 14).

CSV records are counted from the file's line breaks and quotes, independently of the csv parser:
a quote that is never closed, or that swallows many lines, refuses the file naming the line where
it opened. Workbook rows that repeat or go backwards refuse the file (never one over the other).
A merged cell through the header never pulls student rows into the header band, and no row holding
an id-shaped value is ever a header. Error cells stay errors and their rows are quarantined.
Then .xls, .ods and .xlsb submissions (with .xlsx and CSV) through the real pipeline: loaded,
quarantined, refused and fed back, with rows read = loaded + quarantined for every file.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corpus as C
from test_reader_equivalence import ods_bytes, report_layout, xls_bytes, xlsb_of
from transforms.ingest import readers
from transforms.ingest import normalise as N
from transforms.ingest.delimited import count_records

REPO = Path(__file__).resolve().parent.parent
ALIASES = readers.AliasTable.from_csv(REPO / "data" / "reference" / "column_aliases.csv")
REQ = N.ENROLLMENT_REQUIRED
TERM = "2024-1"


def read(data: bytes, suffix: str = ".csv") -> readers.RawTable:
    return readers.parse_submission(data, suffix, ALIASES, REQ, name=f"t{suffix}")


def refused(data: bytes, suffix: str = ".csv", rule: str = "ING.file.records") -> str:
    """The reason a file is refused; the office is told it under the rule the reader names (records
    that cannot be told apart, for every case here), never the catch-all."""
    with pytest.raises(readers.SubmissionRejected) as e:
        read(data, suffix)
    assert e.value.rule == rule, (e.value.rule, e.value.reason)
    return e.value.reason


def students_csv(rows=None, *, eol="\r\n") -> str:
    return C.csv_text(rows or C.records(), eol=eol)


# ================================================================ CSV quotes

def test_a_quote_never_closed_refuses_the_file_naming_its_line():
    lines = students_csv().split("\r\n")
    lines[3] = lines[3].replace(",Lê", ',"Lê', 1)  # a quote opened at a cell's start, never closed
    reason = refused("\r\n".join(lines).encode())
    assert "line 4" in reason and "never closed" in reason


def test_a_quote_that_swallows_students_refuses_the_file():
    """20 students inside one cell (5 of 25 rows read, before): refused, naming where the quote opened."""
    rows = C.records() + C.records()[1:] * 3  # 33 students
    lines = students_csv(rows).split("\r\n")
    lines[3] = lines[3].replace(",Lê", ',"Lê', 1)
    assert ",Nam," in lines[25]
    lines[25] = lines[25].replace(",Nam,", ',Nam",', 1)  # ...and closed 22 lines further down
    reason = refused("\r\n".join(lines).encode())
    assert "line 4" in reason and "line 26" in reason and "not a readable CSV" in reason


def test_a_cell_over_two_lines_is_one_record():
    rows = C.records()
    rows[2][2] = "Trần Thị\nThu Hương"  # a line break inside a quoted name: the record keeps its 11 fields
    raw = read(students_csv(rows).encode())
    assert len(raw.frame) == raw.physical_records == len(C.STUDENTS)
    assert raw.frame["line"].tolist() == [2, 3, 5, 6, 7, 8, 9, 10]  # physical lines, where each record starts
    assert raw.frame["full_name"][1] == "Trần Thị\nThu Hương"


def test_a_cell_over_lines_that_breaks_the_record_is_refused():
    text = students_csv().replace("\r\n20220003,", '\r\n"20220003\r\n,', 1).replace("\r\n20220004,", "\r\n", 1)
    assert "not a readable CSV" in refused(text.encode())


def test_record_count_is_independent_of_the_parser():
    assert count_records('a,b\r\n"x\r\ny",2\r\n\r\nlast', ",") == (4, [(2, 3)])
    assert count_records('a,"b""c"\n', ",") == (1, [])
    assert count_records('a,b"c\n"d",e\n', ",") == (2, [])  # a quote inside a cell is a character
    assert count_records("", ",") == (0, [])
    with pytest.raises(readers.SubmissionRejected, match="line 2"):
        count_records('a\n"b\nc\n', ",")


texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=10)


@settings(max_examples=80, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(texts, st.sampled_from(['"', '""', ",", "a\nb", ' "x" ', "Nguyễn"])),
                         min_size=11, max_size=11), max_size=15),
       st.sampled_from([",", ";", "\t"]))
def test_every_record_written_is_a_row_read(rows, delimiter):
    """Whatever the cells hold, a CSV written by a csv writer reads back as exactly its records."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    w.writerow(C.records()[0])
    w.writerows(rows)
    try:
        raw = readers.parse_submission(buf.getvalue().encode(), ".csv", ALIASES, REQ, name="t.csv")
    except readers.SubmissionRejected as e:
        assert "no header row" in e.reason or "missing required" in e.reason
        return
    written = [r for r in rows if any(c.strip() for c in r)]
    assert raw.physical_records == len(raw.frame) == len(written)


# ================================================================ workbook rows

def sheet_variant(change) -> bytes:
    return C.rewrite_member(C.xlsx_bytes(C.records(), trailing_empty=False), "xl/worksheets/sheet1.xml", change)


@pytest.mark.parametrize("change,where", [
    (lambda x: x.replace(b"</sheetData>", b'<row r="4"><c r="A4" t="inlineStr"><is><t>20990001</t></is></c></row>'
                                          b"</sheetData>"), "row number 4 comes after row 9"),
    (lambda x: x.replace(b'<row r="5"', b'<row r="4"', 1), "row number 4 comes after row 4"),
    (lambda x: x.replace(b'<c r="B3"', b'<c r="A3"', 1), "cell A3 is written twice"),
    (lambda x: x.replace(b'<c r="B3"', b'<c r="B7"', 1), "cell B7 is written twice"),
    (lambda x: x.replace(b'<c r="B3"', b'<c r="B99"', 1), "a cell of row 99 is written inside another row"),
], ids=["row_again_at_the_end", "row_number_twice", "cell_twice", "cell_of_a_later_row", "cell_of_a_row_elsewhere"])
def test_rows_that_would_overwrite_each_other_refuse_the_file(change, where):
    reason = refused(sheet_variant(change), ".xlsx")
    assert where in reason and "would overwrite another" in reason


def test_a_merged_cell_through_the_header_does_not_swallow_students():
    """A note column merged from the header down over three student rows (10 of 12 read, before)."""
    rows = [r + [t] for r, t in zip(C.records(), ["Ghi chú"] + [""] * len(C.STUDENTS))]
    raw = read(C.xlsx_bytes(rows, merges=["L1:L4"], trailing_empty=False), ".xlsx")
    assert raw.header_line == 1 and len(raw.frame) == raw.physical_records == len(C.STUDENTS)
    assert raw.frame["line"].tolist()[0] == 2


def test_a_two_row_header_is_still_one_header():
    raw = read(C.two_row_header_xlsx(), ".xlsx")
    assert raw.header_line == 3 and raw.frame["line"].tolist()[0] == 4 and len(raw.frame) == len(C.STUDENTS)


def test_a_row_with_an_id_is_never_a_header_nor_part_of_one():
    """Old 9-digit ids and split names above the header: never column titles."""
    header = C.records()[0]
    above = ["123456789", "", "Nguyễn", "Văn An"] + [""] * 7
    raw = read(C.xlsx_bytes([header] + C.records()[1:], before=[above], trailing_empty=False), ".xlsx")
    assert "123456789" not in " ".join(raw.extra_columns + raw.found_columns)
    assert raw.header_line == 2
    # a data row that also names known columns is not taken for the header
    fake = ["001203012345", "Mã sinh viên", "Giới tính", "Trình độ", "Tình trạng"]
    rows = [fake] + C.records()
    raw = read(C.csv_text(rows).encode())
    assert raw.header_line == 2


id_cells = st.sampled_from(["001203012345", "123456789", "20210001", "B21DCCN123", "SE150001"])


@settings(max_examples=40, deadline=None, database=None, derandomize=True)
@given(st.lists(st.sampled_from(C.records()[0] + ["Ghi chú", "STT", ""]), min_size=3, max_size=12), id_cells,
       st.integers(0, 11))
def test_header_detection_never_takes_an_id_row(names, id_value, at):
    row = list(names)
    row.insert(min(at, len(row)), id_value)
    try:
        raw = read(C.csv_text([row] + C.records()).encode())
    except readers.SubmissionRejected:
        return
    assert raw.header_line != 1


# ================================================================ error cells

def test_error_cells_are_kept_as_errors_in_every_format():
    rows = [[int(v) if v.isdigit() and len(v) <= 4 else v for v in r] for r in C.records()]
    rows[3][4] = "#N/A"  # what Excel writes into a CSV export or an ODS file for an error
    for suffix, data in ((".csv", C.csv_text(C.records()[:3] + [C.records()[3][:4] + ["#N/A"] + C.records()[3][5:]]
                                             + C.records()[4:]).encode()),
                         (".ods", ods_bytes(rows)), (".xls", _xls_with_error_cell(rows)),
                         (".xlsb", xlsb_of(rows, errors={(3, 4): 0x2A}))):
        raw = read(data, suffix)
        assert raw.cell_errors[2] == "gender=#N/A", suffix
        assert raw.frame["gender"][2] == "#N/A" and sum(e is not None for e in raw.cell_errors) == 1


def _xls_with_error_cell(rows) -> bytes:
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("Data")
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            if v == "#N/A":
                ws.row(i).set_cell_error(j, 0x2A)
            else:
                ws.write(i, j, v)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# ================================================================ end to end

def _xlsx_with_error_cell() -> bytes:
    return sheet_variant(lambda x: x.replace(b'<c r="J4" t="inlineStr"><is><t>B\xe1\xba\xa3o l\xc6\xb0u</t></is></c>',
                                             b'<c r="J4" t="e"><f>VLOOKUP(A4,X:Y,2,0)</f><v>#N/A</v></c>', 1))


def build_landing(root: Path) -> dict:
    """path -> (status, rows read, rows quarantined, reason fragment)."""
    rows = [[int(v) if v.isdigit() and len(v) <= 4 else v for v in r] for r in C.records()]
    error_rows = [list(r) for r in rows]
    error_rows[3][4] = "#N/A"
    layout, merges = report_layout()
    files = {
        f"enrollment/HUST/{TERM}/bao_cao.xls": (xls_bytes(layout, merges), ("loaded", 8, 0, None)),
        f"enrollment/PTIT/{TERM}/danh_sach.xls": (_xls_with_error_cell(error_rows), ("loaded", 8, 1, None)),
        f"enrollment/VNUA/{TERM}/danh_sach.ods": (ods_bytes(layout, merges), ("loaded", 8, 0, None)),
        f"enrollment/UET/{TERM}/students.ods": (ods_bytes(error_rows), ("loaded", 8, 1, None)),
        f"enrollment/FPT/{TERM}/students.xlsx": (_xlsx_with_error_cell(), ("loaded", 8, 1, None)),
        f"enrollment/PHENIKAA/{TERM}/bao_cao.xlsb": (xlsb_of(layout, merges), ("loaded", 8, 0, None)),
        f"enrollment/CTU/{TERM}/danh_sach.xlsb": (xlsb_of(rows, errors={(3, 4): 0x07}), ("loaded", 8, 1, None)),
        f"enrollment/HNUE/{TERM}/hong.xlsb": (xlsb_of(rows)[:-200], ("rejected", 0, 0, "not a valid XLSB file")),
        f"enrollment/TLU/{TERM}/hong.xls": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(3000),
                                            ("rejected", 0, 0, "not a valid Excel 97-2003 (.xls)")),
        f"enrollment/CMC/{TERM}/hong.ods": (b"PK\x03\x04" + bytes(300), ("rejected", 0, 0, "not a valid ODS file")),
        f"enrollment/DUT/{TERM}/ghep.xlsx": (sheet_variant(lambda x: x.replace(b'<row r="5"', b'<row r="4"', 1)),
                                             ("rejected", 0, 0, "would overwrite another")),
        f"enrollment/HCMUT/{TERM}/ngoac.csv": (students_csv().replace(",Lê", ',"Lê', 1).encode(),
                                               ("rejected", 0, 0, "never closed")),
    }
    for rel, (data, _) in files.items():
        C.write_bytes(root / rel, data, 1_727_000_000.0)
    return {rel: exp for rel, (_, exp) in files.items()}


@pytest.fixture(scope="module")
def formats_run(prefect_harness, tmp_path_factory):
    from flows.pipeline import pipeline

    data_dir = tmp_path_factory.mktemp("formats") / "data"
    exp = build_landing(data_dir / "landing")
    result = pipeline(data_dir=str(data_dir))
    return data_dir, exp, result


def test_xls_ods_and_xlsb_go_through_the_pipeline(formats_run):
    data_dir, exp, _ = formats_run
    con = duckdb.connect(str(data_dir / "published" / "lab2fab.duckdb"), read_only=True)
    try:
        m = con.execute("SELECT * FROM ops.manifest").df().set_index("path")
        issues = con.execute("SELECT file_id, line, rule_id, observed FROM ops.quarantine").df()
    finally:
        con.close()
    assert set(m.index) == set(exp)
    for path, (status, read_, quarantined, fragment) in exp.items():
        row = m.loc[path]
        assert (row.status, row.rows_read, row.rows_quarantined) == (status, read_, quarantined), (path, row.reason)
        assert row.rows_read == row.rows_loaded + row.rows_quarantined
        if fragment:
            assert fragment in row.reason, (path, row.reason)
    assert m.loc[f"enrollment/HUST/{TERM}/bao_cao.xls", "format"] == "xls"
    assert m.loc[f"enrollment/VNUA/{TERM}/danh_sach.ods", "header_line"] == 3  # the merged two-row header
    assert m.loc[f"enrollment/PHENIKAA/{TERM}/bao_cao.xlsb", "header_line"] == 3
    errors = issues[issues.rule_id == "ENR.cell.error"]
    assert len(errors) == 4 and set(errors.line) == {4}


def test_offices_are_told_about_error_cells_and_refusals(formats_run):
    data_dir, _, _ = formats_run
    fb = data_dir / "published" / "feedback"
    ptit = json.loads((fb / "PTIT" / f"{TERM}.json").read_text(encoding="utf-8"))
    text = json.dumps(ptit, ensure_ascii=False)
    assert "ENR.cell.error" in text and "Một ô của dòng này chứa lỗi bảng tính" in text
    tlu = json.loads((fb / "TLU" / f"{TERM}.json").read_text(encoding="utf-8"))
    assert "not a valid Excel 97-2003 (.xls)" in json.dumps(tlu, ensure_ascii=False)
