"""What the portal reads from the published snapshot (opened read-only; never the working warehouse).

Only non-personal columns are selected: file names, counts, rule ids, measured values and the
messages of the contract.  A snapshot replaced by a run while a page is being built is harmless:
the open connection keeps reading the old file.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from transforms.contract.rules import FILE, RULES, WARNING


@contextlib.contextmanager
def connect(snapshot: Path):
    import duckdb

    if not snapshot.exists():
        yield None
        return
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        yield con
    finally:
        con.close()


def _rows(con, sql: str, params=()) -> list[dict]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _has(con, schema: str, table: str, column: str | None = None) -> bool:
    sql = "SELECT count(*) FROM duckdb_columns() WHERE schema_name = ? AND table_name = ?"
    params = [schema, table]
    if column:
        sql, params = sql + " AND column_name = ?", params + [column]
    return con.execute(sql, params).fetchone()[0] > 0


def history(snapshot: Path, university_code: str) -> list[dict] | None:
    """Every enrollment file of the university in the manifest, newest first, with its rows
    quarantined (rows with an error) by rule; None when there is no snapshot yet."""
    with connect(snapshot) as con:
        if con is None:
            return None
        # Late: received after the term's window closed, by the warehouse's own definition of the window.
        windows = _has(con, "intermediate", "term_windows")
        files = _rows(con, f"""
            SELECT m.file_id, m.path, m.sha256, m.term, m.received_at, m.status, m.verdict, m.verdict_note, m.reason,
                   m.rows_read, m.rows_loaded, m.rows_quarantined, m.rows_with_warnings,
                   {"m.received_at > w.window_closes_at" if windows else "NULL"} AS late
            FROM ops.manifest m {"LEFT JOIN intermediate.term_windows w USING (term)" if windows else ""}
            WHERE m.dataset = 'enrollment' AND m.university_code = ?
            ORDER BY m.term DESC NULLS LAST, m.mtime DESC, m.path DESC""", [university_code])
        by_rule = _rows(con, """
            SELECT i.file_id, i.rule_id, i.severity, count(DISTINCT i.line) AS rows
            FROM ops.row_issues i JOIN ops.manifest m USING (file_id)
            WHERE m.dataset = 'enrollment' AND m.university_code = ? AND i.severity = 'error'
            GROUP BY ALL ORDER BY i.file_id, rows DESC, i.rule_id""", [university_code])
    rules: dict[str, list[dict]] = {}
    for r in by_rule:
        rules.setdefault(r.pop("file_id"), []).append(r)
    for f in files:
        f["file"] = f["path"].rsplit("/", 1)[-1]
        f["by_rule"] = rules.get(f["file_id"], [])
        f["display_status"] = ("accepted_with_warnings" if f["status"] == "loaded" and
                               f["verdict"] == "accepted_with_warnings" else f["status"])
    return files


def term_status(snapshot: Path, university_code: str) -> dict[str, dict]:
    """term -> where the university's submission stands, as intermediate.current_submissions defines it
    (the status its feedback files and marts.submission_status give): status and the file in use."""
    with connect(snapshot) as con:
        if con is None or not _has(con, "intermediate", "current_submissions", "path_in_use"):
            return {}
        rows = _rows(con, """
            SELECT term, submission_status AS status, path AS file, path_in_use AS file_in_use
            FROM intermediate.current_submissions WHERE university_code = ? AND term IS NOT NULL""", [university_code])
    return {r.pop("term"): {k: v.rsplit("/", 1)[-1] if k != "status" and v else v for k, v in r.items()} for r in rows}


def known_sha256(snapshot: Path, university_code: str, term: str) -> dict[str, str]:
    """sha256 -> path of the files the manifest holds for this university and term: the same content
    in the same folder is what the pipeline skips as a duplicate."""
    with connect(snapshot) as con:
        if con is None:
            return {}
        return dict(con.execute("""
            SELECT sha256, min(path) FROM ops.manifest
            WHERE dataset = 'enrollment' AND university_code = ? AND term = ? AND sha256 IS NOT NULL
            GROUP BY 1""", [university_code, term]).fetchall())


def pending_warnings(snapshot: Path, university_code: str) -> list[dict]:
    """File-level warnings of the university's files in use that nobody has accepted yet."""
    with connect(snapshot) as con:
        if con is None:
            return []
        rows = _rows(con, """
            SELECT m.term, m.path, v.rule_id, v.observed
            FROM ops.validation_results v JOIN ops.manifest m USING (file_id)
            WHERE m.dataset = 'enrollment' AND m.university_code = ? AND m.status = 'loaded'
              AND v.scope = ? AND v.severity = ? AND NOT v.success AND NOT coalesce(v.accepted_override, false)
            ORDER BY m.term DESC, v.rule_id""", [university_code, FILE, WARNING])
    for r in rows:
        r["file"] = r.pop("path").rsplit("/", 1)[-1]
        rule = RULES.get(r["rule_id"])
        r["message_en"], r["message_vi"] = (rule.message_en, rule.message_vi) if rule else (r["rule_id"], r["rule_id"])
    return rows


def matrix(snapshot: Path) -> list[dict] | None:
    """Every participating university × term with its status from marts.submission_status (the one
    definition the feedback files, the report and analytics.submissions use; late in place of an
    accepted status when the newest attempt came after the window): accepted, accepted_with_issues,
    accepted_with_warnings, late, rejected, missing; and the file whose rows are in use."""
    with connect(snapshot) as con:
        if con is None:
            return None
        late = _has(con, "marts", "submission_status", "status_with_late")
        rule = _has(con, "marts", "submission_status", "reason_rule_id")
        in_use = _has(con, "marts", "submission_status", "path_in_use")
        rows = _rows(con, f"""
            SELECT university_code, name_vi AS university_name, term,
                   {"status_with_late" if late else "submission_status"} AS status,
                   {"late" if late else "false"} AS late, received_at, rows_quarantined, reason,
                   {"reason_rule_id" if rule else "NULL AS reason_rule_id"},
                   {"path_in_use" if in_use else "NULL"} AS file_in_use
            FROM marts.submission_status ORDER BY term, university_code""")
    for r in rows:
        r["received_at"] = None if r["received_at"] is None else str(r["received_at"])[:19]
        r["file_in_use"] = r["file_in_use"].rsplit("/", 1)[-1] if r["file_in_use"] else None
    return rows
