"""CSV (and tab- or semicolon-separated text) as university offices export it: encodings, delimiters,
and records counted from the file itself.

* Delimiters `,` `;` `|` or tab, chosen by which one splits a header row into known column names;
  Excel's `sep=;` first line and `="00123"` cells (text kept as text) are understood.
* Encodings: UTF-8 with or without BOM, UTF-16/32 with BOM (Excel "Unicode text"), UTF-16 without
  BOM, Windows-1258 (Vietnamese, tone marks as combining characters) and Windows-1252. All text
  is normalised to Unicode NFC. See `decode` for how the legacy code pages are told apart.
* Records are counted by `count_records`, independently of Python's csv parser, and the two must
  agree. A quote that opens a cell and is never closed, or that swallows more than
  `MAX_CELL_LINES` lines (students would vanish into one cell), refuses the file naming the line
  where the quote opened; a cell that spans lines is only accepted in a record that still has the
  header's number of fields.
"""
from __future__ import annotations

import csv
import io
import re
import unicodedata

from transforms.ingest.headers import (EXPORT_HINT, HEADER_SEARCH_ROWS, MIN_HEADER_COLUMNS, AliasTable,
                                       SubmissionRejected)

LEGACY_VOTES = 5_000  # words enough to tell Windows-1258 from Windows-1252
MAX_CELL_LINES = 3  # a quoted cell may hold a few line breaks (an address); more is a quote left open

# ---------------------------------------------------------------- encodings

_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile("[\u200b\ufeff]")  # zero-width space, stray BOMs of concatenated exports
# Valid UTF-8 multi-byte sequences: in real Windows-125x text they almost never occur.
_UTF8_SEQ = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xef][\x80-\xbf]{2}"
                       rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}")
_HIGH = re.compile(rb"[\x80-\xff]")
# Bytes that Windows-1258 and Windows-1252 decode differently (tone marks, ă ơ ư đ ...).
_CONTESTED = re.compile(rb"[\x8a\x8e\x9a\x9e\xc3\xcc\xd0\xd2\xd5\xdd\xde\xe3\xec\xf0\xf2\xf5\xfd\xfe]")
_BYTE_WORDS = re.compile(rb"[A-Za-z\x80-\xff]+")

# A Vietnamese syllable, toneless and lower case: initial consonant, vowel nucleus, final consonant.
_VI_NUCLEI = sorted("""a ă â e ê i y o ô ơ u ư ai ao au ay âu ây eo êu ia iê yê iu oa oă oe oi ôi ơi oo ua uâ uê
    ui uô uơ uy ưa ưi ươ ưu iêu yêu oai oao oay oeo uây uôi uya uyê uyu ươi ươu""".split(), key=len, reverse=True)
_VI_SYLLABLE = re.compile(
    r"(ngh|ng|gh|gi|kh|nh|ph|qu|th|tr|ch|[bcdđghklmnpqrstvx])?(" + "|".join(_VI_NUCLEI) + r")(ch|ng|nh|[cmnpt])?")
_TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}


def is_vietnamese_syllable(word: str) -> bool:
    """Whether `word` is a well-formed Vietnamese syllable (at most one tone mark)."""
    d = unicodedata.normalize("NFD", word.lower())
    tones = sum(ch in _TONES for ch in d)
    if tones > 1:
        return False
    base = unicodedata.normalize("NFC", "".join(ch for ch in d if ch not in _TONES))
    if base == "gi":  # "gì": initial gi with an implied i
        return True
    return _VI_SYLLABLE.fullmatch(base) is not None


def _cannot_determine(name: str, why: str) -> SubmissionRejected:
    return SubmissionRejected(
        f"{name}: the text encoding cannot be determined ({why}); it was not read, so no row of it is "
        f"loaded. Accepted: UTF-8, UTF-16, Windows-1258, Windows-1252. {EXPORT_HINT}", rule="ING.file.encoding",
        format="csv")


def _check_text(text: str, name: str, encoding: str) -> str:
    controls = len(_CONTROL.findall(text, 0, 1 << 20))
    if controls > max(2, min(len(text), 1 << 20) // 1000):
        raise _cannot_determine(name, f"read as {encoding} it is full of control characters, so it is binary, "
                                      "not text")
    if "\u200b" in text or "\ufeff" in text:
        text = _INVISIBLE.sub("", text)
    return unicodedata.normalize("NFC", text)


def _legacy_votes(data: bytes) -> tuple[int, int]:
    """Words that only Windows-1258 (resp. only Windows-1252) reads as Vietnamese.

    Each word with a byte the two code pages decode differently votes for the code page under
    which it is a well-formed Vietnamese syllable; words that are Vietnamese under neither (or
    both) vote for Windows-1252, so Western text stays Western.
    """
    vi = we = 0
    for m in _BYTE_WORDS.finditer(data):
        word = m.group()
        if not _CONTESTED.search(word):
            continue
        if vi + we >= LEGACY_VOTES:
            break
        try:
            as_vi = is_vietnamese_syllable(unicodedata.normalize("NFC", word.decode("cp1258")))
        except UnicodeDecodeError:
            as_vi = False
        try:
            as_we = is_vietnamese_syllable(unicodedata.normalize("NFC", word.decode("cp1252")))
        except UnicodeDecodeError:
            as_we = False
        if as_vi and not as_we:
            vi += 1
        else:
            we += 1
    return vi, we


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 without a byte-order mark: text that is mostly ASCII has a zero in every other byte."""
    sample = data[:8192]
    if len(data) % 2 or len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    z_even, z_odd = even.count(0) / len(even), odd.count(0) / len(odd)
    if z_odd > 0.4 and z_even < 0.02:
        return "utf-16-le"
    if z_even > 0.4 and z_odd < 0.02:
        return "utf-16-be"
    return None


def decode(data: bytes, name: str) -> tuple[str, str]:
    """Decode a text file; returns (NFC text, encoding). Rejects what cannot be determined.

    1. A byte-order mark decides (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE); the rest must then be valid.
    2. NUL bytes: UTF-16 without BOM if every other byte is zero, otherwise binary (rejected).
    3. Valid UTF-8 is UTF-8.
    4. Mostly valid UTF-8 with a few bad bytes is a damaged or mixed file (rejected, never mojibake).
    5. Otherwise Windows-1258 or Windows-1252: the words whose bytes the two decode differently vote
       (see `_legacy_votes`); Windows-1258 wins only when they read as Vietnamese syllables in it.
    Any decoding full of control characters is binary (rejected).
    """
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom):].decode(enc.replace("-sig", ""))
            except UnicodeDecodeError as e:
                raise _cannot_determine(name, f"it starts with a {enc} byte-order mark but byte {e.start + len(bom)} "
                                              f"is not valid {enc}") from None
            return _check_text(text, name, enc), enc
    if b"\x00" in data:
        enc = _utf16_without_bom(data)
        if enc is None:
            raise _cannot_determine(name, "it contains NUL bytes but is not UTF-16 text: a binary file")
        try:
            return _check_text(data.decode(enc), name, enc), enc
        except UnicodeDecodeError as e:
            raise _cannot_determine(name, f"it looks like UTF-16 without a byte-order mark but byte {e.start} is "
                                          "not valid UTF-16") from None
    try:
        return _check_text(data.decode("utf-8"), name, "utf-8"), "utf-8"
    except UnicodeDecodeError as e:
        first_bad = e.start
    high = len(_HIGH.findall(data))
    in_utf8 = sum(len(m) for m in _UTF8_SEQ.findall(data))
    if high and in_utf8 >= 0.5 * high:
        raise _cannot_determine(name, f"it is mostly UTF-8 but byte {first_bad} is not: a damaged file or one "
                                      "that mixes encodings")
    candidates = {}
    for enc in ("cp1258", "cp1252"):
        try:
            candidates[enc] = data.decode(enc)
        except UnicodeDecodeError:
            continue
    if not candidates:
        raise _cannot_determine(name, f"byte {first_bad} is not valid UTF-8 and the file is not Windows-1258 or "
                                      "Windows-1252 either")
    if len(candidates) == 2:
        vi, we = _legacy_votes(data)
        enc = "cp1258" if vi > we else "cp1252"
    else:
        (enc,) = candidates
    text = _check_text(candidates[enc], name, enc)
    high_chars = [ch for ch in text[:1 << 20] if ord(ch) > 127]
    symbols = sum(not unicodedata.category(ch).startswith(("L", "M")) for ch in high_chars)
    if len(high_chars) >= 20 and symbols > 0.25 * len(high_chars):
        raise _cannot_determine(name, f"byte {first_bad} is not valid UTF-8, and read as Windows-1258 or Windows-1252 "
                                      f"{symbols} of its {len(high_chars)} accented characters are symbols, not letters")
    return text, enc



# ---------------------------------------------------------------- CSV

_DELIMITERS = (",", ";", "\t", "|")
_EXCEL_TEXT = re.compile(r'^="(.*)"$')  # ="00123": Excel's way of keeping leading zeros


def _csv_cells(row: list[str], excel_text: bool = True) -> list[str]:
    """A record's cells, trimmed, trailing empty cells left out; `excel_text` False when the
    file holds no '="' at all (then no cell can be an ="00123" cell). read_csv does the same inline."""
    cells = list(map(str.strip, row))
    if excel_text:
        _excel_text(cells)
    if cells and not cells[-1]:
        while cells and not cells[-1]:
            cells.pop()
    return cells


def _excel_text(cells: list[str]) -> None:
    for j, c in enumerate(cells):
        if c[:2] == '="' and c[-1:] == '"':
            cells[j] = _EXCEL_TEXT.sub(r"\1", c).strip()


def choose_delimiter(text: str, aliases: AliasTable) -> str:
    """The delimiter that splits some top row into the most known column names."""
    sample = text[:65536]
    first = sample.split("\n", 1)[0].strip().lower()
    if first.startswith("sep=") and len(first) == 5 and first[4] in _DELIMITERS:
        return first[4]
    if len(sample) == 65536 and "\n" in sample:
        sample = sample[:sample.rfind("\n")]
    best, best_score = None, (-1, -1)
    for d in _DELIMITERS:
        count = sample.count(d)
        if not count:
            continue
        known, checked = 0, 0
        try:
            for row, _ in zip(csv.reader(io.StringIO(sample, newline=""), delimiter=d), range(HEADER_SEARCH_ROWS + 5)):
                if len(row) < MIN_HEADER_COLUMNS:
                    continue
                known = max(known, len({aliases.canonical(c) for c in row if c.strip()} - {None}))
                checked += 1
                if known >= MIN_HEADER_COLUMNS and checked >= 3:
                    break
        except csv.Error:
            continue
        score = (known, count)
        if score > best_score:
            best, best_score = d, score
    return best or ","


def _line_breaks(text: str, start: int = 0, end: int | None = None) -> int:
    end = len(text) if end is None else end
    return text.count("\n", start, end) + text.count("\r", start, end) - text.count("\r\n", start, end)


def count_records(text: str, delimiter: str, name: str = "file") -> tuple[int, list[tuple[int, int]]]:
    """(records, [(first line, last line) of each quoted cell that spans lines]), from the text alone.

    A record ends at a line break outside a quoted cell. A quote opens a quoted cell only at the
    start of a cell (as Python's csv reads it: a quote inside a cell is a character); inside, a
    doubled quote is a quote. Raises SubmissionRejected for a quote never closed, naming its line.
    """
    if '"' not in text:  # no quoted cell: a record per line
        return _line_breaks(text) + (1 if text and text[-1] not in "\r\n" else 0), []
    d = re.escape(delimiter)
    # A quote at the start of a cell (first in the text, or after a delimiter or a line break); the
    # pattern starts with the quote itself so that the search jumps from quote to quote.
    quoted = re.compile(rf'"(?<![^{d}\r\n]")[^"]*(?:""[^"]*)*(")?')
    breaks_inside = 0
    spans: list[tuple[int, int]] = []
    pos_line = (0, 1)  # a position and its line, so lines are counted once, front to back
    for m in quoted.finditer(text):
        if m.group(1) is None:
            p, ln = pos_line
            line = ln + _line_breaks(text, p, m.start())
            raise SubmissionRejected(
                f"{name}: not a readable CSV file: the quote (\") that opens a cell on line {line} is never closed, so "
                f"every line after it would be read as one cell. Remove that quote or close it, and send the file again.",
                rule="ING.file.records", format="csv")
        inside = _line_breaks(text, m.start(), m.end())
        if inside:
            p, ln = pos_line
            line = ln + _line_breaks(text, p, m.start())
            pos_line = (m.start(), line)
            spans.append((line, line + inside))
            breaks_inside += inside
    total = _line_breaks(text)
    records = total - breaks_inside + (1 if text and text[-1] not in "\r\n" else 0)
    return records, spans


def read_csv(text: str, name: str, aliases: AliasTable, required: set[str], encoding: str | None, *,
             max_rows: int, max_columns: int, deadline=None):
    from transforms.ingest.headers import build_table

    delimiter = choose_delimiter(text, aliases)
    records, spans = count_records(text, delimiter, name)
    for first, last in spans:
        if last - first + 1 > MAX_CELL_LINES:
            raise SubmissionRejected(
                f"{name}: not a readable CSV file: the quote (\") that opens a cell on line {first} is closed only on "
                f"line {last}, so {last - first + 1} lines would be read as one cell. Remove that quote (or close it on "
                f"line {first}) and send the file again.", rule="ING.file.records", format="csv", encoding=encoding)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    seen = 0
    multi_line: list[tuple[int, int]] = []  # (line, fields) of records that span lines
    widths: dict[int, int] = {}  # fields of the first records, for the header's width
    excel_text = '="' in text

    def rows():
        nonlocal seen
        end = 0
        strip = str.strip
        try:
            for row in reader:
                start, end = end + 1, reader.line_num
                seen += 1
                if deadline is not None and not seen & 511:
                    deadline.check()
                if end > start:
                    multi_line.append((start, len(row)))
                if seen <= 64:
                    widths[start] = len(row)
                cells = list(map(strip, row))  # _csv_cells, inline: this runs once a record
                if excel_text:
                    _excel_text(cells)
                if cells and not cells[-1]:
                    while cells and not cells[-1]:
                        cells.pop()
                if cells:
                    yield start, cells if len(cells) <= max_columns else cells[:max_columns]
        except csv.Error as e:
            raise SubmissionRejected(f"{name}: not a readable CSV file near line {reader.line_num}: {e}. {EXPORT_HINT}",
                                     rule="ING.file.damaged", format="csv", encoding=encoding) from None

    raw = build_table(rows(), [], aliases, required, name, "csv", encoding, max_rows=max_rows)
    if seen != records:
        raise SubmissionRejected(
            f"{name}: not a readable CSV file: its line breaks and quotes make {records} records but the CSV reader "
            f"found {seen}. {EXPORT_HINT}", rule="ING.file.records", format="csv", encoding=encoding)
    width = widths.get(raw.header_line)
    for line, fields in multi_line:
        if line > raw.header_line and fields != width:
            raise SubmissionRejected(
                f"{name}: not a readable CSV file: a quoted cell on line {line} runs over several lines and leaves that "
                f"record with {fields} fields where the header has {width}; a quote (\") was probably left open. "
                "Fix that line and send the file again.", rule="ING.file.records", format="csv", encoding=encoding)
    return raw
