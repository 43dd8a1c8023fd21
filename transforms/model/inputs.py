"""What the model reads, as one fingerprint: the model stage re-runs only when it changed.

The model (transforms/model/projection.run_model) reads `staging.enrollment`, `staging.placements`,
every `ref.*` table, `marts.current_term`, the scenario files, the demo's scale, and its own
draws, seed, scenario names and decisions switch; its result also depends on its code. The
fingerprint hashes all of it; `ops.state` `model_fingerprint` keeps the one the current
`marts.model_*` tables were written from. A run whose fingerprint matches keeps those marts: the
same inputs give identical marts (the model is seeded), so running it again would only cost time.

Table contents are hashed in DuckDB, order-independently (sum of row hashes, and the row count).
Of `staging.*`, only the columns the model's code names are hashed (a column whose name appears
as a word in transforms/model/*.py), leaving out where a row came from (`file_id`, `line`): a
resubmission that corrects, say, a gender or a GPA keeps the model, while a model change that
reads one more column brings that column into the fingerprint by itself. `ref.*` and
`marts.current_term` are hashed whole.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

STATE_KEY = "model_fingerprint"
# Where a row came from, not what it says: not part of the model's inputs.
PROVENANCE_COLUMNS = frozenset({"file_id", "line"})
MODEL_CODE = Path(__file__).resolve().parent


def _model_code() -> dict[str, bytes]:
    """The model's source files, read once per fingerprint: hashed whole, and searched for column names."""
    return {f.name: f.read_bytes() for f in sorted(MODEL_CODE.glob("*.py"))}


def _words_of(code: dict[str, bytes]) -> set[str]:
    words: set[str] = set()
    for name, text in code.items():
        if name != "inputs.py":
            words |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text.decode("utf-8")))
    return words


def _table_digest(con, schema: str, table: str, words: set[str]) -> str:
    cols = [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? ORDER BY column_index",
        [schema, table]).fetchall()
        if schema != "staging" or (r[0] not in PROVENANCE_COLUMNS and r[0] in words)]
    if not cols:
        return "no columns"
    quoted = ", ".join('"{}"'.format(c.replace('"', '""')) for c in cols)
    # HUGEINT sum: duplicates count (bit_xor would cancel them), order does not.
    n, s = con.execute(f'SELECT count(*), coalesce(sum(hash({quoted})::HUGEINT), 0) FROM "{schema}"."{table}"').fetchone()
    return f"{','.join(cols)}|{n}|{s}"


def _relations(con) -> list[tuple[str, str]]:
    rows = con.execute("""
        SELECT schema_name, table_name FROM duckdb_tables()
        WHERE (schema_name = 'ref') OR (schema_name = 'staging' AND table_name IN ('enrollment', 'placements'))
           OR (schema_name = 'marts' AND table_name = 'current_term')
        UNION ALL
        SELECT schema_name, view_name FROM duckdb_views()
        WHERE NOT internal AND schema_name = 'marts' AND view_name = 'current_term'
        ORDER BY ALL""").fetchall()
    return [(r[0], r[1]) for r in rows]


def fingerprint(con, *, data_dir: str | Path | None, scenarios: list[str] | None, draws: int, seed: int,
                decisions: bool, scale: float) -> str:
    """One short hash of everything the model reads and how it is asked to run."""
    from transforms.model import scenarios as sc
    from transforms.warehouse.freshness import code_version

    h = hashlib.sha256()
    code = _model_code()
    words = _words_of(code)
    for schema, table in _relations(con):
        h.update(f"table {schema}.{table}:{_table_digest(con, schema, table, words)}\n".encode())
    folder = sc.scenario_dir(data_dir)
    for f in [*sorted(folder.glob("*.yaml")), *(Path(n) for n in scenarios or [] if Path(n).suffix in (".yaml", ".yml"))]:
        if f.exists():
            h.update(f"scenario {f.name}\0".encode() + f.read_bytes())
    h.update(repr(("run", sorted(scenarios) if scenarios is not None else None, int(draws), int(seed),
                   bool(decisions), float(scale))).encode())
    # The model's own code, edits not yet committed included; the commit for the code it calls.
    for name, text in code.items():
        h.update(f"code {name}\0".encode() + text)
    h.update(f"commit {code_version()}".encode())
    return h.hexdigest()[:16]


def model_tables(con) -> list[str]:
    return [r[0] for r in con.execute("""SELECT table_name FROM duckdb_tables()
                                         WHERE schema_name = 'marts' AND table_name LIKE 'model\\_%' ESCAPE '\\'
                                         ORDER BY 1""").fetchall()]


def unchanged(con, fp: str) -> bool:
    """True when `marts.model_*` were written from inputs with this fingerprint and are all there."""
    from transforms.warehouse.db import get_state

    return get_state(con, STATE_KEY) == fp and "model_headline" in model_tables(con) and "model_measures" in model_tables(con)


def record(con, fp: str) -> None:
    """After `write_outputs` committed: the marts now stand for these inputs."""
    from transforms.warehouse.db import set_state

    set_state(con, STATE_KEY, fp)


def forget(con) -> None:
    """Before the marts are rewritten: a run that dies half-way must not leave a matching fingerprint."""
    con.execute("DELETE FROM ops.state WHERE name = ?", [STATE_KEY])


def kept_outputs(con) -> dict:
    """The current `marts.model_*` as run_model returns them (what the model stage logs and shows)."""
    out = {name: con.execute(f'SELECT * FROM marts."{name}"').df() for name in model_tables(con)}
    out["_timings"] = {"total": 0.0}
    return out
