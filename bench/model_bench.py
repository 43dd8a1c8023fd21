"""Benchmark of the lab-to-fab model: how long 1,000 draws to 2030 take on a warehouse.

    python bench/model_bench.py [WAREHOUSE] [--draws 1000] [--national]

`bench_model(path, draws)` runs the model (all scenarios in data/scenarios, capacity solution,
marginal analysis, backtest) on a read-only connection and returns the timings. With `--national`
it first builds a synthetic national-size warehouse (x16 students, 240 universities) from the given
one with `make_synthetic_national` and times that too. The aim (issue 5): 1,000 draws to 2030 at
national scale under 10 s on 2 cores. Results are recorded in docs/MODEL.md ("Performance").
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from transforms.model import projection as model  # noqa: E402


def bench_model(warehouse_path: str | Path, draws: int = 1000, *, scenarios: list[str] | None = None,
                seed: int = model.DEFAULT_SEED, decisions: bool = True, backtest: bool = True,
                scale: float = 1.0) -> dict:
    """Time the whole model stage on `warehouse_path` (opened read-only; nothing is written)."""
    con = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        students = con.execute("SELECT count(*) FROM staging.enrollment WHERE term = "
                               "(SELECT max(term) FROM staging.enrollment)").fetchone()[0]
        universities = con.execute("SELECT count(DISTINCT university_code) FROM staging.enrollment").fetchone()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        out = model.run_model(con, scenarios, draws, seed, decisions=decisions,
                              backtest_draws=200 if backtest else None, scale=scale)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        con.close()
    t = out["_timings"]
    simulation = sum(v for k, v in t.items() if k.startswith(("prepare:", "rounds:")))
    n_scen = out["model_headline"]["scenario"].nunique()
    base = out["model_headline"].query("scenario == 'baseline' and dimension == 'total'").iloc[0]
    return {
        "warehouse": str(warehouse_path), "students_last_term": int(students), "universities": int(universities),
        "draws": draws, "scenarios": int(n_scen), "cpu_count": os.cpu_count(),
        "seconds_total": round(total, 2), "cpu_seconds_total": round(cpu, 2),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "seconds_load_sql": round(t["load"], 2),
        "seconds_simulation_all_scenarios": round(simulation, 2),
        "seconds_decisions": round(t.get("decisions", 0.0), 2), "seconds_backtest": round(t.get("backtest", 0.0), 2),
        "timings": {k: round(v, 3) for k, v in t.items()},
        "baseline_engineers_p10_p50_p90": (round(base.p10), round(base.p50), round(base.p90)),
        "baseline_practice_ready_p10_p50_p90": (round(base.practice_ready_p10), round(base.practice_ready_p50),
                                                round(base.practice_ready_p90)),
    }


def make_synthetic_national(source: str | Path, target: str | Path, factor: int = 16, universities: int = 240) -> Path:
    """A national-size warehouse from a demo one: every student row copied `factor` times under new
    keys (student and person: each copy is another person, so T scales too), and part of the copies moved
    to clone universities so that there are `universities` in all.
    Placements and slots are left as they are (slots do not scale with students)."""
    target = Path(target)
    target.unlink(missing_ok=True)
    shutil.copyfile(source, target)
    con = duckdb.connect(str(target))
    try:
        codes = [r[0] for r in con.execute(
            "SELECT DISTINCT university_code FROM staging.enrollment ORDER BY 1").fetchall()]
        n_clone = max(0, min(universities - len(codes), len(codes)))
        con.execute("CREATE TEMP TABLE clone AS SELECT unnest(?) AS university_code", [codes[:n_clone]])
        con.execute(f"""
            CREATE OR REPLACE TABLE staging.enrollment AS
            SELECT e.file_id, CASE WHEN c.university_code IS NOT NULL AND i % 2 = 1
                                   THEN e.university_code || 'N' ELSE e.university_code END AS university_code,
                   e.term, e.line, CASE WHEN i = 0 THEN e.student_key ELSE e.student_key || '-' || i END AS student_key,
                   CASE WHEN i = 0 THEN e.person_key ELSE e.person_key || '-' || i END AS person_key, e.gender, e.programme_code, e.degree_level, e.intake_year, e.study_year, e.status,
                   e.gpa, e.birth_year
            FROM staging.enrollment e CROSS JOIN range({int(factor)}) r(i)
            LEFT JOIN clone c USING (university_code)""")
        con.execute("""INSERT INTO ref.universities BY NAME
                       SELECT * REPLACE (u.university_code || 'N' AS university_code)
                       FROM ref.universities u JOIN clone c USING (university_code)""")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return target


def _print(result: dict) -> None:
    print(f"{result['warehouse']}: {result['students_last_term']:,} students in the last term, "
          f"{result['universities']} universities, {result['draws']} draws, {result['scenarios']} scenarios, "
          f"{result['cpu_count']} cores")
    print(f"  CPU time {result['cpu_seconds_total']} s (all threads); machine load average "
          f"{result['load_average_1min']} on {result['cpu_count']} cores (other jobs slow the wall time)")
    print(f"  total {result['seconds_total']} s = SQL {result['seconds_load_sql']} s + simulation "
          f"{result['seconds_simulation_all_scenarios']} s + decisions {result['seconds_decisions']} s + backtest "
          f"{result['seconds_backtest']} s (+ output tables)")
    print(f"  baseline engineers P10/P50/P90 {result['baseline_engineers_p10_p50_p90']}, practice-ready "
          f"{result['baseline_practice_ready_p10_p50_p90']}")
    print(f"  timings: {result['timings']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("warehouse", nargs="?", default=str(REPO / "data" / "warehouse" / "lab2fab.duckdb"))
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--national", action="store_true", help="also time a synthetic national warehouse (x16)")
    p.add_argument("--factor", type=int, default=16)
    p.add_argument("--scale", type=float, default=None,
                   help="share of national size (default: the demo's, from the data folder of WAREHOUSE, as the pipeline)")
    args = p.parse_args(argv)
    # The pipeline scales targets and slots to the demo's size; so does the benchmark, or slots never bind.
    scale = args.scale if args.scale is not None else model.demo_scale(Path(args.warehouse).resolve().parent.parent)
    with tempfile.TemporaryDirectory(prefix="lab2fab-bench-") as tmp:
        # Work on a copy: a pipeline run may be writing the warehouse.
        copy = Path(tmp) / "warehouse.duckdb"
        shutil.copyfile(args.warehouse, copy)
        _print(bench_model(copy, args.draws, scale=scale))
        if args.national:
            t0 = time.perf_counter()
            national = make_synthetic_national(copy, Path(tmp) / "national.duckdb", args.factor)
            print(f"synthetic national warehouse built in {time.perf_counter() - t0:.1f} s")
            _print(bench_model(national, args.draws, scale=min(1.0, scale * args.factor)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
