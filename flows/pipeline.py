"""Prefect flows and tasks: `pipeline` runs the stages in order like the runbook.

ingest -> validate -> load -> transform -> model -> publish -> report

ingest is a subflow whose staging tasks run on a task runner of their own (threads, a process
pool or Dask: flows/runners.py), chosen once it knows how many periods there are; the other
stages are tasks of the run (a subflow costs about a second more in Prefect 3.9, a task a hundredth). Stages hand each other paths, not data: staged Parquet and the list
of submissions live in the run's work folder, so parameters stay small and a stage can be run
alone. The logic lives in `transforms/`; this file only orchestrates, logs and leaves artifacts.
"""
from __future__ import annotations

import flows.prefect_defaults  # noqa: F401  (before Prefect is imported: telemetry off unless asked for)

from datetime import datetime, timezone
from typing import Annotated, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from flows.runners import task_runner, workers_share_api
from transforms import faults
from transforms.ingest import landing
from transforms.warehouse import freshness
from transforms.warehouse import recovery
from transforms.warehouse import runs
from transforms.warehouse import db as warehouse
from transforms.ingest import stage as ing
from transforms.contract import checks
from transforms.ingest.pseudonym import PseudonymKeyError, fingerprint, load_key
from transforms.config import Paths, get_paths

# Great Expectations (datadocs, reference checks), the model (scipy) and the report (altair) are
# imported by the stages that use them: a run with nothing new, or a worker process that only
# stages files, does not load them (`python -X importtime -c "import flows.pipeline"`).

SUBMISSIONS = "submissions.json"
# transforms.model.projection.DEFAULT_DRAWS / DEFAULT_SEED, here so that the flow's signature does
# not import the model (tests/test_startup.py checks that they agree).
DEFAULT_DRAWS = 1000
DEFAULT_SEED = 20300101


@task(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def stage_group(paths: Paths, run_id: str, key: bytes, label: str, files: list[landing.LandedFile],
                known: ing.KnownFiles) -> list[ing.Submission]:
    """Read, normalise and pseudonymise one term's (or round's) new files into staged Parquet.

    Retried a bounded number of times: a file may still be being written or be locked;
    staging is idempotent (each file's Parquet is simply written again).
    """
    subs = ing.stage_submissions(files, known, runs.work_dir(paths, run_id), key=key, reference_dir=paths.reference)
    logger = get_run_logger()
    for s in subs:
        if s.status != "staged":
            logger.warning("%s: %s", s.status, s.reason)
    logger.info("%s: %d files staged (%d rows)", label, sum(s.status == "staged" for s in subs),
                sum(s.rows_read for s in subs))
    return subs


class StagingProgress:
    """A terminal progress bar of the staging (files, rows a second, time left) beside Prefect's
    progress artifact; nothing at all when stderr is not a terminal (a deployment, a test, a pipe)."""

    def __init__(self, total_files: int):
        import sys

        self.files, self.rows, self.total = 0, 0, total_files
        self._bar = None
        if total_files and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("staging"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=True)

    def __enter__(self) -> "StagingProgress":
        if self._bar is not None:
            self._bar.start()
            self._job = self._bar.add_task("staging", total=self.total, rate="")
        return self

    def advance(self, files: int, rows: int) -> None:
        self.files += files
        self.rows += rows
        if self._bar is not None:
            elapsed = self._bar.tasks[0].elapsed or 0.0
            rate = f"{self.rows / elapsed:,.0f} rows/s" if elapsed > 0 else ""
            self._bar.update(self._job, completed=self.files, rate=rate)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


@flow(name="ingest")
def ingest_flow(data_dir: str, run_id: str, terms: list[str] | None = None, rounds: list[str] | None = None,
                max_concurrency: int = 2) -> dict:
    """Find new submissions in the landing zone, read, normalise and pseudonymise them.

    With `terms`/`rounds` (a backfill), every file of those periods is taken again, known or not.
    Each period is staged by its own task, at most `max_concurrency` at once, on the task runner
    chosen (flows/runners.py) once it is known how many periods there are.
    """
    paths = get_paths(data_dir)
    logger = get_run_logger()
    backfill = terms is not None or rounds is not None
    periods = set(terms or []) | set(rounds or [])
    expected, known = None, ing.KnownFiles({}, {})
    if paths.warehouse.exists():  # read only: a run with the wrong key must not change a byte
        con = warehouse.connect(paths.warehouse, read_only=True)
        try:
            expected = warehouse.get_state(con, "key_fingerprint")
            known = ing.KnownFiles.from_warehouse(con, exclude_periods=periods if backfill else None)
        finally:
            con.close()
    # A local demo key is made only for a new warehouse: once data is pseudonymised, a missing key stops the run.
    key = load_key(paths.secrets, allow_demo_key=expected is None)
    if expected and expected != fingerprint(key):
        raise PseudonymKeyError(
            "the pseudonymisation key is not the one this warehouse was built with; nothing was written. "
            "Set $LAB2FAB_PSEUDONYM_KEY to the original key (or rebuild the warehouse from the landing zone).")
    landed = landing.scan(paths.landing)
    if backfill:
        landed = [f for f in landed if f.period in periods]
    new = ing.new_files(landed, known)
    groups = ing.group_by_period(new, known)
    logger.info("landing zone: %d files, %d to ingest in %d periods", len(landed), len(new), len(groups))
    progress_id = create_progress_artifact(0.0, description="files staged") if groups else None
    subs: list[ing.Submission] = []
    new_bytes = sum(f.size or 0 for f in new)
    with (workers_share_api(), task_runner(max_concurrency, periods=len(groups), new_bytes=new_bytes) as runner,
          StagingProgress(len(new)) as bar):
        futures = [runner.submit(stage_group, {"paths": paths, "run_id": run_id, "key": key, "label": label,
                                               "files": files, "known": group_known})
                   for label, files, group_known in groups]
        for future, (_, files, _) in zip(futures, groups):
            staged = future.result()
            subs.extend(staged)
            bar.advance(len(files), sum(s.rows_read for s in staged))
            update_progress_artifact(progress_id, 100.0 * bar.files / max(1, len(new)))
            faults.checkpoint("staging")
    runs.save_submissions(runs.work_dir(paths, run_id) / SUBMISSIONS, subs)
    runs.save_scope(runs.work_dir(paths, run_id), periods if backfill else set())
    return {"files_seen": len(landed), "files_new": len(new)}


@task(name="validate", cache_policy=NO_CACHE)
def validate_stage(data_dir: str, run_id: str) -> dict:
    """The data contract (Great Expectations) on the reference data and every staged submission."""
    from transforms.contract import datadocs
    from transforms.contract import reference as reference_checks
    from transforms.contract.suites import ContractReference

    paths = get_paths(data_dir)
    work = runs.work_dir(paths, run_id)
    subs = runs.read_submissions(work / SUBMISSIONS)
    # Reference data first: an error stops the run here, naming the file, line and rule.
    datadocs.save_results(reference_checks.require_valid_reference(paths.reference).gx_results,
                          work / "gx_results", "reference")
    overrides = checks.read_overrides(checks.overrides_paths(paths.data_dir))
    ref = ContractReference.from_dir(paths.reference)
    con = warehouse.connect(paths.warehouse)
    try:
        counts = ing.validate_staged(subs, work, ref, con=con)  # con: history of earlier terms, read only
    finally:
        con.close()
    markdown, verdicts = checks.run_summary(work, subs, overrides)
    if subs:
        create_markdown_artifact(key="lab2fab-validation", markdown=markdown,
                                 description=f"Data contract, run {run_id}: {verdicts}")
    get_run_logger().info("contract checked: %s rule failures; verdicts %s", counts, verdicts)
    return counts


@task(name="load", cache_policy=NO_CACHE)
def load_stage(data_dir: str, run_id: str) -> dict:
    """One transaction: manifest, loaded rows, quarantine, superseded submissions, verdicts."""

    paths = get_paths(data_dir)
    work = runs.work_dir(paths, run_id)
    subs = runs.read_submissions(work / SUBMISSIONS)
    key_fp = fingerprint(load_key(paths.secrets))
    con = warehouse.connect(paths.warehouse)
    try:
        if warehouse.get_state(con, "key_fingerprint") is None:
            warehouse.set_state(con, "key_fingerprint", key_fp)
        scope = runs.read_scope(work)
        overrides = checks.read_overrides(checks.overrides_paths(paths.data_dir))  # read every run
        totals = (ing.load_batch(con, subs, work, run_id, forget_periods=scope, overrides=overrides) if subs or scope
                  else {"files": 0, "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0})
        if not (subs or scope):
            checks.apply_overrides_in_transaction(con, overrides)  # accepting a warning needs no resubmission
        by_status = con.execute("SELECT status, count(*) FROM ops.manifest WHERE run_id = ? GROUP BY 1 ORDER BY 1",
                                [run_id]).fetchall()
    finally:
        con.close()
    logger = get_run_logger()
    logger.info("loaded: %s; files by status: %s", totals, dict(by_status))
    if subs:
        create_table_artifact(
            key="lab2fab-files",
            table=[{"path": s.landed.relpath, "status": s.status, "rows_read": s.rows_read, "reason": s.reason or ""}
                   for s in subs][:500],
            description=f"Files in run {run_id}: {dict(by_status)}")
    return totals


@task(name="transform", cache_policy=NO_CACHE)
def transform_stage(data_dir: str) -> list[str]:
    """Reference data and SQL models: staging -> marts."""
    paths = get_paths(data_dir)
    con = warehouse.connect(paths.warehouse)
    try:
        warehouse.load_reference(con, paths.reference)
        built = warehouse.build_marts(con)
    finally:
        con.close()
    get_run_logger().info("marts built: %s", ", ".join(built))
    return built


@task(name="model", cache_policy=NO_CACHE)
def model_stage(data_dir: str, scenarios: list[str] | None = None, draws: int = DEFAULT_DRAWS,
                seed: int = DEFAULT_SEED, decisions: bool = True) -> dict:
    """The lab-to-fab model, from the warehouse back into `marts.model_*` (docs/MODEL.md).

    scenarios: names of files in data/scenarios (or YAML paths); None = every file there. The
    baseline is always run. Same warehouse, scenario files and seed give identical marts.
    """
    from transforms.model import projection as model

    paths = get_paths(data_dir)
    logger = get_run_logger()
    con = warehouse.connect(paths.warehouse)
    try:
        outputs = model.run_model(con, scenarios, draws=draws, seed=seed, folder=model.scenario_dir(paths.data_dir),
                                  decisions=decisions, scale=model.demo_scale(paths.data_dir))
        model.write_outputs(con, outputs)
    finally:
        con.close()
    h = outputs["model_headline"].query("scenario == 'baseline'")
    total = h.query("dimension == 'total'").iloc[0]
    logger.info("engineers projected by 2030 (baseline): P50 %.0f (P10 %.0f, P90 %.0f) against %.0f; "
                "P(meet) %.2f; practice-ready P50 %.0f; %d draws, %.1f s",
                total.p50, total.p10, total.p90, total.target, total.probability_meeting_target,
                total.practice_ready_p50, draws, outputs["_timings"]["total"])
    logger.info("%s", model.measures_text(outputs))
    create_table_artifact(
        key="lab2fab-model-measures",
        table=outputs["model_measures"].query("dimension in ('total', 'track_group')")[
            ["scenario", "measure", "dimension", "category", "p10", "p50", "p90", "target", "probability_meeting_target",
             "basis", "scale"]].round(3).to_dict(orient="records"),
        description="T (trained), P (practice-ready) and E (employed, assumption-driven) by the horizon: persons, "
                    "P10/P50/P90 per scenario (docs/MODEL.md, 'What is counted')")
    create_table_artifact(
        key="lab2fab-model-headline",
        table=outputs["model_headline"][["scenario", "dimension", "category", "target", "p10", "p50", "p90",
                                         "probability_meeting_target", "practice_ready_p50"]].round(3)
        .to_dict(orient="records"),
        description=f"Engineers by the 2030 horizon: P10/P50/P90 per scenario ({draws} draws, seed {seed})")
    return {"engineers_2030": float(total.engineers_by_horizon), "engineers_2030_p10": float(total.p10),
            "engineers_2030_p90": float(total.p90), "probability_meeting_target": float(total.probability_meeting_target),
            "scenarios": sorted(outputs["model_headline"]["scenario"].unique().tolist())}


@task(name="publish", cache_policy=NO_CACHE)
def publish_stage(data_dir: str, run_id: str) -> str:
    """Curated views and their documentation, then a finished read-only snapshot swapped in
    atomically, Parquet exports and the data dictionary beside it."""
    from transforms.contract import datadocs
    from transforms.publish import feedback

    paths = get_paths(data_dir)
    con = warehouse.connect(paths.warehouse)
    try:
        warehouse.build_marts(con, "views")
        documented = warehouse.apply_dictionary(con)
        snap = warehouse.publish(con, paths.snapshot, run_id)
        warehouse.export_parquet(con, paths.published_dir, run_id)
        (paths.published_dir / "DATA_DICTIONARY.md").write_text(warehouse.dictionary_markdown(con), encoding="utf-8")
        # What each university office gets back: accepted / with warnings / rejected, and why.
        feedback_files = feedback.write_feedback(con, paths.published_dir / "feedback")
    finally:
        con.close()
    results = runs.work_dir(paths, run_id) / "gx_results"
    if results.is_dir():  # Data Docs of this run's validations (a run with nothing new keeps the last site)
        datadocs.build_data_docs(results, paths.published_dir / "data_docs", run_name=run_id)
    get_run_logger().info("published %s (%d columns documented), Parquet exports and %d feedback files",
                          snap, documented, feedback_files)
    return str(snap)


@task(name="report", cache_policy=NO_CACHE)
def report_stage(data_dir: str, language: str = "en") -> dict:
    """The self-contained HTML report beside the snapshot (charts of the gap, the funnel, capacity,
    scenarios, universities and data quality; English or Vietnamese), and the headline as Prefect
    artifacts: markdown, and a table by target (P10/P50/P90, probability of meeting it)."""
    from transforms.publish import report

    if language not in report.LANGUAGES:
        raise ValueError(f"language must be one of {report.LANGUAGES}, not {language!r}")
    paths = get_paths(data_dir)
    con = warehouse.connect(paths.warehouse)
    try:
        h = report.headline(con)
        report.write_report(con, paths.report, h, language=language)
    finally:
        con.close()
    create_markdown_artifact(key="lab2fab-headline", markdown=report.markdown(h), description="Projection to 2030")
    create_table_artifact(key="lab2fab-headline-by-target", table=report.headline_table(h),
                          description=f"Engineers by 2030 against each target, baseline (data to term {h['last_term']}): "
                                      "P10/P50/P90 and probability of meeting the target")
    get_run_logger().info("report written: %s (%s)", paths.report, language)
    return {k: h[k] for k in ("last_term", "engineers_2030", "target_2030", "gap_2030", "practice_ready_share",
                              "measures_line")}


def run_stages(data_dir: str | None, *, rebuild: bool = False, wait_for_lock_seconds: float = 0.0,
               terms: list[str] | None = None, rounds: list[str] | None = None, max_concurrency: int = 2,
               language: str = "en", scenarios: list[str] | None = None, draws: int = DEFAULT_DRAWS,
               recover: bool = False) -> dict:
    """ingest -> validate -> load -> transform -> model -> publish -> report, under the writer lock.

    Regular runs take new files only; a backfill (`terms`/`rounds`) takes every file of those
    periods again and replaces what the warehouse held for them. With nothing new and unchanged
    reference data, the warehouse, snapshot and report are left as they are. `recover` re-creates
    a lost or damaged warehouse from the landing zone and the manifest history (transforms/warehouse/recovery.py).
    Every run ends by saving the manifest history.
    """
    paths = get_paths(data_dir).ensure()
    data_dir = str(paths.data_dir)
    run_id = runs.new_run_id()
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    logger = get_run_logger()
    with runs.writer_lock(paths, timeout=wait_for_lock_seconds):
        runs.clear_stale_work(paths, keep=run_id)
        if recover:
            history, notes, aside = recovery.prepare_rebuild(paths, run_id)
            for note in notes:
                logger.warning("%s", note)
            logger.info("rebuilding the warehouse from the landing zone and the history of %d files; the old file %s",
                        len(history.manifest), f"is kept as {aside}" if aside else "was missing")
        else:
            recovery.require_warehouse_or_no_history(paths)
        seen = ingest_flow(data_dir, run_id, terms=terms, rounds=rounds, max_concurrency=max_concurrency)
        validate_stage(data_dir, run_id)
        totals = load_stage(data_dir, run_id)
        if recover:
            con = warehouse.connect(paths.warehouse)
            try:
                logger.info("arrival record restored for %d files", recovery.restore_arrivals(con, history))
            finally:
                con.close()
        fp = freshness.inputs_fingerprint(paths)
        con = warehouse.connect(paths.warehouse)
        try:
            # Rebuild when the data moved on since the last publish, when its inputs changed (the
            # same test the CLI makes before starting Prefect: transforms/warehouse/freshness.py), or when asked.
            version = warehouse.get_state(con, "data_version")
            changed = rebuild or terms is not None or rounds is not None or bool(freshness.outputs_stale(con, paths, fp))
        finally:
            con.close()
        result: dict = {}
        if changed:
            transform_stage(data_dir)
            model_stage(data_dir, scenarios=scenarios, draws=draws)
            publish_stage(data_dir, run_id)
            result = report_stage(data_dir, language=language)
            con = warehouse.connect(paths.warehouse)
            try:
                warehouse.set_state(con, "inputs_fingerprint", fp)
                warehouse.set_state(con, "published_version", version or "")
            finally:
                con.close()
        else:
            logger.info("no new files and no reference change: warehouse, snapshot and report unchanged")
        con = warehouse.connect(paths.warehouse)
        try:
            warehouse.record_run(con, run_id, started, seen, totals, changed)
            recovery.save_history(con, paths.history)
        finally:
            con.close()
        runs.clear_stale_work(paths, keep="")
    result.update(seen, **totals, changed=changed, run_id=run_id, warehouse=str(paths.warehouse),
                  snapshot=str(paths.snapshot), report=str(paths.report))
    return result


@flow(name="lab2fab-rebuild", log_prints=True)
def rebuild_warehouse(data_dir: str | None = None, wait_for_lock_seconds: float = 0.0) -> dict:
    """Re-create a lost or damaged warehouse from the landing zone and the manifest history; the
    old file is moved aside, never deleted. The result has the content the lost warehouse had."""
    return run_stages(data_dir, recover=True, wait_for_lock_seconds=wait_for_lock_seconds)


@flow(name="lab2fab-pipeline", log_prints=True)
def pipeline(data_dir: str | None = None, rebuild: bool = False, wait_for_lock_seconds: float = 0.0,
             language: Literal["en", "vi"] = "en", scenarios: list[str] | None = None,
             draws: Annotated[int, Field(ge=10, le=100_000)] = DEFAULT_DRAWS) -> dict:
    """The scheduled run: take what universities have sent since the last run, end to end.

    `scenarios` (names of files in data/scenarios; default all) and `draws` steer the model."""
    return run_stages(data_dir, rebuild=rebuild, wait_for_lock_seconds=wait_for_lock_seconds, language=language,
                      scenarios=scenarios, draws=draws)
