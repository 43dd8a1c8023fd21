"""File-level and cross-term checks of submissions, status-transition history, overrides, verdicts.

The row suites of transforms/contract/suites.py judge each row.  This module adds what a collection
office checks on a whole submission (docs/CONTRACT_RULES.md):

* **History** — for every staged row, the student's latest earlier row in the same university and
  programme (`prev_*` columns, one DuckDB ASOF join per batch), so the row suite can judge status
  transitions; and for every file, the same university's *previous accepted term* (the latest
  earlier term with a current submission) as the baseline of the cross-term rules.  Earlier terms
  come from the warehouse (`staging.enrollment`, `ops.manifest`: read-only queries) and from the
  files staged in the same run, so a first, whole-collection run is judged like a term-by-term one.
* **Summary** — one row per submission (row count, error share, ratio to the baseline, shift of
  status and programme shares, graduates against last term's final-year students, students who
  vanished) validated by the GX suite ``enrollment_submission``/``placement_submission``: one GX
  call per batch, same rule metadata as row rules.
* **Verdict** — ``rejected`` (a file-level error: every row is quarantined with the rule as reason),
  ``accepted_with_warnings`` (a file-level warning nobody accepted yet) or ``accepted``: one SQL query
  (transforms/sql/contract/file_verdicts.sql), over a batch's results and over ``ops.validation_results``.
* **Overrides** — ``data/overrides/accepted_warnings.csv`` (and ``<data_dir>/overrides/`` when the data
  folder is elsewhere): a programme officer accepts one warning for one university and term, with
  a reason.  Read every run; accepted warnings stop holding the submission and are shown as accepted.

The pipeline (transforms/ingest.validate_staged) and the validation kit (transforms/contract/kit.py) both
call :func:`check_batch`, so a file gets the same verdict from both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterable

import pandas as pd

from transforms.contract import suites as contract
from transforms.contract.suites import DEGREE_YEARS, ERROR, FILE, RULES, STATUSES, WARNING
from transforms.vocabulary import term_index

OVERRIDES_FILE = Path("overrides") / "accepted_warnings.csv"
OVERRIDE_COLUMNS = ["university_code", "term", "rule_id", "reason", "accepted_by", "accepted_on"]
FILE_RESULT_COLUMNS = ["file_id", "rule_id", "severity", "scope", "success", "rows_checked", "rows_failing",
                       "observed"]
VERDICT_COLUMNS = ["file_id", "verdict", "reason"]
ACCEPTED, WITH_WARNINGS, REJECTED = "accepted", "accepted_with_warnings", "rejected"


class OverridesError(ValueError):
    """The overrides file cannot be read as an overrides file at all (not a row problem)."""


# ------------------------------------------------------------------------------------ suites

@dataclass(frozen=True)
class Suites:
    dataset: str  # enrollment | placements
    row: object
    summary: object

    @classmethod
    def build(cls, dataset: str, ref: contract.ContractReference) -> "Suites":
        if dataset == "enrollment":
            return cls(dataset, contract.build_enrollment_suite(ref), contract.build_enrollment_summary_suite())
        return cls(dataset, contract.build_placement_suite(ref), contract.build_placement_summary_suite())


def files_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """file_id, university_code, term (the round for placements), rows, mtime, path."""
    return pd.DataFrame(list(rows), columns=["file_id", "university_code", "term", "rows", "mtime", "path"]).astype(
        {"file_id": "str", "university_code": "object", "term": "object", "rows": "int64", "mtime": "float64",
         "path": "str"})


def read_staged(paths: Iterable[Path]) -> pd.DataFrame:
    """A batch's staged Parquet files as one frame: what ``pd.concat`` of each file read by pandas
    gives, built as one Arrow table and converted to pandas once (converting file by file cost
    more than the rest of the row suite's own work at 1/16 scale: 1,600 small conversions).
    Files whose schemas differ (not one normaliser's output) are converted one by one and concatenated."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p, use_pandas_metadata=True) for p in paths]
    if not tables:
        return pd.DataFrame()
    first = tables[0].schema
    if any(not t.schema.equals(first, check_metadata=True) for t in tables[1:]):
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True)  # as read, not read again
    table = pa.concat_tables(tables)
    del tables
    # Each Arrow column is freed as soon as it is converted: the batch is not held twice at its peak.
    return table.to_pandas(self_destruct=True, split_blocks=True).reset_index(drop=True)


def _register(con, name: str, frame: pd.DataFrame) -> None:
    """con.register(), after closing a result a caller may have left half-fetched (DuckDB refuses
    to register while a result is unfinished, e.g. after fetchone())."""
    con.execute("SELECT 1").fetchall()
    con.register(name, frame)


def file_info(s) -> dict:
    """files_frame() fields of an ingest.Submission."""
    return {"file_id": s.file_id, "university_code": s.landed.university_code, "term": s.landed.term or s.landed.round,
            "rows": s.rows_read, "mtime": s.landed.mtime, "path": s.landed.relpath}


# ------------------------------------------------------------------------------------ history

_HIST_COLUMNS = "file_id, university_code, term, programme_code, student_key, status, study_year, intake_year, degree_level"
_LATEST_COLUMNS = "university_code, programme_code, student_key, term, status, study_year, intake_year"


class History:
    """Earlier terms of the universities being checked, as temp tables on a DuckDB connection.

    ``source`` is the catalog holding ``ops.manifest`` and ``staging.enrollment`` (the warehouse, or
    an attached read-only snapshot); nothing in it is written.  The history starts as the current
    submissions there; :meth:`add` then appends what a batch of this run will load (files not
    rejected, rows without an error), so terms validated in order see earlier terms of the same
    run exactly as a later run would see them in the warehouse: a whole collection loaded at once
    and the same collection loaded term by term get the same results.  ``with_keys`` False (the
    kit with a throwaway pseudonymisation key) keeps the per-file baselines but skips everything
    that needs the student key (status transitions, unaccounted students).

    ``ordered`` True (the pipeline, which validates terms in order, one term per batch) keeps
    memory bounded by one term instead of the whole history: the source's rows are read where
    they are (never copied), and once the batches reach a term, every earlier row is folded into
    ``l2f_latest`` (each student's latest earlier row per university and programme: all a status
    transition is judged on) and dropped, except the rows of each university's latest earlier
    file (the baseline of the cross-term rules).  The results are the same as unordered
    (tests/test_validation_scale.py); calls that go back to an earlier term raise ValueError.
    """

    def __init__(self, con, *, source: str | None = None, with_keys: bool = True,
                 universities: Iterable[str] | None = None, ordered: bool = False):
        self.con, self.with_keys, self.ordered = con, with_keys, ordered
        self._frontier: str | None = None  # ordered: every row of an earlier term is in l2f_latest
        src = '"{}"'.format((source or con.execute("SELECT current_database()").fetchall()[0][0]).replace('"', '""'))
        unis = sorted({u for u in (universities or []) if u})
        where = "AND university_code IN (SELECT unnest(?::VARCHAR[]))" if universities is not None else ""
        params = [unis] if universities is not None else []
        # Candidates: every current submission; l2f_hist_files keeps the newest per university and
        # term (as ingest._supersede will), l2f_hist_rows their rows.
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE l2f_candidates AS
            SELECT file_id, university_code, term, rows_read AS rows, mtime, path
            FROM {src}.ops.manifest
            WHERE dataset = 'enrollment' AND status = 'loaded' AND term IS NOT NULL {where}""", params)
        con.execute("""
            CREATE OR REPLACE TEMP VIEW l2f_hist_files AS
            SELECT * FROM l2f_candidates
            QUALIFY row_number() OVER (PARTITION BY university_code, term ORDER BY mtime DESC, path DESC) = 1""")
        if not ordered:
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE l2f_rows AS
                SELECT {_HIST_COLUMNS} FROM {src}.staging.enrollment
                WHERE file_id IN (SELECT file_id FROM l2f_candidates)""")
            con.execute("""
                CREATE OR REPLACE TEMP VIEW l2f_hist_rows AS
                SELECT * FROM l2f_rows WHERE file_id IN (SELECT file_id FROM l2f_hist_files)""")
            return
        # Ordered: l2f_rows holds this run's rows only; the source's rows of its candidate files
        # (l2f_source_files, until a batch of this run replaces the file) are read in place.
        con.execute(f"CREATE OR REPLACE TEMP TABLE l2f_rows AS SELECT {_HIST_COLUMNS} FROM {src}.staging.enrollment LIMIT 0")
        con.execute("CREATE OR REPLACE TEMP TABLE l2f_source_files AS SELECT file_id FROM l2f_candidates")
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW l2f_hist_rows AS
            SELECT {_HIST_COLUMNS} FROM {src}.staging.enrollment
            WHERE file_id IN (SELECT file_id FROM l2f_source_files) AND file_id IN (SELECT file_id FROM l2f_hist_files)
            UNION ALL
            SELECT {_HIST_COLUMNS} FROM l2f_rows WHERE file_id IN (SELECT file_id FROM l2f_hist_files)""")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE l2f_latest AS
            SELECT {_LATEST_COLUMNS} FROM l2f_rows LIMIT 0""")

    def add(self, outcome: "BatchOutcome", files: pd.DataFrame) -> None:
        """What this batch will load becomes history for the batches of later terms."""
        kept = files[files["file_id"].isin(outcome.verdicts.loc[outcome.verdicts["verdict"] != REJECTED, "file_id"])
                     & (files["rows"] > 0)]
        if self.ordered and self._frontier is not None and any(
                isinstance(t, str) and t < self._frontier for t in kept["term"]):
            raise ValueError(f"ordered history: a file of a term before {self._frontier} was added after it")
        f = outcome.row_failures
        bad = set(f.loc[f["severity"] == ERROR, "row_id"])
        rows = outcome.frame[outcome.frame["file_id"].isin(kept["file_id"]) & ~outcome.frame["row_id"].isin(bad)]
        cols = [c.strip() for c in _HIST_COLUMNS.split(",")]
        _register(self.con, "l2f_new_files", kept[["file_id", "university_code", "term", "rows", "mtime", "path"]])
        _register(self.con, "l2f_new_rows", rows[cols])
        try:
            # A file taken again by a backfill replaces its warehouse copy.
            self.con.execute("DELETE FROM l2f_candidates WHERE file_id IN (SELECT file_id FROM l2f_new_files)")
            self.con.execute("DELETE FROM l2f_rows WHERE file_id IN (SELECT file_id FROM l2f_new_files)")
            if self.ordered:
                self.con.execute("DELETE FROM l2f_source_files WHERE file_id IN (SELECT file_id FROM l2f_new_files)")
            self.con.execute("INSERT INTO l2f_candidates BY NAME SELECT * FROM l2f_new_files")
            self.con.execute(f"INSERT INTO l2f_rows BY NAME SELECT {_HIST_COLUMNS} FROM l2f_new_rows")
        finally:
            self.con.unregister("l2f_new_files")
            self.con.unregister("l2f_new_rows")

    def _advance(self, terms: Iterable) -> None:
        """Ordered: fold every history row of a term before the batch's term into l2f_latest."""
        found = sorted({t for t in terms if isinstance(t, str)})
        if not found:
            return
        if len(found) > 1:
            raise ValueError(f"ordered history: one term per batch, not {found}")
        term = found[0]
        if self._frontier is not None and term <= self._frontier:
            if term < self._frontier:
                raise ValueError(f"ordered history: term {term} comes after {self._frontier}")
            return
        con = self.con
        since = "" if self._frontier is None else "AND term >= ?"
        params = [term] + ([] if self._frontier is None else [self._frontier])
        if self.with_keys:
            # Rows of one key and term come from one file (the newest of its university and term)
            # in which the key is unique (ENR.student_key.unique), so "latest" is never a tie.
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE l2f_latest_next AS
                SELECT {_LATEST_COLUMNS} FROM (
                    SELECT {_LATEST_COLUMNS} FROM l2f_latest
                    UNION ALL
                    SELECT {_LATEST_COLUMNS} FROM l2f_hist_rows
                    WHERE term < ? {since} AND university_code IS NOT NULL AND programme_code IS NOT NULL
                      AND student_key IS NOT NULL)
                QUALIFY row_number() OVER (PARTITION BY university_code, programme_code, student_key
                                           ORDER BY term DESC) = 1""", params)
            con.execute("DROP TABLE l2f_latest")
            con.execute("ALTER TABLE l2f_latest_next RENAME TO l2f_latest")
        # This run's rows of earlier terms are needed no more, except each university's latest
        # earlier file: the baseline of the cross-term rules.
        # (Copied rather than deleted from: deleted rows would keep their memory.)
        con.execute("""
            CREATE OR REPLACE TEMP TABLE l2f_rows_next AS
            SELECT * FROM l2f_rows WHERE term IS NULL OR term >= ? OR file_id IN (
                SELECT file_id FROM l2f_hist_files WHERE term < ?
                QUALIFY row_number() OVER (PARTITION BY university_code ORDER BY term DESC) = 1)""", [term, term])
        con.execute("DROP TABLE l2f_rows")
        con.execute("ALTER TABLE l2f_rows_next RENAME TO l2f_rows")
        self._frontier = term

    def close(self) -> None:
        for view in ("l2f_hist_rows", "l2f_hist_files"):
            self.con.execute(f"DROP VIEW IF EXISTS {view}")
        for t in ("l2f_candidates", "l2f_rows", "l2f_source_files", "l2f_latest", "l2f_rows_next", "l2f_latest_next"):
            self.con.execute(f"DROP TABLE IF EXISTS {t}")

    def __enter__(self) -> "History":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def enrich(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame with prev_term, prev_status, prev_study_year, prev_intake_year (one ASOF join)."""
        if not self.with_keys:
            return frame
        if self.ordered:
            self._advance(frame["term"].unique())
        _register(self.con, "l2f_batch", frame[["row_id", "university_code", "programme_code", "student_key", "term"]])
        try:
            # Ordered: l2f_latest holds one row per key, all of earlier terms: the same row the
            # ASOF join over every earlier row finds.
            prev = self.con.execute(f"""
                SELECT b.row_id, h.term AS prev_term, h.status AS prev_status,
                       h.study_year AS prev_study_year, h.intake_year AS prev_intake_year
                FROM l2f_batch b {"LEFT JOIN l2f_latest" if self.ordered else "ASOF LEFT JOIN l2f_hist_rows"} h
                  ON b.university_code = h.university_code AND b.programme_code = h.programme_code
                 AND b.student_key = h.student_key AND b.term > h.term""").df()
        finally:
            self.con.unregister("l2f_batch")
        prev = prev.astype({"prev_term": "str", "prev_status": "str", "prev_study_year": "Int64",
                            "prev_intake_year": "Int64"})
        out = frame.drop(columns=[c for c in prev.columns if c != "row_id" and c in frame.columns])
        return out.merge(prev, on="row_id", how="left", validate="one_to_one")

    def baselines(self, files: pd.DataFrame, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Per file: its baseline (previous accepted term) and the baseline's counts."""
        con = self.con
        if self.ordered:
            self._advance(files["term"])
        _register(con, "l2f_files", files[["file_id", "university_code", "term"]])
        _register(con, "l2f_keys", frame[["file_id", "student_key"]].dropna().drop_duplicates())
        try:
            con.execute("""
                CREATE OR REPLACE TEMP TABLE l2f_base AS
                SELECT f.file_id, h.file_id AS prev_file_id, h.term AS prev_term, h.rows AS prev_rows
                FROM l2f_files f ASOF LEFT JOIN l2f_hist_files h
                  ON f.university_code = h.university_code AND f.term > h.term""")
            out = {"base": con.execute("SELECT * FROM l2f_base WHERE prev_file_id IS NOT NULL").df()}
            # The baselines' rows, read once for the counts below.
            con.execute("""
                CREATE OR REPLACE TEMP TABLE l2f_prev_rows AS
                SELECT * FROM l2f_hist_rows WHERE file_id IN (SELECT prev_file_id FROM l2f_base)""")

            def counts(col: str, where: str = "TRUE") -> pd.DataFrame:
                return con.execute(f"""
                    SELECT b.file_id, {col} AS category, count(*) AS n
                    FROM l2f_base b JOIN l2f_prev_rows h ON h.file_id = b.prev_file_id
                    WHERE {where} GROUP BY ALL""").df()
            out["status"] = counts("h.status", "h.status <> 'graduated'")
            out["programme"] = counts("h.programme_code")
            final_year = " OR ".join(f"(h.degree_level = '{d}' AND h.study_year >= {y})" for d, y in DEGREE_YEARS.items())
            out["final_year"] = con.execute(f"""
                SELECT b.file_id, count(*) FILTER (WHERE h.status IN ('studying', 'on_leave') AND ({final_year})) AS final_year
                FROM l2f_base b JOIN l2f_prev_rows h ON h.file_id = b.prev_file_id GROUP BY ALL""").df()
            if self.with_keys:
                out["unaccounted"] = con.execute("""
                    SELECT b.file_id, count(DISTINCT h.student_key) AS prev_active,
                           count(DISTINCT h.student_key) FILTER (WHERE k.student_key IS NULL) AS unaccounted
                    FROM l2f_base b JOIN l2f_prev_rows h ON h.file_id = b.prev_file_id AND h.status IN ('studying', 'on_leave')
                    LEFT JOIN l2f_keys k ON k.file_id = b.file_id AND k.student_key = h.student_key
                    GROUP BY ALL""").df()
            con.execute("DROP TABLE l2f_base")
            con.execute("DROP TABLE l2f_prev_rows")
        finally:
            con.unregister("l2f_files")
            con.unregister("l2f_keys")
        return out


# ------------------------------------------------------------------------------------ summary

def _shift(cur: pd.DataFrame, prev: pd.DataFrame) -> pd.DataFrame:
    """Largest absolute change of a category's share, per file: file_id, shift, detail."""
    cur = cur.assign(side="cur")
    prev = prev.assign(side="prev")
    both = pd.concat([cur, prev], ignore_index=True)
    if both.empty:
        return pd.DataFrame(columns=["file_id", "shift", "detail"])
    both["share"] = both["n"] / both.groupby(["file_id", "side"])["n"].transform("sum")
    wide = both.pivot_table(index=["file_id", "category"], columns="side", values="share", aggfunc="sum",
                            fill_value=0.0).reindex(columns=["cur", "prev"], fill_value=0.0).reset_index()
    # Only files that have both sides are compared.
    sides = both.groupby("file_id")["side"].nunique()
    wide = wide[wide["file_id"].isin(sides[sides == 2].index)]
    wide["shift"] = (wide["cur"] - wide["prev"]).abs()
    top = wide.sort_values(["file_id", "shift", "category"], ascending=[True, False, True]).drop_duplicates("file_id")
    top["detail"] = [f"{c}: {p:.1%} → {n:.1%}" for c, p, n in zip(top["category"], top["prev"], top["cur"])]
    return top[["file_id", "shift", "detail"]]


def summarise(dataset: str, frame: pd.DataFrame, files: pd.DataFrame, report, history: History | None) -> pd.DataFrame:
    """One row per file of the batch: the measures the submission suite judges (NaN = not judged)."""
    s = files[["file_id", "university_code", "term", "rows"]].copy()
    s["rows"] = s["rows"].astype("float64")
    errors = frame.loc[frame["row_id"].isin(report.error_keys()), "file_id"].value_counts()
    s["errors"] = s["file_id"].map(errors).fillna(0).astype("float64")
    s["error_share"] = (s["errors"] / s["rows"]).where(s["rows"] > 0)
    if dataset != "enrollment":
        return s
    s["consecutive"] = False
    for c in ("prev_term", "prev_rows", "row_ratio", "status_shift", "status_detail", "programme_shift",
              "programme_detail", "graduates_allowed", "prev_final_year", "prev_active", "unaccounted",
              "unaccounted_share"):
        s[c] = None if c in ("prev_term", "status_detail", "programme_detail") else float("nan")
    s["graduates"] = s["file_id"].map(frame.loc[frame["status"] == "graduated", "file_id"].value_counts()).fillna(0).astype("float64")
    if history is None or not (s["rows"] > 0).any():
        return s
    # An empty file is ENR.file.has_rows's alone: nothing is compared with earlier terms.
    b = history.baselines(files[files["rows"] > 0], frame)
    base = b["base"].set_index("file_id")
    s["prev_term"] = s["file_id"].map(base["prev_term"])
    s["prev_rows"] = s["file_id"].map(base["prev_rows"]).astype("float64")
    s["row_ratio"] = s["rows"] / s["prev_rows"]
    known = frame["status"].isin(STATUSES) & (frame["status"] != "graduated")
    cur_status = frame[known].groupby(["file_id", "status"]).size().rename("n").reset_index().rename(columns={"status": "category"})
    cur_prog = frame[frame["programme_code"].notna()].groupby(["file_id", "programme_code"]).size().rename("n").reset_index().rename(columns={"programme_code": "category"})
    for name, cur in (("status", cur_status), ("programme", cur_prog)):
        shift = _shift(cur[cur["file_id"].isin(base.index)], b[name]).set_index("file_id")
        s[f"{name}_shift"] = s["file_id"].map(shift["shift"]).astype("float64")
        s[f"{name}_detail"] = s["file_id"].map(shift["detail"])
    # Student flows (graduates from last term's final year, students who vanished) are only judged
    # against the term just before: across a missing term students may have left unreported.
    s["consecutive"] = [isinstance(p, str) and term_index(p) == term_index(t) - 1
                        for p, t in zip(s["prev_term"], s["term"])]
    fy = b["final_year"].set_index("file_id")["final_year"]
    s["prev_final_year"] = s["file_id"].map(fy).astype("float64").where(s["consecutive"])
    factor, extra = contract.GRADUATE_TOLERANCE
    s["graduates_allowed"] = (s["prev_final_year"] * factor).apply(lambda v: math.floor(v) + extra if v == v else v)
    if "unaccounted" in b:
        u = b["unaccounted"].set_index("file_id")
        s["prev_active"] = s["file_id"].map(u["prev_active"]).astype("float64").where(s["consecutive"])
        s["unaccounted"] = s["file_id"].map(u["unaccounted"]).astype("float64")
        s["unaccounted_share"] = s["unaccounted"] / s["prev_active"]
    return s


def _num(v) -> str:
    return "" if v is None or v != v else f"{v:,.0f}"


def observed_text(rule_id: str, r: dict) -> str:
    """The measured value behind a file rule, in words (kept in ops.validation_results.observed)."""
    prev = r.get("prev_term") if isinstance(r.get("prev_term"), str) else None
    none = "not judged: no previous accepted term"
    if rule_id.endswith(".has_rows"):
        return f"{_num(r['rows'])} rows"
    if rule_id.endswith((".mostly_invalid", ".quarantine_share")):
        share = r["error_share"]
        return f"{_num(r['errors'])} of {_num(r['rows'])} rows with errors" + ("" if share != share else f" ({share:.1%})")
    if rule_id in ("ENR.file.rows_drop", "ENR.file.rows_growth"):
        return none if not prev else f"{_num(r['rows'])} rows vs {_num(r['prev_rows'])} in {prev} (ratio {r['row_ratio']:.2f})"
    if rule_id in ("ENR.file.status_shares", "ENR.file.programme_shares"):
        name = "status" if "status" in rule_id else "programme"
        shift = r[f"{name}_shift"]
        return none if not prev or shift != shift else f"largest shift {shift * 100:.1f} points vs {prev} ({r[f'{name}_detail']})"
    if rule_id in ("ENR.file.graduates_vs_final_year", "ENR.file.unaccounted_students") and prev and not r.get("consecutive"):
        return f"not judged: the previous accepted term {prev} is not the term just before"
    if rule_id == "ENR.file.graduates_vs_final_year":
        return none if not prev else (f"{_num(r['graduates'])} graduates vs {_num(r['prev_final_year'])} final-year students "
                                      f"in {prev} (allowed {_num(r['graduates_allowed'])})")
    if rule_id == "ENR.file.unaccounted_students":
        if not prev:
            return none
        if r["prev_active"] != r["prev_active"]:
            return "not judged: student history unavailable"
        share = r["unaccounted_share"]
        return f"{_num(r['unaccounted'])} of {_num(r['prev_active'])} active students of {prev} missing" + (
            "" if share != share else f" ({share:.1%})")
    return ""


def file_results(summary: pd.DataFrame, summary_report) -> pd.DataFrame:
    """Per file and file rule: success, rows checked / failing (the whole file when it fails), observed."""
    rules = summary_report.rules[["rule_id", "severity"]]
    failed = set(zip(summary_report.row_failures["file_id"], summary_report.row_failures["rule_id"]))
    out = []
    for r in summary.to_dict("records"):
        rows = 0 if r["rows"] != r["rows"] else int(r["rows"])
        for rule_id, severity in zip(rules["rule_id"], rules["severity"]):
            bad = (r["file_id"], rule_id) in failed
            out.append((r["file_id"], rule_id, severity, FILE, not bad, rows, rows if bad else 0,
                        observed_text(rule_id, r)))
    return pd.DataFrame(out, columns=FILE_RESULT_COLUMNS).astype({"success": "bool", "rows_checked": "int64",
                                                                  "rows_failing": "int64"})


VERDICTS_SQL = Path(__file__).resolve().parent.parent / "sql" / "contract" / "file_verdicts.sql"


def file_verdicts_sql(files: str, results: str, rules: str) -> str:
    """The one verdict query (transforms/sql/contract/file_verdicts.sql) over these relations."""
    return VERDICTS_SQL.read_text(encoding="utf-8").format(files=files, results=results, rules=rules)


def rules_frame() -> pd.DataFrame:
    return pd.DataFrame([(k, r.message_en) for k, r in RULES.items()], columns=["rule_id", "message_en"])


def verdicts_of(results: pd.DataFrame, files: pd.Series) -> pd.DataFrame:
    """Verdict per file from its failing file rules, by the one verdict query; a failed warning that
    an override accepted (`accepted_override`, from apply_overrides_frame) does not hold the file."""
    import duckdb

    cols = ["file_id", "rule_id", "severity", "scope", "success", "observed"]
    r = results[cols].assign(accepted_override=results["accepted_override"].fillna(False).astype(bool)
                             if "accepted_override" in results else False)
    r = r.astype({"file_id": str, "rule_id": str, "severity": str, "scope": str, "success": bool,
                  "observed": object})
    f = pd.DataFrame({"file_id": [str(x) for x in files], "ord": range(len(files))})
    with duckdb.connect() as con:
        for name, frame in (("l2f_files", f), ("l2f_results", r), ("l2f_rules", rules_frame())):
            con.register(name, frame)
        out = con.execute(file_verdicts_sql("l2f_files", "l2f_results", "l2f_rules")).df()
    out["reason"] = out["reason"].astype(object).where(out["reason"].notna(), None)
    return out[VERDICT_COLUMNS]


def rejected_row_failures(frame: pd.DataFrame, results: pd.DataFrame, verdicts: pd.DataFrame) -> pd.DataFrame:
    """Every row of a rejected file, once per failing file-level error: they go to quarantine."""
    cols = ["row_id", *contract.FAILURE_COLUMNS]
    bad = results[(results["scope"] == FILE) & ~results["success"] & (results["severity"] == ERROR)
                  & results["file_id"].isin(verdicts.loc[verdicts["verdict"] == REJECTED, "file_id"])]
    if bad.empty:
        return pd.DataFrame(columns=cols).astype({"row_id": "int64"})
    rows = frame[["row_id", "file_id"]].merge(bad[["file_id", "rule_id", "observed"]], on="file_id")
    rows["severity"] = ERROR
    rows["column"] = None
    rows["message_en"] = rows["rule_id"].map(lambda r: RULES[r].message_en)
    rows["message_vi"] = rows["rule_id"].map(lambda r: RULES[r].message_vi)
    return rows[cols]


@dataclass
class BatchOutcome:
    frame: pd.DataFrame  # the validated frame (with prev_* when history was known)
    report: contract.ValidationReport  # row suite
    summary: pd.DataFrame  # one row per file
    summary_report: contract.ValidationReport  # submission suite
    file_results: pd.DataFrame  # FILE_RESULT_COLUMNS
    verdicts: pd.DataFrame  # VERDICT_COLUMNS (before overrides)
    row_failures: pd.DataFrame  # row failures plus the rows of rejected files

    @property
    def gx_results(self) -> list:
        return [r.gx_result for r in (self.report, self.summary_report) if r.gx_result is not None]


def check_batch(frame: pd.DataFrame, files: pd.DataFrame, suites: Suites, history: History | None) -> BatchOutcome:
    """Row suite, then the submission suite over the per-file summary: two GX calls per batch."""
    # GX's pandas metrics run about twice as fast on NaN-backed text ("str", Arrow) as on
    # pd.NA-backed "string"; the contract treats both alike (tests/test_expectations.py).
    slow = [c for c, t in frame.dtypes.items() if isinstance(t, pd.StringDtype) and t.na_value is pd.NA]
    if slow:
        frame = frame.astype(dict.fromkeys(slow, "str"))
    if history is not None and suites.dataset == "enrollment":
        frame = history.enrich(frame)
    report = contract.validate(frame, suites.row, key_column="row_id")
    summary = summarise(suites.dataset, frame, files, report, history)
    columns = list(suites.summary.meta["required_columns"])
    summary_report = contract.validate(summary[columns], suites.summary, key_column="file_id")
    results = file_results(summary, summary_report)
    verdicts = verdicts_of(results, files["file_id"])
    failures = pd.concat([report.row_failures, rejected_row_failures(frame, results, verdicts)], ignore_index=True)
    return BatchOutcome(frame, report, summary, summary_report, results, verdicts, failures)


def row_results(frame: pd.DataFrame, report, files: pd.DataFrame) -> pd.DataFrame:
    """Per file and row rule: rows checked, rows failing and a few example values (observed)."""
    grid = files[["file_id", "rows"]].rename(columns={"rows": "rows_checked"}).merge(
        report.rules[["rule_id", "severity"]].drop_duplicates(), how="cross")
    f = report.row_failures
    if len(f):
        f = f.merge(frame[["row_id", "file_id"]], on="row_id")
        agg = f.groupby(["file_id", "rule_id"]).agg(
            rows_failing=("row_id", "size"),
            observed=("observed", lambda v: ", ".join(x for x in dict.fromkeys(v) if x)[:200])).reset_index()
        grid = grid.merge(agg, on=["file_id", "rule_id"], how="left")
    else:
        grid["rows_failing"], grid["observed"] = 0, None
    grid["rows_failing"] = grid["rows_failing"].fillna(0).astype("int64")
    grid["observed"] = [(f"{n} of {c} rows" + (f"; e.g. {o}" if isinstance(o, str) and o else "")) if n else None
                        for n, c, o in zip(grid["rows_failing"], grid["rows_checked"], grid["observed"])]
    grid["success"] = grid["rows_failing"] == 0
    grid["scope"] = contract.ROW
    return grid[FILE_RESULT_COLUMNS]


# ------------------------------------------------------------------------------------ load

def reconcile_totals(con, run_id: str, staged: list[str], issues: str) -> None:
    """Part of ingest._load. Totals reconcile by programme and by status: sent = loaded + quarantined.

    The per-category form of the accounting identity (rules ENR.totals.by_programme and
    ENR.totals.by_status), recorded in ops.validation_results; a mismatch commits nothing.
    """
    bad = []
    for rule_id, col, label in (("ENR.totals.by_programme", "programme_code", "programmes"),
                                ("ENR.totals.by_status", "status", "statuses")):
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE l2f_totals AS
            WITH q AS (SELECT DISTINCT file_id, line FROM read_parquet(?) WHERE severity = 'error'),
            sent AS (
                SELECT s.file_id, coalesce(s.{col}, '(missing)') AS category, count(*) AS sent,
                       count(q.line) AS quarantined
                FROM read_parquet(?::VARCHAR[], union_by_name = true) s LEFT JOIN q USING (file_id, line)
                GROUP BY ALL),
            got AS (
                SELECT file_id, {col} AS category, count(*) AS loaded FROM staging.enrollment
                WHERE file_id IN (SELECT file_id FROM sent) GROUP BY ALL)
            SELECT file_id, category, coalesce(sent, 0) AS sent, coalesce(loaded, 0) AS loaded,
                   coalesce(quarantined, 0) AS quarantined
            FROM sent FULL JOIN got USING (file_id, category)""", [issues, staged])
        con.execute(f"""
            INSERT INTO ops.validation_results BY NAME
            SELECT ? AS run_id, 'enrollment' AS dataset, t.file_id, m.university_code, m.term, ? AS rule_id,
                   'error' AS severity, count(*) FILTER (WHERE sent <> loaded + quarantined) = 0 AS success,
                   sum(sent) AS rows_checked, sum(abs(sent - loaded - quarantined)) AS rows_failing,
                   coalesce(string_agg(CASE WHEN sent <> loaded + quarantined THEN category || ': sent ' || sent
                                       || ', loaded ' || loaded || ' + quarantined ' || quarantined END, '; '
                                       ORDER BY category),
                            count(*) || ' {label} reconcile') AS observed,
                   'load' AS scope, false AS accepted_override
            FROM l2f_totals t JOIN ops.manifest m USING (file_id)
            GROUP BY t.file_id, m.university_code, m.term""", [run_id, rule_id])
        bad += con.execute("""
            SELECT m.path, t.category, t.sent, t.loaded, t.quarantined FROM l2f_totals t JOIN ops.manifest m USING (file_id)
            WHERE t.sent <> t.loaded + t.quarantined""").fetchall()
    con.execute("DROP TABLE l2f_totals")
    if bad:
        from transforms.warehouse.db import AccountingError

        raise AccountingError("totals do not reconcile (sent != loaded + quarantined) for: " +
                              "; ".join(f"{p} {c} ({s} != {l} + {q})" for p, c, s, l, q in bad[:20]))


# ------------------------------------------------------------------------------------ overrides

def overrides_paths(data_dir: Path | None = None) -> list[Path]:
    """The reviewed overrides file in the repo, and the data folder's own when that is elsewhere."""
    from transforms.config import REPO_ROOT

    found = []
    for p in (REPO_ROOT / "data" / OVERRIDES_FILE, *([Path(data_dir) / OVERRIDES_FILE] if data_dir else [])):
        if p.exists() and p.resolve() not in {q.resolve() for q in found}:
            found.append(p)
    return found


def read_overrides(paths: Iterable[Path]) -> pd.DataFrame:
    """All override rows, each with `status`: 'valid' or why it is ignored."""
    frames = []
    for path in paths:
        t = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        t.columns = [c.strip() for c in t.columns]
        missing = [c for c in OVERRIDE_COLUMNS if c not in t.columns]
        if missing:
            raise OverridesError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(OVERRIDE_COLUMNS)}")
        t = t[OVERRIDE_COLUMNS].apply(lambda c: c.str.strip())
        t["source"] = str(path)
        t["line"] = range(2, len(t) + 2)
        frames.append(t[t[OVERRIDE_COLUMNS].ne("").any(axis=1)])
    t = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*OVERRIDE_COLUMNS, "source", "line"])
    t["status"] = [_override_problem(r) or "valid" for r in t.to_dict("records")]
    return t.astype({"line": "int64"})


def _override_problem(r: dict) -> str | None:
    rule = RULES.get(r["rule_id"])
    if rule is None:
        return f"ignored: unknown rule {r['rule_id']!r}"
    if rule.severity != WARNING:
        return "ignored: errors cannot be accepted, only warnings"
    if not r["reason"] or not r["accepted_by"]:
        return "ignored: reason and accepted_by are required"
    try:
        date.fromisoformat(r["accepted_on"])
    except ValueError:
        return "ignored: accepted_on must be a date like 2026-03-31"
    import re

    if not re.fullmatch(r"\d{4}-[12]|\d{4}H[12]", r["term"]):
        return "ignored: term must look like 2024-1 (or a round like 2025H2)"
    return None


def _note(o: pd.Series | dict) -> str:
    return f"{o['reason']} (accepted by {o['accepted_by']} on {o['accepted_on']})"


def apply_overrides_frame(results: pd.DataFrame, files: pd.DataFrame, overrides: pd.DataFrame) -> pd.DataFrame:
    """results + accepted_override / override_note, matching on the file's university and term."""
    valid = overrides[overrides["status"] == "valid"].drop_duplicates(["university_code", "term", "rule_id"])
    keyed = results.merge(files[["file_id", "university_code", "term"]].fillna({"university_code": ""}),
                          on="file_id", how="left")
    hit = keyed.merge(valid, on=["university_code", "term", "rule_id"], how="left", indicator=True)
    accepted = (hit["_merge"] == "both") & (hit["severity"] == WARNING) & ~hit["success"]
    out = results.copy()
    out["accepted_override"] = accepted.to_numpy()
    # Notes for the accepted rows only (a run's results are tens of thousands of rows, few accepted).
    notes = [None] * len(out)
    for i, r in zip(accepted.to_numpy().nonzero()[0], hit[accepted.to_numpy()].to_dict("records")):
        notes[i] = _note(r)
    out["override_note"] = notes
    return out


def apply_overrides(con, overrides: pd.DataFrame) -> dict:
    """Record the overrides, mark the warnings they accept, and (re)compute every file's verdict.

    Run every pipeline run, inside the caller's transaction: accepting a warning needs no
    resubmission, and removing an override puts the warning back on hold.
    """
    _register(con, "l2f_overrides", overrides[[*OVERRIDE_COLUMNS, "source", "line", "status"]])
    try:
        con.execute("DELETE FROM ops.accepted_warnings")
        con.execute("""
            INSERT INTO ops.accepted_warnings BY NAME
            SELECT o.university_code, o.term, o.rule_id, o.reason, o.accepted_by, TRY_CAST(o.accepted_on AS DATE) AS accepted_on,
                   o.source, o.line, o.status,
                   (SELECT count(*) FROM ops.validation_results v JOIN ops.manifest m USING (file_id)
                    WHERE o.status = 'valid' AND coalesce(m.university_code, '') = o.university_code
                      AND coalesce(m.term, m.round) = o.term AND v.rule_id = o.rule_id
                      AND v.severity = 'warning' AND NOT v.success) AS warnings_accepted
            FROM l2f_overrides o""")
    finally:
        con.unregister("l2f_overrides")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE l2f_accept AS
        SELECT v.file_id, v.rule_id,
               bool_or(o.rule_id IS NOT NULL) AS accepted,
               min(CASE WHEN o.rule_id IS NOT NULL
                        THEN o.reason || ' (accepted by ' || o.accepted_by || ' on ' || CAST(o.accepted_on AS VARCHAR) || ')' END) AS note
        FROM ops.validation_results v JOIN ops.manifest m USING (file_id)
        LEFT JOIN (SELECT DISTINCT ON (university_code, term, rule_id) * FROM ops.accepted_warnings
                   WHERE status = 'valid' ORDER BY university_code, term, rule_id, line) o
          ON coalesce(m.university_code, '') = o.university_code AND coalesce(m.term, m.round) = o.term
         AND v.rule_id = o.rule_id AND v.severity = 'warning' AND NOT v.success
        GROUP BY ALL""")
    con.execute("""
        UPDATE ops.validation_results v SET accepted_override = a.accepted, override_note = a.note
        FROM l2f_accept a
        WHERE v.file_id = a.file_id AND v.rule_id = a.rule_id
          AND (v.accepted_override IS DISTINCT FROM a.accepted OR v.override_note IS DISTINCT FROM a.note)""")
    con.execute("DROP TABLE l2f_accept")
    # The verdict by the one verdict query (as verdicts_of), over every file's recorded results.
    _register(con, "l2f_rules", rules_frame())
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE l2f_verdicts AS
        {file_verdicts_sql("(SELECT file_id, 0 AS ord FROM ops.manifest)", "ops.validation_results", "l2f_rules")}""")
    con.unregister("l2f_rules")
    con.execute("""
        UPDATE ops.manifest m SET verdict = x.verdict, verdict_note = x.note
        FROM (
            SELECT m.file_id,
                   CASE WHEN m.status = 'rejected' THEN 'rejected'
                        WHEN m.status = 'duplicate' THEN NULL
                        ELSE any_value(fv.verdict) END AS verdict,
                   CASE WHEN m.status IN ('rejected', 'duplicate') THEN NULL ELSE nullif(concat_ws('; ',
                       string_agg(CASE WHEN NOT coalesce(v.accepted_override, false) THEN 'pending ' || v.rule_id || ' (' || coalesce(v.observed, '') || ')' END, '; ' ORDER BY v.rule_id),
                       string_agg(CASE WHEN v.accepted_override THEN 'accepted ' || v.rule_id || ': ' || v.override_note END, '; ' ORDER BY v.rule_id)), '') END AS note
            FROM ops.manifest m
            JOIN l2f_verdicts fv ON fv.file_id = m.file_id
            LEFT JOIN ops.validation_results v
              ON v.file_id = m.file_id AND v.scope = 'file' AND v.severity = 'warning' AND NOT v.success
            GROUP BY m.file_id, m.status
        ) x
        WHERE m.file_id = x.file_id AND (m.verdict IS DISTINCT FROM x.verdict OR m.verdict_note IS DISTINCT FROM x.note)""")
    con.execute("DROP TABLE l2f_verdicts")
    return dict(con.execute("SELECT coalesce(verdict, 'none'), count(*) FROM ops.manifest GROUP BY 1").fetchall())


def apply_overrides_in_transaction(con, overrides: pd.DataFrame) -> dict:
    """apply_overrides() on its own (a run with nothing new to load still applies new overrides)."""
    con.execute("BEGIN TRANSACTION")
    try:
        out = apply_overrides(con, overrides)
        con.execute("COMMIT")
        return out
    except BaseException:
        con.execute("ROLLBACK")
        raise


# ------------------------------------------------------------------------------------ run summary

def run_summary(work_dir: Path, submissions: list, overrides: pd.DataFrame, limit: int = 15) -> tuple[str, dict]:
    """Markdown for the Prefect artifact of a validation run, and verdict counts per dataset."""
    lines, counts = [], {}
    for dataset in ("enrollment", "placements"):
        rp, vp = work_dir / f"results_{dataset}.parquet", work_dir / f"verdicts_{dataset}.parquet"
        staged = [s for s in submissions if s.status == "staged" and s.landed.dataset == dataset]
        if not staged or not rp.exists():
            continue
        files = files_frame(file_info(s) for s in staged)
        results = apply_overrides_frame(pd.read_parquet(rp), files, overrides)
        verdicts = verdicts_of(results, files["file_id"]).merge(files[["file_id", "path"]], on="file_id")
        n = verdicts["verdict"].value_counts().to_dict()
        counts[dataset] = n
        accepted_by_override = int(results["accepted_override"].sum())
        lines += [f"### {dataset}: {len(files)} files, {int(files['rows'].sum()):,} rows", "",
                  "| verdict | files |", "|---|---:|",
                  *(f"| {v} | {n.get(v, 0)} |" for v in (ACCEPTED, WITH_WARNINGS, REJECTED)), "",
                  f"Warnings accepted through the overrides file: {accepted_by_override}.", ""]
        failing = results[~results["success"]].groupby(["rule_id", "severity", "scope"]).agg(
            files=("file_id", "nunique"), rows=("rows_failing", "sum")).reset_index().sort_values(
            ["severity", "files", "rule_id"], ascending=[True, False, True])
        if len(failing):
            lines += ["| rule | severity | scope | files | rows | meaning |", "|---|---|---|---:|---:|---|",
                      *(f"| `{r.rule_id}` | {r.severity} | {r.scope} | {r.files} | {r.rows:,} | {RULES[r.rule_id].message_en} |"
                        for r in failing.head(limit).itertuples()), ""]
        held = verdicts[verdicts["verdict"] != ACCEPTED].sort_values(["verdict", "path"])
        if len(held):
            lines += ["| file | verdict | why |", "|---|---|---|",
                      *(f"| {r.path} | {r.verdict} | {(r.reason or '').replace('|', '/')} |" for r in held.head(limit).itertuples()),
                      *([f"| … {len(held) - limit} more | | |"] if len(held) > limit else []), ""]
    ignored = overrides[overrides["status"] != "valid"]
    if len(ignored):
        lines += ["Overrides ignored:", *(f"- {r.source} line {r.line}: {r.status}" for r in ignored.itertuples()), ""]
    return "\n".join(["## Data contract", "", *(lines or ["Nothing new to validate."])]), counts
