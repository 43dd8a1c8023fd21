"""A deterministic national demo collection: what the university offices and the programme office send.

`generate_demo` writes, for every participating university and every term, the enrollment file its
office would upload, in that office's own habits (CSV or XLSX, English or Vietnamese, title rows,
stray columns, its own file names), the placement records of the pilot rounds, and a handful of
deliberate mistakes. The answer key goes to `demo_truth.json`, so tests and the pipeline's own
checks know what should be found. Everything follows from `seed`: two runs with the same arguments
give byte-identical files and modification times.
"""
from __future__ import annotations

import json
import os
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.writer.excel import ExcelWriter

from transforms.vocabulary import parse_round, parse_term, round_index, term_index, terms_between

STUDENTS_PER_TERM = 30_000  # national, at scale 1, in the middle of the window
NATIONAL_SCALE = 16  # scale at which the demo is about national size (judgment: no national head count is published)
CONTINUE_SHARE = 0.3  # master's entrants who hold the same university's first degree of the June before (judgment)
STOCK_PER_INTAKE = 3.35  # students on the rolls per yearly intake (measured on the default run)
INTAKE_GROWTH = 1.07  # the programme is scaling up
MISTAKE_RATE = 0.005
# Row-level mistakes and the (column, value) each plants; a duplicate row repeats a row instead.
MISTAKES = {"unknown_programme": ("programme_code", "7999999"), "study_year_12": ("study_year", 12),
            "empty_student_id": ("student_id", ""), "gender_unknown": ("gender", "?"),
            "future_intake": ("intake_year", None), "duplicate_row": (None, None)}
PILOT_ROUNDS = ("2025H1", "2025H2", "2026H1")
ICT = timezone(timedelta(hours=7))
GOLDEN = (5 ** 0.5 - 1) / 2

# Per degree: length in years, and the chance over the whole programme of dropping out or transferring.
DEGREE_YEARS = {"bachelor": 4, "engineer": 5, "master": 2, "doctor": 4}
DROPOUT = {"bachelor": 0.12, "engineer": 0.14, "master": 0.10, "doctor": 0.18}
TRANSFER = {"bachelor": 0.015, "engineer": 0.015, "master": 0.0, "doctor": 0.0}
LEAVE, EXTENSION = 0.06, 0.15  # chance of one leave (1-2 terms); of finishing a year late
# Age at intake: the usual age, plus a geometric number of years late with this parameter.
INTAKE_AGE = {"bachelor": 18, "engineer": 18, "master": 22, "doctor": 25}
ON_TIME = {"bachelor": 0.8, "engineer": 0.8, "master": 0.35, "doctor": 0.25}
MALE_SHARE = {"design": 0.80, "fabrication": 0.65, "packaging_testing": 0.70, "equipment": 0.85}


def _nfc(text: str) -> str:
    """Vietnamese text as offices' software writes it: precomposed (NFC)."""
    return unicodedata.normalize("NFC", text)


FAMILY = dict(zip(_nfc("Nguyễn Trần Lê Phạm Hoàng Huỳnh Phan Vũ Võ Đặng Bùi Đỗ Hồ Ngô Dương Lý Trương Đinh Mai "
                       "Trịnh Lâm Đoàn Cao Hà Lưu Tạ Phùng Châu").split(),
                  (38, 11, 9.5, 7, 3, 2, 4.5, 2, 2, 2.1, 2, 1.4, 1.3, 1.3, 1, 0.5, 0.9, 0.7, 0.4,
                   0.5, 0.4, 0.4, 0.3, 0.3, 0.2, 0.2, 0.2, 0.2)))
MIDDLE = {"M": _nfc("Văn Đức Minh Quốc Hữu Thành Công Hoàng Gia Tuấn Đình Quang Xuân Anh Trọng Thế Mạnh Tiến Nhật "
                    "Việt Bá Duy Ngọc Phúc").split(),
          "F": _nfc("Thị Ngọc Thu Thanh Phương Minh Khánh Bảo Hồng Thùy Hải Kim Mai Hoài Diệu Như Bích Mỹ Quỳnh "
                    "Tuyết Lan Hà").split()}
GIVEN = {"M": _nfc("Anh Bảo Dũng Duy Đạt Hiếu Hùng Huy Khang Khoa Long Minh Nam Phúc Quân Quang Sơn Tài Thắng "
                   "Trung Tú Tuấn Việt Vinh Kiên Lâm Nghĩa Phong Thịnh Hoàng An Bình Cường Định Đông Hải Hậu Hiển "
                   "Hiệp Hòa Khánh Kiệt Lộc Mạnh Nhân Phát Tâm Thái Thiện Thông Tiến Toàn Trí Trọng Tùng Vũ Khôi "
                   "Đăng").split(),
         "F": _nfc("Anh Chi Giang Hà Hằng Hạnh Hương Huyền Lan Linh Ly Mai My Ngân Ngọc Nhung Phương Quỳnh Thảo "
                   "Trang Trâm Uyên Vy Yến Hoa Diệp Nhi Thư Tâm Ánh Châm Dung Đào Hiền Hồng Khuê Loan Nga Nguyệt "
                   "Nhàn Oanh Phượng Quyên Thủy Thương Tiên Trinh Vân Xuân Hân Khánh Hoài Duyên").split()}
# CCCD province codes (pre-2025 provinces); the two big cities send more students.
PROVINCES = np.array(("001 002 004 006 008 010 011 012 014 015 017 019 020 022 024 025 026 027 030 031 033 034 035 "
                      "036 037 038 040 042 044 045 046 048 049 051 052 054 056 058 060 062 064 066 067 068 070 072 "
                      "074 075 077 079 080 082 083 084 086 087 089 091 092 093 094 095 096").split()).astype(int)
PROVINCE_P = np.where(np.isin(PROVINCES, (1, 79)), 8.0, np.where(np.isin(PROVINCES, (31, 38, 40, 74, 75)), 2.5, 1.0))
PROVINCE_P /= PROVINCE_P.sum()

CODES = ("M", "F", "bachelor", "engineer", "master", "doctor", "studying", "graduated", "dropped_out", "on_leave",
         "transferred")
EN_VALUES = dict(zip(CODES, ("Male", "Female", "Bachelor", "Engineer", "Master", "Doctor", "studying", "graduated",
                             "dropped out", "on leave", "transferred")))
VI_VALUES = dict(zip(CODES, _nfc("Nam,Nữ,Cử nhân,Kỹ sư,Thạc sĩ,Tiến sĩ,Đang học,Đã tốt nghiệp,Thôi học,Bảo lưu,"
                                 "Chuyển trường").split(",")))
CANON = ("student_id", "national_id", "full_name", "birth_date", "gender", "programme_code", "degree_level",
         "intake_year", "study_year", "status", "gpa")
VI_HEADERS = dict(zip(CANON, _nfc("Mã sinh viên,Số CCCD,Họ và tên,Ngày sinh,Giới tính,Mã ngành,Trình độ,"
                                   "Năm nhập học,Năm thứ,Tình trạng,Điểm TB").split(",")))
VI_EXTRA = {"note": _nfc("Ghi chú"), "class": _nfc("Lớp"), "row": "STT"}


@dataclass(frozen=True)
class Style:
    """One office habit: headers, value labels, file format and file names."""

    headers: dict[str, str]  # canonical column -> header
    values: dict[str, str]  # canonical gender / degree / status -> label
    extra: dict[str, str]  # kind of unknown column -> header
    names: tuple[str, ...]  # file-name templates: {y}, {y1}, {s}, {term}, {code}
    sep: str = ","
    encoding: str = "utf-8"
    eol: str = "\r\n"
    date_format: str = "%d/%m/%Y"
    gpa_scale: int = 4
    xlsx: bool = False


STYLES = {
    "english_csv": Style(
        dict(zip(CANON, ("Student ID", "National ID", "Full name", "Date of birth", "Gender", "Programme code",
                         "Degree level", "Intake year", "Study year", "Status", "GPA"))),
        EN_VALUES, {"note": "Notes", "class": "Class", "row": "No."},
        ("enrollment_{y}_{s}.csv", "{code}_students_{term}.csv", "Semiconductor students {y}-{y1} semester {s}.csv"),
        eol="\n", date_format="%Y-%m-%d"),
    "excel_csv_vi": Style(
        VI_HEADERS, VI_VALUES, VI_EXTRA,
        ("DS_SV_HK{s}_{y}-{y1}.csv", "bao cao hoc ky.csv", _nfc("Danh sách sinh viên HK{s}.csv")),
        encoding="utf-8-sig", gpa_scale=10),
    "semicolon_csv": Style(
        dict(zip(CANON, "ma_sv cccd ho_ten ngay_sinh gioi_tinh ma_nganh trinh_do nam_nhap_hoc nam_thu tinh_trang "
                        "diem_tb".split())),
        VI_VALUES, {"note": "ghi_chu", "class": "lop", "row": "stt"},
        ("sv_{code}_{y}{s}.csv", "export_sinhvien_hk{s}_{y}_{y1}.csv"), sep=";"),
    "xlsx_report": Style(
        VI_HEADERS, VI_VALUES, VI_EXTRA,
        ("DS_SV_HK{s}_{y}-{y1}.xlsx", _nfc("Báo cáo sinh viên bán dẫn HK{s} {y}-{y1}.xlsx"),
         "{code}_BC_HK{s}_{y}.xlsx"), gpa_scale=10, xlsx=True),
}


@dataclass
class Office:
    """A participating university and its office's stable habits."""

    code: str
    name: str
    ordinal: int  # position among all participating universities, for national-id uniqueness
    style: str
    template: str
    extra: str | None
    columns: list[str]
    id_format: str
    title_rows: int
    programmes: pd.DataFrame  # offered: programme_code, track, degree, semesters, share
    intake: float  # national-scale yearly intake in the middle of the window
    rng: np.random.Generator  # seeded by the code: its students do not depend on which others are generated


def _offices(reference_dir: Path, seed: int) -> list[Office]:
    """All participating universities, in an order that mixes big and small ones."""
    unis = pd.read_csv(reference_dir / "universities.csv", dtype=str, keep_default_na=False)
    unis = unis[unis["participates"].str.strip().str.lower().isin({"true", "1", "yes"})]
    unis = unis.sort_values("university_code").reset_index(drop=True)
    # Heavy-tailed sizes: a few universities carry tens of thousands of students at national scale.
    weight = np.random.default_rng([seed, 1]).lognormal(0.0, 1.8, len(unis))
    weight = np.maximum(weight / (1 + weight / 30), 0.1)  # soften the very top; the smallest still runs a class
    weight /= weight.sum()
    rank = weight.argsort().argsort()
    # Ordering by the golden-ratio fractional part of the size rank strides across sizes, so any prefix mixes both ends.
    order = np.argsort((rank * GOLDEN) % 1.0, kind="stable")
    cat = pd.read_csv(reference_dir / "programmes.csv", dtype=str, keep_default_na=False)
    cat["level"] = cat["level"].str.strip().str.lower()
    offices = []
    for pos, i in enumerate(order):
        code = unis.at[i, "university_code"]
        rng = np.random.default_rng([seed, zlib.crc32(code.encode())])
        style = list(STYLES)[pos % len(STYLES)]
        q = rank[i] / max(len(unis) - 1, 1)
        offices.append(Office(
            code=code, name=unis.at[i, "name_vi"] or code, ordinal=int(i), style=style,
            template=str(rng.choice(STYLES[style].names)),
            extra=[None, None, "note", "class", "row"][rng.integers(5)],
            columns=list(CANON) if rng.random() < 0.6 else list(rng.permutation(CANON)),
            id_format=str(rng.choice(["year", "letter", "padded"])), title_rows=int(rng.integers(1, 3)),
            programmes=_offer(cat, q, rng), intake=STUDENTS_PER_TERM * weight[i] / STOCK_PER_INTAKE, rng=rng))
    return offices


def _offer(cat: pd.DataFrame, q: float, rng: np.random.Generator) -> pd.DataFrame:
    """A stable subset of the catalogue: bigger universities offer more majors, and graduate programmes."""
    ug, ma, dr = (cat[cat["level"] == lv] for lv in ("undergraduate", "master", "doctor"))
    majors = ug.sample(min(len(ug), 1 + int(q * 7)), random_state=rng)
    # Technical universities run many 752xxxx (Kỹ thuật) majors as 5-year engineer programmes.
    engineer = majors["programme_code"].str.startswith("752") & (rng.random(len(majors)) < 0.6)
    picks = [majors.assign(degree=np.where(engineer, "engineer", "bachelor"),
                           share=rng.dirichlet(np.full(len(majors), 2.0)))]
    for level, frame, above, share in (("master", ma, 0.45, 0.16), ("doctor", dr, 0.8, 0.02)):
        if q > above and len(frame):
            pick = frame.sample(min(len(frame), 1 + int((q - above) * 8)), random_state=rng)
            picks.append(pick.assign(degree=level, share=share / len(pick)))
    offered = pd.concat(picks, ignore_index=True).sort_values("programme_code", ignore_index=True)
    offered["share"] /= offered["share"].sum()
    return offered.assign(semesters=offered["degree"].map(DEGREE_YEARS) * 2)


def _simulate(office: Office, first: int, last: int, scale: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every student of one university with a row in terms [first, last] (term indices), and those rows."""
    rng, progs = office.rng, office.programmes
    years = np.arange(first // 2 - 7, last // 2 + 1)  # the oldest cohorts are still on the rolls at `first`
    mid = (first + last) / 4
    lam = scale * office.intake * INTAKE_GROWTH ** (years - mid)[:, None] * progs["share"].to_numpy()[None, :]
    counts = rng.poisson(lam).ravel()
    intake = np.repeat(np.repeat(years, len(progs)), counts)
    prog = np.repeat(np.tile(np.arange(len(progs)), len(years)), counts)
    serial = np.arange(len(intake))
    seq = serial - np.searchsorted(intake, intake) + 1  # number within the cohort
    n_all, degree = len(intake), progs["degree"].to_numpy()[prog]
    sems = progs["semesters"].to_numpy()[prog]
    leave = np.where(rng.random(n_all) < LEAVE, rng.integers(1, 3, n_all), 0)
    leave_at = rng.integers(1, np.maximum(sems - 1, 2))
    k_grad = sems - 1 + leave + 2 * (rng.random(n_all) < EXTENSION)
    u = rng.random(n_all)
    p_drop = pd.Series(degree).map(DROPOUT).to_numpy()
    drop, moved = u < p_drop, (u >= p_drop) & (u < p_drop + pd.Series(degree).map(TRANSFER).to_numpy())
    k_end = np.where(drop | moved, (k_grad * rng.random(n_all) ** 1.5).astype(int), k_grad)  # leavers leave early
    end_status = np.where(drop, "dropped_out", np.where(moved, "transferred", "graduated"))
    start = 2 * intake
    lo, hi = np.maximum(start, first), np.minimum(start + k_end, last)
    keep = hi >= lo
    intake, prog, serial, seq, leave, leave_at, k_end, end_status, lo, hi, drop = (
        a[keep] for a in (intake, prog, serial, seq, leave, leave_at, k_end, end_status, lo, hi, drop))
    students = _people(office, progs.iloc[prog], intake, serial, seq, drop)
    n_rows = hi - lo + 1
    stu = np.repeat(np.arange(len(students)), n_rows)
    t = np.repeat(lo, n_rows) + np.arange(n_rows.sum()) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    k = t - 2 * intake[stu]  # terms since entry
    on_leave = (k >= leave_at[stu]) & (k < leave_at[stu] + leave[stu])
    status = np.where(k == k_end[stu], end_status[stu], np.where(on_leave, "on_leave", "studying"))
    # A year's leave holds the study year back; a single term's does not (study years turn over each September).
    held = np.clip(k - leave_at[stu], 0, np.where(leave[stu] == 2, 2, 0))
    gpa = np.clip(students["gpa_base"].to_numpy()[stu] + rng.normal(0, 0.05, len(stu)), 0, 4).round(2)
    rows = pd.DataFrame({"stu": stu, "t": t, "study_year": (k - held) // 2 + 1, "status": status,
                         "gpa": np.where(k == 0, np.nan, gpa)})  # no grades yet in the first term
    return students, rows.iloc[np.argsort(t, kind="stable")].reset_index(drop=True)


def _continuers(students: pd.DataFrame, rows: pd.DataFrame, rng: np.random.Generator) -> int:
    """Some master's entrants are the university's own bachelors/engineers of the June before: they
    get that graduate's national id, name, birth date and gender (one person, two degrees), so the
    model's person count (person_key) is exercised. Returns how many."""
    g = rows[(rows["status"] == "graduated") & (rows["t"] % 2 == 1)]      # June graduations
    g = g[np.isin(students["degree_level"].to_numpy()[g["stu"].to_numpy()], ["bachelor", "engineer"])]
    first = students.iloc[g["stu"].to_numpy()].assign(year=g["t"].to_numpy() // 2 + 1)
    masters = students.index[(students["degree_level"] == "master").to_numpy()]
    n = 0
    for year, pool in first.groupby("year"):
        cand = masters[(students.loc[masters, "intake_year"] == year).to_numpy()]
        take = cand[rng.random(len(cand)) < CONTINUE_SHARE][:len(pool)]
        src = pool.iloc[rng.permutation(len(pool))[:len(take)]]
        for c in ("national_id", "full_name", "birth_date", "gender"):
            students.loc[take, c] = src[c].to_numpy()
        n += len(take)
    return n


def _people(office: Office, progs: pd.DataFrame, intake, serial, seq, drop) -> pd.DataFrame:
    """Who the students are: ids, names, birth dates and citizen ids that look Vietnamese."""
    rng, n = office.rng, len(intake)
    degree, track, code = (progs[c].to_numpy() for c in ("degree", "track", "programme_code"))
    male = rng.random(n) < pd.Series(track).map(MALE_SHARE).fillna(0.75).to_numpy()
    name = (rng.choice(list(FAMILY), n, p=np.array(list(FAMILY.values())) / sum(FAMILY.values())).astype(object)
            + " " + np.where(male, rng.choice(MIDDLE["M"], n), rng.choice(MIDDLE["F"], n)).astype(object)
            + " " + np.where(male, rng.choice(GIVEN["M"], n), rng.choice(GIVEN["F"], n)).astype(object))
    late_years = np.minimum(rng.geometric(pd.Series(degree).map(ON_TIME).to_numpy()) - 1, 12)
    born = intake - pd.Series(degree).map(INTAKE_AGE).to_numpy() - late_years
    birth = (born - 1970).astype("datetime64[Y]").astype("datetime64[D]") + rng.integers(0, 365, n)
    # CCCD: province, gender+century digit, birth year, 6 digits. The 6 digits are a bijection of
    # (university, rank within the prefix), so ids are unique nationally, not just probably unique.
    prefix = rng.choice(PROVINCES, n, p=PROVINCE_P) * 1000 + ((~male) + 2 * (born >= 2000)) * 100 + born % 100
    rank = pd.Series(prefix).groupby(prefix).cumcount().to_numpy()
    room = 1_000_000 // 256
    if rank.max(initial=0) >= room or office.ordinal >= 256:
        raise ValueError("too many students or universities for unique demo national ids")
    national = prefix * 1_000_000 + ((office.ordinal * room + rank) * 7919 + prefix * 104729) % 1_000_000
    text = lambda a, width=0: pd.Series(a).astype(str).str.zfill(width)  # noqa: E731
    letter = np.where(degree == "master", "M", np.where(degree == "doctor", "D", "B"))
    sid = {"year": text(intake * 100_000 + seq), "letter": letter + text(intake % 100, 2) + text(seq, 5),
           "padded": text(serial + 1, 8)}[office.id_format]  # leading zeros: a reason ids must stay text
    return pd.DataFrame({
        "student_id": sid, "national_id": text(national, 12), "full_name": name, "birth_date": pd.to_datetime(birth),
        "gender": np.where(male, "M", "F"), "programme_code": code, "degree_level": degree, "intake_year": intake,
        "track": track, "class": "K" + text(intake % 100) + "-" + pd.Series(code).str[3:],
        "gpa_base": np.clip(rng.normal(2.9, 0.4, n) - 0.5 * drop, 1.2, 3.95)})  # who drops out often struggled


def _inject(frame: pd.DataFrame, n: int, first_kind: int, year: int, rng: np.random.Generator):
    """Put n row-level mistakes in distinct rows, kinds in rotation so that every kind shows up."""
    at = rng.choice(len(frame), min(n, len(frame)), replace=False)
    kinds = [list(MISTAKES)[(first_kind + j) % len(MISTAKES)] for j in range(len(at))]
    frame = frame.copy()
    for row, kind in zip(at, kinds):
        column, value = MISTAKES[kind]
        if column:
            frame.iloc[row, frame.columns.get_loc(column)] = year + 2 if kind == "future_intake" else value
    dup = np.array([row for row, kind in zip(at, kinds) if kind == "duplicate_row"], dtype=int)
    order = np.sort(np.concatenate([np.arange(len(frame)), dup]), kind="stable")  # the copy right below the original
    return frame.iloc[order].reset_index(drop=True), kinds


def _render(frame: pd.DataFrame, office: Office, *, drop: str | None = None) -> pd.DataFrame:
    """The canonical rows as this office writes them."""
    style = STYLES[office.style]
    out = {}
    for col in office.columns:
        if col == drop:
            continue
        v = frame[col]
        if col in ("gender", "degree_level", "status"):
            v = v.map(style.values).fillna(v)
        elif col == "birth_date":
            v = v.dt.date if style.xlsx else v.dt.strftime(style.date_format)
        elif col == "gpa":
            v = (v * style.gpa_scale / 4).round(2)
        elif col == "programme_code" and style.xlsx:
            v = pd.to_numeric(v)  # Excel turns codes into numbers; student and citizen ids stay text
        out[style.headers[col]] = v
    table = pd.DataFrame(out)
    if office.extra == "row":
        table.insert(0, style.extra["row"], np.arange(1, len(table) + 1))
    elif office.extra == "class":
        table[style.extra["class"]] = frame["class"]
    elif office.extra == "note":
        table[style.extra["note"]] = np.where(frame["status"] == "on_leave", VI_VALUES["on_leave"], "")
    return table


class _StampedZip(zipfile.ZipFile):
    """openpyxl stamps archive members with the current time; a fixed stamp keeps reruns byte-identical."""

    def writestr(self, name, data, *args, **kwargs):
        if not isinstance(name, zipfile.ZipInfo):
            name = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            name.compress_type = zipfile.ZIP_DEFLATED
        super().writestr(name, data, *args, **kwargs)

    def write(self, filename, arcname=None, *args, **kwargs):
        self.writestr(arcname, Path(filename).read_bytes())


def _write(path: Path, table: pd.DataFrame, office: Office, term: str, mtime: float) -> None:
    style = STYLES[office.style]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not style.xlsx:
        table.to_csv(path, sep=style.sep, index=False, encoding=style.encoding, lineterminator=style.eol)
    else:
        y, s = parse_term(term)
        wb = Workbook(write_only=True)
        stamp = datetime.fromtimestamp(mtime, timezone.utc).replace(tzinfo=None)
        wb.properties.created = wb.properties.modified = stamp  # openpyxl would write "now"
        ws = wb.create_sheet("Danh sach SV")
        titles = [_nfc(f"BÁO CÁO DANH SÁCH SINH VIÊN – HỌC KỲ {s} NĂM HỌC {y}–{y + 1}"),
                  _nfc(f"Đơn vị: {office.name}")]
        for title in titles[:office.title_rows]:
            ws.append([title])
        ws.append(list(table.columns))
        columns = []
        for name in table.columns:
            values = table[name].astype(object).where(table[name].notna(), None).tolist()
            if name == style.headers["birth_date"]:
                values = [_date_cell(ws, v) for v in values]
            columns.append(values)
        for row in zip(*columns):
            ws.append(row)
        with _StampedZip(path, "w", zipfile.ZIP_DEFLATED) as archive:
            ExcelWriter(wb, archive).save()
    os.utime(path, (mtime, mtime))


def _date_cell(ws, value: date | None):
    cell = WriteOnlyCell(ws, value=value)
    cell.number_format = "dd/mm/yyyy"
    return cell


def _received(term: str, rng: np.random.Generator) -> float:
    """Upload time: a few weeks after the term starts, during office hours (Vietnam time)."""
    y, s = parse_term(term)
    start = datetime(y, 9, 5, tzinfo=ICT) if s == 1 else datetime(y + 1, 2, 10, tzinfo=ICT)
    delay = timedelta(days=int(rng.integers(14, 56)), seconds=int(rng.integers(8 * 3600, 17 * 3600)))
    return (start + delay).timestamp()


def pilot_rounds(last_term: str, available) -> list[str]:
    """The pilot rounds over by the end of `last_term` (a round ends in June or December)."""
    y, s = parse_term(last_term)
    term_end = (y + 1) * 12 + (1 if s == 1 else 6)
    return [r for r in PILOT_ROUNDS if r in set(available)
            and parse_round(r)[0] * 12 + 6 * parse_round(r)[1] <= term_end]


def _placements(graduates: pd.DataFrame, slots: pd.DataFrame, rounds: list[str], seed: int) -> dict[str, pd.DataFrame]:
    """Fill each round's host slots from graduates first eligible for it or still waiting from the year before."""
    rng, placed, out = np.random.default_rng([seed, 2]), set(), {}
    for rnd in rounds:
        # A student finishing in term index i is first eligible for round index i + 2 (DATA_CONTRACT).
        r = round_index(rnd)
        pool = graduates[graduates["t"].between(r - 4, r - 2)]
        rows = []
        for line in slots[slots["round"] == rnd].sort_values(["host_code", "track"]).itertuples():
            free = pool[(pool["track"] == line.track) & ~pool["key"].isin(placed)]
            take = free.iloc[np.sort(rng.choice(len(free), min(int(line.slots), len(free)), replace=False))]
            placed.update(take["key"])
            rows.append(take.assign(host_code=line.host_code))
        chosen = pd.concat(rows, ignore_index=True) if rows else pool.head(0).assign(host_code="")
        done = rng.random(len(chosen)) < 0.9
        job = np.where(rng.random(len(chosen)) < 0.75, "yes", "no")
        out[rnd] = pd.DataFrame({"round": rnd, "university_code": chosen["university_code"],
                                 "student_id": chosen["student_id"], "host_code": chosen["host_code"],
                                 "track": chosen["track"], "outcome": np.where(done, "completed", "withdrew"),
                                 "semiconductor_job": np.where(done, job, "")})
    return out


def generate_demo(landing_dir: Path, reference_dir: Path, *, seed: int = 20261128, scale: float = 1.0,
                  universities: int | None = None, first_term: str = "2021-1", last_term: str = "2025-2",
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Write the demo collection under `landing_dir` and return (and save) its answer key.

    Keys: seed, scale, terms, universities (codes, in generation order), styles (code -> office style),
    files_written, rows_written (data rows of every enrollment file, the rejected, superseded and copied
    ones too), row_mistakes (per kind, in the files the pipeline should load), rejected_file,
    superseded_file, resubmitted_file, duplicate_file, duplicate_of, late_file (paths relative to
    `landing_dir`), placements (rows per round), students_per_term (true head count per term).
    """
    landing_dir, reference_dir = Path(landing_dir), Path(reference_dir)
    terms = terms_between(first_term, last_term)
    first, last = term_index(first_term), term_index(last_term)
    offices = _offices(reference_dir, seed)[:universities]
    slots = pd.read_csv(reference_dir / "host_slots.csv", dtype={"round": str, "host_code": str, "track": str})
    rounds = pilot_rounds(last_term, slots["round"])

    # The four special submissions, at distinct (university, term) places; the late one is for an old term.
    rng = np.random.default_rng([seed, 3])
    grid = [(o, t) for o in range(len(offices)) for t in range(len(terms))]
    late = grid[rng.choice([i for i, (_, t) in enumerate(grid) if t < max(1, len(terms) // 2)])]
    others = [grid[i] for i in rng.permutation(len(grid)) if grid[i] != late][:3]
    roles = dict(zip(others, ("rejected", "resubmitted", "duplicate"))) | {late: "late"}

    total, done = len(offices) * len(terms) + 2 + len(rounds), 0
    summary_files: dict[str, str] = {}
    mistakes = dict.fromkeys(MISTAKES, 0)
    rows_written, carry, next_kind, mtimes = 0, 0.0, 0, []  # rows_written: enrollment rows only
    per_term = dict.fromkeys(terms, 0)
    graduates = []
    continuers = 0

    def tick(rows: int) -> None:
        nonlocal done, rows_written
        rows_written, done = rows_written + rows, done + 1
        if progress:
            progress(done, total)

    def emit(rel: str, table: pd.DataFrame, office: Office, term: str, mtime: float) -> None:
        _write(landing_dir / rel, table, office, term, mtime)
        mtimes.append(mtime)
        tick(len(table))

    for oi, office in enumerate(offices):
        received = [_received(term, office.rng) for term in terms]  # drawn before sizes: scale-independent
        students, rows = _simulate(office, first, last, scale)
        continuers += _continuers(students, rows, np.random.default_rng([seed, office.ordinal, 7]))
        grads = rows[rows["status"] == "graduated"]
        graduates.append(students.iloc[grads["stu"]][["student_id", "track"]].assign(
            t=grads["t"].to_numpy(), university_code=office.code))
        bounds = np.searchsorted(rows["t"].to_numpy(), np.arange(first, last + 2))
        for ti, term in enumerate(terms):
            part = rows.iloc[bounds[ti]:bounds[ti + 1]]
            per_term[term] += len(part)
            frame = students.iloc[part["stu"]].reset_index(drop=True).assign(
                **{c: part[c].to_numpy() for c in ("study_year", "status", "gpa")})
            due = carry + MISTAKE_RATE * len(frame)
            frame, kinds = _inject(frame, int(due), next_kind, parse_term(term)[0], office.rng)
            carry, next_kind = due - int(due), next_kind + len(kinds)
            y, s = parse_term(term)
            name = office.template.format(y=y, y1=y + 1, s=s, term=term, code=office.code)
            rel = f"enrollment/{office.code}/{term}/{name}"
            role, when = roles.get((oi, ti)), received[ti]
            stem, ext = os.path.splitext(rel)
            if role == "rejected":
                emit(rel, _render(frame, office, drop="status"), office, term, when)
                summary_files["rejected_file"] = rel
                continue  # nothing of it is loaded, so its mistakes are not counted
            if role == "resubmitted":
                # The first upload lost ~40% of its rows; the office sent the full list two weeks later.
                emit(rel, _render(frame[office.rng.random(len(frame)) < 0.6], office), office, term, when)
                summary_files["superseded_file"], rel = rel, f"{stem}_v2{ext}"
                when += 14 * 86400
                summary_files["resubmitted_file"] = rel
            table = _render(frame, office)
            emit(rel, table, office, term, when)
            if role == "duplicate":
                copy = f"{stem} (1){ext}"
                (landing_dir / copy).write_bytes((landing_dir / rel).read_bytes())
                os.utime(landing_dir / copy, (when - 86400, when - 86400))
                summary_files |= {"duplicate_file": copy, "duplicate_of": rel}
                tick(len(table))
            if role == "late":
                summary_files["late_file"] = rel
            for kind in kinds:
                mistakes[kind] += 1

    # The late file arrives after everything else, whatever its term.
    late_time = max(mtimes) + 12 * 86400
    os.utime(landing_dir / summary_files["late_file"], (late_time, late_time))

    placements = _placements(pd.concat(graduates, ignore_index=True).assign(
        key=lambda g: g["university_code"] + ":" + g["student_id"]), slots, rounds, seed)
    for rnd, table in placements.items():
        path = landing_dir / "placements" / rnd / f"placements_{rnd}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False, lineterminator="\n")
        y, h = parse_round(rnd)
        when = datetime(y, 7, 20, tzinfo=ICT) if h == 1 else datetime(y + 1, 1, 20, tzinfo=ICT)
        os.utime(path, (when.timestamp(), when.timestamp()))
        tick(0)

    summary = {
        "seed": seed, "scale": scale, "terms": terms, "universities": [o.code for o in offices],
        "styles": {o.code: o.style for o in offices}, "files_written": done, "rows_written": rows_written,
        "row_mistakes": mistakes, **summary_files,
        "placements": {rnd: len(t) for rnd, t in placements.items()}, "students_per_term": per_term,
        # Share of national size (the model scales national targets and slots by it: docs/MODEL.md, "Scale").
        "national_fraction": scale * sum(o.intake for o in offices) * STOCK_PER_INTAKE / STUDENTS_PER_TERM
        / NATIONAL_SCALE,
        "continuers": continuers,
    }
    (landing_dir / "demo_truth.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                                 encoding="utf-8")
    return summary
