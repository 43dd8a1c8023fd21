"""Recovery: the manifest history kept outside the warehouse, and `lab2fab rebuild`.

Every run ends by writing the manifest (one row per landed file, with the run that took it
and when) and the run log to `data/history/`, each file written whole and swapped in. If the
warehouse is lost or damaged, a rebuild:

1. checks the pseudonymisation key against the one the history was written with;
2. checks that every file the history lists is still in the landing zone with the same
   content (sha256), putting back its recorded time received when only that was lost
   (a backup restored without timestamps), and refusing, with the list, when content is gone;
3. moves the damaged warehouse aside (never deletes it) and runs the pipeline on an empty
   warehouse, which takes the whole landing zone in submission order;
4. gives each file back the run id and time it was first ingested, and the run log its runs.

Every table then has the content the lost warehouse had (tests/test_reliability.py proves it).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from transforms.ingest import landing
from transforms.warehouse import db as warehouse
from transforms.ingest.pseudonym import PseudonymKeyError, fingerprint, load_key
from transforms.config import Paths

HISTORY_TABLES = ("manifest", "runs")  # ops.<name> -> history/<name>.parquet
STATE_FILE = "state.json"


class RecoveryError(RuntimeError):
    """The warehouse cannot be re-created as it was; the message says what is missing."""


def _write_whole(target: Path, write) -> None:
    """Write to a temporary name, flush to disk, then rename over the old file."""
    tmp = target.with_name(f".{target.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)


def save_history(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """The manifest and run log as they stand after a run, and the key fingerprint they were made with."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in HISTORY_TABLES:
        _write_whole(folder / f"{name}.parquet", lambda tmp, name=name: con.execute(
            f"COPY (SELECT * FROM ops.{name} ORDER BY ALL) TO '{tmp}' (FORMAT parquet)"))
    state = {"key_fingerprint": warehouse.get_state(con, "key_fingerprint"),
             "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    _write_whole(folder / STATE_FILE, lambda tmp: tmp.write_text(json.dumps(state, indent=1)))


@dataclass
class History:
    manifest: pd.DataFrame
    runs: pd.DataFrame
    key_fingerprint: str | None


def read_history(folder: Path) -> History:
    missing = [f"{n}.parquet" for n in HISTORY_TABLES if not (folder / f"{n}.parquet").exists()]
    if missing or not (folder / STATE_FILE).exists():
        raise RecoveryError(
            f"no manifest history in {folder} (every completed run writes it there). Without it the arrival "
            "record cannot be restored; `lab2fab run` on an empty warehouse still re-creates the tables from "
            "the landing zone, with today's run as the one that took every file.")
    con = duckdb.connect()
    try:
        frames = {n: con.execute("SELECT * FROM read_parquet(?)", [str(folder / f"{n}.parquet")]).df()
                  for n in HISTORY_TABLES}
    finally:
        con.close()
    state = json.loads((folder / STATE_FILE).read_text())
    return History(frames["manifest"], frames["runs"], state.get("key_fingerprint"))


def check_landing_zone(paths: Paths, history: History) -> list[str]:
    """Every file the history took must still be there with the same content.

    Returns what was put right (time received restored); raises RecoveryError listing files
    whose content is gone or changed.
    """
    restored, problems = [], []
    read = history.manifest[history.manifest["sha256"].notna()]
    for row in read.itertuples(index=False):
        path = paths.landing / row.path
        try:
            st = path.lstat()
        except FileNotFoundError:
            problems.append(f"{row.path}: missing (it was {row.status}, sha256 {row.sha256[:12]}…)")
            continue
        if landing.sha256_of(path) != row.sha256:
            problems.append(f"{row.path}: content changed since it was {row.status} (sha256 no longer "
                            f"{row.sha256[:12]}…)")
            continue
        if st.st_mtime != row.mtime:  # same content, time lost (e.g. restored from a backup)
            os.utime(path, (st.st_atime, row.mtime), follow_symlinks=False)
            restored.append(f"{row.path}: time received set back to "
                            f"{datetime.fromtimestamp(row.mtime, timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise RecoveryError(
            f"the landing zone no longer holds what the warehouse was built from ({len(problems)} files):\n  {shown}\n"
            "Put these files back in the landing zone (from the universities' copies or your backup of "
            f"{paths.landing}) and run `lab2fab rebuild` again. Nothing was changed.")
    return restored


def require_warehouse_or_no_history(paths: Paths) -> None:
    """A run must not start a new, empty warehouse where one was lost: it would take every file
    again as if it were new, and overwrite the history that a rebuild needs."""
    if not paths.warehouse.exists() and (paths.history / "manifest.parquet").exists():
        raise RecoveryError(
            f"the warehouse {paths.warehouse} is missing, but the manifest history in {paths.history} lists the files "
            "it was built from. Run `lab2fab rebuild` to re-create it as it was; nothing was changed.")


def prepare_rebuild(paths: Paths, run_id: str) -> tuple[History, list[str], Path | None]:
    """Checks, then the old warehouse moved aside. Call under the writer lock."""
    history = read_history(paths.history)
    key = load_key(paths.secrets, allow_demo_key=history.key_fingerprint is None)
    if history.key_fingerprint and history.key_fingerprint != fingerprint(key):
        raise PseudonymKeyError(
            "the pseudonymisation key is not the one the lost warehouse was built with, so the rebuilt "
            "pseudonyms would not match the published ones; nothing was changed. Set $LAB2FAB_PSEUDONYM_KEY to "
            "the original key and run `lab2fab rebuild` again.")
    notes = check_landing_zone(paths, history)
    aside = None
    if paths.warehouse.exists():
        aside = paths.warehouse.with_name(f"{paths.warehouse.name}.replaced-{run_id}")
        os.replace(paths.warehouse, aside)
    wal = paths.warehouse.with_name(paths.warehouse.name + ".wal")
    if wal.exists():
        os.replace(wal, aside.with_name(aside.name + ".wal") if aside else wal.with_name(f"{wal.name}.replaced-{run_id}"))
    return history, notes, aside


def restore_arrivals(con: duckdb.DuckDBPyConnection, history: History) -> int:
    """Give each file the run id and time of its first ingestion, and the run log its runs.

    One transaction; files the history does not know (they arrived after its last run) keep
    the rebuild's run id. Returns the number of files restored.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("history_manifest", history.manifest[["file_id", "run_id", "ingested_at"]])
        con.register("history_runs", history.runs)
        n = con.execute("SELECT count(*) FROM ops.manifest JOIN history_manifest USING (file_id)").fetchone()[0]
        con.execute("""UPDATE ops.validation_results v SET run_id = h.run_id
                       FROM history_manifest h WHERE v.file_id = h.file_id""")
        con.execute("""UPDATE ops.manifest m SET run_id = h.run_id, ingested_at = h.ingested_at
                       FROM history_manifest h WHERE m.file_id = h.file_id""")
        con.execute("INSERT INTO ops.runs BY NAME SELECT * FROM history_runs "
                    "WHERE run_id NOT IN (SELECT run_id FROM ops.runs)")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        for view in ("history_manifest", "history_runs"):
            try:
                con.unregister(view)
            except duckdb.Error:
                pass
    return int(n)
