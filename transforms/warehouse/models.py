"""The SQL models of `transforms/sql/<layer>/`: read, ordered by dependency, built, tested.

Each model is one file holding one SELECT, named as its table (`marts/graduates.sql` builds
`marts.graduates`); the runner wraps it in `CREATE OR REPLACE TABLE|VIEW`. Beside each layer,
`_<layer>.yml` (dbt's schema.yml shape: `models:` and `sources:`) says how each model is
materialised, what it and each of its columns mean, and the tests it must pass: `not_null`,
`unique`, `accepted_values`, `relationships`, and at model level `unique_combination_of_columns`
and `expression_is_true` (as dbt_utils names them). The layout is dbt's so that a later move to
dbt-duckdb or SQLMesh costs little (neither installs against this lock offline).

Dependencies are parsed from the `schema.table` references in the SQL rather than declared in
the yml: a declared list can drift from the query it describes, a parsed one cannot. Every
reference to a known schema that is not a model is a source (a table written from Python).

A failing test stops the run at once, before anything that depends on the model is built (and
so before publish), naming the model, the column, the test and the number of failing rows.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import yaml

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
LAYERS = ("staging", "intermediate", "marts", "analytics")
# The schemas a model may read; a reference to any of them is a dependency.
SCHEMAS = ("ops", "ref", "staging", "intermediate", "marts", "analytics")
MATERIALISATIONS = {"table": "TABLE", "view": "VIEW"}
_REFERENCE = re.compile(r"\b(" + "|".join(SCHEMAS) + r")\.([A-Za-z_][A-Za-z0-9_]*)\b")
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_STRING = re.compile(r"'(?:[^']|'')*'")


class ModelError(ValueError):
    """A model file or its yml is not as the runner needs it (named: file, model, what)."""


class ModelTestFailed(RuntimeError):
    """A yml test found failing rows: the run stops before publish."""


@dataclass(frozen=True)
class Check:
    """One yml test on a model or source, as a SQL query counting the failing rows."""
    relation: str           # schema.table
    column: str | None      # None for a model-level test
    kind: str
    args: dict = field(default_factory=dict, hash=False, compare=False)

    def describe(self) -> str:
        where = f"{self.relation}, column {self.column}" if self.column else self.relation
        detail = {k: v for k, v in self.args.items() if k != "severity"}
        return f"{where}: test {self.kind}" + (f" {detail}" if detail else "")

    def failing_row(self) -> str | None:
        """For a test judged row by row: the condition a failing row meets (else None)."""
        c = _ident(self.column) if self.column else None
        if self.kind == "not_null":
            return f"{c} IS NULL"
        if self.kind == "accepted_values":
            values = ", ".join(_literal(v) for v in self.args["values"])
            return f"{c} IS NOT NULL AND CAST({c} AS VARCHAR) NOT IN ({values})"
        if self.kind == "expression_is_true":
            return f"NOT coalesce(({self.args['expression']}), false)"
        return None

    def sql(self) -> str:
        t, c = self.relation, _ident(self.column) if self.column else None
        if self.failing_row() is not None:
            return f"SELECT count(*) FROM {t} WHERE {self.failing_row()}"
        if self.kind == "unique":
            return (f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {t} WHERE {c} IS NOT NULL "
                    f"GROUP BY {c} HAVING count(*) > 1)")
        if self.kind == "relationships":
            to, other = self.args["to"], _ident(self.args["field"])
            return (f"SELECT count(*) FROM {t} c WHERE c.{c} IS NOT NULL "
                    f"AND NOT EXISTS (SELECT 1 FROM {to} p WHERE p.{other} = c.{c})")
        if self.kind == "unique_combination_of_columns":
            cols = ", ".join(_ident(x) for x in self.args["combination_of_columns"])
            return (f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {t} GROUP BY {cols} "
                    f"HAVING count(*) > 1)")
        raise ModelError(f"{self.describe()}: unknown test (known: {', '.join(CHECK_KINDS)})")


CHECK_KINDS = ("not_null", "unique", "accepted_values", "relationships", "unique_combination_of_columns",
               "expression_is_true")


@dataclass(frozen=True)
class Model:
    name: str                  # schema.table
    layer: str
    path: Path
    sql: str
    materialized: str          # table | view
    description: str
    columns: dict              # column -> description
    checks: tuple
    depends_on: frozenset      # schema.table of models and sources read

    def create_sql(self) -> str:
        return f"CREATE OR REPLACE {MATERIALISATIONS[self.materialized]} {self.name} AS\n{self.sql}"


@dataclass(frozen=True)
class Project:
    models: dict               # schema.table -> Model
    sources: dict              # schema.table -> (description, {column: description}, checks)

    def order(self, layers: tuple[str, ...] = LAYERS) -> list[Model]:
        """The models of these layers, each after every model it reads (name order among equals)."""
        graph = TopologicalSorter()
        for m in sorted(self.models.values(), key=lambda m: m.name):
            graph.add(m.name, *sorted(d for d in m.depends_on if d in self.models))
        try:
            ordered = list(graph.static_order())
        except CycleError as e:
            raise ModelError(f"the SQL models read each other in a cycle: {' -> '.join(e.args[1])}") from e
        return [self.models[n] for n in ordered if self.models[n].layer in layers]

    def documentation(self) -> dict:
        """schema.table -> {description, columns} for every model and documented source."""
        out = {n: {"description": d, "columns": dict(cols)} for n, (d, cols, _) in self.sources.items()}
        out.update({n: {"description": m.description, "columns": dict(m.columns)} for n, m in self.models.items()})
        return out


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def references(sql: str) -> frozenset:
    """schema.table names read by a query (comments and string literals ignored)."""
    text = _STRING.sub("''", _COMMENT.sub(" ", sql))
    return frozenset(f"{s}.{t}" for s, t in _REFERENCE.findall(text))


def _values(values, where: str) -> list:
    """accepted_values' list, where `vocabulary.NAME` (alone or as an item) stands for that list of
    transforms/vocabulary.py: the programme's words are defined once."""
    from transforms import vocabulary

    out = []
    for v in values if isinstance(values, list) else [values]:
        if isinstance(v, str) and v.startswith("vocabulary."):
            found = getattr(vocabulary, v.split(".", 1)[1], None)
            if not isinstance(found, (tuple, list, dict, frozenset)):
                raise ModelError(f"{where}: {v} is not a list in transforms/vocabulary.py")
            out += list(found)
        elif v is not None:
            out.append(v)
    if not out:
        raise ModelError(f"{where}: accepted_values needs `values`, a list or vocabulary.NAME")
    return out


def _checks(relation: str, column: str | None, specs, where: str) -> list[Check]:
    out = []
    for spec in specs or []:
        if isinstance(spec, str):
            kind, args = spec, {}
        elif isinstance(spec, dict) and len(spec) == 1:
            kind, args = next(iter(spec.items()))
            args = dict(args or {})
        else:
            raise ModelError(f"{where}: a test is a name or a one-key mapping, not {spec!r}")
        kind = kind.split(".")[-1]  # dbt_utils.unique_combination_of_columns -> unique_combination_of_columns
        if kind not in CHECK_KINDS:
            raise ModelError(f"{where}: unknown test {kind!r} (known: {', '.join(CHECK_KINDS)})")
        if kind == "accepted_values":
            args["values"] = _values(args.get("values"), where)
        if kind == "relationships" and not (args.get("to") and args.get("field")):
            raise ModelError(f"{where}: relationships needs `to` (schema.table) and `field`")
        out.append(Check(relation, column, kind, args))
    return out


def _columns(relation: str, entries, where: str) -> tuple[dict, list[Check]]:
    docs, checks = {}, []
    for col in entries or []:
        if not isinstance(col, dict) or "name" not in col:
            raise ModelError(f"{where}: every column entry needs a `name`")
        docs[col["name"]] = (col.get("description") or "").strip()
        checks += _checks(relation, col["name"], col.get("data_tests", col.get("tests")), f"{where}, column {col['name']}")
    return docs, checks


def load_project(sql_dir: Path = SQL_DIR) -> Project:
    """Every layer's SQL files and yml, checked against each other."""
    models, sources = {}, {}
    for layer in LAYERS:
        folder = sql_dir / layer
        yml = folder / f"_{layer}.yml"
        spec = yaml.safe_load(yml.read_text(encoding="utf-8")) if yml.exists() else {}
        spec = spec or {}
        for src in spec.get("sources") or []:
            schema = src.get("schema", src["name"])
            for t in src.get("tables") or []:
                name = f"{schema}.{t['name']}"
                docs, checks = _columns(name, t.get("columns"), f"{yml}: source {name}")
                checks += _checks(name, None, t.get("data_tests", t.get("tests")), f"{yml}: source {name}")
                sources[name] = ((t.get("description") or "").strip(), docs, tuple(checks))
        declared = {}
        for m in spec.get("models") or []:
            if "name" not in m:
                raise ModelError(f"{yml}: every model entry needs a `name`")
            declared[m["name"]] = m
        files = {p.stem: p for p in sorted(folder.glob("*.sql"))}
        for stem in sorted(set(declared) - set(files)):
            raise ModelError(f"{yml}: model {stem!r} has no file {folder / (stem + '.sql')}")
        for stem, path in files.items():
            if stem not in declared:
                raise ModelError(f"{path}: no entry for model {stem!r} in {yml} (materialisation, description, columns)")
            m = declared[stem]
            config = m.get("config") or {}
            schema = config.get("schema", layer)
            name = f"{schema}.{stem}"
            materialized = config.get("materialized", "view")
            if materialized not in MATERIALISATIONS:
                raise ModelError(f"{yml}: model {name}: materialized must be one of {sorted(MATERIALISATIONS)}")
            sql = path.read_text(encoding="utf-8").strip().rstrip(";").strip()
            if re.search(r"^\s*(CREATE|INSERT|UPDATE|DELETE|DROP|ALTER)\b", _COMMENT.sub(" ", sql), re.I | re.M):
                raise ModelError(f"{path}: a model file holds one SELECT; the runner writes the CREATE")
            docs, checks = _columns(name, m.get("columns"), f"{yml}: model {name}")
            checks += _checks(name, None, m.get("data_tests", m.get("tests")), f"{yml}: model {name}")
            deps = references(sql) - {name}
            models[name] = Model(name, layer, path, sql, materialized, (m.get("description") or "").strip(),
                                 docs, tuple(checks), deps)
    return Project(models, sources)


@lru_cache(maxsize=4)
def _project(sql_dir: Path, stamp: tuple) -> Project:
    return load_project(sql_dir)


def project(sql_dir: Path = SQL_DIR) -> Project:
    """load_project(), read again only when a file under sql_dir changed."""
    stamp = tuple(sorted((str(p), p.stat().st_mtime_ns) for p in sql_dir.rglob("*") if p.suffix in (".sql", ".yml")))
    return _project(sql_dir, stamp)


def _failed(check: Check, failing: int) -> ModelTestFailed:
    return ModelTestFailed(f"{check.describe()} failed on {failing:,} row{'s' if failing != 1 else ''} "
                           f"(nothing was published).\nquery: {check.sql()}")


def run_checks(con, checks) -> None:
    """Every check in turn, one query each; the first that finds rows stops the run. (One query a
    check is also the fastest: DuckDB answers most not_null and accepted_values tests from the
    column's statistics without reading it, which a combined scan would prevent.)"""
    for check in checks:
        failing = con.execute(check.sql()).fetchone()[0]
        if failing:
            raise _failed(check, failing)


def run(con, layers: tuple[str, ...] = LAYERS, *, after_each=None, sql_dir: Path = SQL_DIR) -> list[str]:
    """Test the sources these layers read, then build and test every model in dependency order.

    `after_each(built)` is called with the names built so far (the pipeline's failpoints).
    """
    p = project(sql_dir)
    ordered = p.order(layers)
    read = set().union(*(m.depends_on for m in ordered)) if ordered else set()
    run_checks(con, [c for name, (_, _, checks) in sorted(p.sources.items()) if name in read for c in checks])
    built = []
    for m in ordered:
        schema = m.name.split(".")[0]
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        try:
            con.execute(m.create_sql())
        except Exception as e:  # keep the error's own type (disk full stays disk full), say which model
            e.add_note(f"while building model {m.name} ({m.path.name} in transforms/sql/{m.layer}/)")
            raise
        run_checks(con, m.checks)
        built.append(m.name)
        if after_each is not None:
            after_each(built)
    return built
