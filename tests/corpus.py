"""A test corpus of university submissions, built by code (no binary blobs in the repository).

Every file is made from `STUDENTS`, the canonical truth: the same students written the ways
offices write them (CSV with `,` `;` or tab, in UTF-8 with or without BOM, UTF-16, Windows-1258,
Windows-1252; XLSX with title rows, merged and two-row headers, named sheets, numbers stored as
text, Excel serial dates, trailing empty rows and columns), so tests can compare what the
pipeline made of a file with what was meant.
"""
from __future__ import annotations

import io
import os
import struct
import unicodedata
import zipfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

nfc = lambda s: unicodedata.normalize("NFC", s)  # noqa: E731


@dataclass(frozen=True)
class Student:
    student_id: str
    national_id: str
    full_name: str
    birth_date: date
    gender: str  # canonical codes below
    programme_code: str
    degree_level: str
    intake_year: int
    study_year: int
    status: str
    gpa: float  # on the 4-point scale


# Every Vietnamese letter with a diacritic that matters (ă â đ ê ô ơ ư) and all five tones.
STUDENTS = [
    Student("20210001", "001203012345", nfc("Nguyễn Văn Đức"), date(2003, 3, 15), "M", "7520207", "engineer", 2021, 4, "studying", 3.2),
    Student("20210002", "079303004567", nfc("Trần Thị Thu Hương"), date(2003, 11, 2), "F", "7480201", "bachelor", 2021, 4, "studying", 3.6),
    Student("20220003", "031204007890", nfc("Lê Hoàng Phương"), date(2004, 1, 20), "M", "7520207", "engineer", 2022, 3, "on_leave", 2.8),
    Student("20220004", "001304001122", nfc("Phạm Ngọc Ánh"), date(2004, 7, 9), "F", "7480201", "bachelor", 2022, 3, "studying", 3.9),
    Student("20230005", "038205003344", nfc("Đặng Quốc Việt"), date(2005, 5, 30), "M", "7520207", "engineer", 2023, 2, "studying", 2.4),
    Student("20230006", "040305005566", nfc("Võ Thị Mỹ Duyên"), date(2005, 12, 24), "F", "7480201", "bachelor", 2023, 2, "dropped_out", 1.9),
    Student("20240007", "075206007788", nfc("Bùi Thủy Tiên"), date(2006, 8, 8), "F", "7520207", "engineer", 2024, 1, "studying", 3.0),
    Student("20240008", "001206009900", nfc("Huỳnh Trương Khải"), date(2006, 2, 14), "M", "7480201", "bachelor", 2024, 1, "studying", 3.4),
]
# Names that Windows-1252 can write (it has no ă, ơ, ư, đ and few toned vowels), with Western names.
WESTERN_NAMES = [nfc(n) for n in ("Lê Hà Vân", "François Müller", "José Núñez", "Zoë Ångström", "Hà Tú Anh",
                                 "Søren Ærø", "Ân Thúy", "Björk Guðmundsdóttir")]

CANON = ["student_id", "national_id", "full_name", "birth_date", "gender", "programme_code", "degree_level",
         "intake_year", "study_year", "status", "gpa"]
HEADERS = {
    "vi": dict(zip(CANON, map(nfc, ["Mã sinh viên", "Số CCCD", "Họ và tên", "Ngày sinh", "Giới tính", "Mã ngành",
                                    "Trình độ", "Năm nhập học", "Năm thứ", "Tình trạng", "Điểm TB"]))),
    "vi_ascii": dict(zip(CANON, ["ma_sv", "cccd", "ho_ten", "ngay_sinh", "gioi_tinh", "ma_nganh", "trinh_do",
                                 "nam_nhap_hoc", "nam_thu", "tinh_trang", "diem_tb"])),
    "vi_caps": dict(zip(CANON, map(nfc, ["MSSV", "SỐ CCCD", "HỌ TÊN", "NGÀY SINH", "GIỚI TÍNH", "MÃ NGÀNH",
                                         "TRÌNH ĐỘ", "KHÓA", "NĂM THỨ", "TÌNH TRẠNG", "ĐIỂM TB"]))),
    "en": dict(zip(CANON, ["Student ID", "National ID", "Full name", "Date of birth", "Gender", "Programme code",
                           "Degree level", "Intake year", "Study year", "Status", "GPA"])),
}
VALUES = {
    "vi": {"M": "Nam", "F": nfc("Nữ"), "bachelor": nfc("Cử nhân"), "engineer": nfc("Kỹ sư"),
           "studying": nfc("Đang học"), "on_leave": nfc("Bảo lưu"), "dropped_out": nfc("Thôi học"),
           "graduated": nfc("Đã tốt nghiệp")},
    "vi_ascii": {"M": "nam", "F": "nu", "bachelor": "cu nhan", "engineer": "KY SU", "studying": "dang hoc",
                 "on_leave": "bao luu", "dropped_out": "thoi hoc", "graduated": "da tot nghiep"},
    "en": {"M": "Male", "F": "FEMALE", "bachelor": "Bachelor", "engineer": "engineer", "studying": "Studying",
           "on_leave": "On leave", "dropped_out": "Dropped out", "graduated": "Graduated"},
}


def records(students=STUDENTS, *, headers="vi", values="vi", gpa_scale=4, intake=None, names=None,
            date_format="%d/%m/%Y", columns=CANON) -> list[list[str]]:
    """The header row and one row per student, as text, in an office's habits."""
    h, v = HEADERS[headers], VALUES[values]
    rows = [[h[c] for c in columns]]
    for i, s in enumerate(students):
        cell = {
            "student_id": s.student_id, "national_id": s.national_id,
            "full_name": names[i] if names else s.full_name, "birth_date": s.birth_date.strftime(date_format),
            "gender": v[s.gender], "programme_code": s.programme_code, "degree_level": v[s.degree_level],
            "intake_year": intake(s) if intake else str(s.intake_year), "study_year": str(s.study_year),
            "status": v[s.status], "gpa": f"{s.gpa * gpa_scale / 4:.2f}",
        }
        rows.append([cell[c] for c in columns])
    return rows


# ---------------------------------------------------------------- encodings

TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}


def encode_cp1258(text: str) -> bytes:
    """Text as Windows writes it in code page 1258.

    Python's cp1258 codec is a plain character map: it has no precomposed 'ễ' and no combining
    circumflex, so neither NFC nor NFD text encodes. Windows writes such a letter as its base
    letter with the vowel-shape mark composed (ê: one byte) followed by the tone as a combining
    character (U+0303: one byte). This does the same; letters that exist precomposed (á, é, à)
    stay one byte.
    """
    out = bytearray()
    for ch in unicodedata.normalize("NFC", text):
        try:
            out += ch.encode("cp1258")
            continue
        except UnicodeEncodeError:
            pass
        parts = unicodedata.normalize("NFD", ch)
        base = unicodedata.normalize("NFC", "".join(p for p in parts if p not in TONES))
        out += base.encode("cp1258") + "".join(p for p in parts if p in TONES).encode("cp1258")
    return bytes(out)


def encode(text: str, encoding: str) -> bytes:
    """`utf-8`, `utf-8-sig`, `utf-16-le`/`utf-16-be` (with BOM, as Excel's 'Unicode text'),
    `utf-16-le-nobom`, `cp1258` (Windows' decomposed tones), `cp1252`, `utf-8-nfd` (macOS)."""
    if encoding == "cp1258":
        return encode_cp1258(text)
    if encoding in ("utf-16-le", "utf-16-be"):
        return "\ufeff".encode(encoding) + text.encode(encoding)
    if encoding == "utf-16-le-nobom":
        return text.encode("utf-16-le")
    if encoding == "utf-8-nfd":
        return unicodedata.normalize("NFD", text).encode("utf-8")
    return text.encode(encoding)


def csv_text(rows: list[list[str]], delimiter: str = ",", eol: str = "\r\n") -> str:
    import csv
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator=eol).writerows(rows)
    return buf.getvalue()


def write_csv(path: Path, rows, *, delimiter=",", encoding="utf-8", eol="\r\n", mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(csv_text(rows, delimiter, eol), encoding))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


# ---------------------------------------------------------------- XLSX

def xlsx_bytes(rows, *, sheet="Sheet1", before=(), title_rows=(), merges=(), other_sheets=None, first_sheet=None,
               typed=True, trailing_empty=True, serial_dates=False, number_as_text=True) -> bytes:
    """An XLSX workbook: optional sheets before, title rows above the header, merged ranges.

    typed: cells as Excel types (numbers, dates) rather than text; serial_dates: birth dates as
    numbers (Excel serials, format General); number_as_text: programme codes stored as text;
    trailing_empty: styled empty rows and columns after the data (what Excel keeps).
    """
    from openpyxl import Workbook
    from openpyxl.styles import Border, Side

    wb = Workbook()
    wb.remove(wb.active)
    if first_sheet:
        ws0 = wb.create_sheet(first_sheet[0])
        for r in first_sheet[1]:
            ws0.append(r)
    for name, content in (other_sheets or {}).items():
        ws_other = wb.create_sheet(name)
        for r in content:
            ws_other.append(r)
    ws = wb.create_sheet(sheet)
    for r in title_rows:
        ws.append(list(r))
    header, *data = rows
    for r in before:
        ws.append(list(r))
    ws.append(header)
    for r in data:
        out = []
        for j, v in enumerate(r):
            if typed and isinstance(v, str):
                if len(v) == 10 and v[2] == "/" and v[5] == "/":  # a dd/mm/yyyy birth date
                    d = date(int(v[6:]), int(v[3:5]), int(v[:2]))
                    v = (d - date(1899, 12, 30)).days if serial_dates else d
                elif v.replace(".", "", 1).isdigit() and "." in v:
                    v = float(v)
                elif v.isdigit() and len(v) < 8 and not number_as_text:
                    v = int(v)
                elif v.isdigit() and (len(v) <= 2 or len(v) == 4):
                    v = int(v)
            out.append(v)
        ws.append(out)
    for m in merges:
        ws.merge_cells(m)
    if trailing_empty:
        thin = Side(style="thin")
        last = ws.max_row
        for i in range(last + 1, last + 6):  # empty but bordered rows and columns
            for j in range(1, len(header) + 4):
                ws.cell(row=i, column=j).border = Border(top=thin)
        for i in range(1, last + 1):
            ws.cell(row=i, column=len(header) + 3).border = Border(left=thin)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def write_bytes(path: Path, data: bytes, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def zip_bomb_xlsx(valid: bytes, declared: int = 2_000_000_000) -> bytes:
    """A workbook whose worksheet declares a huge uncompressed size (as a zip bomb does)."""
    data = bytearray(valid)
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) >= 0:  # central directory entries
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        name = bytes(data[pos + 46:pos + 46 + name_len])
        if name.startswith(b"xl/worksheets/"):
            struct.pack_into("<I", data, pos + 24, declared)
        pos += 4
    return bytes(data)


def rewrite_member(valid: bytes, member_prefix: str, change) -> bytes:
    """The workbook with one XML member rewritten by `change(bytes) -> bytes`."""
    src = zipfile.ZipFile(io.BytesIO(valid))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename.startswith(member_prefix):
                body = change(body)
            dst.writestr(info.filename, body)
    return out.getvalue()


BILLION_LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                             for i in range(1, 10))
                  + b"]>\n")


def entity_xlsx(valid: bytes, member: str = "xl/worksheets/") -> bytes:
    """A workbook whose worksheet XML declares the 'billion laughs' entities and uses the last one
    in its first text cell (10^9 'lol's, 3 GB, if a parser expanded it)."""
    def change(body: bytes) -> bytes:
        body = body.split(b"?>", 1)[1] if body.startswith(b"<?xml") else body
        assert b"<t>" in body
        body = body.replace(b"<t>", b"<t>&lol9;", 1)
        return BILLION_LAUGHS + body.lstrip()
    return rewrite_member(valid, member, change)


def two_row_header_xlsx(students=STUDENTS, *, intake=None, tall=False) -> bytes:
    """A report layout: a merged title, a group row over sub-headers with vertically merged cells
    (STT, Giới tính), and the GPA in two columns ('Điểm TB' over 'Hệ 10' | 'Hệ 4').

    tall: instead, every header cell is merged over two rows (a single, tall header row).
    """
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Danh sach"
    ws["A1"] = nfc("BÁO CÁO DANH SÁCH SINH VIÊN BÁN DẪN – HỌC KỲ 1 NĂM HỌC 2024–2025")
    ws.merge_cells("A1:M1")
    v = VALUES["vi"]
    if tall:
        titles = ["STT", "Mã SV", "Số CCCD", "Họ tên", "Ngày sinh", "Giới tính", "Mã ngành", "Trình độ", "Khóa",
                  "Năm thứ", "Tình trạng", "Điểm TB hệ 10", "Ghi chú"]
        for j, t in enumerate(titles, start=1):
            ws.cell(row=2, column=j, value=nfc(t))
            ws.merge_cells(start_row=2, start_column=j, end_row=3, end_column=j)
    else:
        ws["A2"], ws["B2"], ws["F2"], ws["G2"], ws["L2"] = "STT", nfc("Thông tin sinh viên"), nfc("Giới tính"), \
            nfc("Thông tin đào tạo"), nfc("Điểm TB")
        for rng in ("A2:A3", "B2:E2", "F2:F3", "G2:K2", "L2:M2"):
            ws.merge_cells(rng)
        for col, t in zip("BCDEGHIJKLM", ["Mã SV", "Số CCCD", "Họ tên", "Ngày sinh", "Mã ngành", "Trình độ", "Khóa",
                                          "Năm thứ", "Tình trạng", "Hệ 10", "Hệ 4"]):
            ws[f"{col}3"] = nfc(t)
    for i, s in enumerate(students, start=1):  # data from row 4, below the two header rows
        for j, value in enumerate([i, s.student_id, s.national_id, s.full_name, s.birth_date, v[s.gender],
                                   s.programme_code, v[s.degree_level], intake(s) if intake else s.intake_year,
                                   s.study_year, v[s.status], round(s.gpa * 2.5, 2), None if tall else s.gpa], start=1):
            ws.cell(row=3 + i, column=j, value=value)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
