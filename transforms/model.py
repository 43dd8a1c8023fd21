"""The lab-to-fab model, first deterministic version (see docs/MODEL.md).

graduates per year by track and degree level  ->  six-month internship rounds limited by slots
->  completers  ->  practice-ready engineers per year  ->  cumulative against the 2030 targets.

Everything is read from the warehouse and written back to `marts.model_*`, so a result can
be reproduced from the warehouse alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from transforms.terms import parse_round, round_from_index, round_index, rounds_between

TRACKS = ["design", "fabrication", "packaging_testing", "equipment"]
LEVELS = ["bachelor", "engineer", "master", "doctor"]
DEGREE_YEARS = {"bachelor": 4, "engineer": 5, "master": 2, "doctor": 4}
TRACK_GROUP = {"design": "design", "fabrication": "fab_pkg_test", "packaging_testing": "fab_pkg_test",
               "equipment": "fab_pkg_test"}
LEVEL_GROUP = {"bachelor": "bachelor_engineer", "engineer": "bachelor_engineer", "master": "master", "doctor": "doctor"}


@dataclass(frozen=True)
class Assumptions:
    """Defaults with their sources; docs/MODEL.md explains each."""

    horizon_year: int = 2030
    application_rate: float = 0.6        # share of eligible graduates who apply (scenario input)
    rounds_eligible: int = 4             # a graduate stays eligible for 4 rounds (two years), then ages out
    prior_completion: tuple[float, float] = (94.4, 5.6)   # nano-infrastructure network: 94.4% completion
    prior_conversion: tuple[float, float] = (62.0, 18.0)  # NNFC six-month programme: 62 of 80 employed
    conversion_without_practice: float = 0.25  # graduates entering the industry without practice (assumption)
    intake_growth_bounds: tuple[float, float] = (-0.10, 0.20)


def _beta_mean(successes: float, trials: float, prior: tuple[float, float]) -> float:
    """Posterior mean of a rate with a Beta prior: published figures weigh in as pseudo-counts."""
    a, b = prior
    return (a + successes) / (a + b + trials)


def load_inputs(con) -> dict[str, pd.DataFrame]:
    q = lambda sql: con.execute(sql).df()  # noqa: E731
    return {
        "active": q("""
            SELECT e.term, p.track, e.degree_level, e.study_year, count(*) AS students
            FROM staging.enrollment e JOIN ref.programmes p USING (programme_code)
            WHERE e.status IN ('studying', 'on_leave') GROUP BY ALL"""),
        "graduates": q("SELECT academic_year, track, degree_level, sum(graduates) AS graduates FROM marts.graduates GROUP BY ALL"),
        "progression": q("""
            SELECT track, degree_level, to_status, sum(students) AS students FROM marts.progression
            WHERE to_status <> 'not_reported' OR from_status = 'studying' GROUP BY ALL"""),
        "placements": q("SELECT round, track, sum(placed) AS placed, sum(completed) AS completed, "
                        "sum(semiconductor_jobs) AS jobs FROM marts.placements_by_round GROUP BY ALL"),
        "slots": q("SELECT round, track, sum(slots) AS slots FROM ref.host_slots GROUP BY ALL"),
        "targets": q("SELECT * FROM ref.targets"),
    }


def run_model(inputs: dict[str, pd.DataFrame], a: Assumptions = Assumptions()) -> dict[str, pd.DataFrame]:
    active = inputs["active"]
    last_term = active["term"].max()
    last_year = int(last_term[:4])
    params = _parameters(inputs, a)
    grads = _graduates(inputs, active, last_term, last_year, params, a)
    rounds, engineers = _rounds(grads, inputs, params, a, last_year)
    headline = _headline(engineers, inputs["targets"], a)
    param_rows = pd.DataFrame(
        [(k, float(v), s) for k, (v, s) in params.items() if not isinstance(v, dict)]
        + [(f"{k}.{t}", float(x), s) for k, (v, s) in params.items() if isinstance(v, dict) for t, x in v.items()]
        + [(k, float(v) if np.isscalar(v) else np.nan, "assumption") for k, v in asdict(a).items() if np.isscalar(v)],
        columns=["name", "value", "source"])
    return {"model_graduates": grads, "model_rounds": rounds, "model_engineers": engineers,
            "model_headline": headline, "model_parameters": param_rows}


def _parameters(inputs, a: Assumptions) -> dict[str, tuple]:
    prog = inputs["progression"]
    by_track = prog.pivot_table(index="track", columns="to_status", values="students", aggfunc="sum", fill_value=0)
    survival = {}
    for track in TRACKS:
        row = by_track.loc[track] if track in by_track.index else pd.Series(dtype=float)
        left = float(row.get("dropped_out", 0) + row.get("transferred", 0))
        stayed = float(row.get("studying", 0) + row.get("on_leave", 0) + row.get("graduated", 0))
        per_term = stayed / (stayed + left) if stayed + left else 0.97
        survival[track] = per_term ** 2  # two terms a year
    pl = inputs["placements"]
    placed, completed, jobs = pl["placed"].sum(), pl["completed"].sum(), pl["jobs"].sum()
    return {
        "annual_survival": (survival, "estimated: panel of students across consecutive terms"),
        "completion_rate": (_beta_mean(completed, placed, a.prior_completion),
                            f"Beta prior (nano-infrastructure network 94.4%) updated with {int(placed)} placements"),
        "conversion_rate": (_beta_mean(jobs, completed, a.prior_conversion),
                            f"Beta prior (NNFC 62 of 80) updated with {int(completed)} completions"),
    }


def _graduates(inputs, active, last_term, last_year, params, a: Assumptions) -> pd.DataFrame:
    """Observed graduates by academic year, then projected ones from students in the pipeline."""
    rows = [(int(r.academic_year) + 1, r.track, r.degree_level, float(r.graduates), "observed")
            for r in inputs["graduates"].itertuples() if r.track in TRACKS]
    now = active[active["term"] == last_term]
    survival = params["annual_survival"][0]
    spring = last_term.endswith("-2")  # in a spring term, the year's graduates are already reported
    for r in now.itertuples():
        if r.track not in TRACKS:
            continue
        length = DEGREE_YEARS.get(r.degree_level, 4)
        # Active in a spring term: the year's graduates are already reported, so even a
        # final-year student still studying finishes a year later at the earliest.
        remaining = max(length - int(r.study_year), 1 if spring else 0)
        grad_year = last_year + 1 + remaining
        if grad_year <= a.horizon_year:
            rows.append((grad_year, r.track, r.degree_level, r.students * survival[r.track] ** remaining, "projected"))
    # Intakes beyond the last observed year: the recent trend of first-year numbers.
    first_years = active[active["study_year"] == 1].copy()
    first_years["year"] = first_years["term"].str[:4].astype(int)
    intake = first_years[first_years["term"].str.endswith("-1")].groupby(["year", "track", "degree_level"])["students"].sum()
    for (track, level), series in intake.groupby(level=[1, 2]):
        series = series.droplevel([1, 2]).sort_index()
        if track not in TRACKS or len(series) == 0:
            continue
        growth = (series.iloc[-1] / series.iloc[0]) ** (1 / max(len(series) - 1, 1)) - 1 if series.iloc[0] > 0 else 0.0
        growth = float(np.clip(growth, *a.intake_growth_bounds))
        for k in range(1, a.horizon_year - last_year + 1):
            grad_year = last_year + k + DEGREE_YEARS[level]
            if grad_year <= a.horizon_year:
                n = series.iloc[-1] * (1 + growth) ** k * survival[track] ** DEGREE_YEARS[level]
                rows.append((grad_year, track, level, n, "projected_intake"))
    out = pd.DataFrame(rows, columns=["graduation_year", "track", "degree_level", "graduates", "basis"])
    return out.groupby(["graduation_year", "track", "degree_level", "basis"], as_index=False)["graduates"].sum()


def _rounds(grads: pd.DataFrame, inputs, params, a: Assumptions, last_year: int):
    """Six-month rounds: graduates of June Y join the pool at round YH2 and stay eligible
    for `rounds_eligible` rounds; each round, slots per track go to applicants in proportion
    to the pool's degree levels. Observed rounds use the placements actually made."""
    slots = inputs["slots"].set_index(["round", "track"])["slots"]
    observed = inputs["placements"].set_index(["round", "track"])
    first = min([f"{int(grads['graduation_year'].min())}H2"] + list(slots.index.get_level_values(0)))
    all_rounds = rounds_between(first, f"{a.horizon_year}H2")
    completion, conversion = params["completion_rate"][0], params["conversion_rate"][0]
    pool = {}  # (track, level) -> array of eligible graduates by rounds remaining
    round_rows, eng_rows = [], []
    for rnd in all_rounds:
        year, half = parse_round(rnd)
        for track in TRACKS:
            for level in LEVELS:
                cohort = pool.setdefault((track, level), np.zeros(a.rounds_eligible))
                if half == 2:
                    new = grads[(grads.graduation_year == year) & (grads.track == track) & (grads.degree_level == level)]
                    cohort[-1] += new["graduates"].sum()
            applicants = {lv: pool[(track, lv)].sum() * a.application_rate for lv in LEVELS}
            demand = sum(applicants.values())
            offered = float(slots.get((rnd, track), 0.0))
            if (rnd, track) in observed.index:
                placed_total = float(observed.loc[(rnd, track), "placed"])
                basis = "observed"
            else:
                placed_total = min(demand, offered)
                basis = "projected"
            completed_total = 0.0
            for lv in LEVELS:
                share = applicants[lv] / demand if demand else 0.0
                placed = min(placed_total * share, pool[(track, lv)].sum())
                _take(pool[(track, lv)], placed)
                done = placed * completion
                completed_total += done
                eng_rows.append((year, track, lv, done * conversion, 0.0))
            # graduates who age out unplaced after this round
            for lv in LEVELS:
                aged = pool[(track, lv)][0]
                eng_rows.append((year, track, lv, 0.0, aged * a.conversion_without_practice))
                pool[(track, lv)] = np.append(pool[(track, lv)][1:], 0.0)
            round_rows.append((rnd, track, basis, demand / a.application_rate if a.application_rate else 0.0,
                               demand, offered, placed_total, completed_total,
                               max(demand - offered, 0.0), max(offered - placed_total, 0.0)))
    # Graduates still waiting for a slot at the horizon enter the industry without practice.
    for (track, lv), cohort in pool.items():
        eng_rows.append((a.horizon_year, track, lv, 0.0, cohort.sum() * a.conversion_without_practice))
    rounds = pd.DataFrame(round_rows, columns=["round", "track", "basis", "eligible", "applicants", "slots",
                                               "placed", "completed", "unmet_demand", "unused_slots"])
    eng = pd.DataFrame(eng_rows, columns=["year", "track", "degree_level", "practice_ready", "without_practice"])
    eng = eng.groupby(["year", "track", "degree_level"], as_index=False).sum()
    eng["engineers"] = eng["practice_ready"] + eng["without_practice"]
    eng = eng.sort_values(["track", "degree_level", "year"])
    eng["cumulative"] = eng.groupby(["track", "degree_level"])["engineers"].cumsum()
    eng["cumulative_practice_ready"] = eng.groupby(["track", "degree_level"])["practice_ready"].cumsum()
    return rounds, eng.reset_index(drop=True)


def _take(cohort: np.ndarray, n: float) -> None:
    """Place the longest-waiting graduates first."""
    for i in range(len(cohort)):
        step = min(cohort[i], n)
        cohort[i] -= step
        n -= step
        if n <= 0:
            break


def _headline(eng: pd.DataFrame, targets: pd.DataFrame, a: Assumptions) -> pd.DataFrame:
    by = eng[eng.year <= a.horizon_year]
    totals = {("total", "all"): by["engineers"].sum()}
    for g, part in by.groupby(by["track"].map(TRACK_GROUP)):
        totals[("track_group", g)] = part["engineers"].sum()
    for g, part in by.groupby(by["degree_level"].map(LEVEL_GROUP)):
        totals[("degree_level", g)] = part["engineers"].sum()
    practice = by["practice_ready"].sum()
    rows = []
    for (dim, cat), value in totals.items():
        t = targets[(targets.dimension == dim) & (targets.category == cat) & (targets.target_year == a.horizon_year)]
        target = float(t["target"].iloc[0]) if len(t) else np.nan
        rows.append((dim, cat, value, target, target - value if target == target else np.nan))
    out = pd.DataFrame(rows, columns=["dimension", "category", "engineers_by_horizon", "target", "gap"])
    out["practice_ready_share"] = practice / totals[("total", "all")] if totals[("total", "all")] else 0.0
    return out


def bottlenecks(rounds: pd.DataFrame) -> pd.DataFrame:
    """Per track: in what share of projected rounds demand exceeds slots, and so what binds."""
    proj = rounds[rounds.basis == "projected"]
    g = proj.groupby("track").agg(rounds=("round", "count"),
                                  rounds_slot_bound=("unmet_demand", lambda s: int((s > 0).sum())),
                                  unmet_demand=("unmet_demand", "sum"), unused_slots=("unused_slots", "sum"))
    g["binding"] = np.where(g["rounds_slot_bound"] * 2 >= g["rounds"], "slots", "graduates")
    return g.reset_index()


def write_outputs(con, outputs: dict[str, pd.DataFrame]) -> None:
    outputs = dict(outputs, model_bottleneck=bottlenecks(outputs["model_rounds"]))
    for name, frame in outputs.items():
        con.register("model_out", frame)
        con.execute(f"CREATE OR REPLACE TABLE marts.{name} AS SELECT * FROM model_out")
        con.unregister("model_out")
