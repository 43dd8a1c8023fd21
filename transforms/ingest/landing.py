"""The landing zone: find what was submitted, and decide what is new.

Layout (the submission portal writes it; see docs/DATA_CONTRACT.md):
    enrollment/<UNIVERSITY_CODE>/<TERM>/<file>
    placements/<ROUND>/<file>
The folder says whose submission a file is and for which term; the file name is never
trusted as a path. Anything under the dataset folders that does not fit is still listed, with
the reason it is refused, and ends in the manifest as a rejected file: a symbolic link (to a
file or a folder, inside or outside the landing zone), a pipe or device, a name with control or
invisible formatting characters, a backslash, a leading `-`, a name that is not UTF-8, a hidden
or temporary file, a file at the wrong depth or in a folder that is not a registry code or a
term, a term folder after the current term (by the clock in Vietnam) or outside the collection's
terms (`data/reference/collection.csv`), a folder that cannot be listed, and a file that vanished
while the zone was scanned.

A listed file is opened only through `open_landed`: one path component at a time from the zone's
own folder, never following a link, and only if it is still the file the scan saw. So a folder
swapped for a link after the scan cannot make a file outside the zone be read as a university's.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

from transforms.contract.rules import check_rule
from transforms.vocabulary import CODE_RE, ROUND_RE, TERM_RE, term_index

DATASETS = ("enrollment", "placements")
RENAME_HINT = "rename it with letters, digits, spaces, '-', '_' or '.' and send it again"
PROGRAMME_TZ = ZoneInfo("Asia/Ho_Chi_Minh")  # the programme's clock: a term begins on Vietnam's calendar


class Refusal(NamedTuple):
    """Why a file is refused before it is read: its `ING.*` rule (transforms/contract/rules.py),
    stored beside the reason, and the details the office is told (`text`)."""

    rule: str
    text: str


def _refusal(rule: str, text: str) -> Refusal:
    return Refusal(check_rule(rule), text)


@dataclass
class LandedFile:
    dataset: str
    path: Path
    relpath: str  # relative to the landing zone, '/'-separated; unprintable characters escaped
    size: int
    mtime: float
    university_code: str | None = None
    term: str | None = None
    round: str | None = None
    problem: str | None = None  # why the file is refused before it is read
    rule: str | None = None  # the ING.* rule of `problem`
    sha256: str | None = None
    zone: str | None = None  # the landing zone the scan found it in: it is opened from there only
    device: int | None = None  # st_dev and st_ino the scan saw: a file swapped since is not read
    inode: int | None = None

    @property
    def received_at(self) -> datetime:
        return datetime.fromtimestamp(self.mtime, tz=timezone.utc).replace(tzinfo=None)

    @property
    def period(self) -> str | None:
        return self.term or self.round

    @property
    def file_id(self) -> str:
        """Stable id of this file: the same content at the same path with the same time received
        always gets the same id; a re-upload (even of content sent before) gets a new one, and so
        does a file refused before it was read (it has no sha256), once it changes.
        """
        key = f"{self.relpath}\0{self.sha256 or 'unread'}\0{self.size}\0{self.mtime!r}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def content_key(self) -> str | None:
        """What makes a copy a duplicate: the same content in the same university's folder for the
        same term (or round). The folder decides whose rows they are, so the same bytes in another
        university's folder (or another term) are a submission of their own."""
        if not self.sha256:
            return None
        return content_key(self.dataset, self.university_code, self.period, self.sha256)


def content_key(dataset: str, university_code: str | None, period: str | None, sha256: str) -> str:
    return f"{dataset}|{university_code or ''}|{period or ''}|{sha256}"


class LandedFileRefused(OSError):
    """A listed file is not read: a folder on its path became a link, it was replaced since the scan,
    or it is over the size limit. `reason` says which, for the manifest, and `rule` its ING.* id."""

    def __init__(self, reason: str, *, rule: str):
        super().__init__(errno.ESTALE, reason)
        self.reason = reason
        self.rule = check_rule(rule)

    def __reduce__(self):  # OSError pickles its (errno, text) arguments, not ours
        from functools import partial

        return partial(type(self), rule=self.rule), (self.reason,)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def open_landed(f: LandedFile) -> int:
    """A read-only descriptor of a listed file, opened inside its zone and only if it is the file scanned.

    Every component of the path below the zone is opened relative to its parent's descriptor with
    O_NOFOLLOW (folders also with O_DIRECTORY), so a folder swapped for a symbolic link after the
    scan is refused, not followed; the opened file must then be the inode the scan saw. A file
    built by hand without a zone (the validation kit's own file) is opened by its path, the last
    component not followed. Raises LandedFileRefused (with the reason) or OSError.
    """
    if f.zone is None:
        try:
            fd = os.open(f.path, _FILE_FLAGS)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise LandedFileRefused(f"{f.relpath}: is a symbolic link, not a file; it was not read",
                                        rule="ING.file.link") from None
            raise
    else:
        fd = _open_in_zone(f)
    try:
        _check_is_scanned(fd, f)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_in_zone(f: LandedFile) -> int:
    zone = Path(f.zone)
    try:
        parts = Path(f.path).relative_to(zone).parts
    except ValueError:
        raise LandedFileRefused(f"{f.relpath}: is not inside the landing zone; it was not read",
                                rule="ING.file.link") from None
    fd = os.open(zone, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            try:
                nxt = os.open(part, _FILE_FLAGS if last else _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    where = "/".join(parts[:i + 1])
                    what = "the file" if last else f"the folder '{printable(where)}'"
                    raise LandedFileRefused(
                        f"{f.relpath}: {what} became a symbolic link (or another kind of entry) after the landing "
                        "zone was scanned; it was not followed and nothing outside the landing zone was read",
                        rule="ING.file.link") from None
                raise
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_is_scanned(fd: int, f: LandedFile) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise LandedFileRefused(f"{f.relpath}: is not a regular file (a pipe, socket or device); it was not read",
                                rule="ING.file.link")
    if f.inode is not None and (st.st_dev, st.st_ino) != (f.device, f.inode):
        raise LandedFileRefused(f"{f.relpath}: changed while it was being ingested (replaced by another file since the "
                              "landing zone was scanned); the next run reads it again", rule="ING.file.unavailable")


def hash_landed(f: LandedFile) -> str:
    """sha256 of a listed file, opened as `open_landed` does, read in chunks."""
    h = hashlib.sha256()
    with os.fdopen(open_landed(f), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_within(fh, name: str, max_bytes: int, sha256: str | None, refuse: type[Exception]) -> bytes:
    """An open file's bytes, at most `max_bytes`, checked against `sha256` when given: the one bounded
    read of a landed file (the pipeline's and the one-file reader's). Raises `refuse(reason, rule=...)`."""
    size = os.fstat(fh.fileno()).st_size
    if size > max_bytes:
        raise refuse(f"{name}: {size} bytes is over the {max_bytes}-byte limit; it was not read. "
                     "Split the file (e.g. by programme) and send the parts.", rule="ING.file.size")
    data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise refuse(f"{name}: grew over the {max_bytes}-byte limit while it was being read; split it.",
                     rule="ING.file.size")
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise refuse(f"{name}: changed while it was being ingested (it is probably still being uploaded); "
                     "the next run reads it again", rule="ING.file.unavailable")
    return data


def read_landed(f: LandedFile, max_bytes: int) -> bytes:
    """The bytes of a listed file (opened as `open_landed` does), at most `max_bytes`, checked
    against the sha256 computed when it was listed. Raises LandedFileRefused or OSError."""
    with os.fdopen(open_landed(f), "rb") as fh:
        return read_within(fh, f.relpath, max_bytes, f.sha256, LandedFileRefused)


# ---------------------------------------------------------------- terms the collection takes

def term_on(day: date) -> str:
    """The term running on `day`, or the last one begun: semester 1 runs September to January,
    semester 2 February to June; July and August still belong to semester 2 (no term has begun since)."""
    if day.month >= 9:
        return f"{day.year}-1"
    if day.month == 1:
        return f"{day.year - 1}-1"
    return f"{day.year - 1}-2"


def current_term(now: datetime | None = None) -> str:
    """The current term by the clock, on the programme's calendar (Asia/Ho_Chi_Minh)."""
    return term_on((now or datetime.now(timezone.utc)).astimezone(PROGRAMME_TZ).date())


@dataclass(frozen=True)
class TermWindow:
    """The terms a term folder may name: from the collection's first term to its last (by default
    the current term by the clock; `data/reference/collection.csv`)."""

    first: str | None
    last: str | None  # a configured last term; None: the current term
    current: str

    @classmethod
    def from_settings(cls, reference_dir: Path | None = None, now: datetime | None = None) -> "TermWindow":
        from transforms.config import CollectionSettings

        settings = CollectionSettings.from_reference(reference_dir)
        return cls(settings.first_term, settings.last_term, current_term(now))

    def problem(self, term: str) -> Refusal | None:
        """Why files of `term` are refused, or None."""
        t = term_index(term)
        if t > term_index(self.current):
            return _refusal("ING.file.term_future",
                            f"folder '{term}' is a term after the current term {self.current} (by the clock in "
                            "Vietnam); a term's files are taken once it has begun. Put the file in the folder of the "
                            "term it describes and send it again")
        if self.last and t > term_index(self.last):
            return _refusal("ING.file.term_range", f"folder '{term}' is outside the collection's terms (after its last "
                                                   f"term {self.last}, data/reference/collection.csv)")
        if self.first and t < term_index(self.first):
            return _refusal("ING.file.term_range", f"folder '{term}' is outside the collection's terms (before its "
                                                   f"first term {self.first}, data/reference/collection.csv)")
        return None


def sha256_of(path: Path) -> str:
    """sha256 of a file named by its path (not a listed file: see `hash_landed`), read in chunks and
    never through a symbolic link in its last component."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def printable(text: str) -> str:
    """`text` with control, invisible and undecodable characters written as escapes (\\x1b, \\u202e)."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch == " " or ch.isprintable() or unicodedata.category(ch) == "Zs":
            out.append(ch)
        else:
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
    return "".join(out)


def name_problem(name: str) -> Refusal | None:
    """Why a file name is refused, or None. Names are data, never paths."""
    if any(0xDC80 <= ord(c) <= 0xDCFF for c in name):
        return _refusal("ING.file.name", f"file name is not valid UTF-8 text; {RENAME_HINT}")
    cats = {unicodedata.category(c) for c in name}
    if cats & {"Cc", "Zl", "Zp"}:
        return _refusal("ING.file.name", f"file name contains control characters; {RENAME_HINT}")
    if "Cf" in cats:
        return _refusal("ING.file.name", "file name contains invisible formatting characters (such as a right-to-left "
                                         f"override); {RENAME_HINT}")
    if "\\" in name:
        return _refusal("ING.file.name", f"file name contains a backslash, which Windows reads as a folder separator; "
                                         f"{RENAME_HINT}")
    if name.startswith("-"):
        return _refusal("ING.file.name", f"file name starts with '-', which command-line tools read as an option; "
                                         f"{RENAME_HINT}")
    if name.startswith(("~$", ".~lock")):
        return _refusal("ING.file.hidden",
                        "temporary lock file of an open spreadsheet (Excel or LibreOffice), not a submission")
    if name.startswith("."):
        return _refusal("ING.file.hidden", "hidden file, not a submission")
    return None


def _location(text: str) -> Refusal:
    return _refusal("ING.file.location", text)


def _classify(dataset: str, parts: tuple[str, ...], window: TermWindow | None = None) -> dict:
    parts = tuple(printable(p) for p in parts)
    if dataset == "enrollment":
        if len(parts) != 3:
            return {"refusal": _location("not in an enrollment/<UNIVERSITY_CODE>/<TERM>/ folder (the file is at the "
                                         "wrong depth)")}
        code, term = parts[0], parts[1]
        if not CODE_RE.match(code):
            return {"refusal": _location(f"folder '{code}' is not a university registry code")}
        if not TERM_RE.match(term):
            return {"university_code": code, "refusal": _location(f"folder '{term}' is not a term like 2024-1")}
        refused = window.problem(term) if window is not None else None
        if refused:  # not a term of the collection: recorded without a term, so no mart counts it
            return {"university_code": code, "refusal": refused}
        return {"university_code": code, "term": term}
    if len(parts) != 2:
        return {"refusal": _location("not in a placements/<ROUND>/ folder (the file is at the wrong depth)")}
    if not ROUND_RE.match(parts[0]):
        return {"refusal": _location(f"folder '{parts[0]}' is not a round like 2026H1")}
    return {"round": parts[0]}


def _link_problem(full: Path, landing: Path, kind: str) -> Refusal:
    try:
        target = full.resolve()
    except (OSError, RuntimeError):  # a loop
        text = f"symbolic link ({kind}) that cannot be resolved; the portal writes files, not links"
    else:
        if not target.exists():
            text = f"symbolic link ({kind}) pointing to nothing; the portal writes files, not links"
        elif not target.is_relative_to(landing):
            text = f"symbolic link ({kind}) pointing outside the landing zone; it was not followed"
        else:
            text = (f"symbolic link ({kind}) inside the landing zone; the portal writes files, not links, so it was "
                    "not followed")
    return _refusal("ING.file.link", text)


def scan(landing: Path, window: TermWindow | None = None) -> list[LandedFile]:
    """Every entry under the dataset folders, in submission order (folder, then time received, then name).

    Nothing is skipped silently: what cannot be a submission is listed with its `problem` and `rule`.
    `window` (default: from the reference folder's collection settings and the clock) says which
    term folders are taken.
    """
    landing = landing.resolve()
    window = window or TermWindow.from_settings()
    found: list[LandedFile] = []
    for dataset in DATASETS:
        root = landing / dataset
        if not root.is_dir():
            continue

        def entry(full: Path, problem: Refusal | None = None, st: os.stat_result | None = None) -> LandedFile:
            rel = printable(full.relative_to(landing).as_posix())
            parts = full.relative_to(root).parts
            if any(0xDC80 <= ord(c) <= 0xDCFF for c in str(full)):  # not UTF-8: never read, and kept serialisable
                full = Path(printable(str(full)))
            place = _classify(dataset, parts, window)
            refusal = place.pop("refusal", None)
            problem = problem or refusal  # what the scan saw (a link, a bad name) before where the file is
            return LandedFile(dataset, full, rel, st.st_size if st else 0, st.st_mtime if st else 0.0, **place,
                              problem=problem.text if problem else None, rule=problem.rule if problem else None,
                              zone=str(landing), device=st.st_dev if st else None, inode=st.st_ino if st else None)

        def unreadable(err: OSError) -> None:
            full = Path(err.filename) if err.filename else root
            found.append(entry(full, _refusal(
                "ING.file.unavailable", f"folder could not be listed ({err.strerror or type(err).__name__}); its files "
                                        "were not seen. Check the folder's permissions.")))

        for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
            dirnames.sort()
            for d in list(dirnames):
                full = Path(dirpath) / d
                if full.is_symlink():  # os.walk does not enter it: list it instead of losing what is behind it
                    dirnames.remove(d)
                    found.append(entry(full, _link_problem(full, landing, "to a folder"), _lstat(full)))
            for name in sorted(filenames):
                full = Path(dirpath) / name
                try:
                    st = full.lstat()
                except FileNotFoundError:
                    found.append(entry(full, _refusal(
                        "ING.file.unavailable", "the file disappeared while the landing zone was being read (moved or "
                                                "replaced during upload?); if it is back, the next run reads it")))
                    continue
                except OSError as e:
                    found.append(entry(full, _refusal(
                        "ING.file.unavailable", f"the file could not be examined ({e.strerror or type(e).__name__})")))
                    continue
                if stat.S_ISLNK(st.st_mode):
                    problem = _link_problem(full, landing, "to a file")
                elif not stat.S_ISREG(st.st_mode):
                    problem = _refusal("ING.file.link", "not a regular file (a pipe, socket or device); it was not read")
                else:
                    problem = name_problem(name)
                found.append(entry(full, problem, st))
    found.sort(key=lambda f: (f.dataset, f.university_code or "", f.period or "", f.mtime, f.relpath))
    return found


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except OSError:
        return None
