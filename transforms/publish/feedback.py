"""What each university office is told about its submission for a term, in files it can act on.

`write_feedback(con, out_dir)` writes, for every university and term with an enrollment file in
the manifest, three files under `out_dir/<UNIVERSITY_CODE>/<TERM>`:

* `.json` — machine-readable: the term's status, the files received, and every reason with file,
  line, field, rule id, severity and a message in English and Vietnamese;
* `.md`   — the same for a person, bilingual, with row issues grouped by rule (first lines shown);
* `.csv`  — every reason as a row (UTF-8 with BOM, so that Excel shows Vietnamese correctly).

Status of a university and term (the newest file received decides; temporary/hidden files and
exact duplicates do not count as attempts):
    accepted                 newest file loaded, no row quarantined, no warning
    accepted_with_warnings   newest file loaded, but rows were quarantined or warnings are pending
    rejected                 newest file refused as a whole (any earlier accepted file stays in use)
    superseded               (per file) replaced by a newer accepted file

Reasons that come from reading the file rather than from the data contract get `ING.*` rule ids
(see `INGEST_RULES`). Every text value that would start a spreadsheet formula (`= + - @`, tab,
carriage return) is prefixed with a single quote in all three files (transforms/publish/safe_csv.py):
the values are the offices' own cells and file names, and these files go back to the offices.
Values quoted from the office's cells (observed, row as sent, extra column names, reasons) are
screened for personal data by content (transforms/contract/privacy.py) — the line, field and rule
still say where to look — and the Markdown escapes them, so no cell becomes HTML or a link.
"""
from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

from transforms.contract.privacy import mask_json, mask_text, mask_values
from transforms.publish import safe_csv
from transforms.publish.safe_csv import FORMULA_START, neutralise  # noqa: F401  (neutralise: one definition)

from transforms.vocabulary import CODE_RE, TERM_RE

NO_TERM = "unknown-term"  # files of a university that were not in a term folder
MD_EXAMPLES = 20  # row issues shown per rule in the Markdown file (all are in the JSON and CSV)

STATUS_TEXT = {
    "accepted": ("Accepted", "Đã chấp nhận"),
    "accepted_with_warnings": ("Accepted with warnings", "Đã chấp nhận, có cảnh báo"),
    "rejected": ("Rejected", "Bị từ chối"),
    "superseded": ("Superseded", "Đã được thay thế"),
}
FILE_STATUS_TEXT = {
    "loaded": ("loaded", "đã nạp"), "rejected": ("rejected", "bị từ chối"),
    "superseded": ("superseded by a newer file", "đã được thay bằng tệp mới hơn"),
    "duplicate": ("duplicate, skipped", "trùng lặp, bỏ qua"),
}

# Reasons found while reading a file: rule id, matched on the reason text (first match wins), and
# what it means in both languages. The English reason itself gives the details.
INGEST_RULES: list[tuple[str, str, str, str]] = [
    ("ING.file.duplicate", r"^same content \(sha256", "The same file (same content) was already received; this copy was skipped.",
     "Tệp này (cùng nội dung) đã được nhận trước đó; bản sao này được bỏ qua."),
    ("ING.file.all_quarantined", r"every one of the \d+ rows was quarantined", "Every row of the file was quarantined; nothing was loaded.",
     "Tất cả các dòng của tệp đều bị cách ly; không dòng nào được nạp."),
    ("ING.file.superseded", r"replaced by a newer submission", "A newer file for the same term replaced this one.",
     "Một tệp mới hơn cho cùng học kỳ đã thay thế tệp này."),
    ("ING.file.link", r"symbolic link|not a regular file", "The upload is a link or a special file, not a file; it was not read.",
     "Tệp tải lên là liên kết hoặc tệp đặc biệt, không phải tệp dữ liệu; hệ thống không đọc."),
    ("ING.file.hidden", r"temporary lock file|hidden file", "A temporary or hidden file, not a submission.",
     "Tệp tạm hoặc tệp ẩn, không phải tệp nộp."),
    ("ING.file.name", r"file name ", "The file name is not allowed; rename the file and send it again.",
     "Tên tệp không hợp lệ; hãy đổi tên tệp và gửi lại."),
    ("ING.file.term_future", r"is a term after the current term",
     "The file is in the folder of a term that has not begun yet; it was not read. Put it in the folder of the term it describes.",
     "Tệp nằm trong thư mục của một học kỳ chưa bắt đầu nên không được đọc. Hãy đặt tệp vào thư mục của học kỳ mà tệp mô tả."),
    ("ING.file.term_range", r"outside the collection's terms",
     "The file is in the folder of a term the collection does not take; it was not read.",
     "Tệp nằm trong thư mục của một học kỳ ngoài phạm vi thu thập nên không được đọc."),
    ("ING.file.location", r"not in an? \w+/|is not a university registry code|is not a term like|is not a round like",
     "The file is not in the folder of a university and term.", "Tệp không nằm trong thư mục của một trường và học kỳ."),
    ("ING.file.unavailable", r"disappeared while|could not be listed|could not be examined|could not be read|changed while",
     "The file could not be read when it was processed; it will be read again.",
     "Không đọc được tệp khi xử lý; hệ thống sẽ đọc lại."),
    ("ING.file.size", r"over the \d+-byte limit|exceed the limit|more than \d+ rows|unpacks to|parts, over|merged cells|merged ranges",
     "The file is too large; split it and send the parts.", "Tệp quá lớn; hãy tách tệp và gửi từng phần."),
    ("ING.file.unsafe", r"entity declarations|external references", "The workbook contains unsafe XML and was not read.",
     "Tệp Excel chứa XML không an toàn nên không được đọc."),
    ("ING.file.encoding", r"encoding cannot be determined", "The text encoding of the file could not be determined; export it as CSV UTF-8.",
     "Không xác định được bảng mã của tệp; hãy xuất lại dưới dạng CSV UTF-8."),
    ("ING.file.type", r"is not accepted|legacy Excel|spreadsheet saved with|password-protected|the file is empty",
     "This kind of file is not accepted; send CSV (UTF-8), Excel (.xlsx, .xlsm, .xlsb, .xls) or OpenDocument (.ods).",
     "Loại tệp này không được chấp nhận; hãy gửi CSV (UTF-8), Excel (.xlsx, .xlsm, .xlsb, .xls) hoặc OpenDocument (.ods)."),
    ("ING.file.sheet", r"has no sheet named|has no worksheet", "The workbook has no sheet to read.",
     "Tệp Excel không có trang tính cần đọc."),
    ("ING.file.header", r"no header row found", "No header row with the expected column names was found.",
     "Không tìm thấy dòng tiêu đề với tên cột như quy định."),
    ("ING.file.columns", r"missing required column", "Required columns are missing.", "Thiếu cột bắt buộc."),
    ("ING.file.records", r"the quote \(\"\) that opens|would overwrite another|records in the file but",
     "The rows of the file cannot all be told apart (a quote never closed, a row number written twice, or fewer rows "
     "read than the file holds), so no row of it was loaded; fix the line the reason names and send the file again.",
     "Không tách được đầy đủ các dòng của tệp (dấu ngoặc kép không được đóng, số dòng bị ghi hai lần, hoặc số dòng đọc "
     "được ít hơn số dòng trong tệp) nên không dòng nào được nạp; hãy sửa dòng được nêu rồi gửi lại tệp."),
    ("ING.file.damaged", r"not a valid |cannot be read as |not a readable CSV", "The file is damaged or not in the stated format.",
     "Tệp bị hỏng hoặc không đúng định dạng."),
]
INGEST_FALLBACK = ("ING.file.rejected", "The file was rejected.", "Tệp bị từ chối.")
EXTRA_COLUMNS = ("ING.file.extra_columns", "Columns with names the system does not know were kept aside, not loaded.",
                 "Các cột có tên không thuộc danh mục được để riêng, không nạp.")
# File-level warnings raised while loading (transforms/ingest/stage.py), in ops.validation_results
# beside the contract's own: (message_en, message_vi, field).
INGEST_WARNINGS = {
    "ING.file.matches_other_university": (
        "This file is byte for byte the same as a file another university sent. It was taken as your own "
        "submission; check that it holds your university's students and send your own file if not.",
        "Tệp này giống hệt từng byte với một tệp do trường khác gửi. Tệp được nhận là bài nộp của trường bạn; "
        "hãy kiểm tra tệp có đúng sinh viên của trường bạn không, nếu không hãy gửi tệp của trường.", None),
    "ING.file.matches_other_period": (
        "This file is byte for byte the same as a file your university sent for another term. It was taken "
        "for this term; check that it is this term's data.",
        "Tệp này giống hệt từng byte với tệp trường bạn đã gửi cho một học kỳ khác. Tệp được nhận cho học kỳ "
        "này; hãy kiểm tra đó có đúng là dữ liệu của học kỳ này không.", None),
}
NOT_ATTEMPTS = {"ING.file.hidden", "ING.file.unavailable", "ING.file.duplicate"}
REASON_COLUMNS = ["file", "line", "field", "rule_id", "severity", "message_en", "message_vi", "observed",
                  "original_values"]


def _neutral(obj):
    if isinstance(obj, dict):
        return {k: _neutral(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_neutral(v) for v in obj]
    return neutralise(obj)


def ingest_rule(reason: str | None) -> tuple[str, str, str]:
    """(rule id, message_en, message_vi) of a file-level reason from ingestion."""
    text = reason or ""
    for rule_id, pattern, en, vi in INGEST_RULES:
        if re.search(pattern, text):
            return rule_id, en, vi
    return INGEST_FALLBACK


def _rows(con, sql: str, params=()) -> list[dict]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _columns(con, schema: str, table: str) -> set[str]:
    return {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ?",
                                      [schema, table]).fetchall()}


def _contract_messages() -> dict:
    try:
        from transforms.contract.suites import RULES
    except Exception:  # GX not importable here: rule ids still identify the reasons
        return {}
    return {k: (r.message_en, r.message_vi, r.column) for k, r in RULES.items()}


def _file_entry(f: dict) -> dict:
    return {
        "file": f["path"].rsplit("/", 1)[-1], "path": f["path"], "sha256": f["sha256"], "size_bytes": f["size_bytes"],
        "received_at": f["received_at"].isoformat(sep=" ") if f["received_at"] is not None else None,
        "format": f["format"], "encoding": f["encoding"], "header_line": f["header_line"], "status": f["status"],
        "verdict": f.get("verdict"), "rows_read": f["rows_read"], "rows_loaded": f["rows_loaded"],
        "rows_quarantined": f["rows_quarantined"], "rows_with_warnings": f["rows_with_warnings"],
        "extra_columns": mask_values(f["extra_columns"].split("|")) if f["extra_columns"] else [],
        "reason": mask_text(f["reason"]),
    }


def _term_status(files: list[dict]) -> tuple[str, dict, dict | None]:
    """(status, the newest real attempt, the file whose rows are in use)."""
    attempts = [f for f in files if f["status"] != "duplicate"
                and not (f["status"] == "rejected" and ingest_rule(f["reason"])[0] in NOT_ATTEMPTS)]
    latest = (attempts or files)[0]
    current = next((f for f in files if f["status"] == "loaded"), None)
    if latest["status"] == "loaded":
        warned = latest["rows_quarantined"] or latest["rows_with_warnings"] or latest.get("verdict") == "accepted_with_warnings"
        return ("accepted_with_warnings" if warned else "accepted"), latest, current
    if latest["status"] == "superseded":
        return "superseded", latest, current
    return "rejected", latest, current


def _summary(status: str, latest: dict, current: dict | None) -> tuple[str, str]:
    name = latest["path"].rsplit("/", 1)[-1]
    n, ok, q, w = (latest[k] for k in ("rows_read", "rows_loaded", "rows_quarantined", "rows_with_warnings"))
    if status == "accepted":
        return (f"Accepted: all {ok} rows of '{name}' were loaded.",
                f"Đã chấp nhận: đã nạp đủ {ok} dòng của tệp '{name}'.")
    if status == "accepted_with_warnings":
        return (f"Accepted with warnings: {ok} of {n} rows of '{name}' were loaded; {q} rows were quarantined (not "
                f"loaded) and {w} rows have warnings. Correct the rows listed below and send the whole file again.",
                f"Đã chấp nhận, có cảnh báo: đã nạp {ok} trên {n} dòng của tệp '{name}'; {q} dòng bị cách ly (không "
                f"nạp) và {w} dòng có cảnh báo. Hãy sửa các dòng được liệt kê dưới đây và gửi lại toàn bộ tệp.")
    if status == "superseded":
        return (f"'{name}' was replaced by a newer file.", f"Tệp '{name}' đã được thay bằng một tệp mới hơn.")
    keep_en = keep_vi = ""
    if current is not None:
        cur = current["path"].rsplit("/", 1)[-1]
        keep_en = f" The earlier file '{cur}' stays in use until a corrected file is accepted."
        keep_vi = f" Tệp '{cur}' nộp trước đó vẫn được sử dụng cho đến khi tệp đã sửa được chấp nhận."
    return (f"Rejected: '{name}' was not loaded. {latest['reason'] or ''}{keep_en}".strip(),
            f"Bị từ chối: tệp '{name}' không được nạp. {ingest_rule(latest['reason'])[2]}{keep_vi}")


def _by_file(con, sql: str, file_ids: list[str]) -> dict[str, list[dict]]:
    """Rows of `sql` (which selects file_id first and filters `file_id IN (SELECT unnest(?))`), by file."""
    out: dict[str, list[dict]] = {}
    if file_ids:
        for r in _rows(con, sql, [file_ids]):
            out.setdefault(r.pop("file_id"), []).append(r)
    return out


def _reasons(latest: dict, messages: dict, file_results: list[dict], row_issues: list[dict]) -> list[dict]:
    name = latest["path"].rsplit("/", 1)[-1]
    out = []
    if latest["status"] != "loaded" and latest["reason"]:
        rule_id, en, vi = ingest_rule(latest["reason"])
        out.append({"file": name, "line": None, "field": None, "rule_id": rule_id, "severity": "error",
                    "message_en": mask_text(latest["reason"]), "message_vi": vi, "observed": None,
                    "original_values": None})
    if latest["extra_columns"]:
        rule_id, en, vi = EXTRA_COLUMNS
        extra = ", ".join(mask_values(latest["extra_columns"].split("|")))
        out.append({"file": name, "line": latest["header_line"], "field": None, "rule_id": rule_id, "severity": "info",
                    "message_en": f"{en} Columns: {extra}.", "message_vi": f"{vi} Các cột: {extra}.",
                    "observed": extra, "original_values": None})
    for r in file_results:
        en, vi, _ = messages.get(r["rule_id"], (r["rule_id"], r["rule_id"], None))
        if r["accepted_override"]:
            en, vi = f"{en} (accepted: {r['override_note']})", f"{vi} (đã chấp nhận: {r['override_note']})"
        out.append({"file": name, "line": None, "field": None, "rule_id": r["rule_id"], "severity": r["severity"],
                    "message_en": en, "message_vi": vi, "observed": mask_text(r["observed"]), "original_values": None})
    for r in row_issues:
        try:
            original = json.loads(r["original_values"]) if r["original_values"] else None
        except ValueError:
            original = r["original_values"]
        out.append({"file": name, **{k: r[k] for k in REASON_COLUMNS[1:-1]}, "observed": mask_text(r["observed"]),
                    "original_values": mask_json(original)})
    return out


def build_feedback(con) -> dict[tuple[str, str], dict]:
    """(university_code, term) -> feedback document, for every university and term in the manifest."""
    cols = _columns(con, "ops", "manifest")
    verdict = "verdict" if "verdict" in cols else "NULL AS verdict"
    files = _rows(con, f"""
        SELECT file_id, path, sha256, size_bytes, mtime, university_code, term, received_at, format, encoding,
               header_line, extra_columns, rows_read, rows_loaded, rows_quarantined, rows_with_warnings, status, reason,
               {verdict}
        FROM ops.manifest WHERE dataset = 'enrollment' AND university_code IS NOT NULL
        ORDER BY university_code, term NULLS LAST, mtime DESC, path DESC""")
    groups: dict[tuple[str, str], list[dict]] = {}
    for f in files:
        if CODE_RE.match(f["university_code"] or "") and (f["term"] is None or TERM_RE.match(f["term"])):
            groups.setdefault((f["university_code"], f["term"] or NO_TERM), []).append(f)
    terms = {k: _term_status(members) for k, members in groups.items()}
    latest_ids = sorted({latest["file_id"] for _, latest, _ in terms.values()})
    has_results = {"scope", "observed", "accepted_override", "override_note"} <= _columns(con, "ops", "validation_results")
    messages = {**INGEST_WARNINGS, **_contract_messages()} if has_results else {}
    results = _by_file(con, """
        SELECT file_id, rule_id, severity, observed, rows_failing, accepted_override, override_note
        FROM ops.validation_results WHERE file_id IN (SELECT unnest(?)) AND scope = 'file' AND NOT success
        ORDER BY file_id, severity, rule_id""", latest_ids) if has_results else {}
    issues = _by_file(con, """
        SELECT file_id, line, field, rule_id, severity, observed, message_en, message_vi, original_values
        FROM ops.row_issues WHERE file_id IN (SELECT unnest(?))
        ORDER BY file_id, line, severity, rule_id, field""", latest_ids)
    out = {}
    for (code, term), members in groups.items():
        status, latest, current = terms[(code, term)]
        en, vi = _summary(status, latest, current)
        out[(code, term)] = _neutral({
            "university_code": code, "term": term, "status": status,
            "status_en": STATUS_TEXT[status][0], "status_vi": STATUS_TEXT[status][1],
            "summary_en": en, "summary_vi": vi,
            "latest_file": _file_entry(latest), "file_in_use": _file_entry(current) if current else None,
            "files": [_file_entry(f) for f in members],
            "reasons": _reasons(latest, messages, results.get(latest["file_id"], []), issues.get(latest["file_id"], [])),
        })
    return out


# ---------------------------------------------------------------- rendering

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def _md_cell(value) -> str:
    """A university-supplied string as inert Markdown: HTML escaped (`<script>` stays text), the
    characters that make emphasis, code, links or table cells backslash-escaped, one line."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
    text = html.escape(neutralise(value), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\r", " ").replace("\n", " ")


def render_markdown(doc: dict) -> str:
    lines = [f"# {doc['university_code']} — {doc['term']}: {doc['status_en']} / {doc['status_vi']}", "",
             _md_cell(doc["summary_en"]), "", _md_cell(doc["summary_vi"]), "",
             "## Files received / Các tệp đã nhận", "",
             "| file / tệp | received / ngày nhận | status / trạng thái | rows read / số dòng | loaded / đã nạp | quarantined / cách ly |",
             "|---|---|---|---:|---:|---:|"]
    for f in doc["files"]:
        en, vi = FILE_STATUS_TEXT.get(str(f["status"]).lstrip("'"), (f["status"], f["status"]))
        lines.append(f"| {_md_cell(f['file'])} | {_md_cell(f['received_at'])} | {_md_cell(en)} / {_md_cell(vi)} | "
                     f"{f['rows_read']} | {f['rows_loaded']} | {f['rows_quarantined']} |")
    reasons = doc["reasons"]
    file_level = [r for r in reasons if r["line"] is None or str(r["rule_id"]).startswith("ING.")]
    row_level = [r for r in reasons if r not in file_level]
    if file_level:
        lines += ["", "## The file / Về tệp", ""]
        for r in file_level:
            lines.append(f"- **{_md_cell(r['rule_id'])}** ({_md_cell(r['severity'])}): {_md_cell(r['message_en'])}  ")
            lines.append(f"  {_md_cell(r['message_vi'])}")
    if row_level:
        lines += ["", "## Rows / Các dòng", "",
                  f"Each rule below lists up to {MD_EXAMPLES} lines; the .csv and .json files beside this one list "
                  "them all. / Mỗi quy tắc dưới đây liệt kê tối đa "
                  f"{MD_EXAMPLES} dòng; tệp .csv và .json cùng thư mục liệt kê đầy đủ."]
        by_rule: dict[str, list[dict]] = {}
        for r in row_level:
            by_rule.setdefault(r["rule_id"], []).append(r)
        for rule_id, items in sorted(by_rule.items(), key=lambda kv: (kv[1][0]["severity"] != "error", kv[0])):
            first = items[0]
            lines += ["", f"### {_md_cell(rule_id)} — {_md_cell(first['severity'])}, {len(items)} rows / dòng", "",
                      f"{_md_cell(first['message_en'])}  ", f"{_md_cell(first['message_vi'])}", "",
                      "| line / dòng | field / cột | value / giá trị | row as sent / dòng đã gửi |", "|---:|---|---|---|"]
            for r in items[:MD_EXAMPLES]:
                lines.append(f"| {r['line']} | {_md_cell(r['field'])} | {_md_cell(r['observed'])} | "
                             f"{_md_cell(r['original_values'])} |")
            if len(items) > MD_EXAMPLES:
                lines.append(f"| … | | {len(items) - MD_EXAMPLES} more / còn nữa | |")
    return "\n".join(lines) + "\n"


def render_csv(doc: dict) -> str:
    rows = [["university_code", "term", "status", *REASON_COLUMNS]]
    for r in doc["reasons"]:
        values = [r[c] for c in REASON_COLUMNS]
        values[-1] = json.dumps(values[-1], ensure_ascii=False) if isinstance(values[-1], (dict, list)) else values[-1]
        rows.append([doc["university_code"], doc["term"], doc["status"], *values])
    return "\ufeff" + safe_csv.to_csv_text(rows, lineterminator="\r\n")


def _write(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    if path.exists() and path.read_bytes() == data:
        return  # unchanged: keep its time stamp
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_feedback(con, out_dir: Path) -> int:
    """Write `<UNIVERSITY>/<TERM>.json|.md|.csv` under `out_dir` for every university and term; returns
    the number of files written (unchanged files are left untouched but counted). Feedback files
    of universities and terms no longer in the manifest are removed."""
    out_dir = Path(out_dir)
    docs = build_feedback(con)
    wanted: set[Path] = set()
    for (code, term), doc in sorted(docs.items()):
        folder = out_dir / code
        folder.mkdir(parents=True, exist_ok=True)
        for suffix, text in ((".json", json.dumps(doc, ensure_ascii=False, indent=2) + "\n"),
                             (".md", render_markdown(doc)), (".csv", render_csv(doc))):
            path = folder / f"{term}{suffix}"
            _write(path, text)
            wanted.add(path)
    if out_dir.is_dir():
        for folder in out_dir.iterdir():
            if folder.is_dir() and not folder.is_symlink() and CODE_RE.match(folder.name):
                for path in folder.iterdir():
                    if path.suffix in (".json", ".md", ".csv") and path not in wanted and path.is_file() \
                            and (TERM_RE.match(path.stem) or path.stem == NO_TERM):
                        path.unlink()
    return len(wanted)
