"""`lab2fab` command line: demo, run, backfill, rebuild, validate, dictionary, query, shell, portal, users."""
from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from flows.server import prefect_api
from transforms.config import REPO_ROOT, default_data_dir, get_paths

# Schemas whose tables a query or the shell may name without their schema, in this order: analysts
# mostly want the marts (`select * from model_headline`).
SEARCH_PATH = ("marts", "analytics", "ops", "staging", "ref")


def _demo(args) -> int:
    from rich.progress import Progress

    from transforms.demo.generate import generate_demo

    paths = get_paths(args.data_dir)
    if args.if_missing and (paths.landing / "enrollment").exists():
        print(f"demo landing zone already present at {paths.landing}; leaving it as it is")
        return 0
    with Progress(transient=True) as bar:
        job = bar.add_task("writing demo submissions", total=None)
        summary = generate_demo(paths.landing, paths.reference, seed=args.seed, scale=args.scale,
                                universities=args.universities, first_term=args.first_term,
                                last_term=args.last_term,
                                progress=lambda done, total: bar.update(job, completed=done, total=total))
    print(f"demo collection written to {paths.landing}: {summary['files_written']} files, "
          f"{summary['rows_written']:,} rows, terms {args.first_term}..{args.last_term}")
    return 0


def _import_validation() -> None:
    """Great Expectations (about 3 s of imports), which the validate stage needs: imported while the
    temporary Prefect server starts, instead of when the stage begins."""
    from transforms.contract import suites

    suites.preload()


def _run(args) -> int:
    if not (args.rebuild or args.scenario):
        # Nothing new: the flow's own test, answered before Prefect and its temporary server start.
        from flows.quiet import record_quiet_run

        quiet = record_quiet_run(get_paths(args.data_dir), wait_for_lock_seconds=args.wait)
        if quiet is not None:
            _print_run(quiet)
            return 0
    with prefect_api() as ready:
        from flows.pipeline import pipeline

        ready(meanwhile=_import_validation)
        _print_run(pipeline(data_dir=args.data_dir, rebuild=args.rebuild or bool(args.scenario),
                            wait_for_lock_seconds=args.wait, language=args.language, scenarios=args.scenario or None,
                            draws=args.draws))
    return 0


def _print_run(result: dict) -> None:
    print()
    print(f"files: {result['files_seen']} in scope, {result['files_new']} ingested; rows read {result['rows_read']:,}, "
          f"loaded {result['rows_loaded']:,}, quarantined {result['rows_quarantined']:,}")
    print(f"warehouse: {result['warehouse']}")
    print(f"snapshot:  {result['snapshot']}  (query it: lab2fab query \"select * from model_headline\")")
    print(f"report:    {result['report']}")
    if result.get("measures_line"):
        # T is the Decision's measure; P the programme's; E rests on assumptions (docs/MODEL.md).
        print(f"projection: {result['measures_line']}; data to term {result['last_term']}")
    elif "engineers_2030" in result:
        print(f"projection: {result['engineers_2030']:,.0f} semiconductor engineers by 2030 against the target of "
              f"{result['target_2030']:,.0f} (gap {result['gap_2030']:,.0f}; "
              f"{result['practice_ready_share']:.0%} with lab-to-fab practice); data to term {result['last_term']}")
    else:
        print("nothing new: warehouse, snapshot and report unchanged")


def _backfill(args) -> int:
    with prefect_api() as ready:
        from flows.backfill import backfill

        ready(meanwhile=_import_validation)
        _print_run(backfill(first_term=args.from_term, last_term=args.to_term, first_round=args.from_round,
                            last_round=args.to_round, data_dir=args.data_dir, max_concurrency=args.concurrency,
                            wait_for_lock_seconds=args.wait))
    return 0


def _rebuild(args) -> int:
    with prefect_api() as ready:
        from flows.pipeline import rebuild_warehouse

        ready(meanwhile=_import_validation)
        _print_run(rebuild_warehouse(data_dir=args.data_dir, wait_for_lock_seconds=args.wait))
    return 0


def _snapshot(args) -> Path | None:
    """The published snapshot, or None once the user has been told how to make one."""
    snapshot = get_paths(args.data_dir).snapshot
    if snapshot.exists():
        return snapshot
    print(f"no published snapshot at {snapshot}; run `lab2fab run` first", file=sys.stderr)
    return None


def _search_path(con) -> str:
    """SEARCH_PATH as a DuckDB setting, less the schemas this snapshot lacks (DuckDB refuses those)."""
    present = {s for (s,) in con.execute("SELECT schema_name FROM duckdb_schemas() "
                                          "WHERE database_name = current_database()").fetchall()}
    return ",".join(s for s in SEARCH_PATH if s in present)


def _dictionary(args) -> int:
    import duckdb

    from transforms.warehouse import db as warehouse

    snapshot = _snapshot(args)
    if snapshot is None:
        return 2
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        text = warehouse.dictionary_markdown(con)
    finally:
        con.close()
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


def _validate(args) -> int:
    from transforms.contract.kit import validate_file

    code, text = validate_file(Path(args.file), args.university, args.term, args.data_dir, as_json=args.json)
    print(text)
    return code


def _portal(args) -> int:
    from portal.app import serve  # imported here: the web stack is not loaded for other commands

    return serve(args.data_dir, host=args.host, port=args.port)


def _users(args) -> int:
    from portal.accounts import users_command

    return users_command(args)


def _query(args) -> int:
    import duckdb

    from transforms.warehouse import db as warehouse

    snapshot = _snapshot(args)
    if snapshot is None:
        return 2
    # Read-only for the file system too: no read_csv of the landing zone, no COPY ... TO, no ATTACH.
    con = warehouse.connect_snapshot(snapshot)
    try:
        if path := _search_path(con):
            con.execute(f"SET search_path = '{path}'")
        rel = con.sql(args.sql)
        if rel is None:
            return 0
        if args.csv:
            # CRLF as in RFC 4180: a cell holding a CR is then quoted instead of breaking the row.
            _safe_cells(rel.df()).to_csv(sys.stdout, index=False, lineterminator="\r\n")
        elif args.json:
            print(rel.df().to_json(orient="records", force_ascii=False, date_format="iso"))
        else:
            rel.show(max_width=int(os.environ.get("COLUMNS", 160)), max_rows=args.max_rows)
    except duckdb.PermissionException as e:
        print(f"query failed: {e}\nlab2fab query reads the published snapshot and nothing else: files (the landing "
              "zone, COPY ... TO, ATTACH, INSTALL) are out of its reach. Write results with --csv or --json and a "
              "shell redirect; the marts are also in data/published/parquet/.", file=sys.stderr)
        return 1
    except duckdb.Error as e:
        print(f"query failed: {e}", file=sys.stderr)
        return 1
    finally:
        con.close()
    return 0


def _safe_cells(df):
    """Text cells (and column names) a spreadsheet would run as a formula, made inert; numbers stay numbers."""
    import pandas as pd

    from transforms.publish.safe_csv import neutralise  # the project's one definition of a safe CSV cell

    df = df.copy()
    df.columns = [neutralise(str(c)) for c in df.columns]
    for i, dtype in enumerate(df.dtypes):
        if dtype == object or pd.api.types.is_string_dtype(dtype):
            df.isetitem(i, df.iloc[:, i].map(neutralise))
    return df


def _shell(args) -> int:
    """Replace this process with the DuckDB shell on the snapshot, read-only, with the search path set."""
    import duckdb

    snapshot = _snapshot(args)
    if snapshot is None:
        return 2
    # the duckdb-cli package's binary in this venv: the same storage versions the snapshot is written for
    shell = Path(sys.executable).parent / "duckdb"
    if not shell.is_file():
        print(f"the DuckDB shell is not installed ({shell} is missing): `make venv` installs it, or "
              f"`{sys.executable} -m pip install` the duckdb-cli pin from requirements.lock", file=sys.stderr)
        return 2
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        path = _search_path(con)
    finally:
        con.close()
    from transforms.warehouse.db import SNAPSHOT_SHELL_SETTINGS  # read-only for the file system too

    cmd = [str(shell), "-readonly", str(snapshot), "-cmd", SNAPSHOT_SHELL_SETTINGS,
           *(["-cmd", f"SET search_path = '{path}'"] if path else []),
           *args.shell_args]
    sys.stdout.flush()
    os.execv(shell, cmd)  # the shell owns the terminal (Ctrl-C cancels its query, not lab2fab)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help, except where there is nothing to show (None, a flag that is
    off): there the help text itself says what happens without it."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _data_dir_help() -> str:
    chosen, source = default_data_dir()
    why = {"environment": "from $LAB2FAB_DATA_DIR", "current folder": "./data", "checkout": "the checkout's"}[source]
    return ("data folder; default: $LAB2FAB_DATA_DIR if set, else ./data if the current folder has a lab2fab "
            f"data folder, else the checkout's own data/ (here: {chosen}, {why})").replace("%", "%%")


class _Command(argparse.ArgumentParser):
    """A subcommand's parser: it takes --data-dir too, so the option works after the subcommand as well as
    before it, and it shows defaults."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        kwargs.setdefault("conflict_handler", "resolve")  # a subcommand may define its own --data-dir
        super().__init__(**kwargs)
        self.add_argument("--data-dir", default=argparse.SUPPRESS, metavar="DIR", help=_data_dir_help())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lab2fab")
    except PackageNotFoundError:  # run from a checkout that was never pip-installed
        return "unknown (not installed: `make venv`)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lab2fab", description="Vietnam-Korea lab-to-fab workforce pipeline",
                                formatter_class=_Help,
                                epilog="`lab2fab COMMAND --help` describes a command's options.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    p.add_argument("--data-dir", default=None, metavar="DIR", help=_data_dir_help())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Command)

    d = sub.add_parser("demo", help="write the built-in national demo collection into the landing zone")
    d.add_argument("--scale", type=float, default=1.0, help="1 = about 30,000 students a term; 16 = national size")
    d.add_argument("--universities", type=int, default=None,
                   help="only the first N participating universities (default: all)")
    d.add_argument("--seed", type=int, default=20261128, help="random seed: the same seed writes the same files")
    d.add_argument("--first-term", default="2021-1", help="first term written")
    d.add_argument("--last-term", default="2025-2", help="last term written")
    d.add_argument("--if-missing", action="store_true", help="do nothing when a landing zone already exists")
    d.set_defaults(func=_demo)

    r = sub.add_parser("run", help="run the pipeline once: ingest -> ... -> report")
    r.add_argument("--rebuild", action="store_true", help="rebuild marts, model and report even with no new files")
    r.add_argument("--wait", type=float, default=0.0, help="seconds to wait if another run holds the warehouse")
    r.add_argument("--language", choices=["en", "vi"], default="en", help="language of the report")
    r.add_argument("--scenario", action="append", help="model scenario (a file in data/scenarios); repeatable; "
                   "default all; implies --rebuild")
    r.add_argument("--draws", type=int, default=1000, help="Monte Carlo draws of the model")
    r.set_defaults(func=_run)

    b = sub.add_parser("backfill", help="run ingestion and everything downstream again for a range of terms")
    b.add_argument("--from", dest="from_term", required=True, help="first term, e.g. 2021-1")
    b.add_argument("--to", dest="to_term", required=True, help="last term, e.g. 2025-2")
    b.add_argument("--from-round", default=None, help="first internship round to take again, e.g. 2025H1 (default: no rounds)")
    b.add_argument("--to-round", default=None, help="last internship round (default: --from-round)")
    b.add_argument("--concurrency", type=int, default=2, help="terms staged at once")
    b.add_argument("--wait", type=float, default=0.0, help="seconds to wait if another run holds the warehouse")
    b.set_defaults(func=_backfill)

    rb = sub.add_parser("rebuild", help="re-create a lost or damaged warehouse from the landing zone and the "
                        "manifest history (the old file is kept aside)")
    rb.add_argument("--wait", type=float, default=0.0, help="seconds to wait if another run holds the warehouse")
    rb.set_defaults(func=_rebuild)

    dd = sub.add_parser("dictionary", help="print the data dictionary generated from the published snapshot")
    dd.add_argument("--out", default=None, help="write it to this file (default: print it)")
    dd.set_defaults(func=_dictionary)

    v = sub.add_parser("validate", help="check one submission file against the data contract, without loading it")
    v.add_argument("file", help="the CSV or XLSX file as the university would send it")
    v.add_argument("--university", help="registry code, e.g. HUST (default: the <CODE>/<TERM>/ folder)")
    v.add_argument("--term", help="term such as 2024-1 (or a round such as 2025H2 for placement files) "
                   "(default: the <TERM>/ or <ROUND>/ folder)")
    v.add_argument("--json", action="store_true", help="machine-readable report")
    v.set_defaults(func=_validate)

    q = sub.add_parser("query", help="run SQL on the published snapshot (read-only)")
    q.add_argument("sql", help="one SQL statement; tables of marts, analytics, ops, staging and ref may be named "
                   "without their schema (`select * from model_headline`)")
    fmt = q.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    fmt.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    q.add_argument("--max-rows", type=int, default=40, help="rows shown in the table (not with --csv or --json)")
    q.set_defaults(func=_query)

    s = sub.add_parser("shell", help="open the DuckDB shell on the published snapshot, read-only",
                       description="Open the DuckDB shell (package duckdb-cli, in the venv) on the published "
                       "snapshot, read-only, with the search path of `lab2fab query`. Other options are passed "
                       "to the shell: lab2fab shell -csv -c \"select * from model_headline\"")
    s.set_defaults(func=_shell, shell_args=[])

    pt = sub.add_parser("portal", help="serve the submission portal: upload, verdict, history, office view")
    pt.add_argument("--host", default="127.0.0.1", help="address to listen on")
    pt.add_argument("--port", type=int, default=8018, help="port to listen on")
    pt.set_defaults(func=_portal)

    u = sub.add_parser("users", help="manage the submission portal's accounts")
    u.add_argument("action", choices=["add", "reset", "disable", "list"], help="what to do with the account")
    u.add_argument("name", nargs="?", help="user name (not for list)")
    who = u.add_mutually_exclusive_group()
    who.add_argument("--university", help="registry code: the user sees and submits for this university only")
    who.add_argument("--office", action="store_true", help="a programme-office user: sees every university")
    u.add_argument("--display-name", help="the name shown in the portal and written as accepted_by")
    u.add_argument("--password-stdin", action="store_true", help="read the password from stdin instead of a prompt")
    u.set_defaults(func=_users)
    return p


# errno values that mean the disk (or the user's quota, or the file size limit) is full
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def explain(e: BaseException) -> str | None:
    """What a data engineer should read when a run stops on a known condition (None: a bug, show the traceback)."""
    import duckdb

    from flows.lock import WarehouseBusy
    from transforms.warehouse import db as warehouse
    from transforms.ingest.pseudonym import PseudonymKeyError
    from transforms.warehouse.recovery import RecoveryError

    after = ("Nothing half-done is visible: the load is one transaction and analysts keep the last complete "
             "snapshot. The next run picks up from the last committed load, with no clean-up needed.")
    if isinstance(e, (WarehouseBusy, warehouse.WarehouseDamaged, PseudonymKeyError, RecoveryError,
                      warehouse.AccountingError)):
        return str(e)
    if isinstance(e, OSError):
        what = ("free disk space" if e.errno in _FULL else
                "let the user running lab2fab write there" if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
                else "fix the cause")
        return f"could not write or read {e.filename or 'a file'}: {e.strerror or e}. {after} {what[0].upper()}{what[1:]}, then run again."
    if isinstance(e, duckdb.IOException) and "lock" in str(e).lower():
        return (f"{e}\nAnother process has the working warehouse open. Analysts query the published snapshot "
                "(data/published/lab2fab.duckdb), never data/warehouse/; close that session and run again.")
    # A write refused during a checkpoint reaches us as DuckDB's FatalException ("Could not write file")
    if isinstance(e, duckdb.IOException) or (isinstance(e, duckdb.FatalException) and "Could not write" in str(e)):
        return f"the warehouse could not be written: {e}. {after} Free disk space or fix permissions, then run again."
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "shell":
        args.shell_args = extra  # the DuckDB shell's own options
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:  # a bare `lab2fab`
        parser.print_help()
        return 0
    if args.data_dir:
        args.data_dir = str(Path(args.data_dir).resolve())
    else:
        chosen, source = default_data_dir()
        if source == "checkout" and not Path.cwd().resolve().is_relative_to(REPO_ROOT):
            print(f"lab2fab: data folder {chosen} (the checkout's; there is no lab2fab ./data here: "
                  "--data-dir or LAB2FAB_DATA_DIR choose another)", file=sys.stderr)
    try:
        return args.func(args)
    except Exception as e:  # noqa: BLE001 - known conditions get a plain message, anything else its traceback
        message = explain(e)
        if message is None:
            raise
        print(f"\nlab2fab {args.command}: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
