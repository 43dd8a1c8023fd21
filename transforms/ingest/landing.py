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
term, a folder that cannot be listed, and a file that vanished while the zone was scanned.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from transforms.vocabulary import ROUND_RE, TERM_RE

CODE_RE = re.compile(r"^[A-Z0-9]{2,12}$")
DATASETS = ("enrollment", "placements")
RENAME_HINT = "rename it with letters, digits, spaces, '-', '_' or '.' and send it again"


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
    sha256: str | None = None

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


def sha256_of(path: Path) -> str:
    """sha256 of a landed file, read in chunks and never through a symbolic link."""
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


def name_problem(name: str) -> str | None:
    """Why a file name is refused, or None. Names are data, never paths."""
    if any(0xDC80 <= ord(c) <= 0xDCFF for c in name):
        return f"file name is not valid UTF-8 text; {RENAME_HINT}"
    cats = {unicodedata.category(c) for c in name}
    if cats & {"Cc", "Zl", "Zp"}:
        return f"file name contains control characters; {RENAME_HINT}"
    if "Cf" in cats:
        return f"file name contains invisible formatting characters (such as a right-to-left override); {RENAME_HINT}"
    if "\\" in name:
        return f"file name contains a backslash, which Windows reads as a folder separator; {RENAME_HINT}"
    if name.startswith("-"):
        return f"file name starts with '-', which command-line tools read as an option; {RENAME_HINT}"
    if name.startswith(("~$", ".~lock")):
        return "temporary lock file of an open spreadsheet (Excel or LibreOffice), not a submission"
    if name.startswith("."):
        return "hidden file, not a submission"
    return None


def _classify(dataset: str, parts: tuple[str, ...]) -> dict:
    parts = tuple(printable(p) for p in parts)
    if dataset == "enrollment":
        if len(parts) != 3:
            return {"problem": "not in an enrollment/<UNIVERSITY_CODE>/<TERM>/ folder (the file is at the wrong depth)"}
        code, term = parts[0], parts[1]
        if not CODE_RE.match(code):
            return {"problem": f"folder '{code}' is not a university registry code"}
        if not TERM_RE.match(term):
            return {"university_code": code, "problem": f"folder '{term}' is not a term like 2024-1"}
        return {"university_code": code, "term": term}
    if len(parts) != 2:
        return {"problem": "not in a placements/<ROUND>/ folder (the file is at the wrong depth)"}
    if not ROUND_RE.match(parts[0]):
        return {"problem": f"folder '{parts[0]}' is not a round like 2026H1"}
    return {"round": parts[0]}


def _link_problem(full: Path, landing: Path, kind: str) -> str:
    try:
        target = full.resolve()
    except (OSError, RuntimeError):  # a loop
        return f"symbolic link ({kind}) that cannot be resolved; the portal writes files, not links"
    if not target.exists():
        return f"symbolic link ({kind}) pointing to nothing; the portal writes files, not links"
    if not target.is_relative_to(landing):
        return f"symbolic link ({kind}) pointing outside the landing zone; it was not followed"
    return f"symbolic link ({kind}) inside the landing zone; the portal writes files, not links, so it was not followed"


def scan(landing: Path) -> list[LandedFile]:
    """Every entry under the dataset folders, in submission order (folder, then time received, then name).

    Nothing is skipped silently: what cannot be a submission is listed with its `problem`.
    """
    landing = landing.resolve()
    found: list[LandedFile] = []
    for dataset in DATASETS:
        root = landing / dataset
        if not root.is_dir():
            continue

        def entry(full: Path, problem: str | None = None, st: os.stat_result | None = None) -> LandedFile:
            rel = printable(full.relative_to(landing).as_posix())
            parts = full.relative_to(root).parts
            if any(0xDC80 <= ord(c) <= 0xDCFF for c in str(full)):  # not UTF-8: never read, and kept serialisable
                full = Path(printable(str(full)))
            item = LandedFile(dataset, full, rel, st.st_size if st else 0, st.st_mtime if st else 0.0,
                              **_classify(dataset, parts))
            item.problem = problem or item.problem
            return item

        def unreadable(err: OSError) -> None:
            full = Path(err.filename) if err.filename else root
            found.append(entry(full, f"folder could not be listed ({err.strerror or type(err).__name__}); its files "
                                     "were not seen. Check the folder's permissions."))

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
                    found.append(entry(full, "the file disappeared while the landing zone was being read (moved or "
                                             "replaced during upload?); if it is back, the next run reads it"))
                    continue
                except OSError as e:
                    found.append(entry(full, f"the file could not be examined ({e.strerror or type(e).__name__})"))
                    continue
                if stat.S_ISLNK(st.st_mode):
                    problem = _link_problem(full, landing, "to a file")
                elif not stat.S_ISREG(st.st_mode):
                    problem = "not a regular file (a pipe, socket or device); it was not read"
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
