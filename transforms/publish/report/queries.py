"""The SQL the report reads: aggregates only, from the marts and ops tables.

Each function returns a DataFrame (the charts' input; rows are read by column name, never by
position) or, for the headline, a dict of named figures.
"""
from __future__ import annotations

import duckdb
import pandas as pd

from transforms.publish.report.i18n import MIN_BASE, publishable_count, publishable_share
from transforms.vocabulary import NORMAL_YEARS, TRACKS, parse_term
from transforms.warehouse.db import latest_term


def optional(con, sql: str, params: list | None = None) -> pd.DataFrame:
    """The rows of `sql`, or an empty frame on an older warehouse without that mart (its part of
    the page is left out)."""
    try:
        return con.execute(sql, params or []).df()
    except duckdb.Error:
        return pd.DataFrame()


# --------------------------------------------------------------------------------------------
# Headline: CLI, artifacts, top of the page

def headline(con) -> dict:
    """The few numbers a reader asks first; the same dict feeds the CLI, artifacts and report."""
    h = con.execute("""SELECT dimension, category, engineers_by_horizon, target, gap, practice_ready_share,
                              p10, p50, p90, probability_meeting_target, practice_ready_p50,
                              probability_practice_ready_meeting_target
                       FROM marts.model_headline WHERE scenario = 'baseline'""").df()
    files = con.execute("""SELECT status, count(*) AS files, sum(rows_read) AS rows_read, sum(rows_loaded) AS rows_loaded,
                                  sum(rows_quarantined) AS rows_quarantined FROM ops.manifest GROUP BY ALL ORDER BY 1""").df()
    bottleneck = con.execute("SELECT track, binding, unmet_demand FROM marts.model_bottleneck "
                             "WHERE scenario = 'baseline' ORDER BY track").df()
    last_term = latest_term(con)  # marts.current_term: a stray or barely begun term does not move it
    total = h[h.dimension == "total"].iloc[0]
    measures = optional(con, "SELECT * FROM marts.model_measures WHERE scenario = 'baseline'")
    t = measures.query("measure == 'trained' and dimension == 'total'") if len(measures) else measures
    trained = {} if not len(t) else {  # T, the Decision's measure, against its target
        "trained_2030": float(t.p50.iloc[0]), "trained_2030_p10": float(t.p10.iloc[0]),
        "trained_2030_p90": float(t.p90.iloc[0]), "trained_target_2030": float(t.target.iloc[0])}
    return {
        "measures": measures,
        "measures_line": _measures_line(measures),
        "last_term": last_term,
        **trained,
        "engineers_2030": float(total.engineers_by_horizon),
        "target_2030": float(total.target),
        "gap_2030": float(total.gap),
        "practice_ready_share": float(total.practice_ready_share),
        "engineers_2030_p10": float(total.p10),
        "engineers_2030_p90": float(total.p90),
        "probability_meeting_target": float(total.probability_meeting_target),
        "by_group": h,
        "bottleneck": bottleneck,
        "files": files,
    }


def _measures_line(m: pd.DataFrame) -> str:
    if not len(m):
        return ""
    from transforms.model.measures import headline_line  # the model's own wording (CLI, log, page agree)
    return headline_line(m)


# --------------------------------------------------------------------------------------------
# Periods

def terms_to(con, last_term: str) -> list[str]:
    """The enrolment terms up to the latest term (not the terms after it)."""
    return [t for (t,) in con.execute("SELECT DISTINCT term FROM marts.enrollment_by_term WHERE term <= ? ORDER BY term",
                                      [last_term]).fetchall()]


def latest_academic_year(terms: list[str]) -> int:
    """The latest academic year with both semesters in the data (else the latest one seen)."""
    seen = {parse_term(t) for t in terms}
    complete = [y for (y, s) in seen if s == 1 and (y, 2) in seen]
    return max(complete) if complete else max(y for y, _ in seen)


# --------------------------------------------------------------------------------------------
# The programme: progress, funnel, capacity, scenarios

def progress(con) -> pd.DataFrame:
    return con.execute("""SELECT p.year, p.category, p.target, p.cumulative_p10, p.cumulative_p50, p.cumulative_p90,
                                 p.cumulative_practice_ready_p50
                          FROM marts.model_progress p
                          WHERE p.scenario = 'baseline' AND p.dimension IN ('total', 'track_group')
                          ORDER BY p.year""").df()


def funnel(con, year: int) -> tuple[pd.DataFrame, dict]:
    """Students at each stage of academic year `year` by track (long: track, stage, students), and its period."""
    first, rounds = f"{year}-1", (f"{year}H2", f"{year + 1}H1")
    final = " OR ".join(f"(degree_level = '{lvl}' AND study_year >= {n})" for lvl, n in NORMAL_YEARS.items())
    enrol = con.execute(f"""
        SELECT track, sum(students) FILTER (WHERE status IN ('studying', 'on_leave')) AS enrolled,
               sum(students) FILTER (WHERE status IN ('studying', 'on_leave') AND ({final})) AS final_year
        FROM marts.enrollment_by_term WHERE term = ? GROUP BY ALL""", [first]).df()
    grads = con.execute("SELECT track, sum(graduates) AS graduated FROM marts.graduates WHERE academic_year = ? "
                        "GROUP BY ALL", [year]).df()
    placed = con.execute("""SELECT track, sum(placed) AS placed, sum(completed) AS completed,
                                   sum(semiconductor_jobs) AS practice_ready
                            FROM marts.placements_by_round WHERE round IN (?, ?) GROUP BY ALL""", list(rounds)).df()
    wide = pd.DataFrame({"track": list(TRACKS)})
    for part in (enrol, grads, placed):
        wide = wide.merge(part, on="track", how="left")
    wide = wide.fillna(0)
    stages = ["enrolled", "final_year", "graduated", "placed", "completed", "practice_ready"]
    long = wide.melt(id_vars="track", value_vars=stages, var_name="stage", value_name="students")
    long["students"] = long["students"].astype(float)
    return long, {"year": year, "first_term": first, "terms": (f"{year}-1", f"{year}-2"), "rounds": rounds}


def rounds(con) -> pd.DataFrame:
    return con.execute("""SELECT round, track, basis, applicants, slots_offered, placed, unmet_demand
                          FROM marts.model_rounds WHERE scenario = 'baseline' ORDER BY round, track""").df()


def slots_by_host(con) -> pd.DataFrame:
    """Slots offered and used per round, host and track, with the host's name."""
    return con.execute("""SELECT c.round, c.host_code, coalesce(h.name, c.host_code) AS host_name, c.track,
                                 c.slots_offered, c.slots_used
                          FROM marts.capacity c LEFT JOIN ref.hosts h USING (host_code)""").df()


def observed_rounds(con) -> set[str]:
    """The rounds with placements recorded."""
    return set(con.execute("SELECT DISTINCT round FROM marts.placements_by_round").df()["round"])


def capacity_solution(con) -> pd.DataFrame:
    return con.execute("""SELECT measure, target_group, track, probability, target, extra_slots_per_round,
                                 extra_slots_per_round_group, from_round, to_round, feasible, achieved_probability,
                                 baseline_probability, baseline_p50, unlimited_slots_p50
                          FROM marts.model_capacity_solution WHERE scenario = 'baseline'
                          ORDER BY target_group, measure, probability, track""").df()


def marginal(con) -> pd.DataFrame:
    return con.execute("""SELECT track, round, marginal_engineers_p10, marginal_engineers_p50, marginal_engineers_p90,
                                 marginal_practice_ready_p50
                          FROM marts.model_marginal WHERE scenario = 'baseline'""").df()


def scenario_headline(con) -> pd.DataFrame:
    """The headline of every scenario, total and per track group."""
    return con.execute("""SELECT scenario, category, target, p10, p50, p90, probability_meeting_target, practice_ready_p50
                          FROM marts.model_headline WHERE dimension IN ('total', 'track_group')""").df()


def scenarios(con) -> pd.DataFrame:
    """What each scenario assumes, the baseline first."""
    return con.execute("SELECT scenario, description, reviewed_by FROM marts.model_scenarios "
                       "ORDER BY scenario = 'baseline' DESC, scenario").df()


def measure_tables(con) -> dict[str, pd.DataFrame]:
    """The tables under the measures section (empty frames on a warehouse without them)."""
    return {
        "scope": optional(con, "SELECT * FROM marts.model_trained_scope WHERE scenario = 'baseline'"),
        "capacity": optional(con, "SELECT * FROM marts.model_practice_capacity WHERE scenario = 'baseline'"),
        "budget": optional(con, "SELECT * FROM marts.model_budget WHERE scenario = 'baseline' "
                                "ORDER BY answer DESC, target_group = 'all', target_group"),
        "budget_mix": optional(con, """SELECT answer, target_group, host_type, track, sum(slots_national) AS slots_national,
                                          sum(cost_national) AS cost_national, min(round) AS first_round,
                                          max(round) AS last_round
                                   FROM marts.model_budget_mix WHERE scenario = 'baseline'
                                   GROUP BY ALL ORDER BY answer DESC, target_group, track, host_type"""),
        "milestones": optional(con, "SELECT * FROM marts.model_milestones WHERE scenario = 'baseline' "
                                    "ORDER BY year, measure, dimension"),
        "backtest": optional(con, "SELECT track, avg(track_coverage) AS coverage, count(*) AS n FROM marts.model_backtest "
                                  "GROUP BY track ORDER BY track"),
    }


# --------------------------------------------------------------------------------------------
# Universities and data quality

def submissions(con) -> pd.DataFrame:
    """Every participating university and term, with one status in STATUS_ORDER: the mart's
    `status_with_late` (marts.submission_status defines status and lateness once)."""
    return con.execute("""
        SELECT university_code, name_vi, term, submission_status, received_at, reason,
               rows_quarantined, rows_with_warnings, status_with_late AS status, late
        FROM marts.submission_status
        ORDER BY term, university_code""").df()


def university_table(con, subs: pd.DataFrame, last_term: str) -> pd.DataFrame:
    """One row per participating university; counts as published (None = suppressed)."""
    u = con.execute("""SELECT s.university_code, s.name_vi, s.province_2025, s.region, s.students_latest_term,
                              s.graduates_all_terms, s.placed, s.terms_missing, s.terms_rejected, s.rows_quarantined,
                              m.graduates AS model_graduates, m.placed AS model_placed
                       FROM marts.university_summary s
                       LEFT JOIN marts.model_universities m ON m.university_code = s.university_code AND m.scenario = 'baseline'
                       ORDER BY s.university_code""").df()
    latest = subs[subs["term"] == last_term].set_index("university_code")["status"] if len(subs) else pd.Series(dtype=str)
    u["status_latest"] = u["university_code"].map(latest).fillna("missing")
    u["students"] = u["students_latest_term"].map(publishable_count)
    u["graduates"] = u["graduates_all_terms"].map(publishable_count)
    u["placed_pub"] = u["placed"].map(publishable_count)
    u["placement_rate"] = [publishable_share(p, g) for p, g in zip(u["placed"], u["graduates_all_terms"])]
    u["projected_rate"] = [float(p) / float(g) if pd.notna(g) and float(g) >= MIN_BASE and pd.notna(p) else None
                           for p, g in zip(u["model_placed"], u["model_graduates"])]
    u["quarantined"] = u["rows_quarantined"].map(publishable_count)
    return u


def region_graduates(con, year: int) -> pd.DataFrame:
    return con.execute("""SELECT u.region, sum(g.graduates) AS graduates FROM marts.graduates g
                          JOIN ref.universities u USING (university_code) WHERE g.academic_year = ? GROUP BY ALL""",
                       [year]).df()


def region_engineers(con) -> pd.DataFrame:
    return con.execute("""SELECT region, sum(engineers) AS engineers FROM marts.model_universities
                          WHERE scenario = 'baseline' GROUP BY ALL""").df()


# Rows of loaded (current) files only: a rejected or superseded file's rows are not quarantined data.
_CURRENT_QUARANTINE = "ops.quarantine q JOIN ops.manifest m USING (file_id) WHERE m.status = 'loaded'"


def quarantine_by_rule(con) -> pd.DataFrame:
    return con.execute(f"""SELECT q.rule_id, any_value(q.message_en) AS message_en, any_value(q.message_vi) AS message_vi,
                                  count(DISTINCT (q.file_id, q.line)) AS rows_quarantined,
                                  min(q.term) AS first_term, max(q.term) AS last_term
                           FROM {_CURRENT_QUARANTINE}
                           GROUP BY q.rule_id ORDER BY rows_quarantined DESC""").df()


def rows_quarantined(con) -> int:
    return con.execute(f"SELECT count(DISTINCT (q.file_id, q.line)) FROM {_CURRENT_QUARANTINE}").fetchone()[0] or 0
