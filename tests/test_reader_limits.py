"""Every file is read in bounded memory and time, or refused naming the limit (issue 14).

The hostile shapes that broke the earlier reader are generated here, each a few MB or less on
disk: a tiny-cell bomb, a shared-strings bomb, a zip whose headers lie about sizes, thousands of
repeated merged ranges, one value far from the table (calamine would allocate the whole grid
between), the same in .xls and .ods, and a CSV of 1,024 cells per row. Each is read in a fresh
subprocess that measures its own peak RSS (`resource.getrusage`) around `parse_submission`; the
extra memory must stay within max(256 MiB, 8x the file's size) and the time within the per-file
limit, and a refusal must name the limit it hit.
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import corpus as C

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
TIME_LIMIT = 60

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from transforms.ingest import readers
from transforms.ingest import normalise as N
import python_calamine, pandas  # noqa: F401  (imported before the baseline: not the file's cost)
path = Path(sys.argv[1])
aliases = readers.AliasTable.from_csv(Path(sys.argv[2]))
data = path.read_bytes()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
wall, cpu = time.perf_counter(), time.process_time()
try:
    raw = readers.parse_submission(data, path.suffix, aliases, N.ENROLLMENT_REQUIRED, name=path.name)
    out = {"rows": len(raw.frame), "reason": None}
except readers.SubmissionRejected as e:
    out = {"rows": None, "reason": e.reason}
out.update(extra=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base,
           wall=time.perf_counter() - wall, cpu=time.process_time() - cpu, size=len(data))
print(json.dumps(out))
"""


def read_in_subprocess(path: Path, **env) -> dict:
    run = subprocess.run([sys.executable, "-c", CHILD, str(path), str(REPO / "data" / "reference" / "column_aliases.csv")],
                         capture_output=True, text=True, timeout=TIME_LIMIT * 3, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO), **env})
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    budget = max(256 * MiB, 8 * result["size"])
    assert result["extra"] <= budget, (path.name, result["extra"] // MiB, budget // MiB)
    assert result["wall"] <= TIME_LIMIT, (path.name, result["wall"])
    print(f"{path.name}: {result['size'] / MiB:.1f} MB, peak +{result['extra'] / MiB:.0f} MiB, "
          f"{result['wall']:.1f} s wall, {result['cpu']:.1f} s CPU: {result['reason'] or result['rows']}")
    return result


# ---------------------------------------------------------------- writing hostile workbooks

HEADER = C.records()[0]
_SHEET_HEAD = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="http://schemas.openxmlformats.'
               b'org/spreadsheetml/2006/main"><sheetData>')


def _header_row() -> bytes:
    cells = b"".join(b'<c r="%s1" t="inlineStr"><is><t>%s</t></is></c>' % (bytes([65 + j]), t.encode())
                     for j, t in enumerate(HEADER))
    return b'<row r="1">' + cells + b"</row>"


def xlsx_with(path: Path, sheet_pieces, tail: bytes = b"", strings=None) -> Path:
    """A workbook whose first sheet's XML is streamed from `sheet_pieces` (never whole in memory)."""
    template = zipfile.ZipFile(io.BytesIO(C.xlsx_bytes(C.records()[:2], trailing_empty=False)))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for info in template.infolist():
            body = template.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                with z.open(info.filename, "w", force_zip64=True) as out:
                    out.write(_SHEET_HEAD + _header_row())
                    for piece in sheet_pieces:
                        out.write(piece)
                    out.write(b"</sheetData>" + tail + b"</worksheet>")
                continue
            if strings is not None and info.filename == "[Content_Types].xml":
                body = body.replace(b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                                    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>')
            if strings is not None and info.filename == "xl/_rels/workbook.xml.rels":
                body = body.replace(b"</Relationships>", b'<Relationship Id="rIdS" Type="http://schemas.openxmlformats.org/'
                                    b'officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
                                    b"</Relationships>")
            z.writestr(info, body)
        if strings is not None:
            with z.open("xl/sharedStrings.xml", "w", force_zip64=True) as out:
                out.write(b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/'
                          b'spreadsheetml/2006/main">')
                for piece in strings:
                    out.write(piece)
                out.write(b"</sst>")
    return path


def student_rows(first: int, last: int):
    for r in range(first, last + 1):
        yield (b'<row r="%d"><c r="A%d" t="inlineStr"><is><t>%d</t></is></c><c r="E%d" t="inlineStr"><is><t>Nam</t></is>'
               b"</c></row>" % (r, r, 20210000 + r, r))


def tiny_cells(rows: int):
    letters = [bytes([65 + j]) for j in range(11)]
    for r in range(2, rows + 2):
        yield b'<row r="%d">' % r + b"".join(b'<c r="%s%d"><v>1</v></c>' % (c, r) for c in letters) + b"</row>"


# ---------------------------------------------------------------- the shapes

def tiny_cells_without_coordinates(rows: int):
    """Cells placed one after another (no `r`), as some exporters write them: 1,000 to 1 compressed."""
    row = b"<row>" + b"<c><v>1</v></c>" * 11 + b"</row>"
    for _ in range(rows // 1000):
        yield row * 1000


def test_tiny_cell_bomb(tmp_path):
    path = xlsx_with(tmp_path / "tiny_cells.xlsx", tiny_cells_without_coordinates(2_000_000))
    assert path.stat().st_size < 8 * MiB
    r = read_in_subprocess(path)
    assert r["reason"] and "limit on memory" in r["reason"]


def test_shared_strings_bomb(tmp_path):
    strings = (b"<si><t>%s%d</t></si>" % (b"x" * 2000, i) for i in range(300_000))
    path = xlsx_with(tmp_path / "shared_strings.xlsx", student_rows(2, 10), strings=strings)
    assert path.stat().st_size < 8 * MiB
    r = read_in_subprocess(path)
    assert r["reason"] and "shared strings" in r["reason"] and "limit on memory" in r["reason"]


def test_zip_headers_that_lie_about_sizes(tmp_path):
    path = xlsx_with(tmp_path / "lying.xlsx", tiny_cells(300_000))
    data = bytearray(path.read_bytes())
    for sig, size_at in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):  # central directory, local header
        pos = 0
        while (pos := data.find(sig, pos)) >= 0:
            name_at = pos + (46 if sig == b"PK\x01\x02" else 30)
            n = struct.unpack_from("<H", data, pos + (28 if sig == b"PK\x01\x02" else 26))[0]
            if bytes(data[name_at:name_at + n]) == b"xl/worksheets/sheet1.xml":
                struct.pack_into("<I", data, pos + size_at, 2000)
            pos += 4
    path.write_bytes(bytes(data))
    r = read_in_subprocess(path)
    assert r["reason"] and ("than its zip headers declare" in r["reason"] or "not a valid XLSX" in r["reason"])


def test_thousands_of_repeated_merged_ranges(tmp_path):
    merges = b'<mergeCells count="80000">' + b'<mergeCell ref="A1:XFD1048576"/>' * 40_000 + b"".join(
        b'<mergeCell ref="A%d:Z%d"/>' % (i, 1_000_000 + i) for i in range(1, 40_001)) + b"</mergeCells>"
    path = xlsx_with(tmp_path / "merges.xlsx", student_rows(2, 2000), tail=merges)
    r = read_in_subprocess(path)
    assert r["wall"] < 20
    assert r["rows"] is not None or "merged" in r["reason"]


def test_one_value_far_from_the_table(tmp_path):
    path = xlsx_with(tmp_path / "far_cell.xlsx", [b"".join(student_rows(2, 9)),
                                                  b'<row r="200000"><c r="ZZ200000"><v>1</v></c></row>'])
    r = read_in_subprocess(path)
    assert r["reason"] and "limit on memory" in r["reason"] and "about" in r["reason"]


def test_xls_value_far_from_the_table(tmp_path):
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("Data")
    for i, row in enumerate(C.records()):
        for j, v in enumerate(row):
            ws.write(i, j, v)
    ws.write(65535, 255, "x")
    path = tmp_path / "far_cell.xls"
    wb.save(str(path))
    r = read_in_subprocess(path)
    assert r["reason"] and "limit on memory" in r["reason"]


def test_ods_rows_repeated_a_million_times(tmp_path):
    import pandas as pd

    rows = C.records()
    buf = io.BytesIO()
    pd.DataFrame(rows[1:], columns=rows[0]).to_excel(buf, engine="odf", index=False)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    path = tmp_path / "repeated.ods"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "content.xml":
                body = body.replace(b"<table:table-row>", b'<table:table-row table:number-rows-repeated="1000000">', 2)
            z.writestr(info, body)
    r = read_in_subprocess(path)
    assert r["reason"] and "limit on memory" in r["reason"]


def test_csv_of_1024_cells_per_row(tmp_path):
    rows = [HEADER + [f"c{j}" for j in range(1024 - len(HEADER))]]
    line = ",".join(["20210001", "001203012345", "A", "01/01/2003", "Nam", "7520207", "Kỹ sư", "2021", "4", "Đang học",
                     "3.2"] + ["x"] * (1024 - len(HEADER)))
    path = tmp_path / "wide.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(C.csv_text(rows))
        for _ in range(12_000):
            f.write(line + "\r\n")
    r = read_in_subprocess(path)
    assert r["rows"] == 12_000
    assert r["extra"] < 8 * r["size"]


def test_the_time_limit_names_itself(tmp_path):
    path = tmp_path / "slow.csv"
    path.write_text(C.csv_text(C.records() + C.records()[1:] * 5000), encoding="utf-8")
    r = read_in_subprocess(path, LAB2FAB_FILE_TIME_LIMIT="0.05")
    assert r["reason"] and "0.05 seconds per file" in r["reason"] and "LAB2FAB_FILE_TIME_LIMIT" in r["reason"]


def test_a_large_ordinary_workbook_is_read(tmp_path):
    """The limits leave room for real files: 60,000 students in one sheet."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Data")
    rows = C.records()
    ws.append(rows[0])
    for i in range(60_000):
        r = list(rows[1 + i % 8])
        r[0] = str(20000000 + i)
        ws.append(r)
    path = tmp_path / "large.xlsx"
    wb.save(path)
    r = read_in_subprocess(path)
    assert r["rows"] == 60_000, r["reason"]


@pytest.mark.parametrize("suffix", [".xlsx", ".ods", ".xls"])
def test_entities_and_damage_are_refused_cheaply(tmp_path, suffix):
    data = {".xlsx": C.entity_xlsx(C.xlsx_bytes(C.records())), ".ods": b"PK\x03\x04" + bytes(100),
            ".xls": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4000)}[suffix]
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(data)
    r = read_in_subprocess(path)
    assert r["reason"] and r["extra"] < 64 * MiB
