"""`lab2fab` command line: demo, run, backfill, rebuild, validate, dictionary, query."""
from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from transforms.config import get_paths


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


def _run(args) -> int:
    from flows.pipeline import pipeline

    _print_run(pipeline(data_dir=args.data_dir, rebuild=args.rebuild or bool(args.scenario),
                        wait_for_lock_seconds=args.wait, language=args.language, scenarios=args.scenario or None,
                        draws=args.draws))
    return 0


def _print_run(result: dict) -> None:
    print()
    print(f"files: {result['files_seen']} in scope, {result['files_new']} ingested; rows read {result['rows_read']:,}, "
          f"loaded {result['rows_loaded']:,}, quarantined {result['rows_quarantined']:,}")
    print(f"warehouse: {result['warehouse']}")
    print(f"snapshot:  {result['snapshot']}  (query it: lab2fab query \"select * from marts.model_headline\")")
    print(f"report:    {result['report']}")
    if "engineers_2030" in result:
        print(f"projection: {result['engineers_2030']:,.0f} semiconductor engineers by 2030 against the target of "
              f"{result['target_2030']:,.0f} (gap {result['gap_2030']:,.0f}; "
              f"{result['practice_ready_share']:.0%} with lab-to-fab practice); data to term {result['last_term']}")
    else:
        print("nothing new: warehouse, snapshot and report unchanged")


def _backfill(args) -> int:
    from flows.backfill import backfill

    _print_run(backfill(first_term=args.from_term, last_term=args.to_term, first_round=args.from_round,
                        last_round=args.to_round, data_dir=args.data_dir, max_concurrency=args.concurrency,
                        wait_for_lock_seconds=args.wait))
    return 0


def _rebuild(args) -> int:
    from flows.pipeline import rebuild_warehouse

    _print_run(rebuild_warehouse(data_dir=args.data_dir, wait_for_lock_seconds=args.wait))
    return 0


def _dictionary(args) -> int:
    import duckdb

    from transforms.warehouse import db as warehouse

    paths = get_paths(args.data_dir)
    con = duckdb.connect(str(paths.snapshot), read_only=True)
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


def _query(args) -> int:
    import duckdb

    paths = get_paths(args.data_dir)
    if not paths.snapshot.exists():
        print(f"no published snapshot at {paths.snapshot}; run `lab2fab run` first", file=sys.stderr)
        return 2
    con = duckdb.connect(str(paths.snapshot), read_only=True)
    try:
        rel = con.sql(args.sql)
        if rel is None:
            return 0
        if args.csv:
            rel.df().to_csv(sys.stdout, index=False)
        elif args.json:
            print(rel.df().to_json(orient="records", force_ascii=False, date_format="iso"))
        else:
            rel.show(max_width=int(os.environ.get("COLUMNS", 160)), max_rows=args.max_rows)
    except duckdb.Error as e:
        print(f"query failed: {e}", file=sys.stderr)
        return 1
    finally:
        con.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lab2fab", description="Vietnam-Korea lab-to-fab workforce pipeline")
    p.add_argument("--data-dir", default=None, help="data folder (default $LAB2FAB_DATA_DIR or ./data)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="write the built-in national demo collection into the landing zone")
    d.add_argument("--scale", type=float, default=1.0, help="1 = about 30,000 students a term; 16 = national size")
    d.add_argument("--universities", type=int, default=None, help="only the first N participating universities")
    d.add_argument("--seed", type=int, default=20261128)
    d.add_argument("--first-term", default="2021-1")
    d.add_argument("--last-term", default="2025-2")
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
    b.add_argument("--from-round", default=None, help="first internship round to take again, e.g. 2025H1")
    b.add_argument("--to-round", default=None, help="last internship round (default: --from-round)")
    b.add_argument("--concurrency", type=int, default=2, help="terms staged at once")
    b.add_argument("--wait", type=float, default=0.0, help="seconds to wait if another run holds the warehouse")
    b.set_defaults(func=_backfill)

    rb = sub.add_parser("rebuild", help="re-create a lost or damaged warehouse from the landing zone and the "
                        "manifest history (the old file is kept aside)")
    rb.add_argument("--wait", type=float, default=0.0, help="seconds to wait if another run holds the warehouse")
    rb.set_defaults(func=_rebuild)

    dd = sub.add_parser("dictionary", help="print the data dictionary generated from the published snapshot")
    dd.add_argument("--out", default=None, help="write it to this file instead")
    dd.set_defaults(func=_dictionary)

    v = sub.add_parser("validate", help="check one submission file against the data contract, without loading it")
    v.add_argument("file")
    v.add_argument("--university", help="registry code, e.g. HUST (default: the <CODE>/<TERM>/ folder)")
    v.add_argument("--term", help="term such as 2024-1 (or a round such as 2025H2 for placement files)")
    v.add_argument("--json", action="store_true", help="machine-readable report")
    v.set_defaults(func=_validate)

    q = sub.add_parser("query", help="run SQL on the published snapshot (read-only)")
    q.add_argument("sql")
    fmt = q.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true")
    fmt.add_argument("--json", action="store_true")
    q.add_argument("--max-rows", type=int, default=40)
    q.set_defaults(func=_query)
    return p


# errno values that mean the disk (or the user's quota, or the file size limit) is full
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def explain(e: BaseException) -> str | None:
    """What a data engineer should read when a run stops on a known condition (None: a bug, show the traceback)."""
    import duckdb

    from transforms.warehouse import runs
    from transforms.warehouse import db as warehouse
    from transforms.ingest.pseudonym import PseudonymKeyError
    from transforms.warehouse.recovery import RecoveryError

    after = ("Nothing half-done is visible: the load is one transaction and analysts keep the last complete "
             "snapshot. The next run picks up from the last committed load, with no clean-up needed.")
    if isinstance(e, (runs.WarehouseBusy, warehouse.WarehouseDamaged, PseudonymKeyError, RecoveryError,
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
    if isinstance(e, duckdb.IOException):
        return f"the warehouse could not be written: {e}. {after} Free disk space or fix permissions, then run again."
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.data_dir:
        args.data_dir = str(Path(args.data_dir).resolve())
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
