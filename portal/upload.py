"""An upload: streamed to disk under the size limit, judged by the validation kit, then landed or kept aside.

The verdict is `transforms.contract.kit.check_file` — the pipeline's own reader, normalisation,
GX suites and overrides — run on the received file before it is landed, so it is what the next
run decides.  The file name gets the landing scan's own checks (`landing.name_problem`): a name
the scan would refuse is refused here, before anything is landed.  An accepted or warned file is
linked into `landing/enrollment/<UNIVERSITY>/<TERM>/` in one step (a hard link from the portal's
tmp folder on the same file system: the scan never sees half a file, and an existing file is never
replaced); a refused one is moved to `portal/refused/<upload>/` with its reason.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from portal.state import State, now_utc

_CHECK_LOCK = threading.Lock()  # one kit run at a time: the machine's cores belong to the pipeline too
MAX_FIELD_BYTES = 8192


class UploadRefused(Exception):
    """The request itself is refused (HTTP status, i18n key, values); nothing is kept."""

    def __init__(self, status: int, key: str, **values):
        super().__init__(key)
        self.status, self.key, self.values = status, key, values


def max_file_bytes() -> int:
    from transforms.ingest import readers

    return readers.max_file_bytes()


def new_upload_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class Received:
    upload_id: str
    fields: dict = field(default_factory=dict)
    name: str | None = None
    path: Path | None = None
    size: int = 0
    sha256: str | None = None
    seconds: float = 0.0


async def receive(request, state: State, check_csrf) -> Received:
    """Parse a multipart upload as it arrives, writing the file part to `portal/tmp/<upload>/<name>`.

    `check_csrf(token)` must pass before the file part starts (the form sends its token first),
    so a forged request writes nothing; the size limit is enforced while reading.
    """
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in options:
        raise UploadRefused(400, "no_file")
    limit = max_file_bytes()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + 64 * 1024:  # refused before a byte is read
        raise UploadRefused(413, "too_large", limit=limit)
    out = Received(new_upload_id())
    started = time.perf_counter()
    part: dict = {}
    digest = hashlib.sha256()

    def on_part_begin():
        part.clear()
        part.update(headers={}, field=b"", value=bytearray(), fh=None)

    def on_header_field(data, start, end):
        part["field"] += data[start:end]

    def on_header_value(data, start, end):
        key = part["field"].decode("latin-1").lower()
        part["headers"][key] = part["headers"].get(key, b"") + data[start:end]

    def on_header_end():
        part["field"] = b""

    def on_headers_finished():
        _, disp = parse_options_header(part["headers"].get("content-disposition", b""))
        part["name"] = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = disp.get(b"filename")
        if filename is not None and part["name"] == "file":
            if not check_csrf(out.fields.get("csrf")):
                raise UploadRefused(403, "csrf")
            name = filename.decode("utf-8", "surrogateescape")
            if not name:
                return
            folder = state.tmp / out.upload_id
            folder.mkdir(parents=True)
            # The name is data: keep it only as the last component, checked later like the landing scan does.
            safe = name.replace("/", "_").replace("\x00", "_")
            out.name, out.path = name, folder / (safe if safe not in (".", "..") else "_")
            part["fh"] = open(out.path, "xb")

    def on_part_data(data, start, end):
        if part.get("fh") is not None:
            out.size += end - start
            if out.size > limit:
                raise UploadRefused(413, "too_large", limit=limit)
            part["fh"].write(data[start:end])
            digest.update(data[start:end])
        elif "name" in part:
            part["value"] += data[start:end]
            if len(part["value"]) > MAX_FIELD_BYTES:
                raise UploadRefused(400, "no_file")

    def on_part_end():
        if part.get("fh") is not None:
            part["fh"].close()
            part["fh"] = None
        elif "name" in part and part["name"] != "file":
            out.fields[part["name"]] = bytes(part["value"]).decode("utf-8", "replace")

    parser = MultipartParser(options[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except BaseException as e:
        if part.get("fh") is not None:
            part["fh"].close()
        discard(state, out)
        if isinstance(e, Exception) and not isinstance(e, UploadRefused):
            raise UploadRefused(400, "no_file") from e  # a malformed body
        raise
    out.sha256 = digest.hexdigest() if out.path else None
    out.seconds = time.perf_counter() - started
    return out


def discard(state: State, received: Received) -> None:
    shutil.rmtree(state.tmp / received.upload_id, ignore_errors=True)


def _landed_sha256(state: State, university_code: str, term: str) -> dict[str, str]:
    return {u["sha256"]: u["landed_as"] for u in state.uploads(university_code)
            if u.get("landed_as") and u.get("term") == term}


def term_problem(paths, term: str):
    """Why the landing scan would refuse files of `term` (a landing `Refusal`: rule and text), or None."""
    from transforms.ingest import landing

    window = getattr(landing, "TermWindow", None)
    return window.from_settings(paths.reference).problem(term) if window is not None else None


def judge_and_land(paths, state: State, user, term: str, received: Received) -> tuple[dict, object | None]:
    """(the upload-log entry, the kit's result or None) for a received file; lands or keeps it aside."""
    from transforms.contract import checks
    from transforms.ingest.landing import Refusal, name_problem, printable

    from portal import snapshot

    code = user.university_code
    entry = {"id": received.upload_id, "at": now_utc(), "user": user.name, "university_code": code, "term": term,
             "file": printable(received.name), "size_bytes": received.size, "sha256": received.sha256,
             "landed_as": None, "kept_as": None, "rows": None, "file_warnings": []}
    started = time.perf_counter()
    problem = (Refusal("ING.file.name", "file name contains '/', which is a folder separator; rename it and send it again")
               if "/" in received.name else name_problem(received.name) or term_problem(paths, term))
    result = None
    if problem:
        entry.update(verdict=checks.REJECTED, reason=f"{entry['file']}: {problem.text}", rule_id=problem.rule)
    else:
        earlier = {**snapshot.known_sha256(paths.snapshot, code, term),
                   **_landed_sha256(state, code, term)}.get(received.sha256)
        if earlier:
            entry.update(verdict="duplicate",
                         reason=f"same content (sha256 {received.sha256[:12]}…) as {earlier}, already received; "
                                "not sent again", rule_id="ING.file.duplicate")
        else:
            from transforms.contract.kit import check_file

            with _CHECK_LOCK:
                result = check_file(received.path, code, term, paths.data_dir)
            entry.update(verdict=result.verdict if result.exit_code != 2 else checks.REJECTED, reason=result.reason,
                         rule_id=result.rule_id, rows=result.rows or None,
                         file_warnings=[f["rule_id"] for f in result.file_rules
                                        if not f["success"] and f["severity"] == "warning" and not f["accepted_override"]])
    entry["check_seconds"] = round(time.perf_counter() - started, 3)
    if entry["verdict"] in (checks.ACCEPTED, checks.WITH_WARNINGS):
        entry["landed_as"] = _land(paths, received, code, term)
    elif entry["verdict"] == checks.REJECTED:
        entry["kept_as"] = _keep_aside(state, received, entry["reason"])
    discard(state, received)
    state.record_upload(entry)
    return entry, result


def _land(paths, received: Received, code: str, term: str) -> str:
    folder = paths.landing / "enrollment" / code / term
    folder.mkdir(parents=True, exist_ok=True)
    name = received.path.name
    stem, dot, suffix = name.rpartition(".")
    candidates = [name, *(f"{stem}-{received.upload_id}.{suffix}" if dot else f"{name}-{received.upload_id}",)]
    for candidate in candidates:
        target = folder / candidate
        try:
            os.link(received.path, target)  # fails if the name exists: a landed file is never replaced
        except FileExistsError:
            continue
        except OSError:  # another file system: copy beside the target under a hidden name, then link
            tmp = folder / f".{candidate}.{received.upload_id}.part"
            shutil.copyfile(received.path, tmp)
            try:
                os.link(tmp, target)
            except FileExistsError:
                continue
            finally:
                tmp.unlink(missing_ok=True)
        return target.relative_to(paths.landing).as_posix()
    raise FileExistsError(f"{folder}: could not find a free name for {name}")


def _keep_aside(state: State, received: Received, reason: str | None) -> str:
    folder = state.refused / received.upload_id
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / received.path.name
    os.replace(received.path, target)
    (folder / "REASON.txt").write_text((reason or "rejected") + "\n", encoding="utf-8")
    return target.relative_to(state.root).as_posix()
