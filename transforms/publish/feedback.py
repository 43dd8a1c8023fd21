"""What each university office is told about its submission for a term, in files it can act on.

`write_feedback(con, out_dir)` writes, for every university and term with an enrollment file in
the manifest, three files under `out_dir/<UNIVERSITY_CODE>/<TERM>`:

* `.json` — machine-readable: the term's status, the files received, and every reason with file,
  line, field, rule id, severity and a message in English and Vietnamese;
* `.md`   — the same for a person, bilingual, with row issues grouped by rule (first lines shown);
* `.csv`  — every reason as a row (UTF-8 with BOM, so that Excel shows Vietnamese correctly).

Status of a university and term: `submission_status` of intermediate.current_submissions, the one
definition that marts.submission_status, the portal and the report also show (the verdict on the
newest real attempt; temporary/hidden files, exact duplicates and files refused for a reason that
is not the office's doing are not attempts). The file whose rows are in use is named beside it:
    accepted                 newest attempt loaded, no row quarantined, no file-level warning pending
    accepted_with_issues     newest attempt loaded, but some rows were quarantined (not loaded)
    accepted_with_warnings   newest attempt loaded, file-level warnings pending (an explanation is due)
    rejected                 newest attempt refused as a whole (any earlier loaded file stays in use)
Each file received is listed with what became of it (loaded, rejected, superseded, duplicate).

Reasons that come from reading the file rather than from the data contract carry the `ING.*` rule
id the ingest code gave them (ops.manifest.reason_rule_id; transforms/contract/rules.py), read here,
never recovered from the reason's words. Every text value that would start a spreadsheet formula
(`= + - @`, tab, carriage return) is prefixed with a single quote in all three files (transforms/publish/safe_csv.py):
the values are the offices' own cells and file names, and these files go back to the offices.
Values quoted from the office's cells (observed, row as sent, extra column names, reasons) are
screened for personal data by content (transforms/contract/privacy.py) — the line, field and rule
still say where to look — and the Markdown escapes them, so no cell becomes HTML or a link.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import re
import sys
from pathlib import Path

import duckdb

from transforms.contract.privacy import mask_json, mask_text, mask_values
from transforms.contract.rules import IngestRule, ingest_rule
from transforms.contract.rules import message as rule_message
from transforms.publish import safe_csv
from transforms.publish.safe_csv import FORMULA_START, neutralise  # noqa: F401  (neutralise: one definition)

from transforms.vocabulary import CODE_RE, TERM_RE

NO_TERM = "unknown-term"  # files of a university that were not in a term folder
MD_EXAMPLES = 20  # row issues shown per rule in the Markdown file (all are in the JSON and CSV)

STATUS_TEXT = {  # one entry per status of intermediate.current_submissions (vocabulary.SUBMISSION_STATUSES)
    "accepted": ("Accepted", "Đã chấp nhận"),
    "accepted_with_issues": ("Accepted, some rows quarantined", "Đã chấp nhận, một số dòng bị cách ly"),
    "accepted_with_warnings": ("Accepted with warnings", "Đã chấp nhận, có cảnh báo"),
    "rejected": ("Rejected", "Bị từ chối"),
}
FILE_STATUS_TEXT = {
    "loaded": ("loaded", "đã nạp"), "rejected": ("rejected", "bị từ chối"),
    "superseded": ("superseded by a newer file", "đã được thay bằng tệp mới hơn"),
    "duplicate": ("duplicate, skipped", "trùng lặp, bỏ qua"),
}

# Why a file was refused, skipped or replaced is stored with its rule id (ops.manifest.reason_rule_id),
# whose meaning, severity and both messages are in the rule catalogue (transforms/contract/rules.py).
NO_RULE = "ING.file.rejected"  # a reason without a rule id (none is written so; kept for safety, never guessed)
REASON_COLUMNS = ["file", "line", "field", "rule_id", "severity", "message_en", "message_vi", "observed",
                  "original_values"]


def _neutral(obj):
    if isinstance(obj, dict):
        return {k: _neutral(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_neutral(v) for v in obj]
    return neutralise(obj)


def _rule(f: dict) -> IngestRule:
    """The catalogue entry of a file's reason."""
    return ingest_rule(f.get("reason_rule_id") or NO_RULE)


def _rows(con, sql: str, params=()) -> list[dict]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _file_entry(f: dict) -> dict:
    return {
        "file": f["path"].rsplit("/", 1)[-1], "path": f["path"], "sha256": f["sha256"], "size_bytes": f["size_bytes"],
        "received_at": f["received_at"].isoformat(sep=" ") if f["received_at"] is not None else None,
        "format": f["format"], "encoding": f["encoding"], "header_line": f["header_line"], "status": f["status"],
        "verdict": f.get("verdict"), "rows_read": f["rows_read"], "rows_loaded": f["rows_loaded"],
        "rows_quarantined": f["rows_quarantined"], "rows_with_warnings": f["rows_with_warnings"],
        "extra_columns": mask_values(f["extra_columns"].split("|")) if f["extra_columns"] else [],
        "reason": mask_text(f["reason"]), "reason_rule_id": f.get("reason_rule_id"),
    }


def _summary(status: str, latest: dict, current: dict | None) -> tuple[str, str]:
    name = latest["path"].rsplit("/", 1)[-1]
    n, ok, q, w = (latest[k] for k in ("rows_read", "rows_loaded", "rows_quarantined", "rows_with_warnings"))
    warned_en = f" {w} loaded rows have warnings; check the rows listed below." if w else ""
    warned_vi = f" {w} dòng đã nạp có cảnh báo; hãy kiểm tra các dòng được liệt kê dưới đây." if w else ""
    if status == "accepted":
        return (f"Accepted: all {ok} rows of '{name}' were loaded.{warned_en}",
                f"Đã chấp nhận: đã nạp đủ {ok} dòng của tệp '{name}'.{warned_vi}")
    if status == "accepted_with_issues":
        return (f"Accepted, some rows quarantined: {ok} of {n} rows of '{name}' were loaded; {q} rows were quarantined "
                f"(not loaded).{warned_en} Correct the rows listed below and send the whole file again.",
                f"Đã chấp nhận, một số dòng bị cách ly: đã nạp {ok} trên {n} dòng của tệp '{name}'; {q} dòng bị cách ly "
                f"(không nạp).{warned_vi} Hãy sửa các dòng được liệt kê dưới đây và gửi lại toàn bộ tệp.")
    if status == "accepted_with_warnings":
        kept_en = f"; {q} rows were quarantined (not loaded)" if q else ""
        kept_vi = f"; {q} dòng bị cách ly (không nạp)" if q else ""
        return (f"Accepted with warnings: {ok} of {n} rows of '{name}' were loaded{kept_en}.{warned_en} Explain the "
                f"file-level warnings listed below in the portal, or correct the file and send the whole file again.",
                f"Đã chấp nhận, có cảnh báo: đã nạp {ok} trên {n} dòng của tệp '{name}'{kept_vi}.{warned_vi} Hãy giải "
                f"trình các cảnh báo cấp tệp được liệt kê dưới đây trên cổng nộp, hoặc sửa và gửi lại toàn bộ tệp.")
    keep_en = keep_vi = ""
    if current is not None:
        cur = current["path"].rsplit("/", 1)[-1]
        keep_en = f" The earlier file '{cur}' stays in use until a corrected file is accepted."
        keep_vi = f" Tệp '{cur}' nộp trước đó vẫn được sử dụng cho đến khi tệp đã sửa được chấp nhận."
    return (f"Rejected: '{name}' was not loaded. {latest['reason'] or ''}{keep_en}".strip(),
            f"Bị từ chối: tệp '{name}' không được nạp. {_rule(latest).message_vi}{keep_vi}")


def _by_file(con, sql: str, file_ids: list[str]) -> dict[str, list[dict]]:
    """Rows of `sql` (which selects file_id first and filters `file_id IN (SELECT unnest(?))`), by file."""
    out: dict[str, list[dict]] = {}
    if file_ids:
        for r in _rows(con, sql, [file_ids]):
            out.setdefault(r.pop("file_id"), []).append(r)
    return out


def _reasons(latest: dict, file_results: list[dict], row_issues: list[dict]) -> list[dict]:
    name = latest["path"].rsplit("/", 1)[-1]
    out = []
    if latest["status"] != "loaded" and latest["reason"]:
        rule = _rule(latest)
        out.append({"file": name, "line": None, "field": None, "rule_id": rule.rule_id, "severity": rule.severity,
                    "message_en": mask_text(latest["reason"]), "message_vi": rule.message_vi, "observed": None,
                    "original_values": None})
    if latest["extra_columns"]:
        rule = ingest_rule("ING.file.extra_columns")
        extra = ", ".join(mask_values(latest["extra_columns"].split("|")))
        out.append({"file": name, "line": latest["header_line"], "field": None, "rule_id": rule.rule_id,
                    "severity": rule.severity, "message_en": f"{rule.message_en} Columns: {extra}.",
                    "message_vi": f"{rule.message_vi} Các cột: {extra}.", "observed": extra, "original_values": None})
    for r in file_results:
        en, vi, _ = rule_message(r["rule_id"]) or (r["rule_id"], r["rule_id"], None)
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


def build_feedback(con, only: set[tuple[str, str]] | None = None) -> dict[tuple[str, str], dict]:
    """(university_code, term) -> feedback document, for every university and term in the manifest
    (or those of `only`). Status, newest attempt and file in use come from
    intermediate.current_submissions, never decided here."""
    files = _rows(con, """
        SELECT file_id, path, sha256, size_bytes, mtime, university_code, term, received_at, format, encoding,
               header_line, extra_columns, rows_read, rows_loaded, rows_quarantined, rows_with_warnings, status, reason,
               reason_rule_id, verdict
        FROM ops.manifest WHERE dataset = 'enrollment' AND university_code IS NOT NULL
        ORDER BY university_code, term NULLS LAST, mtime DESC, path DESC""")
    by_id = {f["file_id"]: f for f in files}
    groups: dict[tuple[str, str], list[dict]] = {}
    for f in files:
        if CODE_RE.match(f["university_code"] or "") and (f["term"] is None or TERM_RE.match(f["term"])):
            groups.setdefault((f["university_code"], f["term"] or NO_TERM), []).append(f)
    if only is not None:
        groups = {k: v for k, v in groups.items() if k in only}
    terms = {(r["university_code"], r["term"] or NO_TERM): (r["submission_status"], by_id[r["file_id"]],
                                                            by_id.get(r["file_id_in_use"]))
             for r in _rows(con, """SELECT university_code, term, submission_status, file_id, file_id_in_use
                                    FROM intermediate.current_submissions""")}
    terms = {k: v for k, v in terms.items() if k in groups}
    latest_ids = sorted({latest["file_id"] for _, latest, _ in terms.values()})
    results = _by_file(con, """
        SELECT file_id, rule_id, severity, observed, rows_failing, accepted_override, override_note
        FROM ops.validation_results WHERE file_id IN (SELECT unnest(?)) AND scope = 'file' AND NOT success
        ORDER BY file_id, severity, rule_id""", latest_ids)
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
            "reasons": _reasons(latest, results.get(latest["file_id"], []), issues.get(latest["file_id"], [])),
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


# In `out_dir`: what each university's and term's three files were written from (their inputs'
# fingerprint) and the files as written (size, mtime), so a run rewrites only the terms whose inputs
# changed; any doubt (another version of the code, a file touched since) and they are written again.
RECORD = ".lab2fab-feedback.json"


def _code_fingerprint() -> str:
    """The code and reference words the files are rendered with: this module, the rule catalogue, the
    personal-data screen and its vocabulary, the CSV quoting, the programme's words, and DuckDB's hash."""
    from transforms.config import REPO_ROOT
    from transforms.contract import privacy, rules
    from transforms import vocabulary

    h = hashlib.sha256(duckdb.__version__.encode())
    for path in [Path(m.__file__) for m in (sys.modules[__name__], rules, privacy, safe_csv, vocabulary)] + [
            REPO_ROOT / "data" / "reference" / name for name in ("value_aliases.csv", "column_aliases.csv")]:
        h.update(path.read_bytes() if path.exists() else b"-")
    return h.hexdigest()


def input_fingerprints(con) -> dict[tuple[str, str], str]:
    """(university_code, term) -> a digest of everything its feedback is built from: the term's
    manifest rows, its intermediate.current_submissions row, and the manifest row, file-level results
    and row issues of its newest attempt and of the file in use (order-independent row hashes)."""
    rows = con.execute("""
        WITH m AS (SELECT university_code, term, count(*) AS n, sum(hash(*COLUMNS(*))) AS h FROM ops.manifest
                   WHERE dataset = 'enrollment' AND university_code IS NOT NULL GROUP BY ALL),
             c AS (SELECT university_code, term, submission_status, file_id, file_id_in_use
                   FROM intermediate.current_submissions),
             r AS (SELECT file_id, count(*) AS n, sum(hash(*COLUMNS(*))) AS h FROM ops.validation_results
                   WHERE scope = 'file' AND NOT success AND file_id IN (SELECT file_id FROM c) GROUP BY ALL),
             i AS (SELECT file_id, count(*) AS n, sum(hash(*COLUMNS(*))) AS h FROM ops.row_issues
                   WHERE file_id IN (SELECT file_id FROM c) GROUP BY ALL),
             u AS (SELECT file_id, hash(*COLUMNS(*)) AS h FROM ops.manifest)
        SELECT m.university_code, m.term,
               row(m.n, m.h, c.submission_status, c.file_id, c.file_id_in_use, r.n, r.h, i.n, i.h, latest.h,
                          in_use.h)::VARCHAR
        FROM m LEFT JOIN c ON c.university_code = m.university_code AND c.term IS NOT DISTINCT FROM m.term
        LEFT JOIN r ON r.file_id = c.file_id LEFT JOIN i ON i.file_id = c.file_id
        LEFT JOIN u AS latest ON latest.file_id = c.file_id LEFT JOIN u AS in_use ON in_use.file_id = c.file_id_in_use
        """).fetchall()
    out: dict[tuple[str, str], list[str]] = {}
    for code, term, fp in rows:  # a NULL term and one named like NO_TERM share their files (build_feedback)
        out.setdefault((code, term or NO_TERM), []).append(fp)
    return {k: hashlib.sha256("\n".join(sorted(v)).encode()).hexdigest()[:32] for k, v in out.items()}


def _stats(paths: list[str]) -> list | None:
    try:
        return [[st.st_size, st.st_mtime_ns] for st in map(os.stat, paths)]
    except OSError:
        return None


def write_feedback(con, out_dir: Path) -> int:
    """Write `<UNIVERSITY>/<TERM>.json|.md|.csv` under `out_dir` for every university and term; returns
    the number of files written (unchanged files are left untouched but counted). A term whose inputs
    (`input_fingerprints`) and three files are as the record in `out_dir` says is not built again.
    Feedback files of universities and terms no longer in the manifest are removed."""
    out_dir = Path(out_dir)
    base = str(out_dir)
    code, fingerprints = _code_fingerprint(), input_fingerprints(con)
    try:
        record = json.loads((out_dir / RECORD).read_text(encoding="utf-8"))
        written = record["terms"] if record.get("code") == code else {}
        written = written if isinstance(written, dict) else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        written = {}

    # strings, not Paths: at national scale (tens of thousands of files) pathlib would be most of the time here
    paths = {key: [f"{base}{os.sep}{key[0]}{os.sep}{key[1]}{suffix}" for suffix in (".json", ".md", ".csv")]
             for key in fingerprints}
    keep = {key for key, fp in fingerprints.items()
            if (w := written.get("/".join(key))) is not None and w == [fp, _stats(paths[key])]}
    todo = set(fingerprints) - keep
    docs = build_feedback(con, only=todo) if todo else {}
    wanted: set[str] = set()
    terms: dict[str, list] = {}
    for key in sorted(keep):
        wanted.update(paths[key])
        terms["/".join(key)] = written["/".join(key)]
    for (code_, term), doc in sorted(docs.items()):
        folder = out_dir / code_
        folder.mkdir(parents=True, exist_ok=True)
        for suffix, text in ((".json", json.dumps(doc, ensure_ascii=False, indent=2) + "\n"),
                             (".md", render_markdown(doc)), (".csv", render_csv(doc))):
            path = folder / f"{term}{suffix}"
            _write(path, text)
            wanted.add(str(path))
        if (code_, term) in fingerprints:
            terms[f"{code_}/{term}"] = [fingerprints[(code_, term)], _stats(paths[(code_, term)])]
    if out_dir.is_dir():
        for folder in os.scandir(out_dir):
            if folder.is_dir(follow_symlinks=False) and CODE_RE.match(folder.name):
                for entry in os.scandir(folder.path):
                    stem, suffix = os.path.splitext(entry.name)
                    if suffix in (".json", ".md", ".csv") and entry.path not in wanted \
                            and entry.is_file() and (TERM_RE.match(stem) or stem == NO_TERM):
                        os.unlink(entry.path)
        tmp = out_dir / f".{RECORD}.tmp"
        tmp.write_text(json.dumps({"code": code, "terms": terms}, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, out_dir / RECORD)
    return len(wanted)
