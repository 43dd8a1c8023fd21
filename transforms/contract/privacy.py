"""Personal data judged by content, not by header: one screen for every value kept past landing.

A university's file can hold anything under any header (national ids under a programme header, a
row shifted by an unquoted comma in a name, birth dates arriving as gender, names pulled into a
header band), so every value lab2fab keeps after the landing step (raw values kept for quarantine,
observed values, examples, GX results, feedback, extra column names, file-level reasons, logs and
artifacts) goes through :func:`mask_value` (one cell) or :func:`mask_text` (a text that may quote
cells). Whatever is shaped like personal data is replaced by a label, e.g. ``[national_id]``:

* a national id: 9 (CMND) or 12 (CCCD) digits, and any run of 8 or more digits (student numbers,
  ``yyyymmdd`` dates, ids Excel shortened), also in groups (``012 345 678 901``);
* a student number: letters and at least 5 digits in one token of 7 or more (``B21DCCN123``);
* a date in any common spelling (``17/05/2003``, ``2003-05-17``, ``17.5.03``, ``17 May 2003``,
  ``May 17, 2003``, ``17 tháng 5 năm 2003``), and a whole cell that is an Excel date serial;
* an email address and a phone number (Vietnamese mobiles and landlines, ``+84``/``0084``);
* a person's name: 2–5 words whose first (or last) is a common Vietnamese surname, with or
  without diacritics, NFC or NFD, and whose other words are common name syllables, or are all
  capitalised and shaped like Vietnamese syllables; a whole cell that is a capitalised surname
  alone (half of a split name).

The screen errs on the side of masking: a masked value costs the office one value in its feedback,
which still names the file, line, field and rule. The text is screened after NFKC and with format
characters (zero-width, bidi marks, soft hyphen) removed, so they cannot hide a value; a text
with nothing to mask is returned unchanged.
"""
from __future__ import annotations

import csv
import functools
import re
import unicodedata
from typing import Any


def fold(word: str) -> str:
    """Lower case without diacritics (đ -> d): 'Nguyễn', 'NGUYEN' and NFD 'Nguyễn' fold alike."""
    decomposed = unicodedata.normalize("NFD", word.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


# Common Vietnamese surnames (họ) and name syllables (tên đệm, tên), from the usual lists of the most
# frequent ones; "Mã" and "Ma" are left out on purpose: as words they are everywhere in headers.
SURNAMES = frozenset(fold(w) for w in """
Nguyễn Trần Lê Phạm Hoàng Huỳnh Phan Vũ Võ Đặng Bùi Đỗ Hồ Ngô Dương Lý Trương Đinh Mai Trịnh Lâm Đoàn Cao
Hà Lưu Tạ Phùng Châu Đào Lương Vương Tô Tăng Triệu Thái Quách Kiều Lại Chu Mạc Khúc Hứa Từ Diệp Giang Kim
La Lục Mẫn Ninh Phó Sầm Tôn Trang Ông Yên Đàm Đồng Đường Ứng Cù Cung Khương Hàn Hầu Khổng Lò Nghiêm Âu
Bạch Doãn Thân Tống Viên Quan Hoa Bế Nông Lường Tiêu Trình Ưng Cổ Đậu Nhữ Quản Thạch Tiết Sái Thiều Kha
Lã Lạc Lữ Mông Phí Thi Nhan Văn Vi Hoàng Quang Chung Cấn Giáp Lạng Mẫn Ngọ Phương Thang
""".split())
SYLLABLES = frozenset(fold(w) for w in """
Văn Thị Đức Minh Quốc Hữu Thành Công Hoàng Gia Tuấn Đình Quang Xuân Anh Trọng Thế Mạnh Tiến Nhật Việt Bá
Duy Ngọc Phúc Thu Thanh Phương Khánh Bảo Hồng Thùy Hải Kim Mai Hoài Diệu Như Bích Mỹ Quỳnh Tuyết Lan Hà
Dũng Đạt Hiếu Hùng Huy Khang Khoa Long Nam Quân Sơn Tài Thắng Trung Tú Vinh Kiên Lâm Nghĩa Phong Thịnh An
Bình Cường Định Đông Hậu Hiển Hiệp Hòa Kiệt Lộc Nhân Phát Tâm Thái Thiện Thông Toàn Trí Tùng Vũ Khôi Đăng
Chi Giang Hằng Hạnh Hương Huyền Linh Ly My Ngân Nhung Thảo Trang Trâm Uyên Vy Yến Hoa Diệp Nhi Thư Ánh
Châm Dung Đào Hiền Khuê Loan Nga Nguyệt Nhàn Oanh Phượng Quyên Thủy Thương Tiên Trinh Vân Hân Duyên Ái
Bắc Bằng Cảnh Chánh Châu Chiến Chinh Chương Cúc Dân Diễm Doanh Dương Đại Đan Đạo Điệp Đoan Giao Hạ Hào
Hảo Hiên Hinh Hoan Hoàn Hợp Huấn Huệ Hưng Hường Kha Khải Khiêm Kiều Kỳ Lạc Lai Lành Lễ Liên Liêm Liễu Luân
Lực Lưu Lương Mẫn Miên Mơ Mộng Nghi Nguyên Nhã Nhạn Nhiên Ninh Nương Phi Phú Phụng Phước Quế Quyết Sang
Sâm Song Sương Tạo Tân Thạch Thắm Thăng Thân Thiên Thiệu Thoa Thoại Thơ Thuận Thục Thúy Thường Tín Tịnh
Toản Trà Trúc Trường Tuệ Tuyền Tường Tươi Uy Viên Vĩ Vượng Xuyến Ý Yên Khanh Lệ Mến Quý Sỹ Sĩ Tuyên Vương
Ân Bão Cát Chân Cương Đảm Đệ Độ Giáp Hạc Hiền Hiệu Hoạt Kế Khiết Lam Lâm Lập Lệnh Lĩnh Lụa Mạnh Mão Na
Ngà Ngạn Nghị Ngữ Nhàn Nhu Nhựt Niên Pháp Phấn Phong Phụng Quảng Sáng Sửu Tấn Thảo Thiết Thịnh Thọ Tiệp
Tính Trâm Triều Trực Tuân Tuyết Út Vi Vịnh Vỹ Xuân Yến Hy Huân Khải Khoan Lân Nhuận Ngân Phú Quyền Sinh
Thoa Tòng Tư Tước Đông Bảo Châu Diệu Đăng Gấm Hạnh Hoà Hoè Khuyên Lụa Mai Nhung Phượng Thắm Thoa Xuyến
""".split())
# Header and function words that fold like no name syllable: a run holding one is not a name. (Words that
# fold like a name, e.g. năm/Nam, tháng/Thắng, điểm/Diễm, khóa/Khoa, are left to `vocabulary()`.)
NOT_NAME = frozenset(fold(w) for w in "và của tên ngày sinh lớp ngành học số ghi giới mã hệ".split())



@functools.cache
def vocabulary() -> frozenset[str]:
    """The project's own words (header and value aliases, folded): a cell that is one of them is never
    taken for a name ('Cử nhân' and 'Bảo lưu' are a degree and a status, not people)."""
    from transforms.config import REPO_ROOT

    words = set()
    for name, column in (("value_aliases.csv", "alias"), ("column_aliases.csv", "alias")):
        path = REPO_ROOT / "data" / "reference" / name
        if path.exists():
            with open(path, encoding="utf-8-sig", newline="") as f:
                words |= {" ".join(fold(w) for w in _WORD.findall(r[column])) for r in csv.DictReader(f)}
    return frozenset(words)


_SYLLABLE = re.compile(r"(?:ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdghklmnpqrstvx])?[aeiouy]{1,3}(?:ng|nh|ch|[cmnpt])?")
_WORD = re.compile(r"[^\W\d_]+")


@functools.cache
def _invisible() -> dict:
    """Format (Cf) characters and other invisible ones (fillers, variation selectors): removed before
    screening so they cannot split a value. Every Cf character is in these planes (built once, on use)."""
    table = dict.fromkeys(c for plane in (range(0x20000), range(0xE0000, 0xE1000))
                          for c in plane if unicodedata.category(chr(c)) == "Cf")
    table.update(dict.fromkeys((0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, *range(0xFE00, 0xFE10))))
    return table


_MONTHS = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|aug(?:ust)?|"
           r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("email", re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")),
    # A 12-digit id that Excel turned into a number and wrote in scientific notation.
    ("scientific", re.compile(r"(?<![\w.])\d[.,]\d+[eE]\+?(\d{1,2})(?!\d)")),
    ("date", re.compile(r"(?<![\w.])(?:ng[aà]y\s*)?\d{1,2}\s*th[aá]ng\s*\d{1,2}(?:\s*(?:n[aă]m\s*|[/.\-,]\s*)|\s+)\d{2,4}"
                        r"(?!\w)", re.IGNORECASE)),
    ("date", re.compile(rf"(?<![\w.])\d{{1,2}}(?:st|nd|rd|th)?[\s\-./]*{_MONTHS}\.?[\s\-./,]*\d{{2,4}}(?!\w)"
                        rf"|(?<![\w.]){_MONTHS}\.?[\s\-./]*\d{{1,2}}(?:st|nd|rd|th)?,?[\s\-./]+\d{{2,4}}(?!\w)",
                        re.IGNORECASE)),
    ("numeric date", re.compile(r"(?<![\d.,/])(\d{1,4})([/.\-])(\d{1,2})\2(\d{1,4})(?![\d,/]|\.\d)")),
    # +84 / 0084 / 84 and 9 digits (the trunk 0 dropped); a mobile 0[35789]x + 7; a landline 02x + 8
    ("phone", re.compile(r"(?<![\w+])(?:\+\s?84|0084|84)[\s.\-]?\(?0?\)?[1-9](?:[\s.\-]?\d){8}(?!\d)"
                         r"|(?<![\w+])0[35789]\d(?:[\s.\-]?\d){7}(?!\d)|(?<![\w+])\(?02\d\)?(?:[\s.\-]?\d){8}(?!\d)")),
    ("digits", re.compile(r"(?<![\w.])\d{2,4}(?:[ .\-]\d{2,4}){2,}(?!\w)|(?<![A-Za-z\d.])\d{8,}(?![A-Za-z\d])")),
    ("student number", re.compile(r"(?<![A-Za-z0-9])(?=[A-Za-z0-9]*[A-Za-z])(?=(?:[A-Za-z]*\d){5})[A-Za-z0-9]{7,}"
                                  r"(?![A-Za-z0-9])")),
]
_NOT_STUDENT_NUMBER = re.compile(r"[0-9a-f]{12,}|\d{7}[A-Za-z_]{1,6}")  # hashes; a programme code with a suffix
# A plain number of at most 7 integer digits (GPAs, years, counts, programme codes): nothing to mask.
_INERT = re.compile(r"[+-]?\d{1,7}(?:[.,]\d+)?")
_SERIAL = re.compile(r"\d{5}(?:\.0+)?")
LABELS = {"email": "[email]", "phone": "[phone]", "date": "[date]", "national id": "[national_id]",
          "id number": "[id_number]", "student number": "[student_number]", "name": "[name]"}


def _plausible_date(a: str, b: str, c: str) -> bool:
    """y-m-d, d-m-y or m-d-y with a real month and day (a two-digit year allowed at the end)."""
    x, y, z = int(a), int(b), int(c)
    if len(a) == 4:
        return 1 <= y <= 12 and 1 <= z <= 31
    if len(c) in (2, 4) and len(a) <= 2:
        return (1 <= y <= 12 and 1 <= x <= 31) or (1 <= x <= 12 and 1 <= y <= 31)
    return False


def _digit_label(match: str) -> str | None:
    digits = re.sub(r"\D", "", match)
    if len(digits) < 8:
        return None
    if len(digits) in (9, 12):
        return "national id"
    if len(digits) == 8 and (_plausible_date(digits[:4], digits[4:6], digits[6:])
                             or _plausible_date(digits[:2], digits[2:4], digits[4:])):
        return "date"
    return "id number"


def _label(kind: str, m: re.Match) -> str | None:
    if kind == "numeric date":
        return "date" if _plausible_date(m.group(1), m.group(3), m.group(4)) else None
    if kind == "digits":
        return _digit_label(m.group(0))
    if kind == "scientific":
        return "id number" if int(m.group(1)) >= 7 else None
    if kind == "student number" and _NOT_STUDENT_NUMBER.fullmatch(m.group(0)):
        return None
    return kind


def _capitalised(word: str) -> bool:
    return word[:1].isupper()


def _name_words(words: list[str], *, whole: bool) -> bool:
    """Is this run of words a person's name? `whole`: the words are a whole cell or segment."""
    if not 2 <= len(words) <= 5:
        return whole and len(words) == 1 and _capitalised(words[0]) and fold(words[0]) in SURNAMES
    folded = [fold(w) for w in words]
    if any(f in NOT_NAME for f in folded[1:]) or folded[0] in NOT_NAME:
        return False
    if folded[0] not in SURNAMES and not (whole and folded[-1] in SURNAMES):
        return False
    others = folded[1:] if folded[0] in SURNAMES else folded[:-1]
    known = all(f in SYLLABLES or f in SURNAMES for f in others)
    capitalised = all(_capitalised(w) for w in words)
    if not whole:
        return known and capitalised
    return known or (capitalised and all(_SYLLABLE.fullmatch(f) for f in folded))


def _mask_names(text: str) -> str:
    """Whole segments (between delimiters) that are names, then name runs inside longer segments."""
    out, last = [], 0
    for seg in re.finditer(r"[^;,|=()\[\]{}\"'<>:\t\r\n/\\]+", text):
        out.append(text[last:seg.start()])
        out.append(_mask_segment(seg.group(0)))
        last = seg.end()
    out.append(text[last:])
    return "".join(out)


def _mask_segment(segment: str) -> str:
    stripped = segment.strip()
    words = _WORD.findall(stripped)
    if words and " ".join(fold(w) for w in words) in vocabulary():
        return segment
    if words and re.fullmatch(r"[^\W\d_]+(?:[\s.\-]+[^\W\d_]+)*\.?", stripped) and _name_words(words, whole=True):
        return segment.replace(stripped, LABELS["name"])
    # Runs of words separated by spaces only; the longest name starting at each word.
    spans = [(m.start(), m.end(), m.group(0)) for m in _WORD.finditer(segment)]
    masked, i = [], 0
    while i < len(spans):
        j = i + 1
        while j < len(spans) and j - i < 5 and segment[spans[j - 1][1]:spans[j][0]].isspace():
            j += 1
        best = None
        for k in range(j, i + 1, -1):
            if _name_words([s[2] for s in spans[i:k]], whole=False):
                best = k
                break
        if best:
            masked.append((spans[i][0], spans[best - 1][1]))
            i = best
        else:
            i += 1
    for start, end in reversed(masked):
        segment = segment[:start] + LABELS["name"] + segment[end:]
    return segment


def clean(text: str) -> str:
    """NFKC, without format and invisible characters: the text as it is screened."""
    return unicodedata.normalize("NFKC", text).translate(_invisible())


def mask_text(text: Any) -> Any:
    """`text` with everything shaped like personal data replaced by a label; non-text as it is."""
    if not isinstance(text, str) or not text or _INERT.fullmatch(text):
        return text
    return _masked(text) if len(text) <= _MEMO_CHARS else _screen(text)


# The same observed values, codes and messages recur over thousands of rows and files (the national
# feedback screens 118k texts, 96 % of them repeats); the screen depends on the text alone.
# Short texts only are remembered, so the memo stays a few MB.
_MEMO_CHARS = 256


def _screen(text: str) -> str:
    t = clean(text)
    for kind, pattern in _PATTERNS:
        t = pattern.sub(lambda m, k=kind: LABELS[lab] if (lab := _label(k, m)) else m.group(0), t)
    t = _mask_names(t)
    return text if t == clean(text) else t


_masked = functools.lru_cache(maxsize=1 << 16)(_screen)


def mask_value(value: Any) -> Any:
    """One cell as sent: :func:`mask_text`, and a whole cell that is an Excel date serial."""
    if isinstance(value, str) and _SERIAL.fullmatch(value.strip()) and 10_000 <= float(value) <= 60_000:
        return LABELS["date"]
    return mask_text(value)


def mask_values(values: list) -> list:
    """:func:`mask_value` over a list, each distinct value screened once."""
    cache: dict = {}
    out = []
    for v in values:
        if not isinstance(v, str):
            out.append(v)
            continue
        if v not in cache:
            cache[v] = mask_value(v)
        out.append(cache[v])
    return out


def mask_json(obj: Any) -> Any:
    """Every string in a JSON-like structure through :func:`mask_value` (keys are ours, left alone)."""
    if isinstance(obj, dict):
        return {k: mask_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [mask_json(v) for v in obj]
    return mask_value(obj)


def has_personal_data(text: Any) -> bool:
    return isinstance(text, str) and mask_value(text) != text
