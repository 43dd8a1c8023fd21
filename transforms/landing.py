"""The landing zone: find what was submitted, and decide what is new.

Layout (the submission portal writes it; see docs/DATA_CONTRACT.md):
    enrollment/<UNIVERSITY_CODE>/<TERM>/<file>
    placements/<ROUND>/<file>
The folder says whose submission a file is and for which term; the file name is never
trusted as a path. Anything that does not fit is still listed, with the reason it is refused.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from transforms.terms import ROUND_RE, TERM_RE

CODE_RE = re.compile(r"^[A-Z0-9]{2,12}$")
DATASETS = ("enrollment", "placements")


@dataclass
class LandedFile:
    dataset: str
    path: Path
    relpath: str
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
        """Stable id of this content at this path: the same file always gets the same id."""
        return hashlib.sha256(f"{self.relpath}\0{self.sha256}".encode()).hexdigest()[:16]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _safe_name(rel: str) -> str | None:
    if any(ord(c) < 32 or ord(c) == 127 for c in rel):
        return "file name contains control characters; rename it with letters, digits, '-', '_' or '.'"
    return None


def _classify(dataset: str, parts: tuple[str, ...]) -> dict:
    if dataset == "enrollment":
        if len(parts) != 3:
            return {"problem": "not in an enrollment/<UNIVERSITY_CODE>/<TERM>/ folder"}
        code, term = parts[0], parts[1]
        if not CODE_RE.match(code):
            return {"problem": f"folder '{code}' is not a university registry code"}
        if not TERM_RE.match(term):
            return {"university_code": code, "problem": f"folder '{term}' is not a term like 2024-1"}
        return {"university_code": code, "term": term}
    if len(parts) != 2:
        return {"problem": "not in a placements/<ROUND>/ folder"}
    if not ROUND_RE.match(parts[0]):
        return {"problem": f"folder '{parts[0]}' is not a round like 2026H1"}
    return {"round": parts[0]}


def scan(landing: Path) -> list[LandedFile]:
    """Every file under the dataset folders, in submission order (folder, then time received, then name)."""
    landing = landing.resolve()
    found: list[LandedFile] = []
    for dataset in DATASETS:
        root = landing / dataset
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for name in filenames:
                full = Path(dirpath) / name
                rel = full.relative_to(landing).as_posix()
                parts = full.relative_to(root).parts
                try:
                    st = full.lstat()
                except FileNotFoundError:  # vanished between listing and reading
                    continue
                item = LandedFile(dataset, full, rel, st.st_size, st.st_mtime, **_classify(dataset, parts))
                problem = _safe_name(rel)
                if full.is_symlink():
                    target = full.resolve()
                    if not target.is_relative_to(landing):
                        problem = "symbolic link pointing outside the landing zone"
                    else:
                        st = target.stat()
                        item.size, item.mtime = st.st_size, st.st_mtime
                if name.startswith(("~$", ".")):
                    problem = "temporary or hidden file (e.g. an Excel lock file), not a submission"
                item.problem = problem or item.problem
                found.append(item)
    found.sort(key=lambda f: (f.dataset, f.university_code or "", f.period or "", f.mtime, f.relpath))
    return found
