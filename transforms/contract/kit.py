"""The validation kit: `lab2fab validate FILE [--university CODE --term TERM] [--json]`.

A university runs the same contract on one file before sending it: the same reader and
normalisation as ingest, the same GX suites (rows, then the file), the same overrides file, the
same verdict.  Nothing is written anywhere: no landing zone, no warehouse, no key file.

* Reference lists come from the reference CSVs (``data/reference``), checked first.
* Cross-term rules (row count, shares, graduates, unaccounted students) compare with the
  university's previous accepted term in the **published snapshot**, opened read-only, when there
  is one; without a snapshot they are reported as not judged.
* Student-level history (status transitions, unaccounted students) needs the pseudonymisation key
  the warehouse was built with.  When that key is available (``$LAB2FAB_PSEUDONYM_KEY``, the
  Prefect Secret block, or ``<data_dir>/.secrets``) and its fingerprint matches the snapshot's, it
  is used; otherwise a throwaway key is used (no output leaves the machine) and those rules are
  not judged.  A university's own copy of the kit is in the second case.

Exit code: 1 when the file would be rejected (unreadable, or a file-level error), 0 otherwise,
2 when the file cannot be checked at all (unknown university/term, broken reference data).
"""
from __future__ import annotations

import json
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from transforms.contract import suites as contract
from transforms.contract import reference as reference_checks
from transforms.contract import checks
from transforms.ingest.stage import KnownFiles, stage_submissions
from transforms.ingest.landing import LandedFile, sha256_of
from transforms.ingest.normalise import ENROLLMENT_RAW, ENROLLMENT_REQUIRED, PLACEMENT_RAW, PLACEMENT_REQUIRED
from transforms.ingest.readers import AliasTable, read_submission
from transforms.config import get_paths
from transforms.vocabulary import CODE_RE, ROUND_RE, TERM_RE

VERDICT_TEXT = {
    checks.ACCEPTED: ("ACCEPTED: the file would be loaded.", "CHẤP NHẬN: tệp sẽ được nạp."),
    checks.WITH_WARNINGS: ("ACCEPTED WITH WARNINGS: the file would be loaded, but the warnings below must be "
                           "explained to the programme office.",
                           "CHẤP NHẬN KÈM CẢNH BÁO: tệp sẽ được nạp, nhưng cần giải trình các cảnh báo dưới đây "
                           "với văn phòng chương trình."),
    checks.REJECTED: ("REJECTED: the file would be refused; fix the errors below and check it again.",
                      "TỪ CHỐI: tệp sẽ bị từ chối; hãy sửa các lỗi dưới đây rồi kiểm tra lại."),
}


@dataclass
class KitResult:
    path: str
    dataset: str | None = None
    university_code: str | None = None
    term: str | None = None
    verdict: str | None = None
    exit_code: int = 0
    reason: str | None = None
    rule_id: str | None = None  # the ING.* rule of a rejected file's reason (transforms/contract/rules.py)
    rows: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    file_rules: list = field(default_factory=list)
    row_issues: list = field(default_factory=list)


def _where(path: Path, university_code: str | None, term: str | None) -> tuple[str | None, str | None, str | None]:
    """(dataset, university_code, term or round) from the options, else from the landing-zone folders."""
    parent, grand = path.parent.name, path.parent.parent.name
    if term and ROUND_RE.match(term):
        return "placements", None, term
    if not term and ROUND_RE.match(parent):
        return "placements", None, parent
    term = term or (parent if TERM_RE.match(parent) else None)
    university_code = university_code or (grand if TERM_RE.match(parent) and CODE_RE.match(grand) else None)
    return "enrollment", university_code, term


def _key(paths, snapshot: Path) -> tuple[bytes, bool, str]:
    """The warehouse's key when it is here and matches the snapshot, else a throwaway one."""
    from transforms.ingest.pseudonym import PseudonymKeyError, fingerprint, load_key

    if snapshot.exists():
        try:
            key = load_key(paths.secrets, allow_demo_key=False)
        except (PseudonymKeyError, Exception):  # a missing Prefect block is as good as no key here
            key = None
        if key is not None:
            import duckdb

            con = duckdb.connect(str(snapshot), read_only=True)
            try:
                row = con.execute("SELECT value FROM ops.state WHERE name = 'key_fingerprint'").fetchall()
            finally:
                con.close()
            if row and row[0][0] == fingerprint(key):
                return key, True, "checked with the warehouse's pseudonymisation key"
    return secrets.token_bytes(32), False, "not judged: no pseudonymisation key matching the warehouse here"


def _student_numbers(path: Path, dataset: str, university_code: str | None, reference_dir: Path) -> dict[int, str]:
    """line -> the student number as sent (for the kit's report only; never stored)."""
    from transforms.ingest.readers import SubmissionSettings

    try:
        sheet = SubmissionSettings.from_csv(reference_dir / "submission_settings.csv").sheet_for(university_code)
        raw = read_submission(path, AliasTable.from_csv(reference_dir / "column_aliases.csv"),
                              ENROLLMENT_REQUIRED if dataset == "enrollment" else PLACEMENT_REQUIRED,
                              name=path.name, sheet=sheet).frame
        return dict(zip(pd.to_numeric(raw["line"]).astype(int), raw["student_id"].astype(str)))
    except Exception:  # display only
        return {}


def check_file(path: Path, university_code: str | None = None, term: str | None = None, data_dir=None) -> KitResult:
    """Run the contract on one file; nothing is written."""
    path = Path(path)
    paths = get_paths(data_dir)
    dataset, university_code, term = _where(path.resolve(), university_code, term)
    out = KitResult(str(path), dataset, university_code, term)
    if not path.is_file():
        out.exit_code, out.reason = 2, f"{path}: no such file"
        return out
    if dataset == "enrollment" and not (university_code and term and TERM_RE.match(term) and CODE_RE.match(university_code)):
        out.exit_code, out.reason = 2, ("say which university and term the file is for: --university CODE --term 2024-1 "
                                        "(or keep it in a <UNIVERSITY_CODE>/<TERM>/ folder)")
        return out
    ref_check = reference_checks.check_reference(paths.reference)
    if len(ref_check.errors):
        out.exit_code, out.reason = 2, ref_check.message()
        return out
    ref = contract.ContractReference.from_dir(paths.reference)
    if dataset == "enrollment" and university_code not in ref.university_codes:
        out.exit_code, out.reason = 2, f"university code {university_code} is not in the university registry"
        return out

    snapshot = paths.snapshot
    key, with_keys, key_note = _key(paths, snapshot)
    # The pipeline's own staging (reader, settings, normalisation, pseudonymisation), into a
    # throwaway folder: the kit reads the file exactly as ingest would.
    stat = path.stat()
    landed = LandedFile(dataset=dataset, path=path.resolve(), relpath=path.name, size=stat.st_size, mtime=stat.st_mtime,
                        university_code=university_code, term=term if dataset == "enrollment" else None,
                        round=term if dataset == "placements" else None, sha256=sha256_of(path))
    with tempfile.TemporaryDirectory(prefix="lab2fab-kit-") as tmp:
        staged = stage_submissions([landed], KnownFiles({}, {}), Path(tmp), key=key, reference_dir=paths.reference)[0]
        if staged.status != "staged":
            out.verdict, out.exit_code, out.reason, out.rule_id = checks.REJECTED, 1, staged.reason, staged.rule
            return out
        frame = pd.read_parquet(staged.staged)
    file_id = landed.file_id
    frame.insert(0, "row_id", range(len(frame)))
    files = checks.files_frame([{"file_id": file_id, "university_code": university_code, "term": term,
                                 "rows": len(frame), "mtime": path.stat().st_mtime, "path": path.name}])
    suites = checks.Suites.build(dataset, ref)

    history = con = None
    if dataset == "enrollment" and snapshot.exists():
        import duckdb

        con = duckdb.connect()
        con.execute(f"ATTACH '{snapshot}' AS snap (READ_ONLY)")
        history = checks.History(con, source="snap", with_keys=with_keys, universities=[university_code])
        out.history = {"source": str(snapshot), "student_history": key_note}
    elif dataset == "enrollment":
        out.history = {"source": None, "cross_term": "not judged: no published snapshot",
                       "student_history": "not judged: no published snapshot"}
    try:
        outcome = checks.check_batch(frame, files, suites, history)
    finally:
        if history is not None:
            history.close()
        if con is not None:
            con.close()

    overrides = checks.read_overrides(checks.overrides_paths(paths.data_dir))
    results = checks.apply_overrides_frame(outcome.file_results, files, overrides)
    verdict = checks.verdicts_of(results, files["file_id"]).iloc[0]
    out.verdict, out.reason = verdict["verdict"], verdict["reason"]
    out.exit_code = 1 if out.verdict == checks.REJECTED else 0
    out.rule_id = "ING.file.rejected" if out.verdict == checks.REJECTED else None  # as the load records it
    summary = outcome.summary.iloc[0]
    if history is not None and isinstance(summary.get("prev_term"), str):
        out.history["previous_accepted_term"] = summary["prev_term"]
    elif history is not None:
        out.history["previous_accepted_term"] = None

    f = outcome.row_failures.merge(outcome.frame[["row_id", "line", *[f"raw_{c}" for c in
                                   (ENROLLMENT_RAW if dataset == "enrollment" else PLACEMENT_RAW)]]], on="row_id")
    errors = set(f.loc[f["severity"] == contract.ERROR, "row_id"])
    warned = set(f.loc[f["severity"] == contract.WARNING, "row_id"])
    out.rows = {"read": len(frame), "would_load": 0 if out.verdict == checks.REJECTED else len(frame) - len(errors),
                "would_quarantine": len(frame) if out.verdict == checks.REJECTED else len(errors),
                "with_warnings": len(warned)}
    for r in results[results["scope"] == contract.FILE].itertuples():
        out.file_rules.append({"rule_id": r.rule_id, "severity": r.severity, "success": bool(r.success),
                               "observed": r.observed, "accepted_override": bool(r.accepted_override),
                               "override_note": r.override_note, "message_en": contract.RULES[r.rule_id].message_en,
                               "message_vi": contract.RULES[r.rule_id].message_vi})
    row_level = f[f["rule_id"].map(lambda x: contract.RULES[x].scope == contract.ROW).astype(bool)]
    # The kit shows the university its own student numbers (nothing leaves the machine), not keyed hashes.
    student_ids = _student_numbers(path, dataset, university_code, paths.reference) if (
        row_level["column"] == "student_key").any() else {}
    for r in row_level.sort_values(["line", "rule_id"]).to_dict("records"):
        column = r["column"]
        sent = r.get(f"raw_{column}") if column else None
        if column == "student_key":
            sent, r["observed"] = student_ids.get(int(r["line"])), ""
        out.row_issues.append({"line": int(r["line"]), "rule_id": r["rule_id"], "severity": r["severity"],
                               "field": "student_id" if column == "student_key" else column,
                               "sent": None if sent is None or sent != sent else str(sent),
                               "observed": r["observed"], "message_en": r["message_en"], "message_vi": r["message_vi"]})
    return out


def render(result: KitResult, max_rows: int = 200) -> str:
    """The bilingual report a university officer reads."""
    lines = [f"lab2fab validation kit — {result.path}",
             f"Bộ kiểm tra dữ liệu lab2fab — {result.path}", ""]
    if result.exit_code == 2:
        return "\n".join(lines + ["Cannot check this file / Không thể kiểm tra tệp này:", f"  {result.reason}", ""])
    period = "round / đợt" if result.dataset == "placements" else "term / học kỳ"
    lines.append(f"dataset: {result.dataset}; university / trường: {result.university_code or '-'}; "
                 f"{period}: {result.term}")
    en, vi = VERDICT_TEXT[result.verdict]
    lines += ["", f"Verdict:   {en}", f"Kết luận:  {vi}", ""]
    if not result.rows:  # refused by the reader
        return "\n".join(lines + [f"  {result.reason}", ""])
    r = result.rows
    lines += [f"Rows read {r['read']:,}; would be loaded {r['would_load']:,}; would be quarantined {r['would_quarantine']:,}; "
              f"with warnings {r['with_warnings']:,}.",
              f"Số dòng đọc được {r['read']:,}; sẽ nạp {r['would_load']:,}; sẽ bị cách ly {r['would_quarantine']:,}; "
              f"có cảnh báo {r['with_warnings']:,}.", ""]
    if result.history:
        h = result.history
        base = h.get("previous_accepted_term") if h.get("source") else None
        lines.append("Comparison with earlier terms / So sánh với các học kỳ trước: " + (
            f"previous accepted term {base} (published snapshot)" if base else
            h.get("cross_term", "no earlier accepted term in the published snapshot")))
        lines += [f"Student history / Lịch sử sinh viên: {h.get('student_history')}", ""]
    problems = [f for f in result.file_rules if not f["success"]]
    lines.append("File checks / Kiểm tra toàn tệp:" + ("" if problems else " all passed / đều đạt"))
    for f in problems:
        tag = "accepted warning" if f["accepted_override"] else f["severity"]
        lines += [f"  [{tag}] {f['rule_id']}: {f['observed']}", f"      EN: {f['message_en']}", f"      VI: {f['message_vi']}"]
        if f["accepted_override"]:
            lines.append(f"      accepted / đã chấp nhận: {f['override_note']}")
    lines.append("")
    issues = result.row_issues
    if issues:
        by_rule = pd.DataFrame(issues).groupby(["severity", "rule_id"]).agg(rows=("line", "size"), lines=("line", list))
        lines.append("Row problems by rule / Lỗi theo quy tắc:")
        for (severity, rule_id), g in by_rule.sort_index().iterrows():
            rule = contract.RULES[rule_id]
            sample = ", ".join(map(str, g["lines"][:10])) + (" …" if len(g["lines"]) > 10 else "")
            lines += [f"  [{severity}] {rule_id}: {g['rows']} row(s), line(s) {sample}",
                      f"      EN: {rule.message_en}", f"      VI: {rule.message_vi}"]
        lines += ["", "Row by row / Chi tiết từng dòng (line / dòng, field / cột, value sent / giá trị đã gửi):"]
        for i in issues[:max_rows]:
            sent = f" = {i['sent']!r}" if i["sent"] is not None else ""
            lines += [f"  line {i['line']}: [{i['severity']}] {i['rule_id']} — {i['field'] or ''}{sent}"
                      + (f" ({i['observed']})" if i["observed"] and i["observed"] != i["sent"] else ""),
                      f"      {i['message_en']} / {i['message_vi']}"]
        if len(issues) > max_rows:
            lines.append(f"  … and {len(issues) - max_rows} more / và {len(issues) - max_rows} dòng khác (use --json)")
    else:
        lines.append("Row checks / Kiểm tra từng dòng: no problems / không có lỗi")
    return "\n".join(lines + [""])


def validate_file(path: Path, university_code: str | None = None, term: str | None = None, data_dir=None,
                  *, as_json: bool = False) -> tuple[int, str]:
    """`lab2fab validate`: (exit code, report text).  1 = the file would be rejected."""
    result = check_file(path, university_code, term, data_dir)
    if as_json:
        return result.exit_code, json.dumps(result.__dict__, ensure_ascii=False, indent=2, default=str)
    return result.exit_code, render(result)
