"""Prefect flows and tasks: `pipeline` runs the stages in order like the runbook.

ingest -> validate -> load -> transform -> model -> publish -> report

ingest is a subflow whose staging tasks run on a task runner of their own (threads, a process
pool or Dask: flows/runners.py), chosen once it knows how many periods there are; the other
stages are tasks of the run (a subflow costs about a second more in Prefect 3.9, a task a hundredth).
`run_stages` builds one `RunContext` (paths, run id, backfill scope, overrides, the key and its
fingerprint: transforms/warehouse/runs.py) when the run starts and passes it to every stage; ingest
returns the submissions it staged and validate and load receive them. Rows travel as the staged
Parquet in the run's work folder, which staging workers in other processes or on Dask write; no
stage re-reads what another just handed it. The logic lives in `transforms/`; this file only
orchestrates, logs, leaves artifacts, holds the writer lock (flows/lock.py) and passes the
failpoints (flows/faults.py) to the transforms that have one.
"""
from __future__ import annotations

import flows.prefect_defaults  # noqa: F401  (before Prefect is imported: telemetry off unless asked for)

import logging
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from flows import faults
from flows.lock import writer_lock
from flows.runners import task_runner, workers_share_api
from transforms.ingest import landing
from transforms.warehouse import freshness
from transforms.warehouse import recovery
from transforms.warehouse import runs
from transforms.warehouse import db as warehouse
from transforms.ingest import stage as ing
from transforms.contract import checks
from transforms.config import Paths, get_paths, settings
from transforms.warehouse.runs import RunContext

# Great Expectations (datadocs, reference checks), the model (scipy) and the report (altair) are
# imported by the stages that use them: a run with nothing new, or a worker process that only
# stages files, does not load them (`python -X importtime -c "import flows.pipeline"`).

# transforms.model.projection.DEFAULT_DRAWS / DEFAULT_SEED, here so that the flow's signature does
# not import the model (tests/test_startup.py checks that they agree).
DEFAULT_DRAWS = 1000
DEFAULT_SEED = 20300101


@contextmanager
def transforms_log_to_run():
    """Warnings that transforms/ logs with the standard library (a model fallback, a file that could
    not be read) also reach the Prefect run's log, not only the console: Prefect's API handler on the
    `transforms` logger while a run is active. transforms/ itself never imports Prefect's logger."""
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger("transforms")
    if any(isinstance(h, APILogHandler) for h in logger.handlers):  # a stage inside run_stages
        yield
        return
    handler = APILogHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _context(ctx: RunContext | str | None) -> Paths:
    """The paths of a stage's run: its RunContext, or a data folder when the stage is run on its own."""
    return ctx.paths if isinstance(ctx, RunContext) else get_paths(ctx)


@dataclass
class Ingested:
    """What the ingest subflow hands validate and load: the landing zone's counts and the submissions."""

    files_seen: int
    files_new: int
    submissions: list[ing.Submission]

    @property
    def counts(self) -> dict:
        return {"files_seen": self.files_seen, "files_new": self.files_new}


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
def ingest_flow(ctx: RunContext, max_concurrency: int = 2) -> Ingested:
    """Find new submissions in the landing zone, read, normalise and pseudonymise them.

    In a backfill (`ctx.periods`), every file of those periods is taken again, known or not.
    Each period is staged by its own task, at most `max_concurrency` at once, on the task runner
    chosen (flows/runners.py) once it is known how many periods there are. The key was checked
    against the warehouse when the context was built, before anything is written.
    """
    paths = ctx.paths
    logger = get_run_logger()
    known = ing.KnownFiles({}, {})
    if paths.warehouse.exists():  # read only: nothing is written before load
        con = warehouse.connect(paths.warehouse, read_only=True)
        try:
            known = ing.KnownFiles.from_warehouse(con, exclude_periods=set(ctx.periods) if ctx.backfill else None)
        finally:
            con.close()
    landed = landing.scan(paths.landing)
    if ctx.backfill:
        landed = [f for f in landed if f.period in ctx.periods]
    new = ing.new_files(landed, known)
    groups = ing.group_by_period(new, known)
    logger.info("landing zone: %d files, %d to ingest in %d periods", len(landed), len(new), len(groups))
    progress_id = create_progress_artifact(0.0, description="files staged") if groups else None
    subs: list[ing.Submission] = []
    new_bytes = sum(f.size or 0 for f in new)
    with (workers_share_api(), task_runner(max_concurrency, periods=len(groups), new_bytes=new_bytes) as runner,
          StagingProgress(len(new)) as bar):
        futures = [runner.submit(stage_group, {"paths": paths, "run_id": ctx.run_id, "key": ctx.key.get_secret_value(),
                                               "label": label,
                                               "files": files, "known": group_known})
                   for label, files, group_known in groups]
        for future, (_, files, _) in zip(futures, groups):
            staged = future.result()
            subs.extend(staged)
            bar.advance(len(files), sum(s.rows_read for s in staged))
            update_progress_artifact(progress_id, 100.0 * bar.files / max(1, len(new)))
            faults.checkpoint("staging")
    return Ingested(files_seen=len(landed), files_new=len(new), submissions=subs)


@task(name="validate", cache_policy=NO_CACHE)
def validate_stage(ctx: RunContext, subs: list[ing.Submission]) -> dict:
    """The data contract (Great Expectations) on the reference data and every staged submission."""
    from transforms.contract import datadocs
    from transforms.contract import reference as reference_checks
    from transforms.contract.suites import ContractReference
    from transforms.ingest import validate as contract_parts

    paths, work, run_id = ctx.paths, ctx.work, ctx.run_id
    # Reference data first: an error stops the run here, naming the file, line and rule.
    datadocs.save_results(reference_checks.require_valid_reference(paths.reference).gx_results,
                          work / "gx_results", "reference")
    ref = ContractReference.from_dir(paths.reference)
    warehouse.connect(paths.warehouse).close()   # a new warehouse gets its schema; the history is read read-only
    counts = contract_parts.validate(subs, work, ref, paths.warehouse, workers=settings().validate_workers)
    markdown, verdicts = checks.run_summary(work, subs, ctx.overrides)
    if subs:
        create_markdown_artifact(key="lab2fab-validation", markdown=markdown,
                                 description=f"Data contract, run {run_id}: {verdicts}")
    get_run_logger().info("contract checked: %s rule failures; verdicts %s", counts, verdicts)
    return counts


@task(name="load", cache_policy=NO_CACHE)
def load_stage(ctx: RunContext, subs: list[ing.Submission]) -> dict:
    """One transaction: manifest, loaded rows, quarantine, superseded submissions, verdicts."""
    paths, run_id = ctx.paths, ctx.run_id
    con = warehouse.connect(paths.warehouse)
    try:
        if warehouse.get_state(con, "key_fingerprint") is None:
            warehouse.set_state(con, "key_fingerprint", ctx.key_fingerprint)
        scope = set(ctx.periods or ())  # a backfill replaces what the warehouse held for these periods
        totals = (ing.load_batch(con, subs, ctx.work, run_id, forget_periods=scope, overrides=ctx.overrides,
                                 on_step=faults.checkpoint) if subs or scope
                  else {"files": 0, "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0})
        if not (subs or scope):
            checks.apply_overrides_in_transaction(con, ctx.overrides)  # accepting a warning needs no resubmission
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
def transform_stage(ctx: RunContext | str) -> list[str]:
    """Reference data and SQL models: staging -> marts. `ctx`: the run's context, or a data folder."""
    paths = _context(ctx)
    con = warehouse.connect(paths.warehouse)
    try:
        warehouse.load_reference(con, paths.reference)
        built = warehouse.build_marts(con, on_step=faults.checkpoint)
    finally:
        con.close()
    get_run_logger().info("marts built: %s", ", ".join(built))
    return built


@task(name="model", cache_policy=NO_CACHE)
def model_stage(ctx: RunContext | str, scenarios: list[str] | None = None, draws: int = DEFAULT_DRAWS,
                seed: int = DEFAULT_SEED, decisions: bool = True, force: bool = False) -> dict:
    """The lab-to-fab model, from the warehouse back into `marts.model_*` (docs/MODEL.md).
    `ctx`: the run's context, or a data folder (the stage run on its own). Unless `force`, the marts
    are kept when nothing the model reads changed (transforms/model/inputs.py).

    scenarios: names of files in data/scenarios (or YAML paths); None = every file there. The
    baseline is always run. Same warehouse, scenario files and seed give identical marts.
    """
    from transforms.model import inputs as model_inputs
    from transforms.model import projection as model

    paths = _context(ctx)
    logger = get_run_logger()
    con = warehouse.connect(paths.warehouse)
    try:
        scale = model.demo_scale(paths.data_dir)
        fp = model_inputs.fingerprint(con, data_dir=paths.data_dir, scenarios=scenarios, draws=draws, seed=seed,
                                      decisions=decisions, scale=scale)
        if not force and model_inputs.unchanged(con, fp):
            logger.info("model inputs unchanged (fingerprint %s): marts.model_* kept", fp)
            outputs = model_inputs.kept_outputs(con)
        else:
            with transforms_log_to_run():  # the model's fallback warnings
                outputs = model.run_model(con, scenarios, draws=draws, seed=seed, folder=model.scenario_dir(paths.data_dir),
                                          decisions=decisions, scale=scale)
            model_inputs.forget(con)
            model.write_outputs(con, outputs)
            model_inputs.record(con, fp)
    finally:
        con.close()
    m = outputs["model_measures"].query("scenario == 'baseline' and dimension == 'total'").set_index("measure")
    t = m.loc["trained"]
    logger.info("%s; %d draws, %.1f s", model.measures_text(outputs), draws, outputs["_timings"]["total"])
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
        description=f"The earlier 'engineers' measure (practice-ready + a judgment prior on everyone else), kept for "
                    f"comparison only; T, P and E are lab2fab-model-measures ({draws} draws, seed {seed})")
    # T is the Decision's measure and stands first; P and E beside it (docs/MODEL.md, "What is counted").
    total = outputs["model_headline"].query("scenario == 'baseline' and dimension == 'total'").iloc[0]
    return {"trained_2030": float(t.p50), "trained_2030_p10": float(t.p10), "trained_2030_p90": float(t.p90),
            "trained_target_2030": float(t.target), "probability_meeting_target": float(t.probability_meeting_target),
            "practice_ready_2030": float(m.loc["practice_ready"].p50), "employed_2030": float(m.loc["employed"].p50),
            "engineers_2030": float(total.engineers_by_horizon),
            "scenarios": sorted(outputs["model_headline"]["scenario"].unique().tolist())}


@task(name="publish", cache_policy=NO_CACHE)
def publish_stage(ctx: RunContext) -> str:
    """Curated views and their documentation, then a finished read-only snapshot swapped in
    atomically, Parquet exports and the data dictionary beside it."""
    from transforms.contract import datadocs
    from transforms.publish import feedback

    paths, run_id = ctx.paths, ctx.run_id
    site = paths.published_dir / "data_docs"
    for stale in paths.published_dir.glob(".*data_docs.*"):   # half-built sites of a run that died here
        shutil.rmtree(stale, ignore_errors=True)
    results = ctx.work / "gx_results"
    con = warehouse.connect(paths.warehouse)
    try:
        warehouse.build_marts(con, "views")
        documented = warehouse.apply_dictionary(con)
        # What each table holds, once: the Parquet exports rewrite only what changed.
        signature = warehouse.content_signature(con)
        snap = warehouse.publish(con, paths.snapshot, run_id, on_step=faults.checkpoint, signature=signature)
        warehouse.export_parquet(con, paths.published_dir, run_id, signature=signature)
        (paths.published_dir / "DATA_DICTIONARY.md").write_text(warehouse.dictionary_markdown(con), encoding="utf-8")
        # What each university office gets back: accepted / with warnings / rejected, and why.
        feedback_files = feedback.write_feedback(con, paths.published_dir / "feedback")
    finally:
        con.close()
    if results.is_dir():  # built beside and swapped in; a run with nothing new keeps the last site
        datadocs.build_data_docs(results, site, run_name=run_id)
    get_run_logger().info("published %s (%d columns documented), Parquet exports and %d feedback files",
                          snap, documented, feedback_files)
    return str(snap)


@task(name="report", cache_policy=NO_CACHE)
def report_stage(ctx: RunContext | str, language: str = "en") -> dict:
    """The self-contained HTML report beside the snapshot (charts of the gap, the funnel, capacity,
    scenarios, universities and data quality; English or Vietnamese), and the headline as Prefect
    artifacts: markdown, and a table by target (P10/P50/P90, probability of meeting it)."""
    from transforms.publish import report

    if language not in report.LANGUAGES:
        raise ValueError(f"language must be one of {report.LANGUAGES}, not {language!r}")
    paths = _context(ctx)
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
    return {k: h[k] for k in ("last_term", "measures_line", "trained_2030", "trained_2030_p10", "trained_2030_p90",
                              "trained_target_2030", "engineers_2030", "target_2030", "gap_2030", "practice_ready_share")
            if k in h}


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
    run_id = runs.new_run_id()
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    logger = get_run_logger()
    with writer_lock(paths, timeout=wait_for_lock_seconds), transforms_log_to_run():
        runs.clear_stale_work(paths, keep=run_id)
        if recover:
            history, notes, aside = recovery.prepare_rebuild(paths, run_id)
            for note in notes:
                logger.warning("%s", note)
            logger.info("rebuilding the warehouse from the landing zone and the history of %d files; the old file %s",
                        len(history.manifest), f"is kept as {aside}" if aside else "was missing")
        else:
            recovery.require_warehouse_or_no_history(paths)
        backfill = terms is not None or rounds is not None
        ctx = RunContext.start(paths, run_id, periods=set(terms or []) | set(rounds or []) if backfill else None)
        ingested = ingest_flow(ctx, max_concurrency=max_concurrency)
        seen = ingested.counts
        validate_stage(ctx, ingested.submissions)
        totals = load_stage(ctx, ingested.submissions)
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
            changed = rebuild or backfill or bool(freshness.outputs_stale(con, paths, fp))
        finally:
            con.close()
        result: dict = {}
        if changed:
            transform_stage(ctx)
            model_stage(ctx, scenarios=scenarios, draws=draws, force=rebuild)
            publish_stage(ctx)
            result = report_stage(ctx, language=language)
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
