"""Dump every table and view of a published snapshot, and diff two snapshots' contents.

Shows that a change left the published data as it was: run the pipeline before and after the
change on the same landing zone with the same key, then

    python tests/snapshot_compare.py dump  BEFORE.duckdb /tmp/before-dump
    python tests/snapshot_compare.py diff  /tmp/before-dump AFTER.duckdb     # dumps or snapshots, either side

Each object is dumped as sorted rows (CSV, one file per `schema.table`) without the columns that
name a run or the time it ran (VOLATILE; a run id inside a value reads `<run id>`), floats to
12 significant digits. `diff` lists objects
and columns only on one side, then per object the rows only on one side (counted over the
columns both sides have, with a few examples). Exit 0 when every common column of every common
object holds the same rows, else 1.
"""
from __future__ import annotations

import argparse
import csv
import math
import re
import sys
import tempfile
from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

# Columns that differ between two runs of the same data: the run's id and when it ran.
VOLATILE = {"run_id", "ingested_at", "started_at", "finished_at"}
# Whole objects that record the runs themselves, not the data.
VOLATILE_OBJECTS = {"ops.runs"}
NULL = "\\N"
# A run id (transforms/warehouse/runs.py: UTC start and a random suffix), wherever it is a value.
RUN_ID = re.compile(r"\b\d{8}T\d{6}-[0-9a-f]{6}\b")


def _text(value) -> str:
    if value is None:
        return NULL
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.12g}"
    if isinstance(value, Decimal):
        return _text(float(value))
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple, dict)):
        return repr(value)
    return RUN_ID.sub("<run id>", str(value))


def dump(snapshot: Path, out: Path) -> list[str]:
    """Every table and view of `snapshot` as `out/<schema>.<name>.csv` (header, then sorted rows)."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        names = [f"{s}.{t}" for s, t in con.execute("""
            SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()
            UNION SELECT schema_name, view_name FROM duckdb_views()
                  WHERE NOT internal AND database_name = current_database()
            ORDER BY 1, 2""").fetchall()]
        for name in names:
            if name in VOLATILE_OBJECTS:
                continue
            cur = con.execute(f"SELECT * FROM {name}")
            cols = [d[0] for d in cur.description]
            keep = [i for i, c in enumerate(cols) if c not in VOLATILE]
            rows = sorted([_text(r[i]) for i in keep] for r in cur.fetchall())
            with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow([cols[i] for i in keep])
                w.writerows(rows)
    finally:
        con.close()
    return [n for n in names if n not in VOLATILE_OBJECTS]


def _load(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        header = next(r, [])
        return header, list(r)


def _as_dump(path: Path, tmp: Path) -> Path:
    if path.is_dir():
        return path
    target = tmp / path.stem
    dump(path, target)
    return target


def diff(a: Path, b: Path, examples: int = 3, replace: tuple[str, str] | None = None) -> tuple[bool, str]:
    """(same, report) for two dumps (folders from `dump`) or snapshots (.duckdb files).

    replace=(old, new): read `old` as `new` in the before side's values (the two checkouts'
    folders, which a value such as a scenario file's path names)."""
    with tempfile.TemporaryDirectory() as tmp:
        a, b = _as_dump(Path(a), Path(tmp) / "a"), _as_dump(Path(b), Path(tmp) / "b")
        left = {p.stem: p for p in a.glob("*.csv")}
        right = {p.stem: p for p in b.glob("*.csv")}
        lines, same = [], True
        for name in sorted(set(left) - set(right)):
            lines.append(f"only before: {name}")
        for name in sorted(set(right) - set(left)):
            lines.append(f"only after:  {name}")
        for name in sorted(set(left) & set(right)):
            (ha, ra), (hb, rb) = _load(left[name]), _load(right[name])
            gone, new = [c for c in ha if c not in hb], [c for c in hb if c not in ha]
            if gone:
                lines.append(f"{name}: columns only before: {', '.join(gone)}")
            if new:
                lines.append(f"{name}: columns only after: {', '.join(new)}")
            common = [c for c in ha if c in hb]
            ia, ib = [ha.index(c) for c in common], [hb.index(c) for c in common]
            if replace:
                ra = [[v.replace(*replace) for v in r] for r in ra]
            ca = Counter(tuple(r[i] for i in ia) for r in ra)
            cb = Counter(tuple(r[i] for i in ib) for r in rb)
            only_a, only_b = ca - cb, cb - ca
            if only_a or only_b:
                same = False
                lines.append(f"{name}: {sum(only_a.values())} rows only before, {sum(only_b.values())} rows only after "
                             f"(of {len(ra)} / {len(rb)}; columns compared: {', '.join(common)})")
                for label, rows in (("  before", only_a), ("  after ", only_b)):
                    for row in sorted(rows)[:examples]:
                        lines.append(f"{label}: {dict(zip(common, row))}")
            else:
                lines.append(f"{name}: same {len(ra)} rows" + (" (on the common columns)" if gone or new else ""))
        return same, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="dump a snapshot's tables as sorted CSV")
    d.add_argument("snapshot", type=Path)
    d.add_argument("out", type=Path)
    c = sub.add_parser("diff", help="compare two dumps or snapshots")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--examples", type=int, default=3)
    c.add_argument("--replace", metavar="OLD=NEW", help="read OLD as NEW in the before side (checkout folders)")
    args = ap.parse_args(argv)
    if args.command == "dump":
        names = dump(args.snapshot, args.out)
        print(f"{len(names)} tables and views of {args.snapshot} dumped to {args.out}")
        return 0
    replace = tuple(args.replace.split("=", 1)) if args.replace else None
    same, report = diff(args.before, args.after, args.examples, replace)
    print(report)
    print("same content" if same else "contents differ")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
