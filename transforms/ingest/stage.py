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

from transforms.contract import suites as contract
from transforms.ingest.landing import LandedFile, LandedFileRefused, content_key, hash_landed, read_landed
from transforms.ingest.normalise import (ENROLLMENT_REQUIRED, ENROLLMENT_RAW, PLACEMENT_RAW, PLACEMENT_REQUIRED,
                                  ValueAliases, normalise_enrollment, normalise_placements)
from transforms.ingest import readers
from transforms.ingest.readers import AliasTable, SubmissionRejected, parse_submission
from transforms.warehouse.db import AccountingError
from transforms.warehouse.db import forget_periods as forget
from transforms.warehouse.db import set_state

# Bounds memory: staged files are validated this many rows at a time. At 300,000 a national term peaked
# at 2.1-2.2 GiB in validation; at 200,000 the run peaks at 1.7 GiB, for about 1 s more a term of GX calls.
VALIDATION_BATCH_ROWS = 200_000
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
    rule: str | None = None  # the ING.* rule of `reason` (transforms/contract/rules.py)

    def __post_init__(self) -> None:
        # A reason may quote header titles or cells, and extra columns are header titles: both are
        # screened by content (a name or an id pulled into a header band) before they are kept.
        from transforms.contract.privacy import mask_text, mask_values

        self.reason = mask_text(self.reason)
        self.extra_columns = mask_values(list(self.extra_columns))

    @property
    def file_id(self) -> str:
        return self.landed.file_id


@dataclass(frozen=True)
class KnownFiles:
    """What the manifest already holds: by path (size, mtime, sha256) and by content in its folder."""

    by_path: dict[str, tuple[int, float, str]]
    by_sha: dict[str, tuple[str, str]]  # landing.content_key (folder and sha256) -> (path, status)

    @classmethod
    def from_warehouse(cls, con, exclude_periods: set[str] | None = None) -> "KnownFiles":
        """The manifest; a backfill leaves out the periods it takes again (`exclude_periods`)."""
        rows = con.execute("""SELECT path, size_bytes, mtime, sha256, status, coalesce(term, round) AS period,
                                     dataset, university_code
                              FROM ops.manifest ORDER BY ingested_at, path""").fetchall()
        rows = [r for r in rows if not exclude_periods or r[5] not in exclude_periods]
        by_content: dict[str, tuple[str, str]] = {}
        for p, _, _, h, st, period, dataset, code in rows:
            if h:
                by_content.setdefault(content_key(dataset, code, period, h), (p, st))
        return cls({p: (s, m, h) for p, s, m, h, *_ in rows}, by_content)


def group_by_period(files: list[LandedFile], known: KnownFiles) -> list[tuple[str, list[LandedFile], KnownFiles]]:
    """Split new files by term or round so that periods can be staged in parallel.

    Content sent twice to the same folder is still recognised across groups: a later copy's group
    is told about the first copy (in submission order), exactly as if the files were staged one by one.
    """
    groups: dict[str, list[LandedFile]] = {}
    first: dict[str, LandedFile] = {}
    for f in files:
        groups.setdefault(f"{f.dataset} {f.period or 'unplaced'}", []).append(f)
        if f.content_key and f.content_key not in first:
            first[f.content_key] = f
    out = []
    for label, members in groups.items():
        earlier = {f.content_key: (first[f.content_key].relpath, "received") for f in members
                   if f.content_key and first[f.content_key] not in members and f.content_key not in known.by_sha}
        out.append((label, members, KnownFiles(known.by_path, {**known.by_sha, **earlier})))
    return out


def new_files(landed: list[LandedFile], known: KnownFiles) -> list[LandedFile]:
    """Files not yet in the manifest. Unchanged files are recognised without reading them.

    A file that cannot even be hashed (it vanished or lost its permissions since the scan) is
    kept, with that problem, so that it ends in the manifest as rejected instead of stopping the run.
    """
    out = []
    for f in landed:
        seen = known.by_path.get(f.relpath)
        unchanged = bool(seen) and seen[0] == f.size and seen[1] == f.mtime
        # A file refused before it was read (no sha256; say its term had not begun yet) is taken
        # once the scan stops refusing it, if it can be read now.
        if unchanged and (seen[2] or f.problem):
            continue
        if f.problem is None:
            try:
                f.sha256 = hash_landed(f)
            except LandedFileRefused as e:
                f.problem, f.rule = e.reason.removeprefix(f"{f.relpath}: "), e.rule
            except OSError as e:
                f.problem = (f"the file could not be read to compute its checksum ({e.__class__.__name__}: "
                             f"{e.strerror or e}); if it is still being uploaded, the next run reads it")
                f.rule = "ING.file.unavailable"
            if seen and f.sha256 and seen[2] == f.sha256:
                continue  # same content at the same path, only touched
            if unchanged and f.sha256 is None:
                continue  # still unreadable, and already recorded as such
        out.append(f)
    return out


def stage_submissions(files: list[LandedFile], known: KnownFiles, work_dir: Path, *, key: bytes,
                      reference_dir: Path, progress: Callable[[int, int], None] | None = None) -> list[Submission]:
    from transforms.ingest.normalise import CohortConventions
    from transforms.ingest.readers import SubmissionSettings

    aliases = AliasTable.from_csv(reference_dir / "column_aliases.csv")
    values = ValueAliases.from_csv(reference_dir / "value_aliases.csv")
    settings = SubmissionSettings.from_csv(reference_dir / "submission_settings.csv")
    cohorts = CohortConventions.from_csv(reference_dir / "cohort_conventions.csv")
    seen_sha = dict(known.by_sha)
    out: list[Submission] = []
    for i, f in enumerate(files):
        out.append(_stage_one(f, seen_sha, work_dir, key, aliases, values, settings, cohorts))
        if progress:
            progress(i + 1, len(files))
    return out


def _stage_one(f: LandedFile, seen_sha: dict, work_dir: Path, key: bytes, aliases: AliasTable,
               values: ValueAliases, settings=None, cohorts=None) -> Submission:
    """Read, normalise, pseudonymise and stage one file; or say why it is rejected or a duplicate.

    Only this step sees names, national ids and birth dates: the staged Parquet holds keyed
    hashes and the birth year. Any failure to read one file rejects that file, with its reason,
    and never stops the others.
    """
    import logging

    from transforms.ingest.normalise import NO_CONVENTIONS

    if f.problem:
        return Submission(f, "rejected", f"{f.relpath}: {f.problem}", rule=f.rule)
    # A duplicate is the same content in the same university's folder for the same term (or round);
    # the same bytes in another university's folder are its own submission (feedback warns of it).
    if f.content_key in seen_sha:
        path, status = seen_sha[f.content_key]
        return Submission(f, "duplicate", f"same content (sha256 {f.sha256[:12]}…) as {path}, already {status}; skipped",
                          rule="ING.file.duplicate")
    seen_sha[f.content_key] = (f.relpath, "received")
    required = ENROLLMENT_REQUIRED if f.dataset == "enrollment" else PLACEMENT_REQUIRED
    sheet = settings.sheet_for(f.university_code) if settings is not None else None
    try:
        # Opened inside the landing zone, component by component, as the file the scan listed.
        data = read_landed(f, readers.max_file_bytes())
        raw = parse_submission(data, f.path.suffix, aliases, required, name=f.relpath, sheet=sheet)
        if f.dataset == "enrollment":
            frame = normalise_enrollment(raw.frame, key=key, values=values, file_id=f.file_id,
                                         university_code=f.university_code, term=f.term,
                                         conventions=cohorts or NO_CONVENTIONS)
        else:
            frame = normalise_placements(raw.frame, key=key, values=values, file_id=f.file_id, round_=f.round)
        # Error cells (#DIV/0!, #N/A) stay errors: the contract quarantines their rows (ENR/PLC.cell.error).
        frame["cell_error"] = pd.array(raw.cell_errors or [None] * len(frame), dtype="string")
    except SubmissionRejected as e:
        return Submission(f, "rejected", e.reason, e.format, e.encoding, rule=e.rule)
    except LandedFileRefused as e:
        return Submission(f, "rejected", e.reason, rule=e.rule)
    except OSError as e:
        return Submission(f, "rejected", f"{f.relpath}: could not be read ({e.__class__.__name__}: {e.strerror or e}); "
                                         "send it again", rule="ING.file.unavailable")
    except Exception as e:  # a reader defect must not stop the other universities' files
        # The traceback's messages may quote a cell: logged screened (no log line carries a cell value).
        import traceback

        from transforms.contract.privacy import mask_text

        logging.getLogger(__name__).error("unexpected error reading %s: %s", f.relpath,
                                          mask_text("".join(traceback.format_exception(e))))
        return Submission(f, "rejected", f"{f.relpath}: could not be read because of an internal error "
                                         f"({e.__class__.__name__}), logged for the data team; no action is needed "
                                         "from the office", rule="ING.file.internal")
    target = work_dir / f.dataset / f"{f.file_id}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(target, index=False)
    return Submission(f, "staged", None, raw.format, raw.encoding, raw.header_line, raw.extra_columns,
                      len(frame), target)


# ---------------------------------------------------------------- validation

def validate_staged(submissions: list[Submission], work_dir: Path, ref: "contract.ContractReference",
                    con=None, *, ordered_history: bool = True, part: str = "",
                    gx_dir: Path | None = None) -> dict[str, int]:
    """Run the contract over every staged file, in batches; write issues, per-file results and verdicts.

    Per batch two GX calls: the row suite, then the submission suite over a one-row-per-file
    summary (transforms/contract/checks.py).  With `con` (the warehouse; read-only queries and
    temp tables only) enrollment rows get their student's previous row and each file its
    university's previous accepted term, so transition and cross-term rules are judged; without
    it they are skipped.  Writes issues_/results_/verdicts_<dataset>.parquet and the GX results
    for Data Docs (`gx_dir`, default work_dir/gx_results; `part` names one part's batch pages) into
    `work_dir`. Their rows are in `file_order`: the same whatever the batches, so a run validated in
    parts (transforms/ingest/validate.py) writes what one validated whole writes.

    Memory is bounded by a batch and one term of history, not by the collection: the history keeps
    each student's latest earlier row (History ``ordered``); ``ordered_history`` False keeps every
    earlier row instead, with the same results (the reference the tests compare against).
    """
    from transforms.contract import datadocs
    from transforms.contract import checks

    counts = {}
    for dataset in ("enrollment", "placements"):
        staged = [s for s in submissions if s.status == "staged" and s.landed.dataset == dataset]
        suites = checks.Suites.build(dataset, ref)
        history = None
        if con is not None and dataset == "enrollment" and staged:
            # ordered: terms are validated in order, one term per batch, so the history keeps
            # each student's latest earlier row instead of every earlier row (bounded memory).
            history = checks.History(con, universities={s.landed.university_code for s in staged},
                                     ordered=ordered_history)
        # Enrollment terms in order, each in its own batches: what a batch will load becomes
        # history for the later terms (so one run over many terms judges like one run per term).
        periods = sorted({s.landed.term or "" for s in staged}) if history is not None else [None]
        issues, results, verdicts = [], [], []
        try:
            batches = [b for p in periods for b in _batches([s for s in staged if p is None or (s.landed.term or "") == p])]
            for i, batch in enumerate(batches):
                frame = checks.read_staged([s.staged for s in batch])
                frame.insert(0, "row_id", range(len(frame)))
                files = checks.files_frame(checks.file_info(s) for s in batch)
                outcome = checks.check_batch(frame, files, suites, history)
                if history is not None:
                    history.add(outcome, files)
                issues.append(_issues(outcome.frame, outcome.row_failures, dataset))
                results.append(_file_results(outcome.frame, outcome, files))
                verdicts.append(outcome.verdicts)
                datadocs.save_results(outcome.gx_results, gx_dir or work_dir / "gx_results", f"{dataset}{part}-{i:04d}")
                del frame, outcome  # before the next batch is read: never two batches in memory at once
        finally:
            if history is not None:
                history.close()
        order = file_order(staged, by_term=history is not None)
        issue_frame = in_file_order(pd.concat(issues, ignore_index=True) if issues
                                    else _issues(pd.DataFrame(), None, dataset), order)
        issue_frame.to_parquet(work_dir / f"issues_{dataset}.parquet", index=False)
        in_file_order(pd.concat(results, ignore_index=True) if results else pd.DataFrame(
            {c: pd.Series(dtype="bool" if c == "success" else "int64" if c.startswith("rows") else "string")
             for c in checks.FILE_RESULT_COLUMNS}), order).to_parquet(work_dir / f"results_{dataset}.parquet", index=False)
        in_file_order(pd.concat(verdicts, ignore_index=True) if verdicts else pd.DataFrame(
            {c: pd.Series(dtype="string") for c in checks.VERDICT_COLUMNS}), order).to_parquet(
            work_dir / f"verdicts_{dataset}.parquet", index=False)
        counts[dataset] = len(issue_frame)
    _release_heap()
    return counts


def file_order(staged: list[Submission], *, by_term: bool) -> dict[str, int]:
    """Each staged file's place in the outputs: terms in order (when validated with history), then as
    submitted. A file's own rows keep the order its batch gave them, which does not depend on the other
    files of the batch (tests/test_speed_paths.py)."""
    keys = sorted(range(len(staged)), key=lambda i: ((staged[i].landed.term or "") if by_term else "", i))
    return {staged[i].file_id: rank for rank, i in enumerate(keys)}


def in_file_order(frame: pd.DataFrame, order: dict[str, int]) -> pd.DataFrame:
    if frame.empty:
        return frame.reset_index(drop=True)
    rank = frame["file_id"].map(order).fillna(len(order)).to_numpy()
    return frame.iloc[rank.argsort(kind="stable")].reset_index(drop=True)   # stable: a file's rows keep their order


def _release_heap() -> None:
    """Hand the batches' freed memory back to the system before the load (DuckDB's own 1 GB comes on
    top of whatever the process still holds): glibc keeps freed heap otherwise."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to hand back this way
        pass


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
    # One dtype per column whatever the batch held (an empty batch's frame concatenated with others
    # must not change them): the outputs are the same however the files were batched or split.
    types = {c: ("Int64" if c == "line" else "str") for c in cols}
    if failures is None or failures.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in types.items()})
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
    }).astype(types)


def _file_results(frame: pd.DataFrame, outcome, files: pd.DataFrame) -> pd.DataFrame:
    """Per file and rule: rows checked, rows failing, observed (GX reports per batch; we split by file)."""
    from transforms.contract import checks

    return pd.concat([checks.row_results(frame, outcome.report, files), outcome.file_results], ignore_index=True)


# ---------------------------------------------------------------- load

def load_batch(con, submissions: list[Submission], work_dir: Path, run_id: str,
               forget_periods: set[str] | None = None, overrides: pd.DataFrame | None = None,
               on_step: Callable[[str], None] | None = None) -> dict[str, int]:
    """Record, load, quarantine and supersede in one transaction; verify the accounting first.

    A backfill passes the periods it took again: what the warehouse held for them is removed
    in the same transaction, so a reader never sees a period missing or twice.
    `overrides` (submission_checks.read_overrides) are applied in the same transaction too, so
    every file's verdict is current when the load commits. `on_step("load")` is called just before the
    commit (flows passes its failpoints)."""
    from transforms.contract import checks

    con.execute("BEGIN TRANSACTION")
    try:
        if forget_periods:
            forget(con, forget_periods)
        totals = _load(con, submissions, work_dir, run_id)
        checks.apply_overrides(con, overrides if overrides is not None else checks.read_overrides([]))
        # The data changed: until a run publishes this version, marts and snapshot are behind.
        set_state(con, "data_version", run_id)
        if on_step:
            on_step("load")
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
        "reason": s.reason, "reason_rule_id": s.rule,
    } for s in submissions], columns=["file_id", "dataset", "path", "sha256", "size_bytes", "mtime", "university_code",
                                      "term", "round", "received_at", "format", "encoding", "header_line",
                                      "extra_columns", "rows_read", "status", "reason", "reason_rule_id"])
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
        con.execute("""
            INSERT INTO ops.row_issues BY NAME SELECT * FROM read_parquet(?)""", [issues])
        con.execute(f"""
            INSERT INTO staging.{dataset} BY NAME
            SELECT {', '.join(cols)} FROM read_parquet(?) s
            ANTI JOIN (SELECT DISTINCT file_id, line FROM read_parquet(?) WHERE severity = 'error') q
              USING (file_id, line)""", [staged, issues])
        con.execute("""
            INSERT INTO ops.validation_results BY NAME
            SELECT ? AS run_id, ? AS dataset, r.file_id, m.university_code, coalesce(m.term, m.round) AS term,
                   r.rule_id, r.severity, r.success, r.rows_checked, r.rows_failing, r.observed, r.scope,
                   false AS accepted_override
            FROM read_parquet(?) r JOIN ops.manifest m USING (file_id)""",
                    [run_id, dataset, str(work_dir / f"results_{dataset}.parquet")])
        if dataset == "enrollment":
            from transforms.contract.checks import reconcile_totals

            reconcile_totals(con, run_id, staged, issues)
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
    # A file-level error rejects the submission (its rows were quarantined with the rule as reason);
    # the reason names the contract's failing rules, and ING.file.rejected says the contract refused it.
    verdicts = [str(p) for p in (work_dir / f"verdicts_{d}.parquet" for d in STAGING_COLUMNS) if p.exists()]
    if verdicts:
        con.execute("""
            UPDATE ops.manifest m SET status = 'rejected', reason = v.reason, reason_rule_id = 'ING.file.rejected'
            FROM read_parquet(?::VARCHAR[], union_by_name = true) v
            WHERE m.file_id = v.file_id AND m.run_id = ? AND m.status = 'staged' AND v.verdict = 'rejected'""",
                    [verdicts, run_id])
    con.execute("""
        UPDATE ops.manifest SET status = 'rejected',
               reason = 'every one of the ' || rows_read || ' rows was quarantined; see ops.quarantine',
               reason_rule_id = 'ING.file.all_quarantined'
        WHERE run_id = ? AND status = 'staged' AND rows_loaded = 0""", [run_id])
    con.execute("UPDATE ops.manifest SET status = 'loaded' WHERE run_id = ? AND status = 'staged'", [run_id])
    _warn_shared_content(con, run_id)
    _supersede(con)
    return dict(zip(["files", "rows_read", "rows_loaded", "rows_quarantined"], con.execute("""
        SELECT count(*), coalesce(sum(rows_read), 0), coalesce(sum(rows_loaded), 0), coalesce(sum(rows_quarantined), 0)
        FROM ops.manifest WHERE run_id = ?""", [run_id]).fetchone()))


def _warn_shared_content(con, run_id: str) -> None:
    """A loaded file of this run byte-identical to a file received before it in another folder stays
    its own submission (the folder decides whose rows they are), with a file-level warning the office
    sees in its feedback and may accept through the overrides file: ING.file.matches_other_university
    (another university's folder) or ING.file.matches_other_period (the same university, another term
    or round). Only the later copy is warned (received later, or in this run against an earlier run's
    file), so a rebuild that takes everything in one run warns the same files. `observed` never names
    another university's file, since it goes back to this university; the programme office finds that
    file in ops.manifest by the same sha256."""
    con.execute("""
        INSERT INTO ops.validation_results BY NAME
        WITH pairs AS (
            SELECT m.file_id, m.dataset, m.university_code, coalesce(m.term, m.round) AS period, m.rows_read,
                   o.university_code IS DISTINCT FROM m.university_code AS other_university,
                   o.university_code AS other_code, coalesce(o.term, o.round) AS other_period
            FROM ops.manifest m
            JOIN ops.manifest o ON o.sha256 = m.sha256 AND o.dataset = m.dataset AND o.file_id <> m.file_id
             AND (o.university_code IS DISTINCT FROM m.university_code
                  OR coalesce(o.term, o.round) IS DISTINCT FROM coalesce(m.term, m.round))
             AND (o.run_id <> m.run_id OR (o.mtime, o.path) < (m.mtime, m.path))
            WHERE m.run_id = ? AND m.status = 'loaded'
        )
        SELECT ? AS run_id, dataset, file_id, university_code, period AS term,
               CASE WHEN other_university THEN 'ING.file.matches_other_university'
                    ELSE 'ING.file.matches_other_period' END AS rule_id,
               'warning' AS severity, false AS success, any_value(rows_read) AS rows_checked, 0 AS rows_failing,
               CASE WHEN other_university
                    THEN 'identical to the file of ' || count(DISTINCT other_code) || ' other universit'
                         || CASE WHEN count(DISTINCT other_code) = 1 THEN 'y' ELSE 'ies' END
                    ELSE 'identical to this university''s file for ' || string_agg(DISTINCT other_period, ', ' ORDER BY other_period)
               END AS observed,
               'file' AS scope, false AS accepted_override
        FROM pairs GROUP BY dataset, file_id, university_code, period, other_university""", [run_id, run_id])


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
               reason = 'replaced by a newer submission for the same university and term',
               reason_rule_id = 'ING.file.superseded'
        FROM superseded s WHERE m.file_id = s.file_id""")
    for table in ("staging.enrollment", "staging.placements"):
        con.execute(f"DELETE FROM {table} WHERE file_id IN (SELECT file_id FROM superseded)")
    con.execute("DROP TABLE superseded")
