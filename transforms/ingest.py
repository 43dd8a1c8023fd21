"""Ingest, validate and load submissions: the per-file work and the one atomic load.

Stage by stage (each a Prefect task in flows/pipeline.py):
1. `stage_submissions`: new files -> read, map headers, normalise, pseudonymise -> Parquet in the
   run's work folder (outside the landing zone; no personal data in it).
2. `validate_staged`: the data contract (Great Expectations) over the staged rows, in batches;
   each broken rule becomes an issue row with file, line, field and reason.
3. `load_batch`: one DuckDB transaction records every file in the manifest, loads the rows
   without errors, quarantines the rest, and supersedes earlier submissions for the same
   university and term. It checks rows read = loaded + quarantined per file, or commits nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from transforms import expectations as contract
from transforms.landing import LandedFile, sha256_of
from transforms.normalise import (ENROLLMENT_REQUIRED, ENROLLMENT_RAW, PLACEMENT_RAW, PLACEMENT_REQUIRED,
                                  ValueAliases, normalise_enrollment, normalise_placements)
from transforms.readers import AliasTable, SubmissionRejected, read_submission
from transforms.warehouse import AccountingError
from transforms.warehouse import forget_periods as forget

VALIDATION_BATCH_ROWS = 300_000  # bounds memory: staged files are validated this many rows at a time
STAGING_COLUMNS = {
    "enrollment": ["file_id", "university_code", "term", "line", "student_key", "person_key", "gender",
                   "programme_code", "degree_level", "intake_year", "study_year", "status", "gpa", "birth_year"],
    "placements": ["file_id", "round", "line", "university_code", "student_key", "host_code", "track",
                   "outcome", "semiconductor_job"],
}
RAW_COLUMNS = {"enrollment": ENROLLMENT_RAW, "placements": PLACEMENT_RAW}


@dataclass
class Submission:
    """What became of one landed file in this run."""

    landed: LandedFile
    status: str  # staged | rejected | duplicate
    reason: str | None = None
    format: str | None = None
    encoding: str | None = None
    header_line: int | None = None
    extra_columns: list[str] = field(default_factory=list)
    rows_read: int = 0
    staged: Path | None = None

    @property
    def file_id(self) -> str:
        return self.landed.file_id


@dataclass(frozen=True)
class KnownFiles:
    """What the manifest already holds: by path (size, mtime, sha256) and by content."""

    by_path: dict[str, tuple[int, float, str]]
    by_sha: dict[str, tuple[str, str]]  # sha256 -> (path, status)

    @classmethod
    def from_warehouse(cls, con, exclude_periods: set[str] | None = None) -> "KnownFiles":
        """The manifest; a backfill leaves out the periods it takes again (`exclude_periods`)."""
        rows = con.execute("""SELECT path, size_bytes, mtime, sha256, status, coalesce(term, round) AS period
                              FROM ops.manifest ORDER BY ingested_at, path""").fetchall()
        rows = [r for r in rows if not exclude_periods or r[5] not in exclude_periods]
        return cls({p: (s, m, h) for p, s, m, h, _, _ in rows},
                   {h: (p, st) for p, _, _, h, st, _ in rows if h})


def group_by_period(files: list[LandedFile], known: KnownFiles) -> list[tuple[str, list[LandedFile], KnownFiles]]:
    """Split new files by term or round so that periods can be staged in parallel.

    Content sent twice is still recognised across groups: a later copy's group is told about
    the first copy (in submission order), exactly as if the files were staged one by one.
    """
    groups: dict[str, list[LandedFile]] = {}
    first: dict[str, LandedFile] = {}
    for f in files:
        groups.setdefault(f"{f.dataset} {f.period or 'unplaced'}", []).append(f)
        if f.sha256 and f.sha256 not in first:
            first[f.sha256] = f
    out = []
    for label, members in groups.items():
        earlier = {f.sha256: (first[f.sha256].relpath, "received") for f in members
                   if f.sha256 and first[f.sha256] not in members and f.sha256 not in known.by_sha}
        out.append((label, members, KnownFiles(known.by_path, {**known.by_sha, **earlier})))
    return out


def new_files(landed: list[LandedFile], known: KnownFiles) -> list[LandedFile]:
    """Files not yet in the manifest. Unchanged files are recognised without reading them."""
    out = []
    for f in landed:
        seen = known.by_path.get(f.relpath)
        if seen and seen[0] == f.size and seen[1] == f.mtime:
            continue
        if f.problem is None:
            f.sha256 = sha256_of(f.path)
            if seen and seen[2] == f.sha256:
                continue  # same content at the same path, only touched
        out.append(f)
    return out


def stage_submissions(files: list[LandedFile], known: KnownFiles, work_dir: Path, *, key: bytes,
                      reference_dir: Path, progress: Callable[[int, int], None] | None = None) -> list[Submission]:
    aliases = AliasTable.from_csv(reference_dir / "column_aliases.csv")
    values = ValueAliases.from_csv(reference_dir / "value_aliases.csv")
    seen_sha = dict(known.by_sha)
    out: list[Submission] = []
    for i, f in enumerate(files):
        out.append(_stage_one(f, seen_sha, work_dir, key, aliases, values))
        if progress:
            progress(i + 1, len(files))
    return out


def _stage_one(f: LandedFile, seen_sha: dict, work_dir: Path, key: bytes, aliases: AliasTable,
               values: ValueAliases) -> Submission:
    if f.problem:
        return Submission(f, "rejected", f"{f.relpath}: {f.problem}")
    if f.sha256 in seen_sha:
        path, status = seen_sha[f.sha256]
        return Submission(f, "duplicate", f"same content (sha256 {f.sha256[:12]}…) as {path}, already {status}; skipped")
    seen_sha[f.sha256] = (f.relpath, "received")
    required = ENROLLMENT_REQUIRED if f.dataset == "enrollment" else PLACEMENT_REQUIRED
    try:
        raw = read_submission(f.path, aliases, required, name=f.relpath)
    except SubmissionRejected as e:
        return Submission(f, "rejected", e.reason)
    except (FileNotFoundError, PermissionError, OSError) as e:
        return Submission(f, "rejected", f"{f.relpath}: could not be read ({e.__class__.__name__}: {e}); send it again")
    if f.dataset == "enrollment":
        frame = normalise_enrollment(raw.frame, key=key, values=values, file_id=f.file_id,
                                     university_code=f.university_code, term=f.term)
    else:
        frame = normalise_placements(raw.frame, key=key, values=values, file_id=f.file_id, round_=f.round)
    target = work_dir / f.dataset / f"{f.file_id}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(target, index=False)
    return Submission(f, "staged", None, raw.format, raw.encoding, raw.header_line, raw.extra_columns,
                      len(frame), target)


# ---------------------------------------------------------------- validation

def contract_reference(con) -> "contract.ContractReference":
    """The registry, catalogue and host lists the contract checks against, from `ref.*`."""
    codes = lambda sql: {r[0] for r in con.execute(sql).fetchall()}  # noqa: E731
    return contract.ContractReference(
        university_codes=codes("SELECT university_code FROM ref.universities"),
        programme_codes=codes("SELECT programme_code FROM ref.programmes"),
        host_codes=codes("SELECT host_code FROM ref.hosts"),
    )


def validate_staged(submissions: list[Submission], work_dir: Path, ref: "contract.ContractReference") -> dict[str, int]:
    """Run the contract over every staged file, in batches; write issues and per-file results."""
    counts = {}
    for dataset in ("enrollment", "placements"):
        staged = [s for s in submissions if s.status == "staged" and s.landed.dataset == dataset]
        suite = contract.build_enrollment_suite(ref) if dataset == "enrollment" else contract.build_placement_suite(ref)
        issues, results = [], []
        for batch in _batches(staged):
            frame = pd.concat([pd.read_parquet(s.staged) for s in batch], ignore_index=True)
            frame.insert(0, "row_id", range(len(frame)))
            report = contract.validate(frame, suite, key_column="row_id")
            issues.append(_issues(frame, report.row_failures, dataset))
            results.append(_file_results(frame, report, batch))
        issue_frame = pd.concat(issues, ignore_index=True) if issues else _issues(pd.DataFrame(), None, dataset)
        issue_frame.to_parquet(work_dir / f"issues_{dataset}.parquet", index=False)
        (pd.concat(results, ignore_index=True) if results else pd.DataFrame(
            columns=["file_id", "rule_id", "severity", "rows_checked", "rows_failing"])
         ).to_parquet(work_dir / f"results_{dataset}.parquet", index=False)
        counts[dataset] = len(issue_frame)
    return counts


def _batches(staged: list[Submission]):
    batch, rows = [], 0
    for s in staged:
        if batch and rows + s.rows_read > VALIDATION_BATCH_ROWS:
            yield batch
            batch, rows = [], 0
        batch.append(s)
        rows += s.rows_read
    if batch:
        yield batch


def _issues(frame: pd.DataFrame, failures: pd.DataFrame | None, dataset: str) -> pd.DataFrame:
    cols = ["file_id", "dataset", "university_code", "term", "line", "rule_id", "severity", "field",
            "observed", "message_en", "message_vi", "original_values"]
    if failures is None or failures.empty:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in cols}).astype({"line": "Int64"})
    rows = frame.set_index("row_id").loc[failures["row_id"].to_numpy()]
    raw = rows[[f"raw_{c}" for c in RAW_COLUMNS[dataset]]]
    raw.columns = RAW_COLUMNS[dataset]
    originals = [json.dumps({k: v for k, v in r.items() if v is not None and v == v}, ensure_ascii=False)
                 for r in raw.astype(object).to_dict("records")]
    return pd.DataFrame({
        "file_id": rows["file_id"].to_numpy(),
        "dataset": dataset,
        "university_code": rows["university_code"].to_numpy(),
        "term": (rows["term"] if "term" in rows else rows["round"]).to_numpy(),
        "line": rows["line"].to_numpy(),
        "rule_id": failures["rule_id"].to_numpy(),
        "severity": failures["severity"].to_numpy(),
        "field": failures["column"].to_numpy(),
        "observed": failures["observed"].astype("string").to_numpy(),
        "message_en": failures["message_en"].to_numpy(),
        "message_vi": failures["message_vi"].to_numpy(),
        "original_values": originals,
    })


def _file_results(frame: pd.DataFrame, report, batch: list[Submission]) -> pd.DataFrame:
    """Per file and rule: rows checked and rows failing (GX reports per batch; we split by file)."""
    files = pd.DataFrame({"file_id": [s.file_id for s in batch], "rows_checked": [s.rows_read for s in batch]})
    rules = report.rules[["rule_id", "severity"]].drop_duplicates()
    grid = files.merge(rules, how="cross")
    f = report.row_failures
    if len(f):
        failing = (f.assign(file_id=frame.set_index("row_id").loc[f["row_id"].to_numpy(), "file_id"].to_numpy())
                   .groupby(["file_id", "rule_id"]).size().rename("rows_failing").reset_index())
        grid = grid.merge(failing, on=["file_id", "rule_id"], how="left")
    else:
        grid["rows_failing"] = 0
    grid["rows_failing"] = grid["rows_failing"].fillna(0).astype("int64")
    return grid


# ---------------------------------------------------------------- load

def load_batch(con, submissions: list[Submission], work_dir: Path, run_id: str,
               forget_periods: set[str] | None = None) -> dict[str, int]:
    """Record, load, quarantine and supersede in one transaction; verify the accounting first.

    A backfill passes the periods it took again: what the warehouse held for them is removed
    in the same transaction, so a reader never sees a period missing or twice."""
    con.execute("BEGIN TRANSACTION")
    try:
        if forget_periods:
            forget(con, forget_periods)
        totals = _load(con, submissions, work_dir, run_id)
        con.execute("COMMIT")
        return totals
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _load(con, submissions, work_dir: Path, run_id: str) -> dict[str, int]:
    manifest = pd.DataFrame([{
        "file_id": s.file_id, "dataset": s.landed.dataset, "path": s.landed.relpath, "sha256": s.landed.sha256,
        "size_bytes": s.landed.size, "mtime": s.landed.mtime, "university_code": s.landed.university_code,
        "term": s.landed.term, "round": s.landed.round, "received_at": s.landed.received_at,
        "format": s.format, "encoding": s.encoding, "header_line": s.header_line,
        "extra_columns": "|".join(s.extra_columns) or None, "rows_read": s.rows_read, "status": s.status,
        "reason": s.reason,
    } for s in submissions], columns=["file_id", "dataset", "path", "sha256", "size_bytes", "mtime", "university_code",
                                      "term", "round", "received_at", "format", "encoding", "header_line",
                                      "extra_columns", "rows_read", "status", "reason"])
    con.register("new_files", manifest)
    con.execute("""
        INSERT INTO ops.manifest BY NAME
        SELECT *, 0 AS rows_loaded, 0 AS rows_quarantined, 0 AS rows_with_warnings,
               NULL AS superseded_by, ? AS run_id, now()::TIMESTAMP AS ingested_at
        FROM new_files""", [run_id])
    con.unregister("new_files")
    for dataset, cols in STAGING_COLUMNS.items():
        staged = [str(s.staged) for s in submissions if s.status == "staged" and s.landed.dataset == dataset]
        if not staged:
            continue
        issues = str(work_dir / f"issues_{dataset}.parquet")
        con.execute(f"""
            INSERT INTO ops.row_issues BY NAME SELECT * FROM read_parquet(?)""", [issues])
        con.execute(f"""
            INSERT INTO staging.{dataset} BY NAME
            SELECT {', '.join(cols)} FROM read_parquet(?) s
            ANTI JOIN (SELECT DISTINCT file_id, line FROM read_parquet(?) WHERE severity = 'error') q
              USING (file_id, line)""", [staged, issues])
        con.execute("""
            INSERT INTO ops.validation_results BY NAME
            SELECT ? AS run_id, ? AS dataset, r.file_id, m.university_code, coalesce(m.term, m.round) AS term,
                   r.rule_id, r.severity, r.rows_failing = 0 AS success, r.rows_checked, r.rows_failing
            FROM read_parquet(?) r JOIN ops.manifest m USING (file_id)""",
                    [run_id, dataset, str(work_dir / f"results_{dataset}.parquet")])
    # Counts per file of this run, from what was actually written.
    con.execute("""
        UPDATE ops.manifest m SET
            rows_loaded = coalesce(c.loaded, 0),
            rows_quarantined = coalesce(c.quarantined, 0),
            rows_with_warnings = coalesce(c.warned, 0)
        FROM (
            SELECT file_id,
                   (SELECT count(*) FROM staging.enrollment e WHERE e.file_id = f.file_id)
                 + (SELECT count(*) FROM staging.placements p WHERE p.file_id = f.file_id) AS loaded,
                   (SELECT count(DISTINCT line) FROM ops.row_issues i WHERE i.file_id = f.file_id AND severity = 'error') AS quarantined,
                   (SELECT count(DISTINCT line) FROM ops.row_issues i WHERE i.file_id = f.file_id AND severity = 'warning') AS warned
            FROM ops.manifest f WHERE f.run_id = ?
        ) c
        WHERE m.file_id = c.file_id""", [run_id])
    bad = con.execute("""
        SELECT path, rows_read, rows_loaded, rows_quarantined FROM ops.manifest
        WHERE run_id = ? AND rows_read <> rows_loaded + rows_quarantined""", [run_id]).fetchall()
    if bad:
        raise AccountingError("rows read != rows loaded + rows quarantined for: " +
                              "; ".join(f"{p} ({r} != {l} + {q})" for p, r, l, q in bad))
    con.execute("""
        UPDATE ops.manifest SET status = 'rejected',
               reason = 'every one of the ' || rows_read || ' rows was quarantined; see ops.quarantine'
        WHERE run_id = ? AND status = 'staged' AND rows_loaded = 0""", [run_id])
    con.execute("UPDATE ops.manifest SET status = 'loaded' WHERE run_id = ? AND status = 'staged'", [run_id])
    _supersede(con)
    return dict(zip(["files", "rows_read", "rows_loaded", "rows_quarantined"], con.execute("""
        SELECT count(*), coalesce(sum(rows_read), 0), coalesce(sum(rows_loaded), 0), coalesce(sum(rows_quarantined), 0)
        FROM ops.manifest WHERE run_id = ?""", [run_id]).fetchone()))


def _supersede(con) -> None:
    """For each university and term (or round), only the newest loaded submission stays current."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE superseded AS
        SELECT file_id, first_value(file_id) OVER w AS newest
        FROM ops.manifest WHERE status = 'loaded'
        WINDOW w AS (PARTITION BY dataset, coalesce(university_code, ''), coalesce(term, round)
                     ORDER BY mtime DESC, path DESC)
        QUALIFY file_id <> newest""")
    con.execute("""
        UPDATE ops.manifest m SET status = 'superseded', superseded_by = s.newest,
               reason = 'replaced by a newer submission for the same university and term'
        FROM superseded s WHERE m.file_id = s.file_id""")
    for table in ("staging.enrollment", "staging.placements"):
        con.execute(f"DELETE FROM {table} WHERE file_id IN (SELECT file_id FROM superseded)")
    con.execute("DROP TABLE superseded")
