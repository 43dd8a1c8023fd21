"""The DuckDB warehouse: schema and migrations, reference tables, atomic loads, SQL models, the published snapshot.

Only pipeline runs open the working warehouse, one writer at a time. Analysts read the
published snapshot, a finished copy swapped in with an atomic rename, so a query never
blocks a run and never sees half a run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

import duckdb
import yaml

from transforms.config import settings
from transforms.warehouse import models

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"
# duckdb-cli from PyPI (1.5.x) reads storage up to this version; the snapshot is written with it.
SNAPSHOT_STORAGE_VERSION = "v1.5.0"
NUMERIC_REFERENCE_COLUMNS = {
    "slots": "INTEGER", "target": "INTEGER", "target_year": "INTEGER", "normal_years": "DOUBLE",
    "participates": "BOOLEAN",
}


# memory_limit is settings().duckdb_memory_limit (1GB), read at each connect: DuckDB's own default is 80 % of
# RAM, so it would never spill; a run stays within about 2 GiB.


class AccountingError(RuntimeError):
    """Rows read != rows loaded + rows quarantined for some file: nothing is committed."""


class WarehouseDamaged(RuntimeError):
    """The working warehouse file exists but DuckDB cannot open it."""


def connect(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """The working warehouse; larger-than-memory work spills to `warehouse/spill/`.

    `read_only` (an existing warehouse) leaves the file byte for byte as it was: a run checks
    its key that way before it writes anything.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # A new warehouse is written in the snapshot's storage version, so that its checkpointed file is
        # itself a valid snapshot (`publish` copies it); a file that exists keeps the version it has.
        con = duckdb.connect(str(path), read_only=read_only,
                             config={"memory_limit": settings().duckdb_memory_limit, "temp_directory": str(path.parent / "spill"),
                                     "storage_compatibility_version": SNAPSHOT_STORAGE_VERSION})
    except duckdb.Error as e:
        if not path.exists() or "lock" in str(e).lower():  # a missing folder, or another process: not damage
            raise
        raise WarehouseDamaged(
            f"cannot open the warehouse {path}: {e}\nIf the file is damaged, `lab2fab rebuild` re-creates it "
            "from the landing zone and the manifest history (the damaged file is kept aside).") from e
    if not read_only:
        ensure_schema(con)
    return con


def _migrations() -> list[tuple[int, Path]]:
    return sorted((int(p.name.split("_", 1)[0]), p) for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))


SCHEMA_VERSION = max((n for n, _ in _migrations()), default=0)


def ensure_schema(con) -> int:
    """Create the warehouse's tables, or bring an older warehouse up to this code's schema.

    A new warehouse gets `schema.sql` (which defines every table as it is now) and is marked
    with the latest migration's number in ops.state `schema_version` and the digest of
    `schema.sql` in `schema_digest`. An existing one at both is left alone (one query). Otherwise
    `schema.sql` runs again (CREATE ... IF NOT EXISTS: the tables it lacks) and then the migrations
    after its version (a warehouse from before versioning counts as version 0). A change to an
    existing table therefore goes in a new `migrations/NNN_*.sql`. Returns the version.
    """
    has_state = con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'ops' AND table_name = 'state'"
                            ).fetchone()[0]
    version = int(get_state(con, "schema_version") or 0) if has_state else None
    schema = (SQL_DIR / "schema.sql").read_text(encoding="utf-8")
    digest = hashlib.sha256(schema.encode()).hexdigest()[:16]
    if version == SCHEMA_VERSION and get_state(con, "schema_digest") == digest:
        return version
    if version is not None and version > SCHEMA_VERSION:
        raise RuntimeError(f"the warehouse's schema is version {version}, newer than this lab2fab's "
                           f"({SCHEMA_VERSION}): run the lab2fab that wrote it, or `lab2fab rebuild`")
    con.execute(schema)
    if version is not None:  # an existing warehouse: the changes made since its version
        for n, path in _migrations():
            if n > version:
                con.execute(path.read_text(encoding="utf-8"))
    set_state(con, "schema_version", str(SCHEMA_VERSION))
    set_state(con, "schema_digest", digest)
    return SCHEMA_VERSION


# An analyst's session on the snapshot reads the snapshot and nothing else: no read_csv of the
# landing zone (names, national ids), no COPY ... TO, ATTACH or INSTALL, and no SET that undoes it.
# No temp directory either: DuckDB lets a query write wherever it may spill.
SNAPSHOT_QUERY_CONFIG = {"enable_external_access": False, "lock_configuration": True, "temp_directory": ""}
# The same for the DuckDB shell (`duckdb -readonly -cmd "..." snapshot`), in this order: DuckDB
# refuses a new temp_directory once external access is off, and any SET once the lock is on.
SNAPSHOT_SHELL_SETTINGS = "SET temp_directory = ''; SET enable_external_access = false; SET lock_configuration = true;"


def connect_snapshot(path: Path) -> duckdb.DuckDBPyConnection:
    """The published snapshot, read-only, for queries: the file system beyond it is out of reach."""
    return duckdb.connect(str(path), read_only=True, config=dict(SNAPSHOT_QUERY_CONFIG))


def latest_term(con) -> str | None:
    """The latest term the marts, the model and the report speak for (`marts.current_term`, the one
    definition: the latest term with accepted submissions from the stated share of the reporting
    universities); None before the marts are built or with no accepted enrollment."""
    exists = con.execute("""SELECT (SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'marts'
                                    AND table_name = 'current_term')
                                 + (SELECT count(*) FROM duckdb_views() WHERE schema_name = 'marts'
                                    AND view_name = 'current_term')""").fetchone()[0]
    if not exists:
        return None
    row = con.execute("SELECT term FROM marts.current_term").fetchone()
    return row[0] if row else None


def get_state(con, name: str) -> str | None:
    row = con.execute("SELECT value FROM ops.state WHERE name = ?", [name]).fetchone()
    return row[0] if row else None


def set_state(con, name: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO ops.state VALUES (?, ?)", [name, value])


def record_run(con, run_id: str, started, seen: dict, totals: dict, rebuilt: bool) -> None:
    con.execute("""INSERT INTO ops.runs VALUES (?, ?, now()::TIMESTAMP, ?, ?, ?, ?, ?, ?, 'succeeded')""",
                [run_id, started, seen["files_seen"], seen["files_new"], totals["rows_read"], totals["rows_loaded"],
                 totals["rows_quarantined"], rebuilt])


def forget_periods(con, periods: set[str]) -> int:
    """Remove every trace of the files of these terms/rounds, before a backfill loads them again.

    Generic over tables: any ops/staging table with a `file_id` column is cleaned, so a new
    per-file table cannot be forgotten here. Call inside the load transaction.
    """
    if not periods:
        return 0
    con.execute("CREATE OR REPLACE TEMP TABLE forgotten AS SELECT file_id FROM ops.manifest "
                "WHERE coalesce(term, round) IN (SELECT unnest(?))", [sorted(periods)])
    tables = con.execute("""SELECT DISTINCT schema_name || '.' || table_name FROM duckdb_columns()
                            WHERE column_name = 'file_id' AND schema_name IN ('ops', 'staging')
                              AND table_name IN (SELECT table_name FROM duckdb_tables() t
                                                 WHERE t.schema_name = duckdb_columns.schema_name)
                              AND NOT (schema_name = 'ops' AND table_name = 'manifest')""").fetchall()
    for (table,) in tables:
        con.execute(f"DELETE FROM {table} WHERE file_id IN (SELECT file_id FROM forgotten)")
    n = con.execute("SELECT count(*) FROM forgotten").fetchone()[0]
    con.execute("DELETE FROM ops.manifest WHERE file_id IN (SELECT file_id FROM forgotten)")
    con.execute("DROP TABLE forgotten")
    return n


def load_reference(con, reference_dir: Path) -> list[str]:
    """(Re)load every CSV in the reference folder as a `ref.<name>` table."""
    names = []
    for csv in sorted(reference_dir.glob("*.csv")):
        name = csv.stem
        rel = con.execute("SELECT * FROM read_csv(?, header = true, all_varchar = true) LIMIT 0", [str(csv)])
        cols = [d[0] for d in rel.description]
        select = ", ".join(
            f"TRY_CAST({c} AS {NUMERIC_REFERENCE_COLUMNS[c]}) AS {c}" if c in NUMERIC_REFERENCE_COLUMNS else c
            for c in cols
        )
        con.execute(f"CREATE OR REPLACE TABLE ref.{name} AS SELECT {select} "
                    f"FROM read_csv(?, header = true, all_varchar = true)", [str(csv)])
        names.append(name)
    return names


# What build_marts(con, folder) builds: the transform stage's layers, or the curated views
# (built at publish, once the model's marts they read exist).
MODEL_LAYERS = {"marts": ("staging", "intermediate", "marts"), "views": ("analytics",),
                "analytics": ("analytics",)}


def build_marts(con, folder: str = "marts", on_step: Callable[[str], None] | None = None) -> list[str]:
    """Build and test the SQL models of these layers (transforms/warehouse/models.py), in dependency
    order; each replaces its table or view whole. A failing yml test raises models.ModelTestFailed.
    `on_step("marts")` is called once two marts are built (flows passes its failpoints)."""
    def failpoint(built: list[str]) -> None:
        if (on_step and folder == "marts" and built[-1].startswith("marts.")
                and sum(n.startswith("marts.") for n in built) == 2):
            on_step("marts")  # two marts built: the reliability tests kill a run here
    return [name.split(".", 1)[1] for name in models.run(con, MODEL_LAYERS[folder], after_each=failpoint)]


def table_names(con, schemas: tuple[str, ...] = ("ops", "ref", "staging", "marts")) -> list[str]:
    rows = con.execute(
        "SELECT schema_name || '.' || table_name FROM duckdb_tables() "
        f"WHERE schema_name IN ({', '.join('?' * len(schemas))}) ORDER BY 1", list(schemas)
    ).fetchall()
    return [r[0] for r in rows]


# Beside the working warehouse (the pipeline's folder, not the analysts'): which snapshot file the last
# publish wrote and what each of its tables held, so that the next publish starts from a copy of that
# file and rewrites only what changed. Without it, or when anything about it is in doubt, a full copy.
SNAPSHOT_RECORD = "snapshot.json"
_FILE_KEY = "coalesce(file_id::VARCHAR, '')"  # a table's rows by file (a NULL file_id goes with '')
# The catalog a snapshot copy must share with the warehouse before only its rows are rewritten: DDL
# (constraints included), column types, defaults and comments, views, and anything else a schema holds.
_CATALOG = (
    "SELECT schema_name, comment, sql FROM duckdb_schemas() WHERE database_name = ?",
    "SELECT schema_name, table_name, sql, comment, temporary FROM duckdb_tables() WHERE database_name = ?",
    "SELECT schema_name, table_name, column_index, column_name, data_type, column_default, is_nullable, comment "
    "FROM duckdb_columns() WHERE database_name = ?",
    "SELECT schema_name, view_name, sql, comment FROM duckdb_views() WHERE database_name = ? AND NOT internal",
    "SELECT schema_name, index_name, table_name, sql FROM duckdb_indexes() WHERE database_name = ?",
    "SELECT schema_name, sequence_name, start_value, increment_by, min_value, max_value, cycle "
    "FROM duckdb_sequences() WHERE database_name = ?",
    "SELECT schema_name, function_name, function_type, macro_definition FROM duckdb_functions() "
    "WHERE database_name = ? AND NOT internal",
    "SELECT schema_name, type_name, logical_type FROM duckdb_types() WHERE database_name = ? AND NOT internal",
)
log = logging.getLogger(__name__)


def content_signature(con, database: str | None = None) -> dict:
    """What each table holds, cheaply: `schema.table` -> [rows, sum of row hashes], or for a table with a
    `file_id` column {file_id: [rows, sum]} (so a resubmission rewrites the rows of the files it touched
    and no others). Order-independent, like the tables' content (tests/tables.py compares sorted rows);
    DuckDB's hash, so comparable only within one DuckDB version (the record says which)."""
    database = database or con.execute("SELECT current_database()").fetchone()[0]
    tables = con.execute("""SELECT t.schema_name, t.table_name, bool_or(c.column_name = 'file_id')
                            FROM duckdb_tables() t JOIN duckdb_columns() c USING (database_name, schema_name, table_name)
                            WHERE t.database_name = ? AND NOT t.temporary GROUP BY ALL ORDER BY 1, 2""",
                         [database]).fetchall()
    out: dict = {}
    for schema, table, by_file in tables:
        ref = f'"{database}"."{schema}"."{table}"'
        if by_file:
            out[f"{schema}.{table}"] = {key: [n, h] for key, n, h in con.execute(
                f"SELECT {_FILE_KEY}, count(*), sum(hash(*COLUMNS(*)))::VARCHAR FROM {ref} GROUP BY 1").fetchall()}
        else:
            n, h = con.execute(f"SELECT count(*), coalesce(sum(hash(*COLUMNS(*))), 0)::VARCHAR FROM {ref}").fetchone()
            out[f"{schema}.{table}"] = [n, h]
    return out


def _catalog(con, database: str) -> list:
    return [sorted(con.execute(q, [database]).fetchall(), key=repr) for q in _CATALOG]


def _identity(path: Path) -> dict:
    """The snapshot file as the file system knows it: a copy, a restore or any write changes it."""
    st = path.stat()
    return {"path": str(path.resolve()), "inode": st.st_ino, "device": st.st_dev, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _record_path(con) -> Path | None:
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    return Path(row[0]).parent / SNAPSHOT_RECORD if row and row[0] else None  # None: an in-memory warehouse


def snapshot_record(con, snapshot: Path) -> dict | None:
    """The record of the last publish, if it describes the file now at `snapshot` (same file, untouched
    since, same DuckDB and storage version); else None, and the next publish copies the warehouse whole."""
    path = _record_path(con)
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path else None
        ok = (isinstance(record, dict) and record.get("duckdb") == duckdb.__version__
              and record.get("storage_version") == SNAPSHOT_STORAGE_VERSION
              and record.get("snapshot") == _identity(snapshot) and isinstance(record.get("tables"), dict))
    except (OSError, ValueError):  # no record, no snapshot, or a record that does not parse
        return None
    return record if ok else None


def _write_record(con, snapshot: Path, run_id: str, signature: dict, rewritten: list[str] | None) -> None:
    """`rewritten`: what this publish rewrote in a copy of the last snapshot; None for a full copy."""
    path = _record_path(con)
    if path is None:
        return
    record = {"duckdb": duckdb.__version__, "storage_version": SNAPSHOT_STORAGE_VERSION, "run_id": run_id,
              "snapshot": _identity(snapshot), "rewritten": rewritten, "tables": signature}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def signature_rows(signature: dict) -> int:
    """Rows of every table a `content_signature` describes."""
    return sum(sum(n for n, _ in v.values()) if isinstance(v, dict) else v[0] for v in signature.values())


def _rows_to_rewrite(recorded: dict, signature: dict) -> int:
    """Rows the warehouse holds in the tables, or files of a table, that changed since the record."""
    n = 0
    for name, now in signature.items():
        before = recorded.get(name)
        if isinstance(now, dict) and isinstance(before, dict):
            n += sum(v[0] for k, v in now.items() if before.get(k) != v)
        elif now != before:
            n += sum(v[0] for v in now.values()) if isinstance(now, dict) else now[0]
    return n


def _rewrite_changed(con, source: str, recorded: dict, signature: dict) -> list[str]:
    """In the attached copy `snapshot_out` of the last snapshot (same catalog as the warehouse), rewrite
    what differs from the record: the rows of each changed file of a table kept by file, the whole of
    any other changed table. Returns what was rewritten (`schema.table`, or `schema.table (n files)`)."""
    done = []
    con.execute("BEGIN TRANSACTION")
    try:
        for name, now in signature.items():
            before = recorded[name]
            if now == before:
                continue
            schema, table = name.split(".", 1)
            src, dst = f'"{source}"."{schema}"."{table}"', f'snapshot_out."{schema}"."{table}"'
            if isinstance(now, dict) and isinstance(before, dict):
                files = sorted(k for k in now.keys() | before.keys() if now.get(k) != before.get(k))
                con.execute(f"DELETE FROM {dst} WHERE {_FILE_KEY} IN (SELECT unnest(?))", [files])
                con.execute(f"INSERT INTO {dst} SELECT * FROM {src} WHERE {_FILE_KEY} IN (SELECT unnest(?))", [files])
                done.append(f"{name} ({len(files)} files)")
            else:
                con.execute(f"DELETE FROM {dst}")
                con.execute(f"INSERT INTO {dst} SELECT * FROM {src}")
                done.append(name)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return done


def _from_last_snapshot(con, source: str, snapshot: Path, tmp: Path, recorded: dict, signature: dict) -> list[str] | None:
    """`tmp` as a copy of the last snapshot with what changed rewritten; None (and `tmp` to discard)
    when the copy's storage version or catalog is not the warehouse's."""
    shutil.copyfile(snapshot, tmp)  # same storage version: a plain copy is a valid snapshot file
    con.execute(f"ATTACH '{tmp}' AS snapshot_out")
    try:
        version = con.execute("SELECT tags['storage_version'] FROM duckdb_databases() "
                              "WHERE database_name = 'snapshot_out'").fetchone()[0]
        if version not in (SNAPSHOT_STORAGE_VERSION, f"{SNAPSHOT_STORAGE_VERSION}+"):
            log.info("publish: the last snapshot has storage version %s; writing a full copy", version)
            return None
        if _catalog(con, "snapshot_out") != _catalog(con, source):
            log.info("publish: the last snapshot's catalog differs from the warehouse's; writing a full copy")
            return None
        rewritten = _rewrite_changed(con, source, recorded, signature)
        con.execute("CHECKPOINT snapshot_out")
        return rewritten
    finally:
        con.execute("DETACH snapshot_out")


def _older_warehouse_snapshot(con, source: str, snapshot: Path, tmp: Path, signature: dict) -> list[str] | None:
    """`tmp` for a warehouse in another storage version than the snapshot's: from the last snapshot with what
    changed rewritten (the tables rewritten), or a complete copy (None)."""
    rewritten = None
    recorded = snapshot_record(con, snapshot)
    if recorded is not None and set(recorded["tables"]) == set(signature) \
            and 2 * _rows_to_rewrite(recorded["tables"], signature) <= signature_rows(signature):  # else a copy is cheaper
        try:
            rewritten = _from_last_snapshot(con, source, snapshot, tmp, recorded["tables"], signature)
        except duckdb.Error as e:  # in doubt: the full copy below
            log.warning("publish: could not start from the last snapshot (%s); writing a full copy", e)
            con.execute("DETACH DATABASE IF EXISTS snapshot_out")
        if rewritten is None:  # the copy and any WAL of it: a new file must not replay an old WAL
            tmp.unlink(missing_ok=True)
            tmp.with_name(f"{tmp.name}.wal").unlink(missing_ok=True)
    if rewritten is None:
        con.execute(f"ATTACH '{tmp}' AS snapshot_out (STORAGE_VERSION '{SNAPSHOT_STORAGE_VERSION}')")
        try:
            con.execute(f"COPY FROM DATABASE {source} TO snapshot_out")
            con.execute("CHECKPOINT snapshot_out")
        finally:
            con.execute("DETACH snapshot_out")
    else:
        log.info("publish: the last snapshot with %d of %d tables rewritten: %s", len(rewritten), len(signature),
                 ", ".join(rewritten) or "none")
    return rewritten


def publish(con, snapshot: Path, run_id: str, on_step: Callable[[str], None] | None = None,
            signature: dict | None = None) -> Path:
    """Write the new snapshot beside the old one, then swap it in atomically.
    `on_step("publish")` is called just before the swap (flows passes its failpoints).

    A warehouse written in the snapshot's storage version (every one this code creates) is checkpointed
    and its file copied: it holds exactly what the warehouse holds, and the copy takes a second where
    DuckDB's COPY FROM DATABASE rewrote and recompressed every table (11 s at national size). For an older
    warehouse (DuckDB's newer default storage, which the duckdb-cli shell cannot read) the new file starts
    as a copy of the last snapshot when the record beside the warehouse says what
    that file holds (`snapshot_record`) and its catalog (tables, columns, comments, views) is the
    warehouse's; then only the tables, or files' rows, whose content hash changed since are rewritten
    (`signature`: `content_signature(con)`, computed here if not given). Otherwise it is a complete
    copy of the warehouse. Either way it holds what the warehouse holds, table by table.

    A reader that has the old snapshot open keeps reading the old file (POSIX rename keeps its
    inode alive); the next connection sees the new one. Nobody ever sees a partial file.
    """
    # Fold the WAL into the warehouse file first: DuckDB's checkpoint on close swallows a write
    # error (a full disk, "File too large") and leaves the WAL; here it ends the run, plainly.
    con.execute("CHECKPOINT")
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*snapshot.parent.glob(f".{snapshot.stem}.*.tmp"),  # left by a run that died here
                  *snapshot.parent.glob(f".{snapshot.stem}.*.tmp.wal")]:
        stale.unlink(missing_ok=True)
    tmp = snapshot.with_name(f".{snapshot.stem}.{run_id}.tmp")
    source = con.execute("SELECT current_database()").fetchone()[0]
    signature = content_signature(con, source) if signature is None else signature
    rewritten = None
    path, version = con.execute("SELECT path, tags['storage_version'] FROM duckdb_databases() "
                                "WHERE database_name = ?", [source]).fetchone()
    if version in (SNAPSHOT_STORAGE_VERSION, f"{SNAPSHOT_STORAGE_VERSION}+"):
        shutil.copyfile(path, tmp)  # checkpointed above, under the writer lock: nothing else writes it
    else:
        rewritten = _older_warehouse_snapshot(con, source, snapshot, tmp, signature)
    _fsync(tmp)
    if on_step:
        on_step("publish")
    os.replace(tmp, snapshot)
    _fsync(snapshot.parent)  # the rename itself survives a power cut
    _write_record(con, snapshot, run_id, signature, rewritten)
    return snapshot


def _literal(text: str) -> str:
    """A SQL string literal (COMMENT ON takes no parameters)."""
    return "'" + str(text).replace("'", "''") + "'"


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser, the same safe constructors: 5x faster


def documentation(path: Path = SQL_DIR / "dictionary.yaml") -> dict:
    """schema.table -> {description, columns}: the SQL models' yml, and `dictionary.yaml` for the
    tables written from Python (ops, staging, ref, the model's marts)."""
    spec = {name: {"description": (e or {}).get("description", ""), "columns": dict((e or {}).get("columns") or {})}
            for name, e in (yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER) or {}).items()}
    for name, entry in models.project().documentation().items():
        into = spec.setdefault(name, {"description": "", "columns": {}})
        into["description"] = entry["description"] or into["description"]
        into["columns"].update({c: t for c, t in entry["columns"].items() if t})
    return spec


def apply_dictionary(con, path: Path = SQL_DIR / "dictionary.yaml") -> int:
    """Attach the documented meaning of tables and columns as DuckDB comments (they travel
    with the snapshot, so `duckdb_columns()` answers what a column means). Returns columns documented."""
    spec = documentation(path)
    present = {(s_, t, c): cm for s_, t, c, cm in con.execute(
        "SELECT schema_name, table_name, column_name, comment FROM duckdb_columns()").fetchall()}
    kinds = {n: (k, cm) for n, k, cm in con.execute(
        """SELECT schema_name || '.' || table_name, 'TABLE', comment FROM duckdb_tables()
           UNION ALL SELECT schema_name || '.' || view_name, 'VIEW', comment FROM duckdb_views()""").fetchall()}
    n = 0
    # One transaction, and only the comments that differ: each COMMENT ON on its own is a commit
    # (a WAL write and fsync), several seconds a run for some 700 comments that rarely change.
    con.execute("BEGIN TRANSACTION")
    try:
        for name, entry in spec.items():
            if name not in kinds:
                continue
            schema, table = name.split(".")
            kind, current = kinds[name]
            text = entry.get("description", "")
            if (current or "") != (text or ""):
                con.execute(f"COMMENT ON {kind} {name} IS {_literal(text)}")
            for column, text in (entry.get("columns") or {}).items():
                if (schema, table, column) in present:
                    if (present[(schema, table, column)] or "") != (text or ""):
                        con.execute(f'COMMENT ON COLUMN {name}."{column}" IS {_literal(text)}')
                    n += 1
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return n


def dictionary_markdown(con, schemas: tuple[str, ...] = ("analytics", "marts", "intermediate", "ops", "staging",
                                                          "ref")) -> str:
    """The data dictionary, generated from the warehouse itself (names, types, comments)."""
    objects = con.execute("""
        SELECT schema_name, table_name, 'table' AS kind, comment FROM duckdb_tables()
        UNION ALL SELECT schema_name, view_name, 'view', comment FROM duckdb_views() WHERE NOT internal
        ORDER BY 1, 2""").fetchall()
    columns = con.execute("""SELECT schema_name, table_name, column_name, data_type, comment
                             FROM duckdb_columns() ORDER BY schema_name, table_name, column_index""").fetchall()
    lines = ["# lab2fab data dictionary", "",
             "Generated from the published warehouse by `lab2fab dictionary`; descriptions live beside the "
             "SQL models (`transforms/sql/<layer>/_<layer>.yml`) and, for the tables written from Python, in "
             "`transforms/sql/dictionary.yaml`.", ""]
    for schema in schemas:
        for s_, t, kind, comment in objects:
            if s_ != schema:
                continue
            lines += [f"## `{s_}.{t}` ({kind})", "", comment or "_undocumented_", "",
                      "| column | type | meaning |", "|---|---|---|"]
            lines += [f"| `{c}` | {typ} | {(cm or '').replace('|', '/')} |" for s2, t2, c, typ, cm in columns
                      if s2 == s_ and t2 == t]
            lines.append("")
    return "\n".join(lines)


PARQUET_RECORD = ".tables.json"  # in each parquet folder: the content signature of the tables exported there


def export_parquet(con, published_dir: Path, run_id: str, schemas: tuple[str, ...] = ("analytics", "marts"),
                   signature: dict | None = None) -> Path:
    """Marts and curated views as Parquet for tools that do not speak DuckDB.

    Written into a new folder, then the `parquet` link is swapped to it atomically; the previous
    folder is kept one run longer for readers still in it. A table whose content signature
    (`content_signature`) is the one recorded in the previous folder is hard-linked from there, not
    written again (files are never changed once written); views are always written.
    """
    target = published_dir / f"parquet-{run_id}"
    target.mkdir(parents=True, exist_ok=True)
    link = published_dir / "parquet"
    previous = link.resolve() if link.is_symlink() else None
    signature = content_signature(con) if signature is None else signature
    try:
        before = json.loads((previous / PARQUET_RECORD).read_text(encoding="utf-8")) if previous else {}
        before = before if isinstance(before, dict) and before.get("duckdb") == duckdb.__version__ else {}
    except (OSError, ValueError):
        before = {}
    exported = {}
    for name in table_names(con, schemas):
        out = target / (name + ".parquet")
        if name in signature and (before.get("tables") or {}).get(name) == signature[name]:
            try:
                os.link(previous / out.name, out)
                exported[name] = signature[name]
                continue
            except OSError:  # gone, or another file system: write it
                out.unlink(missing_ok=True)
        con.execute(f"COPY (SELECT * FROM {name}) TO '{out}' (FORMAT parquet)")
        if name in signature:
            exported[name] = signature[name]
    for (name,) in con.execute(
            f"SELECT schema_name || '.' || view_name FROM duckdb_views() WHERE schema_name IN "
            f"({', '.join('?' * len(schemas))}) ORDER BY 1", list(schemas)).fetchall():
        con.execute(f"COPY (SELECT * FROM {name}) TO '{target / (name + '.parquet')}' (FORMAT parquet)")
    (target / PARQUET_RECORD).write_text(json.dumps({"duckdb": duckdb.__version__, "tables": exported}),
                                         encoding="utf-8")
    tmp_link = published_dir / f".parquet-{run_id}.link"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(target.name)
    os.replace(tmp_link, link)
    for old in published_dir.glob("parquet-*"):
        if old not in (target, previous):
            shutil.rmtree(old, ignore_errors=True)
    return link
