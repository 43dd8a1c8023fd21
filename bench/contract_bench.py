"""Benchmark of the data contract on one typical submission (moved here from tests/test_contract.py,
where a timed assertion failed whenever the shared test machine was busy).

    python bench/contract_bench.py [--repeats 3]

A 1,200-row enrollment submission (1,000 students of the previous term and 200 new ones) is
checked with history: the row suite, the per-file summary and the submission suite, i.e. one
`checks.check_batch` as the pipeline runs it per term. The figure is CPU seconds of a warm call
(GX builds its context and registries once per process); the target is under 1 s.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for _p in (REPO, REPO / "tests"):  # tests/test_contract.py imports its neighbour tests/tables.py
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

TARGET_CPU_S = 1.0


def _contract_tests():
    """tests/test_contract.py's frame builders (canonical rows, an in-memory warehouse with history)."""
    spec = importlib.util.spec_from_file_location("lab2fab_contract_cases", REPO / "tests" / "test_contract.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def bench_contract(repeats: int = 3) -> dict:
    t = _contract_tests()
    frame = t.pd.concat([t.canon(t.keys(1000)), t.canon(t.keys(200, "x"), start=1000)], ignore_index=True)
    con = t.history_db(t.canon(t.keys(1000), file_id="prev", term="2023-1"))
    t.run_checks(con, frame)  # warm-up
    walls, cpus, verdict = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        outcome = t.run_checks(con, frame)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        verdict = outcome.verdicts.iloc[0]["verdict"]
    return {"rows": len(frame), "verdict": verdict, "seconds": statistics.median(cpus),
            "cpu_s": statistics.median(cpus), "wall_s": statistics.median(walls), "target_cpu_s": TARGET_CPU_S}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    res = bench_contract(p.parse_args(argv).repeats)
    print(json.dumps(res))
    print(f"{res['rows']:,}-row submission, row + file suites with history: {res['cpu_s']:.2f} s CPU "
          f"({res['wall_s']:.2f} s wall); target < {TARGET_CPU_S:g} s CPU: "
          f"{'met' if res['cpu_s'] < TARGET_CPU_S else 'missed'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
