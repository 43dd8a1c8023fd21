"""The portal's own state folder, `<data_dir>/portal/`: not pipeline data, never read by a run.

    users.json           accounts (portal/accounts.py)
    uploads.jsonl        one line per upload: who, when, sha256, verdict (no file contents, no student data)
    explanations.json    a university's explanation of a warning and the office's decision
    secret.key           signs the session cookies (made on first start, mode 0600)
    refused/<upload>/    refused uploads, kept aside with their reason, never landed
    tmp/                 uploads being received (same file system as the landing zone, so landing is a rename)

Every read-modify-write takes an OS lock on `.lock`, so `lab2fab users` and a running portal never
lose each other's changes; every file is written whole and renamed into place.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path


def now_utc() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `path` whole: a temporary file beside it, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class State:
    def __init__(self, data_dir: Path):
        self.root = Path(data_dir) / "portal"

    @property
    def users_file(self) -> Path:
        return self.root / "users.json"

    @property
    def uploads_file(self) -> Path:
        return self.root / "uploads.jsonl"

    @property
    def explanations_file(self) -> Path:
        return self.root / "explanations.json"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def refused(self) -> Path:
        return self.root / "refused"

    def ensure(self) -> "State":
        for p in (self.root, self.tmp, self.refused):
            p.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # accounts and refused files (which may hold personal data) stay private
        return self

    @contextlib.contextmanager
    def locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ json documents

    def read_json(self, path: Path, default):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return default

    def write_json(self, path: Path, obj, mode: int = 0o600) -> None:
        write_atomic(path, (json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode(), mode)

    def secret_key(self) -> bytes:
        """The session-signing key: $LAB2FAB_PORTAL_SECRET, else one made here on first start."""
        from transforms.config import settings

        if settings().portal_secret:
            return settings().portal_secret.get_secret_value().encode()
        path = self.root / "secret.key"
        with self.locked():
            if not path.exists():
                write_atomic(path, secrets.token_hex(32).encode(), 0o600)
            return path.read_bytes().strip()

    # ------------------------------------------------------------------ upload log

    def record_upload(self, entry: dict) -> None:
        """Append one upload to the log (a line of JSON, written in one call under the lock)."""
        line = (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode()
        with self.locked():
            fd = os.open(self.uploads_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def uploads(self, university_code: str | None = None) -> list[dict]:
        """Every recorded upload (of one university), newest first."""
        try:
            text = self.uploads_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = [json.loads(line) for line in text.splitlines() if line.strip()]
        if university_code is not None:
            out = [u for u in out if u.get("university_code") == university_code]
        return out[::-1]

    # ------------------------------------------------------------------ explanations

    def explanations(self) -> dict[str, dict]:
        return self.read_json(self.explanations_file, {})

    def update_explanations(self, change) -> dict:
        """Apply `change(explanations)` under the lock and write the result whole."""
        with self.locked():
            current = self.explanations()
            result = change(current)
            self.write_json(self.explanations_file, current)
            return result


def explanation_id(university_code: str, term: str, rule_id: str) -> str:
    return f"{university_code}:{term}:{rule_id}"
