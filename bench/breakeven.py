"""Where the process pool starts to pay for staging (flows/runners.py PROCESS_MIN_BYTES).

    .venv/bin/python bench/breakeven.py DATA_DIR [--repeats 2]

Stages every landed file of DATA_DIR's landing zone (a demo collection) twice inside one Prefect
flow per runner, threads and then a two-process pool, and reports each one's wall time, the
staging throughput (bytes a second) and the fixed cost of the pool. With r bytes a second on one
core and s seconds to start the pool, threads take B/r and two processes s + B/(2r): the pool pays
beyond B = 2·r·s. Nothing is written under DATA_DIR (the staged Parquet goes to a temporary folder).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
from pathlib import Path
import flows.pipeline  # noqa: F401  (Prefect's defaults first)
from prefect import flow
from flows.pipeline import stage_group
from flows.runners import task_runner, workers_share_api
from transforms.ingest import landing, stage as ing
from transforms.config import get_paths

landing_dir, work, kind = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

@flow(name="breakeven")
def run() -> dict:
    paths = get_paths(work)
    paths.ensure()
    landed = landing.scan(landing_dir)
    known = ing.KnownFiles({}, {})
    groups = ing.group_by_period(ing.new_files(landed, known), known)
    started = time.perf_counter()
    with workers_share_api(), task_runner(2, periods=len(groups), new_bytes=None) as runner:
        futures = [runner.submit(stage_group, {"paths": paths, "run_id": "breakeven", "key": b"k" * 32,
                                               "label": label, "files": files, "known": gk})
                   for label, files, gk in groups]
        rows = sum(s.rows_read for f in futures for s in f.result())
    return {"seconds": time.perf_counter() - started, "rows": rows, "bytes": sum(f.size for f in landed),
            "periods": len(groups)}

print("RESULT " + json.dumps(run()))
"""


def measure(data_dir: Path, kind: str) -> dict:
    with tempfile.TemporaryDirectory() as work:
        env = {**os.environ, "LAB2FAB_TASK_RUNNER": kind, "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-c", CHILD, str(data_dir / "landing"), work, kind], env=env,
                              capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"{kind} run failed:\n{done.stderr[-3000:]}")
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    result["servers"] = (done.stdout + done.stderr).count("Starting temporary server")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    best = {}
    for kind in ("thread", "process"):
        runs = [measure(args.data_dir, kind) for _ in range(args.repeats)]
        best[kind] = min(runs, key=lambda r: r["seconds"])
        print(f"{kind:8s} {best[kind]['seconds']:6.1f} s  ({best[kind]['rows']:,} rows, "
              f"{best[kind]['bytes'] / 1e6:.1f} MB, {best[kind]['periods']} periods; best of {args.repeats}; "
              f"{best[kind]['servers']} temporary Prefect server)")
    b, t, p = best["thread"]["bytes"], best["thread"]["seconds"], best["process"]["seconds"]
    rate = b / t  # bytes a second on one core (threads share it: staging is CPU-bound Python)
    startup = max(0.0, p - b / (2 * rate))
    print(f"throughput {rate / 1e6:.2f} MB/s on one core ({best['thread']['rows'] / t:,.0f} rows/s); "
          f"process pool start-up {startup:.1f} s; break-even {2 * rate * startup / 1e6:.1f} MB "
          f"(~{2 * startup * best['thread']['rows'] / t:,.0f} rows)")
    print(f"uptime: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
