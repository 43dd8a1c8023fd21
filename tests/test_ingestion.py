"""Ingestion that real university submissions survive, with nothing lost (issue 3).

The corpus is built by code (tests/corpus.py) from one canonical list of students, written the
ways offices write it. Unit tests check the readers, normalisers and landing-zone scan; the end
to end tests run the real pipeline (Prefect, DuckDB, GX) on a corpus landing zone and check the
canonical result, every file's status and reason, and rows read = loaded + quarantined.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import random
import shutil
import unicodedata
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corpus as C
from tables import manifest
from transforms.contract.rules import INGEST_RULES
from transforms.publish import feedback
from transforms.ingest import landing
from transforms.ingest import readers
from transforms.ingest import normalise as N
from transforms.ingest.stage import KnownFiles, new_files
from transforms.ingest.pseudonym import pseudonymise

REPO = Path(__file__).resolve().parent.parent
REF = REPO / "data" / "reference"
ALIASES = readers.AliasTable.from_csv(REF / "column_aliases.csv")
VALUES = N.ValueAliases.from_csv(REF / "value_aliases.csv")
COHORTS = N.CohortConventions.from_csv(REF / "cohort_conventions.csv")
REQ = N.ENROLLMENT_REQUIRED
KEY = os.environ["LAB2FAB_PSEUDONYM_KEY"].encode()


def read(data: bytes, suffix: str = ".csv", *, sheet=None, aliases=ALIASES) -> readers.RawTable:
    return readers.parse_submission(data, suffix, aliases, REQ, name=f"test{suffix}", sheet=sheet)


def rejected(data: bytes, suffix: str = ".csv", rule: str | None = None, **kw) -> str:
    """The reason the file is refused; the reader names its rule (`rule`, when given), an error of the catalogue."""
    with pytest.raises(readers.SubmissionRejected) as e:
        read(data, suffix, **kw)
    assert INGEST_RULES[e.value.rule].severity == "error", e.value.rule
    assert rule is None or e.value.rule == rule, (e.value.rule, e.value.reason)
    return e.value.reason


def canonical(raw: readers.RawTable, code: str = "HUST", term: str = "2024-1") -> pd.DataFrame:
    return N.normalise_enrollment(raw.frame, key=KEY, values=VALUES, file_id="f", university_code=code, term=term,
                                  conventions=COHORTS)


def assert_canonical(frame: pd.DataFrame, students=C.STUDENTS, code: str = "HUST", term: str = "2024-1",
                     intake=True) -> None:
    """Every student's normalised row equals the truth (values mapped, GPA on 4, birth year)."""
    keys = pseudonymise(KEY, pd.Series([s.student_id for s in students], dtype="string"), code)
    got = frame.set_index("student_key")
    assert len(frame) == len(students)
    for k, s in zip(keys, students):
        row = got.loc[k]
        assert (row.gender, row.degree_level, row.status, row.programme_code) == \
            (s.gender, s.degree_level, s.status, s.programme_code), s
        assert row.study_year == s.study_year and row.birth_year == s.birth_date.year
        assert row.gpa == pytest.approx(s.gpa, abs=0.011)
        if intake:
            assert row.intake_year == s.intake_year, (s, row.raw_intake_year)
    assert not {"full_name", "national_id", "birth_date", "student_id"} & set(frame.columns)


# ================================================================ encodings

ENCODINGS = ["utf-8", "utf-8-sig", "utf-16-le", "utf-16-be", "utf-16-le-nobom", "cp1258", "utf-8-nfd"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_gives_the_same_vietnamese_names(encoding):
    """`Nguyễn` decoded from Windows-1258 (combining tone marks) or NFD UTF-8 equals `Nguyễn` typed in UTF-8."""
    delimiter = "\t" if encoding.startswith("utf-16") else ","  # Excel's "Unicode text" is tab-separated
    raw = read(C.encode(C.csv_text(C.records(), delimiter), encoding))
    assert raw.frame["full_name"].tolist() == [s.full_name for s in C.STUDENTS]
    assert all(unicodedata.is_normalized("NFC", n) for n in raw.frame["full_name"])
    assert raw.encoding == {"utf-16-le-nobom": "utf-16-le", "utf-8-nfd": "utf-8"}.get(encoding, encoding)
    assert_canonical(canonical(raw))


def test_windows_1258_writes_tones_as_combining_marks():
    """What the corpus writes is what Windows writes: Python's cp1258 codec cannot encode `ễ`, neither
    precomposed (NFC) nor fully decomposed (NFD has a combining circumflex the code page lacks)."""
    for form in ("NFC", "NFD"):
        with pytest.raises(UnicodeEncodeError):
            unicodedata.normalize(form, "Nguyễn").encode("cp1258")
    data = C.encode_cp1258("Nguyễn Đặng Trương")
    assert data == b"Nguy\xea\xden \xd0\xe3\xf2ng Tr\xfd\xf5ng"  # ê + U+0303, ă + U+0323, ư ơ
    assert data.decode("cp1258") != unicodedata.normalize("NFC", "Nguyễn Đặng Trương")  # needs NFC
    text, enc = readers.decode(data + b"\r\n", "x")
    assert (text.strip(), enc) == (unicodedata.normalize("NFC", "Nguyễn Đặng Trương"), "cp1258")


def test_windows_1252_western_text_stays_western():
    raw = read(C.encode(C.csv_text(C.records(names=C.WESTERN_NAMES, headers="en", values="en")), "cp1252"))
    assert raw.encoding == "cp1252"
    assert raw.frame["full_name"].tolist() == C.WESTERN_NAMES
    assert_canonical(canonical(raw))
    # Portuguese and Icelandic letters that Windows-1258 would read as ă, ơ, đ: still Western
    for word in ("São João", "Conceição", "Þórður", "Guðrún Ósk", "però così"):
        assert readers.decode(f"a,b\r\n{word},x\r\n".encode("cp1252"), "x") == (f"a,b\r\n{word},x\r\n", "cp1252")


@pytest.mark.parametrize("case,why", [
    ("random", "not Windows-1258 or Windows-1252"),
    ("high_bytes", "are symbols, not letters"),
    ("binary", "NUL bytes but is not UTF-16"),
    ("bad_bom", "byte-order mark but byte"),
    ("mixed", "mostly UTF-8"),
    ("control", "control characters"),
])
def test_a_file_whose_encoding_cannot_be_determined_is_rejected_with_that_reason(case, why):
    rng = random.Random(case)
    good = C.csv_text(C.records()).encode("utf-8")
    data = {
        "random": bytes(rng.randint(1, 255) for _ in range(4000)),
        "high_bytes": bytes(rng.randint(0xA0, 0xFF) for _ in range(4000)),
        "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(rng.getrandbits(8) for _ in range(2000)),
        "bad_bom": b"\xef\xbb\xbf" + good + b"\xff\xfe",
        "mixed": good + C.encode_cp1258("Trương,Đặng\r\n"),  # a UTF-8 export with one row pasted from elsewhere
        "control": good + bytes(rng.randint(1, 31) for _ in range(400)),
    }[case]
    reason = rejected(data, rule="ING.file.encoding")
    assert "encoding cannot be determined" in reason and why in reason and "UTF-8" in reason


# ================================================================ CSV dialects

@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("eol", ["\r\n", "\n"])
def test_csv_delimiters(delimiter, eol):
    raw = read(C.encode(C.csv_text(C.records(headers="vi_ascii", values="vi_ascii"), delimiter, eol), "utf-8"))
    assert raw.found_columns == C.CANON and raw.header_line == 1
    assert_canonical(canonical(raw))


def test_semicolon_csv_with_decimal_commas_and_excel_habits():
    """Locale exports: `;` with decimal commas, Excel's `sep=;` line, `="0012"` cells, quoted delimiters."""
    rows = C.records(gpa_scale=10)
    for r in rows[1:]:
        r[-1] = r[-1].replace(".", ",")
        r[1] = f'="{r[1]}"'  # Excel's way to keep the leading zeros of a CCCD
    rows[1][2] = "Nguyễn Văn Đức; K66"  # a delimiter inside a quoted cell
    text = "sep=;\r\n" + C.csv_text(rows, ";")
    raw = read(text.encode("utf-8-sig"))
    assert raw.header_line == 2 and raw.frame["national_id"].tolist() == [s.national_id for s in C.STUDENTS]
    assert raw.frame["full_name"][0] == "Nguyễn Văn Đức; K66"
    assert_canonical(canonical(raw))


def test_title_rows_blank_rows_and_a_footer_are_accounted_for():
    rows = [["DANH SÁCH SINH VIÊN HỌC KỲ 1"], [], ["Đơn vị: Trường Đại học Bách khoa Hà Nội"], *C.records(),
            [], ["", "", "Người lập biểu"]]
    raw = read(C.csv_text(rows).encode("utf-8"))
    assert raw.header_line == 4
    assert raw.frame["line"].tolist()[:2] == [5, 6] and len(raw.frame) == len(C.STUDENTS) + 1  # the footer is a row
    frame = canonical(raw)
    assert frame["student_key"].isna().sum() == 1  # ...which the contract quarantines (ENR.student_key.present)


# ================================================================ XLSX

def test_xlsx_title_rows_merged_title_typed_cells_and_trailing_empties():
    title = [["BÁO CÁO DANH SÁCH SINH VIÊN"], ["Đơn vị: Trường Đại học Bách khoa Hà Nội"]]
    data = C.xlsx_bytes(C.records(gpa_scale=10), title_rows=title, merges=["A1:K1", "A2:K2"])
    raw = read(data, ".xlsx")
    assert (raw.header_line, raw.format, raw.sheet, raw.extra_columns) == (3, "xlsx", "Sheet1", [])
    assert raw.frame["line"].tolist() == list(range(4, 4 + len(C.STUDENTS)))  # trailing empty rows: no rows
    assert_canonical(canonical(raw))  # GPA 10 -> 4, dates as Excel dates, numbers as numbers


def test_xlsx_numbers_stored_as_text_and_dates_as_excel_serials():
    data = C.xlsx_bytes(C.records(), serial_dates=True, number_as_text=True)
    raw = read(data, ".xlsx")
    assert raw.frame["birth_date"][0] == str((C.STUDENTS[0].birth_date - pd.Timestamp("1899-12-30").date()).days)
    assert_canonical(canonical(raw))
    typed = read(C.xlsx_bytes(C.records(), number_as_text=False), ".xlsx")  # programme codes as numbers
    assert typed.frame["programme_code"].tolist() == [s.programme_code for s in C.STUDENTS]


@pytest.mark.parametrize("tall", [False, True])
def test_xlsx_merged_and_two_row_headers(tall):
    """A group row over sub-headers, cells merged down over both header rows, GPA under 'Điểm TB' split
    into 'Hệ 10 | Hệ 4'; or every header cell merged over two rows. Cohorts as HUST labels (K66)."""
    raw = read(C.two_row_header_xlsx(intake=lambda s: f"K{s.intake_year - 1955}", tall=tall), ".xlsx")
    assert raw.found_columns == C.CANON if not tall else set(C.CANON) - {"gpa"} <= set(raw.found_columns)
    assert raw.header_line == (3 if not tall else 2) and raw.frame["line"].tolist()[0] == 4
    assert "STT" in raw.extra_columns and len(raw.frame) == len(C.STUDENTS)
    frame = canonical(raw, "HUST")
    assert_canonical(frame)


def test_xlsx_sheet_choice():
    """The first visible sheet with a header; or the sheet named in the university's setting."""
    data_rows = C.records()
    summary = [["Tổng hợp"], ["Mã ngành", "Trình độ", "Giới tính", "Số sinh viên"], ["7520207", "Kỹ sư", "Nam", 3]]
    book = C.xlsx_bytes(data_rows, sheet="Dữ liệu", first_sheet=("Hướng dẫn", [["Điền dữ liệu vào trang sau"]]))
    assert read(book, ".xlsx").sheet == "Dữ liệu"  # the instructions sheet has no header
    book = C.xlsx_bytes(data_rows, sheet="Dữ liệu", first_sheet=("Tổng hợp", summary))
    assert "missing required column" in rejected(book, ".xlsx")  # the summary sheet looks like a header
    assert read(book, ".xlsx", sheet="Dữ liệu").sheet == "Dữ liệu"
    assert read(book, ".xlsx", sheet="du lieu").sheet == "Dữ liệu"  # case and diacritics do not matter
    reason = rejected(book, ".xlsx", sheet="Sinh viên")
    assert "no sheet named 'Sinh viên'" in reason and "Tổng hợp, Dữ liệu" in reason
    settings_csv = REF / "submission_settings.csv"
    assert list(pd.read_csv(settings_csv).columns) == ["university_code", "sheet_name", "note"]


def test_xlsx_hidden_first_sheet_is_skipped():
    from openpyxl import load_workbook
    book = C.xlsx_bytes(C.records(), sheet="Data", first_sheet=("Lookup", [["Mã ngành", "Trình độ", "Giới tính"]]))
    wb = load_workbook(io.BytesIO(book))
    wb["Lookup"].sheet_state = "hidden"
    buf = io.BytesIO()
    wb.save(buf)
    assert read(buf.getvalue(), ".xlsx").sheet == "Data"


@pytest.mark.parametrize("case,why,rule", [
    ("xls", "is not a valid Excel 97-2003 (.xls) workbook", "ING.file.damaged"),  # .xls is read since issue 14: this one is not one
    ("ole_as_xlsx", "password-protected workbook or an old Excel 97-2003 file", "ING.file.type"),
    ("xlsx_as_csv", "is a spreadsheet saved with a '.csv' name", "ING.file.type"),
    ("truncated", "not a valid XLSX file", "ING.file.damaged"),
    ("zip_bomb", "unpacks to 2000", "ING.file.size"),
    ("entity", "XML entity declarations", "ING.file.unsafe"),
    ("empty", "the file is empty", "ING.file.type"),
    ("pdf", "file type '.pdf' is not accepted", "ING.file.type"),
])
def test_files_that_cannot_be_read_are_refused_with_what_to_do(case, why, rule):
    valid = C.xlsx_bytes(C.records())
    data, suffix = {
        "xls": (C.encode_cp1258("not really an xls"), ".xls"),
        "ole_as_xlsx": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), ".xlsx"),
        "xlsx_as_csv": (valid, ".csv"),
        "truncated": (valid[: len(valid) // 2], ".xlsx"),
        "zip_bomb": (C.zip_bomb_xlsx(valid), ".xlsx"),
        "entity": (C.entity_xlsx(valid), ".xlsx"),
        "empty": (b"", ".csv"),
        "pdf": (b"%PDF-1.4", ".pdf"),
    }[case]
    reason = rejected(data, suffix, rule)
    assert why in reason
    if case == "xls":
        assert "save it again as an Excel Workbook (.xlsx)" in reason


def test_entity_expansion_never_happens():
    """defusedxml refuses the declaration before anything is expanded (a billion 'lol's would be 3 GB)."""
    import openpyxl
    assert openpyxl.DEFUSEDXML
    import tracemalloc
    tracemalloc.start()
    rejected(C.entity_xlsx(C.xlsx_bytes(C.records())), ".xlsx")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 1024 * 1024


# ================================================================ headers

@pytest.mark.parametrize("header,column", [
    ("Mã sinh viên", "student_id"), ("MÃ SINH VIÊN", "student_id"), ("Ma sinh vien", "student_id"),
    ("MSSV", "student_id"), ("ma_sv", "student_id"), ("Mã SV", "student_id"), ("Student ID", "student_id"),
    ("student  id", "student_id"), ("STUDENT_ID", "student_id"), ("Mã số sinh viên", "student_id"),
    (unicodedata.normalize("NFD", "Mã sinh viên"), "student_id"), ("Mã sinh viên (*)", "student_id"),
    ("Số CCCD", "national_id"), ("CMND/CCCD", "national_id"), ("so_cccd", "national_id"),
    ("Họ và tên", "full_name"), ("ho ten", "full_name"), ("Ngày sinh (dd/mm/yyyy)", "birth_date"),
    ("Giới tính", "gender"), ("gioi tinh", "gender"), ("Nam/Nữ", "gender"), ("Sex", "gender"),
    ("Mã ngành", "programme_code"), ("Mã ngành đào tạo", "programme_code"), ("Major code", "programme_code"),
    ("Trình độ", "degree_level"), ("Bậc đào tạo", "degree_level"), ("Degree level", "degree_level"),
    ("Năm nhập học", "intake_year"), ("Khóa", "intake_year"), ("KHÓA", "intake_year"), ("Khoá", "intake_year"),
    ("Khóa học", "intake_year"), ("Intake year", "intake_year"), ("Năm nhập học (YYYY)", "intake_year"),
    ("Năm thứ", "study_year"), ("Year of study", "study_year"), ("Tình trạng", "status"), ("Status", "status"),
    ("Điểm TB", "gpa"), ("Điểm TBC tích lũy", "gpa"), ("GPA (hệ 4)", "gpa"), ("Điểm TB hệ 10", "gpa"),
    ("Khoa", None), ("Ghi chú", None), ("STT", None), ("", None),
])
def test_header_aliases(header, column):
    assert ALIASES.canonical(header) == column


def test_khoa_faculty_is_not_khoa_cohort():
    """Without diacritics `Khoa` (faculty) and `Khóa` (cohort) are the same word: only the exact spelling decides."""
    assert (ALIASES.canonical("Khoa"), ALIASES.canonical("Khóa"), ALIASES.canonical("Khoá học")) == \
        (None, "intake_year", "intake_year")
    rows = C.records()
    rows = [r + [v] for r, v in zip(rows, ["Khoa"] + ["Điện tử"] * len(C.STUDENTS))]
    raw = read(C.csv_text(rows).encode())
    assert raw.extra_columns == ["Khoa"] and raw.frame["intake_year"][0] == "2021"


def test_the_alias_table_is_data(tmp_path):
    """A new spelling is a new row in column_aliases.csv, no code change."""
    rows = C.records()
    rows[0][0] = "Mã định danh người học"
    assert "missing required column(s) student_id" in rejected(C.csv_text(rows).encode())
    table = tmp_path / "column_aliases.csv"
    table.write_text((REF / "column_aliases.csv").read_text(encoding="utf-8") + "student_id,Mã định danh người học\n",
                     encoding="utf-8")
    raw = read(C.csv_text(rows).encode(), aliases=readers.AliasTable.from_csv(table))
    assert raw.found_columns[0] == "student_id"
    with pytest.raises(ValueError):  # one spelling cannot mean two columns
        readers.AliasTable([("Mã SV", "student_id"), ("ma sv", "national_id"), ("MÃ SV", "national_id")])


def test_missing_required_columns_reject_the_file_with_what_is_missing_and_found():
    rows = [[c for j, c in enumerate(r) if j not in (4, 9)] for r in C.records()]  # no gender, no status
    reason = rejected(C.csv_text(rows).encode(), rule="ING.file.columns")
    assert "missing required column(s) gender, status" in reason
    assert "'Mã sinh viên'" in reason and "'Điểm TB'" in reason and "header row 1" in reason


def test_unknown_columns_are_kept_aside():
    rows = [["STT", *r, "Ghi chú", "Lớp"] if i == 0 else [str(i), *r, "", "K66-ĐT"] for i, r in enumerate(C.records())]
    raw = read(C.csv_text(rows).encode())
    assert raw.extra_columns == ["STT", "Ghi chú", "Lớp"]
    assert_canonical(canonical(raw))


def test_no_header_row_is_rejected_without_echoing_personal_data():
    rows = C.records()[1:]  # data without its header
    reason = rejected(C.csv_text(rows).encode(), rule="ING.file.header")
    assert "no header row found" in reason
    assert not any(s.full_name in reason or s.national_id in reason for s in C.STUDENTS)


# ================================================================ values

def test_values_in_vietnamese_english_any_case_with_or_without_diacritics():
    for headers, values in (("vi", "vi"), ("vi_ascii", "vi_ascii"), ("en", "en"), ("vi_caps", "vi")):
        assert_canonical(canonical(read(C.csv_text(C.records(headers=headers, values=values)).encode())))
    lookup = lambda field, v: VALUES.code(field, v)  # noqa: E731
    assert [lookup("gender", v) for v in ("Nữ", "NỮ", "nu", " Nam ", "male", "F", "Khác", "?")] == \
        ["F", "F", "F", "M", "M", "F", "X", None]
    assert [lookup("degree_level", v) for v in ("Kỹ sư", "Kĩ sư", "KY SU", "Thạc sỹ", "Ph.D.", "Tiến sĩ")] == \
        ["engineer", "engineer", "engineer", "master", "doctor", "doctor"]
    assert [lookup("status", v) for v in ("Đang học", "ĐÃ TỐT NGHIỆP", "bao luu", "Thôi học", "Chuyển trường")] == \
        ["studying", "graduated", "on_leave", "dropped_out", "transferred"]


@pytest.mark.parametrize("code,label,year", [
    ("VNUA", "2021", 2021), ("VNUA", "2021.0", 2021), ("VNUA", "2021-2025", 2021), ("VNUA", " 2021 ", 2021),
    ("HUST", "K66", 2021), ("HUST", "k 67", 2022), ("HUST", "K.64", 2019), ("HUST", "Khóa 66", 2021),
    ("HUST", "K2021", 2021), ("HCMUT", "K21", 2021), ("PTIT", "D22", 2022), ("UET", "QH-2021", 2021),
    ("VNUA", "K66", None), ("HUST", "66", None), ("HUST", "D21", None), ("PTIT", "K66", None), ("HUST", "", None),
])
def test_intake_year_or_cohort_label(code, label, year):
    assert N.intake_year(label.strip(), code, COHORTS) == year if label.strip() else year is None


def test_cohort_label_without_a_convention_keeps_the_raw_value_for_quarantine():
    raw = read(C.csv_text(C.records(intake=lambda s: f"K{s.intake_year - 1955}")).encode())
    hust, other = canonical(raw, "HUST"), canonical(raw, "VNUA")
    assert hust["intake_year"].tolist() == [s.intake_year for s in C.STUDENTS]
    assert other["intake_year"].isna().all() and other["raw_intake_year"].tolist()[0] == "K66"
    assert other["years_since_intake"].isna().all()


def test_gpa_scales():
    g = lambda *v: [None if pd.isna(x) else x for x in N.gpa_on_4(pd.Series(list(v), dtype="string"))]  # noqa: E731
    assert g("3.2", "2,85", None) == [3.2, 2.85, None]
    assert g("8.0", "7,5", "9.25") == [3.2, 3.0, 3.7]  # a 10-point file
    assert g("3.5", "3.9", "3.1", "2.8", "3.0", "35") == [3.5, 3.9, 3.1, 2.8, 3.0, 35.0]  # a typo stays out of range
    assert g("8.2/10", "3.1/4", "abc") == [3.28, 3.1, None]
    assert g("3.8", "7.0", "8.0", "9.0") == [1.52, 2.8, 3.2, 3.6]  # mostly above 4: the whole file is on 10


def test_identifiers_dates_and_personal_data():
    assert N.national_number("1203012345") == "001203012345"  # a CCCD that Excel turned into a number
    assert N.national_number("79303004567.0") == "079303004567"
    assert N.national_number("0012 0301 2345") == "001203012345" and N.national_number("123456789") == "123456789"
    assert N.student_number(" b21dccn 001 ") == "B21DCCN001" and N.student_number("20210001.0") == "20210001"
    assert [N.birth_year(v) for v in ("15/03/2003", "2003-03-15", "2003-03-15 00:00:00", "37695", "2003", "3/15/03")] \
        == [2003, 2003, 2003, 2003, 2003, None]
    frame = canonical(read(C.csv_text(C.records()).encode()))
    text = frame.astype(str).to_csv()
    assert not any(s.full_name in text or s.national_id in text or s.birth_date.isoformat() in text
                   for s in C.STUDENTS)


# ================================================================ landing zone

def _valid_csv() -> bytes:
    return C.csv_text(C.records()).encode("utf-8")


def _tricks(landing_dir: Path, outside: Path) -> dict[str, str]:
    """Files a landing zone must refuse: relative path (as the manifest shows it) -> reason fragment."""
    term = landing_dir / "enrollment" / "TLU" / "2024-1"
    term.mkdir(parents=True, exist_ok=True)
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_bytes(_valid_csv())
    (term / "good.csv").write_bytes(_valid_csv())
    cases = {}

    def put(name: str, fragment: str, folder: Path = term, data: bytes | None = None) -> None:
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(_valid_csv() if data is None else data)
        cases[landing.printable(p.relative_to(landing_dir).as_posix())] = fragment

    (term / "link_out.csv").symlink_to(outside)
    cases["enrollment/TLU/2024-1/link_out.csv"] = "pointing outside the landing zone"
    (term / "link_in.csv").symlink_to(term / "good.csv")
    cases["enrollment/TLU/2024-1/link_in.csv"] = "inside the landing zone"
    (term / "dangling.csv").symlink_to(term / "nothing-here.csv")
    cases["enrollment/TLU/2024-1/dangling.csv"] = "pointing to nothing"
    (landing_dir / "enrollment" / "TLU" / "2023-2").symlink_to(outside.parent, target_is_directory=True)
    cases["enrollment/TLU/2023-2"] = "symbolic link (to a folder) pointing outside"
    os.mkfifo(term / "pipe.csv")
    cases["enrollment/TLU/2024-1/pipe.csv"] = "not a regular file"
    put("bad\x1bname.csv", "control characters")
    put("line\nbreak.csv", "control characters")
    put("..\\..\\etc\\passwd.csv", "backslash")
    put("-rf.csv", "starts with '-'")
    put("invoice\u202eslx.csv", "invisible formatting characters")
    put(".hidden.csv", "hidden file")
    put("~$Danh sach.xlsx", "temporary lock file")
    put(".~lock.Danh sach.xlsx#", "temporary lock file")
    put("stray.csv", "wrong depth", landing_dir / "enrollment" / "TLU")
    put("stray.csv", "wrong depth", landing_dir / "enrollment")
    put("deeper.csv", "wrong depth", term / "sub")
    put("lower.csv", "is not a university registry code", landing_dir / "enrollment" / "tlu" / "2024-1")
    put("term.csv", "is not a term like 2024-1", landing_dir / "enrollment" / "TLU" / "2024-3")
    put("round.csv", "is not a round like 2026H1", landing_dir / "placements" / "2026-H1")
    bad = os.fsencode(term) + b"/danh_s\xe1ch.csv"  # a Latin-1 file name
    with open(bad, "wb") as f:
        f.write(_valid_csv())
    cases["enrollment/TLU/2024-1/danh_s\\xe1ch.csv"] = "not valid UTF-8"
    return cases


# The rule each trick of `_tricks` is refused under, by its reason fragment.
TRICK_RULES = {
    **dict.fromkeys(["pointing outside the landing zone", "inside the landing zone", "pointing to nothing",
                     "symbolic link (to a folder) pointing outside", "not a regular file"], "ING.file.link"),
    **dict.fromkeys(["control characters", "backslash", "starts with '-'", "invisible formatting characters",
                     "not valid UTF-8"], "ING.file.name"),
    **dict.fromkeys(["hidden file", "temporary lock file"], "ING.file.hidden"),
    **dict.fromkeys(["wrong depth", "is not a university registry code", "is not a term like 2024-1",
                     "is not a round like 2026H1"], "ING.file.location"),
}


def test_landing_scan_lists_every_trick_as_a_refused_file(tmp_path):
    cases = _tricks(tmp_path / "landing", tmp_path / "outside" / "secret.csv")
    found = {f.relpath: f for f in landing.scan(tmp_path / "landing")}
    assert found["enrollment/TLU/2024-1/good.csv"].problem is None
    for rel, fragment in cases.items():
        assert rel in found, rel
        assert fragment in (found[rel].problem or ""), (rel, found[rel].problem)
        assert found[rel].rule == TRICK_RULES[fragment], (rel, found[rel].rule)
        assert found[rel].relpath.isprintable()
    assert set(found) == set(cases) | {"enrollment/TLU/2024-1/good.csv"}


def test_a_file_that_vanishes_during_the_scan_is_recorded(tmp_path, monkeypatch):
    term = tmp_path / "enrollment" / "VNUA" / "2024-1"
    term.mkdir(parents=True)
    (term / "a.csv").write_bytes(_valid_csv())
    walk = os.walk

    def racing_walk(top, **kw):
        for dirpath, dirnames, filenames in walk(top, **kw):
            if dirpath == str(term):
                filenames = [*filenames, "being_uploaded.csv"]
            yield dirpath, dirnames, filenames

    monkeypatch.setattr(landing.os, "walk", racing_walk)
    found = {f.relpath: f for f in landing.scan(tmp_path)}
    ghost = found["enrollment/VNUA/2024-1/being_uploaded.csv"]
    assert "disappeared while the landing zone was being read" in ghost.problem and ghost.rule == "ING.file.unavailable"
    assert (ghost.university_code, ghost.term, ghost.size) == ("VNUA", "2024-1", 0)
    monkeypatch.undo()
    # after the scan: a file that cannot be hashed stays in the list, refused, instead of stopping the run
    files = landing.scan(tmp_path)
    (term / "a.csv").unlink()
    new = new_files(files, KnownFiles({}, {}))
    assert len(new) == 1 and "could not be read" in new[0].problem and new[0].rule == "ING.file.unavailable"


def test_reading_never_follows_a_link_swapped_in_after_the_scan(tmp_path):
    (tmp_path / "real.csv").write_bytes(_valid_csv())
    (tmp_path / "swapped.csv").symlink_to(tmp_path / "real.csv")
    with pytest.raises(readers.SubmissionRejected, match="symbolic link"):
        readers.read_submission(tmp_path / "swapped.csv", ALIASES, REQ)
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(readers.SubmissionRejected, match="not a regular file"):
        readers.read_submission(tmp_path / "fifo.csv", ALIASES, REQ)
    with pytest.raises(readers.SubmissionRejected, match="changed while it was being ingested"):
        readers.read_submission(tmp_path / "real.csv", ALIASES, REQ, expected_sha256="0" * 64)


def test_file_ids_are_unique_per_upload():
    f = lambda sha, mtime: landing.LandedFile("enrollment", Path("x"), "enrollment/A/2024-1/x.csv", 10, mtime,  # noqa: E731
                                              sha256=sha)
    assert f("a", 1.0).file_id == f("a", 1.0).file_id
    assert len({f("a", 1.0).file_id, f("b", 2.0).file_id, f("a", 3.0).file_id, f(None, 1.0).file_id,
                f(None, 4.0).file_id}) == 5  # content A, then B, then A again; refused files that change


# ================================================================ limits

def test_size_limit_is_checked_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    path.write_bytes(_valid_csv())
    monkeypatch.setenv("LAB2FAB_MAX_FILE_BYTES", "100")
    with pytest.raises(readers.SubmissionRejected, match="over the 100-byte limit"):
        readers.read_submission(path, ALIASES, REQ)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_row_limit(monkeypatch, suffix):
    monkeypatch.setattr(readers, "MAX_ROWS", 5)
    make = (lambda rows: C.csv_text(rows).encode()) if suffix == ".csv" else C.xlsx_bytes
    assert "8 data rows exceed the limit of 5" in rejected(make(C.records()), suffix, "ING.file.size")
    many = C.records() + C.records()[1:] * 4  # reading stops at the limit, before the rest is read
    assert "more than 5 rows" in rejected(make(many), suffix, "ING.file.size")


def test_zip_bomb_guard_uses_declared_sizes(monkeypatch):
    monkeypatch.setattr(readers, "MAX_XLSX_UNCOMPRESSED", 2000)  # a real workbook declares more than this
    assert "over the 2000-byte limit" in rejected(C.xlsx_bytes(C.records()), ".xlsx", "ING.file.size")


# ================================================================ properties

PROPERTY = settings(max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.binary(max_size=3000), st.sampled_from([".csv", ".xlsx", ".txt", ".xls", ".tsv"]))
def test_random_bytes_end_as_a_table_or_a_rejection(data, suffix):
    try:
        raw = read(data, suffix)
    except readers.SubmissionRejected as e:
        assert e.reason and e.rule in INGEST_RULES
        return
    canonical(raw)


cells = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "=1+1", "K66", "2021", "3,5", "Nữ", "\u0303", "\"",
                                                         "'", ";", "\t", "\r\n", "1e309", "nan", "37695"]))


@PROPERTY
@given(st.lists(st.lists(cells, max_size=14), max_size=12), st.sampled_from([",", ";", "\t"]),
       st.sampled_from(["utf-8", "utf-8-sig", "utf-16-le", "cp1258"]), st.booleans())
def test_random_cells_with_a_real_header_end_as_a_table_or_a_rejection(rows, delimiter, encoding, header):
    rows = ([C.records()[0]] if header else []) + rows
    try:
        data = C.encode(C.csv_text(rows, delimiter), encoding)
    except UnicodeEncodeError:
        return
    try:
        raw = read(data)
    except readers.SubmissionRejected:
        return
    frame = canonical(raw, "HUST")
    assert len(frame) == len(raw.frame) and frame["line"].notna().all()


@settings(max_examples=40, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(cells, st.integers(), st.floats(allow_nan=True), st.dates()), max_size=12),
                max_size=8))
def test_random_xlsx_cells_end_as_a_table_or_a_rejection(rows):
    from openpyxl import Workbook
    from openpyxl.utils.exceptions import IllegalCharacterError
    wb = Workbook()
    ws = wb.active
    try:
        for r in [C.records()[0], *rows]:
            ws.append(r)
    except IllegalCharacterError:
        return
    buf = io.BytesIO()
    wb.save(buf)
    try:
        raw = read(buf.getvalue(), ".xlsx")
    except readers.SubmissionRejected:
        return
    canonical(raw, "HUST")


@settings(max_examples=60, deadline=None, database=None, derandomize=True)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_damaged_xlsx_bytes_end_as_a_table_or_a_rejection(at, value):
    data = bytearray(C.xlsx_bytes(C.records()[:3]))
    data[at % len(data)] = value
    try:
        read(bytes(data), ".xlsx")
    except readers.SubmissionRejected as e:
        assert e.reason and e.rule in INGEST_RULES


# ================================================================ feedback helpers

def test_formula_cells_are_neutralised():
    # a plain number stays a number (a spreadsheet reads it as one); "-2+3" is a formula
    assert [feedback.neutralise(v) for v in ("=1+1", "+84 912", "-5", "-2+3", "@SUM(A1)", "\t=x", "Nam", "", 3)] == \
        ["'=1+1", "'+84 912", "-5", "'-2+3", "'@SUM(A1)", "'\t=x", "Nam", "", 3]


def test_every_ingest_rule_says_what_it_means_in_both_languages():
    """The catalogue (transforms/contract/rules.py): every id ING.*, a severity, English and Vietnamese."""
    for rule_id, r in INGEST_RULES.items():
        assert rule_id == r.rule_id and rule_id.startswith("ING.file."), rule_id
        assert r.severity in ("error", "warning", "info"), rule_id
        assert r.message_en.strip() and r.message_vi.strip() and r.message_en != r.message_vi, rule_id
    doc = (REPO / "docs" / "CONTRACT_RULES.md").read_text(encoding="utf-8")  # the documented list says the same
    assert [i for i, r in INGEST_RULES.items()
            if f"| `{i}` | {r.severity} | {r.message_en} | {r.message_vi} |" not in doc] == []
    with pytest.raises(ValueError, match="ING.file.nope"):
        readers.SubmissionRejected("x.csv: no", rule="ING.file.nope")  # a rule that is not in the catalogue


def test_every_place_that_refuses_a_file_names_a_rule_of_the_catalogue():
    """Read from the source: each SubmissionRejected, LandedFileRefused and landing Refusal is given its
    rule where it is raised (a literal id of the catalogue, or the rule of the refusal it passes on),
    so no reason's words are ever matched to find its rule."""
    import ast

    makers = {"SubmissionRejected", "LandedFileRefused", "Refusal", "_refusal", "_location", "_error", "_unreadable",
              "_xls_error", "_overwrite", "over_memory", "_cannot_determine"}
    literals, forwarded = set(), 0
    for path in [*(REPO / "transforms" / "ingest").glob("*.py"), REPO / "portal" / "upload.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("ING."):
                literals.add(node.value)
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
                    in ("SubmissionRejected", "LandedFileRefused")):
                continue
            rule = next((k.value for k in node.keywords if k.arg == "rule"), None)
            assert rule is not None, f"{path.name}:{node.lineno}: refused without a rule"
            if isinstance(rule, ast.Constant):
                assert rule.value in INGEST_RULES, f"{path.name}:{node.lineno}: {rule.value}"
            else:
                forwarded += 1  # e.rule, first_problem.rule, a helper's `rule` parameter
    assert literals <= set(INGEST_RULES), literals - set(INGEST_RULES)
    assert forwarded
    assert "re.search(" not in (REPO / "transforms" / "publish" / "feedback.py").read_text(encoding="utf-8")


def _bad_files() -> list[tuple[str, bytes, str]]:
    """A generated set of files the readers must refuse or read: (case, bytes, suffix). Valid files of
    every format, then cut short, with bytes flipped, with their header or a required column taken
    away, under another format's name, emptied, bombed, with entity declarations."""
    from test_reader_equivalence import ods_bytes, xls_bytes, xlsb_of

    rng = random.Random(16)
    rows = C.records()
    good = {".csv": C.csv_text(rows).encode(), ".xlsx": C.xlsx_bytes(rows), ".xls": xls_bytes(rows),
            ".ods": ods_bytes(rows), ".xlsb": xlsb_of(rows)}
    out = []
    for suffix, data in good.items():
        for k in (1, 3, 8):
            out.append((f"{suffix} cut to {k}/8", data[: len(data) * k // 8 + 1], suffix))
        for i in range(10):
            b = bytearray(data)
            for _ in range(1 + i % 3):
                b[rng.randrange(len(b))] = rng.randrange(256)
            out.append((f"{suffix} flipped {i}", bytes(b), suffix))
        out.append((f"{suffix} as .pdf", data, ".pdf"))
        if suffix != ".csv":
            out.append((f"{suffix} as .csv", data, ".csv"))
    no_header, no_status = rows[1:], [r[:9] + r[10:] for r in rows]
    for case, table in (("no header", no_header), ("no status column", no_status)):
        out += [(f".csv {case}", C.csv_text(table).encode(), ".csv"), (f".xlsx {case}", C.xlsx_bytes(table), ".xlsx"),
                (f".ods {case}", ods_bytes(table), ".ods")]
    lines = C.csv_text(rows).split("\r\n")
    lines[3] = lines[3].replace(",", ',"', 1)
    out += [("empty", b"", ".csv"), ("random bytes", bytes(rng.randrange(1, 256) for _ in range(3000)), ".csv"),
            ("quote never closed", "\r\n".join(lines).encode(), ".csv"),
            ("zip bomb", C.zip_bomb_xlsx(good[".xlsx"]), ".xlsx"), ("entities", C.entity_xlsx(good[".xlsx"]), ".xlsx"),
            ("ole as xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), ".xlsx")]
    return out


def test_every_refusal_of_a_generated_bad_file_carries_a_rule_of_the_catalogue(monkeypatch):
    """Whatever is wrong with a file, the reader that refuses it names an error rule of the catalogue,
    never the catch-all (kept for the contract's file rules) nor an internal error."""
    hit: dict[str, int] = {}
    for limit in (None, "rows", "bytes"):
        with monkeypatch.context() as mp:
            if limit == "rows":
                mp.setattr(readers, "MAX_ROWS", 3)
            elif limit == "bytes":
                mp.setenv("LAB2FAB_MAX_FILE_BYTES", "2000")
            for case, data, suffix in _bad_files():
                try:
                    read(data, suffix)
                except readers.SubmissionRejected as e:
                    rule = INGEST_RULES.get(e.rule)
                    assert rule is not None and rule.severity == "error", (case, e.rule, e.reason)
                    assert e.rule not in ("ING.file.rejected", "ING.file.internal"), (case, e.reason)
                    hit[e.rule] = hit.get(e.rule, 0) + 1
    assert {"ING.file.damaged", "ING.file.type", "ING.file.size", "ING.file.unsafe", "ING.file.encoding",
            "ING.file.header", "ING.file.columns", "ING.file.records"} <= set(hit), hit


# ================================================================ end to end

TERM = "2024-1"


def _late_students():
    """The students of 2024-1 as they were in 2022-1 (those who had started by then)."""
    return [dataclasses.replace(s, study_year=s.study_year - 2, status="studying")
            for s in C.STUDENTS if s.intake_year <= 2022]


def build_landing(root: Path, outside: Path, reference: Path) -> dict:
    """The corpus landing zone: path -> (status, reason fragment) expected after the first run."""
    enr = root / "enrollment"
    t0 = 1_727_000_000.0  # 2024-09-22
    exp: dict[str, tuple[str, str | None]] = {}

    def put(rel: str, data: bytes, status: str, fragment: str | None = None, mtime: float = t0) -> None:
        C.write_bytes(root / rel, data, mtime)
        exp[rel] = (status, fragment)

    # loaded, each in an office's habits
    put(f"enrollment/HUST/{TERM}/BaoCao_HK1.xlsx", C.two_row_header_xlsx(intake=lambda s: f"K{s.intake_year - 1955}"),
        "loaded")
    hcmut = C.records(headers="vi_caps", values="vi", gpa_scale=4, intake=lambda s: f"K{s.intake_year - 2000}")
    for r in hcmut[1:]:
        r[-1] = r[-1].replace(".", ",")
    injected = list(hcmut[1])
    injected[0], injected[1], injected[4] = "20219999", "001203099999", '=HYPERLINK("http://evil.example","Nam")'
    hcmut.append(injected)
    put(f"enrollment/HCMUT/{TERM}/ds_sinhvien.csv", C.encode(C.csv_text(hcmut, ";"), "utf-8-sig"), "loaded")
    put(f"enrollment/PTIT/{TERM}/danh_sach.csv",
        C.encode(C.csv_text(C.records(headers="vi_ascii", values="vi_ascii", intake=lambda s: f"D{s.intake_year - 2000}")),
                 "cp1258"), "loaded")
    put(f"enrollment/UET/{TERM}/students.txt",
        C.encode(C.csv_text(C.records(headers="en", values="en", intake=lambda s: f"QH-{s.intake_year}"), "\t"),
                 "utf-16-le"), "loaded")
    fpt = C.records(headers="en", values="en", names=C.WESTERN_NAMES, date_format="%Y-%m-%d")
    fpt[8][7] = "K66"  # a cohort label where no convention is known
    put(f"enrollment/FPT/{TERM}/fpt_students.csv", C.encode(C.csv_text(fpt), "cp1252"), "loaded")
    put(f"enrollment/VNUA/{TERM}/vnua.csv", C.encode(C.csv_text(C.records(gpa_scale=10)), "utf-8"), "loaded")
    earlier = [dataclasses.replace(s, study_year=s.study_year - 1, status="studying")
               for s in C.STUDENTS if s.intake_year <= 2023]  # the previous term: the model needs a history
    earlier.append(C.Student("20190009", "001201000123", "Ngô Bảo Châu", C.date(2001, 6, 1), "M", "7480201", "bachelor",
                             2019, 5, "graduated", 3.5))  # ...and graduates
    put("enrollment/VNUA/2023-2/vnua_hk2.csv", C.encode(C.csv_text(C.records(earlier)), "utf-8"), "loaded", None,
        t0 - 120 * 86400)
    # a resubmission: the first upload lost rows; the full list, in a named sheet, two weeks later
    put(f"enrollment/CMC/{TERM}/cmc.csv", C.encode(C.csv_text(C.records(C.STUDENTS[:5])), "utf-8"), "superseded",
        "replaced by a newer submission", t0)
    summary = [["Tổng hợp"], ["Mã ngành", "Trình độ", "Giới tính", "Số SV"], ["7520207", "Kỹ sư", "Nam", 3]]
    put(f"enrollment/CMC/{TERM}/cmc_v2.xlsx", C.xlsx_bytes(C.records(), sheet="Dữ liệu", first_sheet=("Tổng hợp", summary)),
        "loaded", None, t0 + 14 * 86400)
    # the same file sent twice
    same = C.encode(C.csv_text(C.records(headers="en", values="en")), "utf-8")
    put(f"enrollment/PHENIKAA/{TERM}/list.csv", same, "loaded", None, t0)
    put(f"enrollment/PHENIKAA/{TERM}/list (1).csv", same, "duplicate", "same content (sha256", t0 + 60)
    # refused whole, each with its reason
    valid_xlsx = C.xlsx_bytes(C.records())
    rng = random.Random(7)
    for name, data, fragment in [
        ("bao_cao.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "not a valid Excel 97-2003 (.xls)"),
        ("random.csv", bytes(rng.randint(1, 255) for _ in range(3000)), "encoding cannot be determined"),
        ("mixed.csv", C.csv_text(C.records()).encode() + C.encode_cp1258("Trương\r\n"), "mostly UTF-8"),
        ("no_status.csv", C.csv_text([r[:9] + r[10:] for r in C.records()]).encode(), "missing required column(s) status"),
        ("bomb.xlsx", C.zip_bomb_xlsx(valid_xlsx), "unpacks to"),
        ("entities.xlsx", C.entity_xlsx(valid_xlsx), "XML entity declarations"),
        ("huge.csv", C.csv_text(C.records() * 200).encode(), "byte limit"),
        ("scan.pdf", b"%PDF-1.4\n", "file type '.pdf' is not accepted"),
    ]:
        put(f"enrollment/DUT/{TERM}/{name}", data, "rejected", fragment)
    # path tricks, each a valid file in itself
    for rel, fragment in _tricks(root, outside).items():
        exp[rel] = ("rejected", fragment)
    exp[f"enrollment/TLU/{TERM}/good.csv"] = ("loaded", None)
    # the named-sheet setting, in a copy of the reference data
    shutil.copytree(REF, reference)
    with open(reference / "submission_settings.csv", "a", encoding="utf-8") as f:
        f.write("CMC,Dữ liệu,the office keeps a summary sheet first\n")
    return exp


@pytest.fixture(scope="module")
def corpus_run(prefect_harness, tmp_path_factory):
    from flows.pipeline import pipeline

    base = tmp_path_factory.mktemp("corpus")
    data_dir = base / "data"
    exp = build_landing(data_dir / "landing", base / "outside" / "secret.csv", base / "reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAB2FAB_REFERENCE_DIR", str(base / "reference"))
        # huge.csv is ~300 kB, every other file < 20 kB; staging may run in worker processes, which
        # read the limit from the environment
        mp.setenv("LAB2FAB_MAX_FILE_BYTES", "100000")
        result = pipeline(data_dir=str(data_dir))
    return data_dir, exp, result, base


def test_every_file_is_loaded_superseded_or_rejected_with_a_reason(corpus_run):
    data_dir, exp, result, _ = corpus_run
    m = manifest(data_dir)
    assert set(m.index) == set(exp), set(m.index) ^ set(exp)
    for path, (status, fragment) in exp.items():
        assert m.loc[path, "status"] == status, (path, m.loc[path, "status"], m.loc[path, "reason"])
        if fragment:
            assert fragment in m.loc[path, "reason"], (path, m.loc[path, "reason"])
        if status in ("rejected", "duplicate", "superseded"):
            assert m.loc[path, "reason"], path
    # Every reason is stored with the rule its raise site named, and only a reason has one.
    assert (m.reason.isna() == m.reason_rule_id.isna()).all()
    assert set(m.reason_rule_id.dropna()) <= set(INGEST_RULES)
    by_fragment = {**TRICK_RULES, "replaced by a newer submission": "ING.file.superseded",
                   "same content (sha256": "ING.file.duplicate", "not a valid Excel 97-2003 (.xls)": "ING.file.damaged",
                   "encoding cannot be determined": "ING.file.encoding", "mostly UTF-8": "ING.file.encoding",
                   "missing required column(s) status": "ING.file.columns", "unpacks to": "ING.file.size",
                   "XML entity declarations": "ING.file.unsafe", "byte limit": "ING.file.size",
                   "file type '.pdf' is not accepted": "ING.file.type"}
    for path, (status, fragment) in exp.items():
        if fragment:
            assert m.loc[path, "reason_rule_id"] == by_fragment[fragment], (path, m.loc[path, "reason_rule_id"])
    assert (m.rows_read == m.rows_loaded + m.rows_quarantined).all()  # the pipeline checks it too
    assert result["files_seen"] == len(exp)
    f = m.loc[f"enrollment/HCMUT/{TERM}/ds_sinhvien.csv"]
    assert (f.rows_read, f.rows_loaded, f.rows_quarantined, f.format, f.encoding) == (9, 8, 1, "csv", "utf-8-sig")
    assert (m.loc[f"enrollment/FPT/{TERM}/fpt_students.csv", ["rows_loaded", "rows_quarantined"]].tolist()) == [7, 1]
    encodings = m.loc[[f"enrollment/{u}/{TERM}/{n}" for u, n in
                       (("PTIT", "danh_sach.csv"), ("UET", "students.txt"), ("FPT", "fpt_students.csv"))], "encoding"]
    assert encodings.tolist() == ["cp1258", "utf-16-le", "cp1252"]
    assert m.loc[f"enrollment/HUST/{TERM}/BaoCao_HK1.xlsx", ["format", "header_line", "extra_columns"]].tolist() == \
        ["xlsx", 3, "STT"]
    old, new = m.loc[f"enrollment/CMC/{TERM}/cmc.csv"], m.loc[f"enrollment/CMC/{TERM}/cmc_v2.xlsx"]
    assert old.superseded_by == new.file_id and old.rows_loaded == 5


def test_canonical_rows_are_the_students_whatever_the_file_looked_like(corpus_run):
    data_dir, *_ = corpus_run
    con = duckdb.connect(str(data_dir / "published" / "lab2fab.duckdb"), read_only=True)
    staged = con.execute("SELECT * FROM staging.enrollment").df()
    staged = staged[staged.term == TERM]
    for code in ("HUST", "HCMUT", "PTIT", "UET", "VNUA", "CMC", "PHENIKAA", "TLU"):
        rows = staged[staged.university_code == code]
        assert_canonical(rows, code=code)
    fpt = staged[staged.university_code == "FPT"]
    assert_canonical(fpt, C.STUDENTS[:7], code="FPT")
    files = con.execute("SELECT file_id FROM ops.manifest WHERE path LIKE 'enrollment/CMC/%' AND status = 'loaded'").fetchall()
    assert set(staged[staged.university_code == "CMC"].file_id) == {files[0][0]}  # only the newer file's rows


def test_quarantine_keeps_original_values_line_and_reason(corpus_run):
    data_dir, *_ = corpus_run
    con = duckdb.connect(str(data_dir / "published" / "lab2fab.duckdb"), read_only=True)
    q = con.execute("""SELECT m.path, q.line, q.rule_id, q.field, q.message_en, q.message_vi, q.original_values
                       FROM ops.quarantine q JOIN ops.manifest m USING (file_id) ORDER BY ALL""").df()
    hcmut = q[q.path.str.contains("HCMUT")].iloc[0]
    assert (hcmut.line, hcmut.rule_id, hcmut.field) == (10, "ENR.gender.present", "gender")
    assert json.loads(hcmut.original_values)["gender"].startswith("=HYPERLINK")
    fpt = q[q.path.str.contains("FPT")].iloc[0]
    assert (fpt.line, fpt.rule_id, json.loads(fpt.original_values)["intake_year"]) == (9, "ENR.intake_year.present", "K66")
    assert fpt.message_vi and fpt.message_en


def test_no_name_national_id_or_birth_date_reaches_the_warehouse(corpus_run):
    data_dir, *_ = corpus_run
    needles = {s.full_name for s in C.STUDENTS} | set(C.WESTERN_NAMES) | {s.national_id for s in C.STUDENTS} | \
        {s.birth_date.strftime("%d/%m/%Y") for s in C.STUDENTS} | {s.birth_date.isoformat() for s in C.STUDENTS}
    needles |= {s.student_id for s in C.STUDENTS}  # student numbers are pseudonymised too
    for db in (data_dir / "published" / "lab2fab.duckdb", data_dir / "warehouse" / "lab2fab.duckdb"):
        con = duckdb.connect(str(db), read_only=True)
        try:
            tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
            for schema, table in tables:
                text = con.execute(f'SELECT * FROM "{schema}"."{table}"').df().astype(str).to_csv()
                found = [n for n in needles if n in text]
                assert not found, (schema, table, found[:3])
        finally:
            con.close()


def test_feedback_per_university_and_term(corpus_run, tmp_path):
    data_dir, *_ = corpus_run
    con = duckdb.connect(str(data_dir / "published" / "lab2fab.duckdb"), read_only=True)
    n = feedback.write_feedback(con, tmp_path)
    assert n == 3 * len(list(tmp_path.glob("*/*.json")))
    doc = lambda code, term=TERM: json.loads((tmp_path / code / f"{term}.json").read_text(encoding="utf-8"))  # noqa: E731
    assert doc("HUST")["status"] == "accepted" and doc("HUST")["reasons"][0]["rule_id"] == "ING.file.extra_columns"
    hcmut = doc("HCMUT")
    assert hcmut["status"] == "accepted_with_issues"  # rows quarantined (marts.submission_status says the same)
    reason = next(r for r in hcmut["reasons"] if r["rule_id"] == "ENR.gender.present")
    assert (reason["file"], reason["line"], reason["field"], reason["severity"]) == ("ds_sinhvien.csv", 10, "gender", "error")
    assert reason["message_vi"].startswith("Thiếu giới tính") and reason["original_values"]["gender"].startswith("'=")
    rows = (tmp_path / "HCMUT" / f"{TERM}.csv").read_text(encoding="utf-8-sig")
    cells = [c for r in csv.reader(rows.splitlines()) for c in r]
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)
    assert any(c.startswith("'=HYPERLINK") or '"gender": "\'=HYPERLINK' in c for c in cells)
    dut = doc("DUT")
    assert dut["status"] == "rejected" and dut["file_in_use"] is None
    assert {f["status"] for f in dut["files"]} == {"rejected"} and len(dut["files"]) == 8
    assert dut["reasons"][0]["rule_id"].startswith("ING.file.") and dut["reasons"][0]["message_vi"]
    # the rule is the one stored beside the reason, and its Vietnamese text is the catalogue's
    assert dut["reasons"][0]["rule_id"] == dut["latest_file"]["reason_rule_id"]
    assert dut["reasons"][0]["message_vi"] == INGEST_RULES[dut["reasons"][0]["rule_id"]].message_vi
    cmc = doc("CMC")
    assert cmc["status"] == "accepted" and [f["status"] for f in cmc["files"]] == ["loaded", "superseded"]
    assert doc("PHENIKAA")["status"] == "accepted"
    tlu = doc("TLU")  # tricks are listed, but lock files and links do not hide the good file's result
    assert any(f["status"] == "rejected" for f in tlu["files"]) and tlu["file_in_use"]["file"] == "good.csv"
    md = (tmp_path / "HCMUT" / f"{TERM}.md").read_text(encoding="utf-8")
    assert "Accepted, some rows quarantined / Đã chấp nhận, một số dòng bị cách ly" in md and "ENR.gender.present" in md
    assert "| 10 | gender |" in md
    mtime = (tmp_path / "HUST" / f"{TERM}.json").stat().st_mtime_ns
    (tmp_path / "HUST" / "2019-1.json").write_text("{}")  # stale: a term no longer in the manifest
    assert feedback.write_feedback(con, tmp_path) == n
    assert (tmp_path / "HUST" / f"{TERM}.json").stat().st_mtime_ns == mtime  # unchanged files are not rewritten
    assert not (tmp_path / "HUST" / "2019-1.json").exists()


def test_a_late_submission_for_an_old_term_flows_downstream(corpus_run):
    from flows.pipeline import pipeline

    data_dir, _, _, base = corpus_run
    late = data_dir / "landing" / "enrollment" / "VNUA" / "2022-1" / "bo_sung_2022.csv"
    C.write_csv(late, C.records(_late_students()), mtime=1_730_000_000.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAB2FAB_REFERENCE_DIR", str(base / "reference"))
        result = pipeline(data_dir=str(data_dir))
    assert result["files_new"] == 1
    m = manifest(data_dir)
    row = m.loc["enrollment/VNUA/2022-1/bo_sung_2022.csv"]
    assert row.status == "loaded" and row.rows_loaded == len(_late_students())
    con = duckdb.connect(str(data_dir / "published" / "lab2fab.duckdb"), read_only=True)
    students = con.execute("""SELECT sum(students) FROM marts.enrollment_by_term
                              WHERE term = '2022-1' AND university_code = 'VNUA'""").fetchone()[0]
    assert students == len(_late_students())
    status = con.execute("""SELECT submission_status FROM marts.submission_status
                            WHERE university_code = 'VNUA' AND term = '2022-1'""").fetchone()[0]
    assert status.startswith("accepted")


def test_a_placement_row_without_its_university_code_is_quarantined_not_the_file(tmp_path):
    """A student number without its university code cannot be pseudonymised (the key is
    HMAC(university_code:student_id)): that row has no student key and is quarantined with
    PLC.university_code.present; it no longer refuses the whole file as an internal error."""
    from transforms.contract import suites as contract
    from transforms.ingest import stage as ing
    from transforms.contract import checks
    from transforms.warehouse import db as warehouse

    rows = [["Round", "University code", "MSSV", "Host code", "Track", "Outcome", "Semiconductor job"],
            ["2025H2", "HUST", "20210001", "KR-DBH", "fabrication", "completed", "yes"],
            ["2025H2", "  ", "20210002", "KR-DBH", "fabrication", "completed", "yes"],  # line 3: no university
            ["2025H2", " hust ", "20210003", "KR-DBH", "fabrication", "withdrew", ""],
            ["2025H2", "UET", "20210004", "KR-DBH", "fabrication", "completed", "no"],
            ["2025H2", "", "", "KR-DBH", "fabrication", "completed", "no"],  # line 6: neither
            ["2025H2", "UET", "", "KR-DBH", "fabrication", "completed", "no"]]  # line 7: no student number
    data_dir = tmp_path / "data"
    rel = "placements/2025H2/dot_2025H2.csv"
    C.write_csv(data_dir / "landing" / rel, rows, mtime=1_760_000_000.0)
    con = warehouse.connect(data_dir / "warehouse" / "lab2fab.duckdb")
    try:
        work = data_dir / "work" / "r1"
        work.mkdir(parents=True)
        known = ing.KnownFiles.from_warehouse(con)
        subs = ing.stage_submissions(ing.new_files(landing.scan(data_dir / "landing"), known), known, work, key=KEY,
                                     reference_dir=REF)
        assert [(s.landed.relpath, s.status, s.reason, s.rows_read) for s in subs] == [(rel, "staged", None, 6)]
        staged = pd.read_parquet(subs[0].staged).set_index("line")
        assert staged.loc[3, "university_code"] is pd.NA and staged.loc[3, "student_key"] is pd.NA
        ing.validate_staged(subs, work, contract.ContractReference.from_dir(REF), con=con)
        totals = ing.load_batch(con, subs, work, "r1", overrides=checks.read_overrides([]))
        assert (totals["rows_read"], totals["rows_loaded"], totals["rows_quarantined"]) == (6, 3, 3)
        m = con.execute("""SELECT path, status, reason, rows_read, rows_loaded, rows_quarantined
                           FROM ops.manifest""").fetchall()
        assert m == [(rel, "loaded", None, 6, 3, 3)]
        q = con.execute("""SELECT m.path, q.line, q.rule_id, q.field, q.message_en, q.original_values
                           FROM ops.quarantine q JOIN ops.manifest m USING (file_id) ORDER BY q.line, q.rule_id""").df()
        assert set(q.line) == {3, 6, 7}
        row = q[(q.line == 3) & (q.rule_id == "PLC.university_code.present")]
        assert len(row) == 1 and row.iloc[0].path == rel and row.iloc[0].field == "university_code"
        assert row.iloc[0].message_en == "University code is missing."
        assert json.loads(row.iloc[0].original_values)["host_code"] == "KR-DBH"  # the row is recognisable
        # one reason each: without its university a student number cannot be keyed, so it is not
        # also reported missing (line 3 has one); a number really missing is (line 7)
        assert set(q[q.line == 3].rule_id) == set(q[q.line == 6].rule_id) == {"PLC.university_code.present"}
        assert set(q[q.line == 7].rule_id) == {"PLC.student_key.present"}
        loaded = con.execute("SELECT university_code, student_key FROM staging.placements ORDER BY ALL").fetchall()
        expected = [(u, pseudonymise(KEY, pd.Series([sid], dtype="string"), u)[0])
                    for u, sid in (("HUST", "20210001"), ("HUST", "20210003"), ("UET", "20210004"))]
        assert loaded == sorted(expected)
    finally:
        con.close()
