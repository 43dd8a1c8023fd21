"""The data contract over a run's staged submissions, in parallel parts where that pays.

The contract judges each file by itself and against its own university's earlier terms
(`checks.History`), never against another university's files. So the staged files can be split by
university into parts validated side by side, one process each, with its own read-only connection
to the warehouse (the history). The parts' outputs are merged in `stage.file_order`, which is the
order one process validating the whole would write them in
(tests/test_validation_scale.py).

Small work stays in one process. A part's process costs about 4 s to start, mostly importing GX,
and the contract checks about 25,000 rows a second a core, so parts pay from a few hundred thousand
rows (`PARALLEL_MIN_ROWS`; docs/SCALING.md).
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from transforms.ingest import stage as ing

PARALLEL_MIN_ROWS = 250_000   # staged rows from which a run validates in parts (break-even ~150,000 on 2 cores)
MAX_PARTS = 4                 # each part holds a batch of up to VALIDATION_BATCH_ROWS rows in memory
HEAD_START_ROWS = 100_000     # rows the first part (this process) checks while the others' processes start
OUTPUTS = ("issues", "results", "verdicts")


def part_count(submissions: list[ing.Submission], workers: int = 0) -> int:
    """Parts for this run: `workers` (LAB2FAB_VALIDATE_WORKERS) if set, else the cores (at most
    MAX_PARTS) once PARALLEL_MIN_ROWS rows are staged, else 1; never more than the universities."""
    staged = [s for s in submissions if s.status == "staged"]
    universities = len({s.landed.university_code for s in staged})
    if workers:
        return max(1, min(workers, universities))
    if sum(s.rows_read for s in staged) < PARALLEL_MIN_ROWS:
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_PARTS, universities))


def split_by_university(submissions: list[ing.Submission], parts: int) -> list[list[ing.Submission]]:
    """The staged submissions in `parts` groups of whole universities, of about equal rows (largest
    university first onto the lightest part; the first part, validated in this process while the
    others start, takes HEAD_START_ROWS more, at most a quarter of a part's share); each group keeps the run's order of its files."""
    staged = [s for s in submissions if s.status == "staged"]
    rows: dict[str, int] = {}
    for s in staged:
        rows[s.landed.university_code or ""] = rows.get(s.landed.university_code or "", 0) + s.rows_read
    head = min(HEAD_START_ROWS, sum(rows.values()) // (4 * parts)) if parts > 1 else 0   # small work: even parts
    load, part_of = [-head] + [0] * (parts - 1), {}
    for u in sorted(rows, key=lambda u: (-rows[u], u)):
        j = min(range(parts), key=lambda j: (load[j], j))
        part_of[u] = j
        load[j] += rows[u]
    groups: list[list[ing.Submission]] = [[] for _ in range(parts)]
    for s in staged:
        groups[part_of[s.landed.university_code or ""]].append(s)
    return [g for g in groups if g]


def validate(submissions: list[ing.Submission], work_dir: Path, ref, warehouse_path: Path,
             *, workers: int = 0) -> dict[str, int]:
    """`stage.validate_staged` over every staged submission, with the warehouse at `warehouse_path`
    (it must exist; opened read-only) as history; in parts when `part_count` says so. Same outputs in
    `work_dir` either way."""
    parts = split_by_university(submissions, part_count(submissions, workers))
    if len(parts) <= 1:
        return _validate_part(submissions, work_dir, ref, warehouse_path, "", None)
    folders = [work_dir / f"validate-part-{j}" for j in range(len(parts))]
    gx_dir = work_dir / "gx_results"
    # spawn, not fork: this process runs Prefect's threads, which a fork would copy mid-flight.
    with ProcessPoolExecutor(max_workers=len(parts) - 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_validate_part, part, folder, ref, warehouse_path, f"-p{j}", gx_dir)
                   for j, (part, folder) in enumerate(zip(parts[1:], folders[1:]), start=1)]
        counts = [_validate_part(parts[0], folders[0], ref, warehouse_path, "-p0", gx_dir)]  # this process: part 0
        counts += [f.result() for f in futures]
    _merge(submissions, work_dir, folders)
    return {dataset: sum(c.get(dataset, 0) for c in counts) for dataset in ("enrollment", "placements")}


def _validate_part(submissions, work_dir: Path, ref, warehouse_path: Path, part: str, gx_dir) -> dict[str, int]:
    from transforms.warehouse import db

    work_dir.mkdir(parents=True, exist_ok=True)
    con = db.connect(warehouse_path, read_only=True)   # read-only: the parts' processes share the file
    try:
        return ing.validate_staged(submissions, work_dir, ref, con=con, part=part, gx_dir=gx_dir)
    finally:
        con.close()


def _merge(submissions: list[ing.Submission], work_dir: Path, folders: list[Path]) -> None:
    """The parts' outputs as one: each file's rows where the whole run would have put them."""
    for dataset in ("enrollment", "placements"):
        staged = [s for s in submissions if s.status == "staged" and s.landed.dataset == dataset]
        order = ing.file_order(staged, by_term=dataset == "enrollment")
        for name in OUTPUTS:
            frames = [pd.read_parquet(f / f"{name}_{dataset}.parquet") for f in folders]
            nonempty = [f for f in frames if len(f)] or frames[:1]
            merged = pd.concat(nonempty, ignore_index=True) if len(nonempty) > 1 else nonempty[0]
            ing.in_file_order(merged, order).to_parquet(work_dir / f"{name}_{dataset}.parquet", index=False)
    for f in folders:
        shutil.rmtree(f)
