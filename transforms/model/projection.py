"""The lab-to-fab model: from enrolled students to practice-ready engineers, with its uncertainty.

    warehouse --load_panel/calibrate--> posteriors --draw_parameters--> D Monte Carlo draws
    --project_cohorts--> graduates by cell and term --simulate_rounds (per scenario)--> placements,
    completions, practice-ready engineers and engineers without practice by round
    --> marts.model_* (P10/P50/P90, probability of meeting each 2030 target), capacity solution,
    marginal engineers per slot, backtest.

docs/MODEL.md states the equations, assumptions, defaults with sources, and limits. Everything is
read from the warehouse and the scenario files and written back to `marts.model_*`: the same
warehouse, scenario files and seed give identical marts.

Command line (on a copy of a warehouse; never on the one a pipeline run is writing):
    python -m transforms.model.projection WAREHOUSE.duckdb [--scenario more_slots ...] [--draws 1000] [--seed N] [--write]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from transforms.model.calibrate import (LEVEL_GROUP, LEVELS, TRACK_GROUP, TRACKS, Assumptions, Calibration, Draws,
                                  EnrollmentRows, calibrate, codes, draw_parameters, load_panels)
from transforms.model.scenarios import Scenario, apply_changes, demo_scale, find_scenarios, scenario_dir  # noqa: F401
from transforms.model import measures as ms
from transforms.model.persons import PersonsWindows
from transforms.model.simulate import (RoundsSetup, per_entrant, project_cohorts, rounds_prefix,
                                      simulate_rounds)
from transforms.vocabulary import round_from_index, round_index, term_from_index, term_index
from transforms.warehouse.db import latest_term

DEFAULT_DRAWS = 1000
BACKTEST_BESIDE_ROWS = 500_000   # enrollment rows the model reads from which the backtest runs in its own thread
DEFAULT_SEED = 20300101
PROBABILITIES = (0.5, 0.8)
# Draws the marginal analysis runs on (the first ones; see marginal_engineers).
MARGINAL_DRAWS = 100
# Draws the capacity solvers find each draw's threshold on (the first ones; see _group_thresholds).
SOLVE_DRAWS = 400
QUANTILES = (0.1, 0.5, 0.9)
MARTS = ("model_headline", "model_engineers", "model_progress", "model_rounds", "model_bottleneck",
         "model_universities", "model_graduates", "model_cohorts", "model_capacity_solution", "model_marginal",
         "model_backtest", "model_parameters", "model_scenarios", "model_measures", "model_trained_scope",
         "model_practice_capacity", "model_milestones", "model_budget", "model_budget_mix")
# Assumptions that change the calibration or the cohort projection (the rest only change the rounds).
COHORT_FIELDS = ("lost_as_exit", "exit_scale", "intake_mode", "intake_growth", "intake_trend_years",
                 "intake_growth_bounds", "completion_prior", "conversion_prior", "horizon_year", "final_year_rounds",
                 "trained_from", "flow_noise")


def q3(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """P10, P50, P90 along `axis` (first axis of the result)."""
    return np.quantile(x, QUANTILES, axis=axis)


# ----------------------------------------------------------------------------------------------
# Preparation: calibration, draws, cohorts (shared by scenarios with the same cohort assumptions)
# ----------------------------------------------------------------------------------------------

@dataclass
class Prepared:
    cal: Calibration
    a: Assumptions
    draws: Draws
    rounds: list[str]              # consecutive round codes simulated
    r0: int                        # round index of rounds[0]
    grads_in: np.ndarray           # [D, R, K, L] graduates entering the pool each round
    grads_uk: np.ndarray           # [R, D, UK] entrants per university and track (float32; by round, as read)
    uk_all: pd.DataFrame           # u, track, k, j (column of grads_uk)
    observed_rounds: dict          # position -> observed arrays
    first_projected: int           # position of the first projected round
    cohorts: dict                  # name -> [D, n_terms, K * L]: students, graduates, exits, intake per term
    n_terms: int                   # terms projected past the last observed one


def prepare(cal: Calibration, a: Assumptions, draws_n: int, seed: int) -> Prepared:
    """Draw the parameters and project the cohorts; build the graduates entering each round."""
    draws = draw_parameters(cal, a, draws_n, seed)
    panel = cal.panel
    last_ti = cal.last_ti
    r_last = round_index(f"{a.horizon_year}H2")
    lead = int(a.final_year_rounds)    # final-year students enter the pool `lead` rounds before graduating
    # Project as far as anyone can still join a round by the horizon: with lead > 0 that includes
    # students graduating after it, who compete for slots but are not counted (not trained by then).
    n_terms = max(r_last - 2 + lead - last_ti, 0)
    cohort = project_cohorts(cal, draws, n_terms, summary=True)
    cohort_intake = cohort["intake"]
    obs = cal.observed_rounds
    obs_rounds = sorted(obs["round"].unique())
    slot_rounds = sorted(panel.host_slots["round"].unique())
    first_interest = min([round_index(f"{a.count_from_year}H1")] + [round_index(r) for r in obs_rounds + slot_rounds])
    first_ti = int(panel.graduates["ti"].min()) if len(panel.graduates) else last_ti
    ti_from = trained_from_term(a)
    r0 = max(first_ti + 2 - lead, min(first_interest - (a.rounds_eligible - 1), ti_from + 2 - lead))
    r0 = min(r0, r_last)
    rounds = [round_from_index(i) for i in range(r0, r_last + 1)]
    R, K, L = len(rounds), len(TRACKS), len(LEVELS)
    D = draws.n
    # Graduates entering the pool at round r finished in term r - 2 (DATA_CONTRACT).
    grads_in = np.zeros((D, R, K, L))
    go = cal.grads_obs
    go = go[go["track"].isin(TRACKS) & go["level"].isin(LEVELS)]
    pos = go["ti"].to_numpy(np.int64) + 2 - lead - r0
    ok = (pos >= 0) & (pos < R)
    obs_in = np.zeros((R, K, L))
    k_obs, l_obs = codes(go["track"], TRACKS), codes(go["level"], LEVELS)
    np.add.at(obs_in, (pos[ok], k_obs[ok], l_obs[ok]), go["n"].to_numpy(float)[ok])
    grads_in += obs_in[None]
    cells = cal.cells
    kl = cells["k"].to_numpy(np.int64) * L + cells["l"].to_numpy(np.int64)
    ind = np.zeros((len(cells), K * L), dtype=np.float32)
    ind[np.arange(len(cells)), kl] = 1
    g = cohort["graduates"]                                           # [D, C, n_terms]
    # Term-by-term graduates by track and degree level [D, n_terms, K * L] (also for marts.model_cohorts).
    gkl = np.stack([g[:, :, step] @ ind for step in range(n_terms)], axis=1) if n_terms else np.zeros((D, 0, K * L))
    for step in range(n_terms):
        p = last_ti + 1 + step + 2 - lead - r0
        if 0 <= p < R:
            grads_in[:, p] += gkl[:, step].reshape(D, K, L)
    # Entrants per university and track (all universities with graduates, observed or projected).
    uk_all = pd.concat([go[["u", "track"]], cells[["u", "track"]]]).drop_duplicates()
    uk_all = uk_all.sort_values(["u", "track"]).reset_index(drop=True)
    uk_all["k"] = codes(uk_all["track"], TRACKS)
    uk_all["j"] = np.arange(len(uk_all))
    UK = len(uk_all)
    grads_uk = np.zeros((R, D, UK), dtype=np.float32)
    jo = go.merge(uk_all, on=["u", "track"])
    pos = jo["ti"].to_numpy(np.int64) + 2 - lead - r0
    ok = (pos >= 0) & (pos < R)
    obs_uk = np.zeros((R, UK), dtype=np.float32)
    np.add.at(obs_uk, (pos[ok], jo["j"].to_numpy(np.int64)[ok]), jo["n"].to_numpy(np.float32)[ok])
    grads_uk += obs_uk[:, None]
    cj = cells.merge(uk_all[["u", "track", "j"]], on=["u", "track"], how="left")["j"].to_numpy(np.int64)
    order = np.argsort(cj, kind="stable")
    bounds = np.r_[0, np.nonzero(np.diff(cj[order]))[0] + 1]
    js = cj[order][bounds] if len(cj) else cj
    for step in range(n_terms):
        p = last_ti + 1 + step + 2 - lead - r0
        if 0 <= p < R and len(cj):   # no cells: nobody on the rolls to project, observed graduates only
            grads_uk[p][:, js] += np.add.reduceat(g[:, order, step], bounds, axis=1)
    observed = {}
    for r in obs_rounds:
        p = round_index(r) - r0
        if not 0 <= p < R:
            continue
        part = obs[obs["round"] == r]
        arr = {n: np.zeros(K) for n in ("placed", "completed", "withdrew", "jobs_yes", "jobs_no", "unknown")}
        for row in part.itertuples():
            for n in arr:
                arr[n][row.k] += float(getattr(row, n))
        observed[p] = arr
    first_projected = (max(observed) + 1) if observed else 0
    # Term-by-term summary of the projection by track and degree level, for marts.model_cohorts.
    ikl = np.stack([cohort_intake[:, :, step] @ ind for step in range(n_terms)], axis=1) if n_terms else gkl
    cohorts = {"students": cohort.get("stock_kl"), "graduates": gkl, "exits": cohort.get("exits_kl"), "intake": ikl}
    return Prepared(cal=cal, a=a, draws=draws, rounds=rounds, r0=r0, grads_in=grads_in, grads_uk=grads_uk,
                    uk_all=uk_all, observed_rounds=observed, first_projected=min(first_projected, R),
                    cohorts=cohorts, n_terms=n_terms)


def trained_from_term(a: Assumptions) -> int:
    """Index of the first term whose graduates count toward T: a term's graduates finish in January
    (first semester) or June (second) of the year after the term's academic year starts."""
    y, m = (int(x) for x in str(a.trained_from).split("-")[:2])
    ti = (y - 1) * 2                       # term (y-1)-1: graduates in January of year y
    while (ti // 2 + 1) * 12 + (1 if ti % 2 == 0 else 6) < y * 12 + m:
        ti += 1
    return ti


def horizon_term(a: Assumptions) -> int:
    """Index of the last term whose graduates finish by the end of the horizon year (June of it)."""
    return (a.horizon_year - 1) * 2 + 1


def rounds_setup(prep: Prepared, scenario: Scenario, a: Assumptions, scale: float = 1.0) -> RoundsSetup:
    """scale: the warehouse's share of national size (the demo's 1/N): the slot table is national, so it
    is scaled to compare like with like (docs/MODEL.md, "Scale")."""
    panel = prep.cal.panel
    slots, hosts = apply_changes(scenario, panel.host_slots, panel.hosts, prep.rounds)
    host_codes = list(hosts["host_code"])
    H, K, R = len(host_codes), len(TRACKS), len(prep.rounds)
    arr = np.zeros((R, H, K))
    s = slots[slots["round"].isin(prep.rounds) & slots["host_code"].isin(host_codes)]
    np.add.at(arr, (s["round"].map({r: i for i, r in enumerate(prep.rounds)}).to_numpy(np.int64),
                    s["host_code"].map({h: i for i, h in enumerate(host_codes)}).to_numpy(np.int64),
                    s["track"].map(TRACKS.index).to_numpy(np.int64)), s["slots"].to_numpy(float))
    accepts = np.zeros((H, K), dtype=bool)
    for i, t in enumerate(hosts["tracks"].fillna("")):
        for tr in str(t).split("|"):
            if tr in TRACKS:
                accepts[i, TRACKS.index(tr)] = True
    factor = np.array([float((a.host_type_conversion or {}).get(ht, 1.0)) for ht in hosts["host_type"]])
    years = np.array([int(r[:4]) for r in prep.rounds])
    # A round ends in June (H1) or December (H2); its completers' jobs count `conversion_lag_months` later.
    ends = np.array([int(r[:4]) * 12 + (6 if r.endswith("H1") else 12) for r in prep.rounds])
    converts = ends + int(a.conversion_lag_months) <= a.horizon_year * 12 + 12
    return RoundsSetup(rounds=prep.rounds, year=years, slots=arr * float(scale), accepts=accepts,
                       host_factor=factor, observed=prep.observed_rounds,
                       eligible_rounds=int(a.rounds_eligible) + int(a.final_year_rounds),
                       count_from_year=a.count_from_year, horizon_year=a.horizon_year, host_codes=host_codes,
                       converts_by_horizon=converts)


# ----------------------------------------------------------------------------------------------
# Metrics of a run
# ----------------------------------------------------------------------------------------------

def engineers_by_year(setup: RoundsSetup, res) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Practice-ready and without-practice engineers per draw, counting year, track and level."""
    years = list(range(setup.count_from_year, setup.horizon_year + 1))
    D, R, K, L = res.practice_ready.shape
    pr = np.zeros((D, len(years), K, L))
    wp = np.zeros((D, len(years), K, L))
    for i, y in enumerate(setup.year):
        if setup.count_from_year <= y <= setup.horizon_year:
            pr[:, y - setup.count_from_year] += res.practice_ready[:, i]
            wp[:, y - setup.count_from_year] += res.without_practice[:, i]
    return pr, wp, years


def group_totals(pr: np.ndarray, wp: np.ndarray) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(dimension, category) -> (engineers, practice_ready) per draw, summed over the counting window."""
    e_kl = (pr + wp).sum(axis=1)          # [D, K, L]
    p_kl = pr.sum(axis=1)
    out = {("total", "all"): (e_kl.sum(axis=(1, 2)), p_kl.sum(axis=(1, 2)))}
    for g in ("design", "fab_pkg_test"):
        ks = [k for k, t in enumerate(TRACKS) if TRACK_GROUP[t] == g]
        out[("track_group", g)] = (e_kl[:, ks].sum(axis=(1, 2)), p_kl[:, ks].sum(axis=(1, 2)))
    for g in ("bachelor_engineer", "master", "doctor"):
        ls = [l for l, v in enumerate(LEVELS) if LEVEL_GROUP[v] == g]
        out[("degree_level", g)] = (e_kl[:, :, ls].sum(axis=(1, 2)), p_kl[:, :, ls].sum(axis=(1, 2)))
    return out


def _targets(cal: Calibration, a: Assumptions) -> dict[tuple[str, str], float]:
    t = cal.panel.targets
    t = t[t["target_year"].astype(int) == a.horizon_year]
    return {(r.dimension, r.category): float(r.target) for r in t.itertuples()}


# ----------------------------------------------------------------------------------------------
# Decisions: capacity that meets the targets, marginal engineers per slot
# ----------------------------------------------------------------------------------------------

def decision_start(prep: Prepared, a: Assumptions) -> int:
    """Position of the first round extra slots can go to: `decision_from_round`, else the round after
    the first projected one (that one is already under way when its data arrive)."""
    if a.decision_from_round:
        return max(round_index(a.decision_from_round) - prep.r0, prep.first_projected)
    return min(prep.first_projected + 1, len(prep.rounds) - 1)


def _metric(setup, prep, draws, extra, group: str, measure: str, prefix=None) -> np.ndarray:
    res = simulate_rounds(setup, prep.grads_in, draws, extra, prefix=prefix, only="engineers")
    pr, wp, _ = engineers_by_year(setup, res)
    e, p = group_totals(pr, wp)[("track_group", group) if group != "all" else ("total", "all")]
    return e if measure == "engineers" else p


def _thresholds(f, target: float, hi_cap: float, D: int, tol: float = 0.5, max_iter: int = 60, f_lo=None):
    """Per draw, the smallest x >= 0 with f(x)[d] >= target (0 if already met, inf if not even at
    `hi_cap`), for f non-decreasing in x in every draw. Vectorised regula falsi with the Illinois
    modification (bisection steps when it stalls) to a bracket narrower than `tol` slots.
    f(x, rows): f at x [D] on the draws `rows` (None: all), one value per row. Each iteration simulates only
    the draws still open (a draw's result does not depend on the others simulated with it), so the
    iterates are the same as simulating every draw, at a fraction of the cost once most have converged.
    f_lo: f(0) when the caller has it (the run without extra slots), else simulated."""
    lo, hi = np.zeros(D), np.full(D, hi_cap)
    f_lo, f_hi = (f(lo, None) if f_lo is None else np.array(f_lo, dtype=float)), f(hi, None)
    f0, f_cap = f_lo.copy(), f_hi.copy()
    thr = np.where(f_lo >= target, 0.0, np.where(f_hi >= target, np.nan, np.inf))
    todo = np.isnan(thr)
    g_lo, g_hi = f_lo - target, f_hi - target      # residuals (Illinois halves the stale one)
    last = np.zeros(D, dtype=int)
    for it in range(max_iter):
        todo &= (hi - lo) > tol
        if not todo.any():
            break
        denom = np.where(g_hi - g_lo > 0, g_hi - g_lo, 1.0)
        x = hi - g_hi * (hi - lo) / denom
        mid = (lo + hi) / 2
        x = np.where((g_hi - g_lo > 0) & (it % 4 != 3), np.clip(x, lo + 1e-3 * (hi - lo), hi - 1e-3 * (hi - lo)), mid)
        rows = np.flatnonzero(todo)
        fx = np.zeros(D)                               # the closed draws' values are never used
        fx[rows] = f(np.where(todo, x, hi), rows)
        ok = fx >= target
        upd_hi, upd_lo = todo & ok, todo & ~ok
        g_lo = np.where(upd_hi & (last == 1), g_lo / 2, g_lo)
        g_hi = np.where(upd_lo & (last == -1), g_hi / 2, g_hi)
        hi, g_hi = np.where(upd_hi, x, hi), np.where(upd_hi, fx - target, g_hi)
        lo, g_lo = np.where(upd_lo, x, lo), np.where(upd_lo, fx - target, g_lo)
        last = np.where(upd_hi, 1, np.where(upd_lo, -1, last))
    return np.where(np.isnan(thr), hi, thr), f0, f_cap


def _group_thresholds(setup: RoundsSetup, draws: Draws, grads_in: np.ndarray, groups: list, span: np.ndarray,
                      hi_cap: float, metric, only: str | None = None, prefix=None, base: dict | None = None) -> list:
    """`_thresholds` for several track groups at once: the groups' probes are stacked along the draw axis,
    so each iteration is ONE simulation for all of them (the round loop costs the same for 1 or 4 blocks).
    groups: (name, share [K], target: number or [D]); metric(res, rows) -> {group: per-row values};
    The thresholds are found on the first `SOLVE_DRAWS` draws (their quantile is the answer; the callers
    report the probability the answer achieves on every draw); returns (thr, f0, f_cap) per group, one
    value per draw solved on. only: the outputs `metric` reads (`simulate_rounds`); prefix: `rounds_prefix`
    of `draws` and `grads_in` (all of them), where every candidate resumes; base: {group: metric without
    extra slots on every draw} (the scenario's run), which is f(0)."""
    D, G = min(draws.n, SOLVE_DRAWS), len(groups)
    if not G:
        return []
    draws = draws.take(np.arange(D)) if D < draws.n else draws
    grads_in = grads_in[:D] if grads_in.shape[0] > 1 else grads_in
    idx = np.tile(np.arange(D), G)
    draws_t = draws.take(idx)
    grads_t = grads_in[idx] if grads_in.shape[0] > 1 else grads_in
    shares = np.repeat(np.stack([g[1] for g in groups]), D, axis=0)            # [G * D, K]
    target = np.concatenate([np.broadcast_to(np.asarray(g[2], float)[:D] if np.ndim(g[2]) else float(g[2]), D)
                             for g in groups])

    def f(x, rows=None):
        extra = x[:, None, None] * span[None, :, None] * shares[:, None, :]
        if rows is None:
            res = simulate_rounds(setup, grads_t, draws_t, extra, prefix=prefix, rows=idx, only=only)
            vals = metric(res, draws_t, idx)
            return np.concatenate([vals[name][j * D:(j + 1) * D] for j, (name, _, _) in enumerate(groups)])
        draws_r = draws_t.take(rows)
        res = simulate_rounds(setup, grads_t[rows] if grads_t.shape[0] > 1 else grads_t, draws_r, extra[rows],
                              prefix=prefix, rows=idx[rows], only=only)
        vals = metric(res, draws_r, idx[rows])
        out, group_of = np.empty(len(rows)), rows // D
        for j, (name, _, _) in enumerate(groups):
            out[group_of == j] = vals[name][group_of == j]
        return out

    f_lo = None if base is None else np.concatenate([np.asarray(base[name], float)[:D] for name, _, _ in groups])
    thr, f0, f_cap = _thresholds(f, target, hi_cap, G * D, f_lo=f_lo)
    return [(thr[j * D:(j + 1) * D], f0[j * D:(j + 1) * D], f_cap[j * D:(j + 1) * D]) for j in range(G)]


def _decision_rounds(prep: Prepared, setup: RoundsSetup, base_res, a: Assumptions):
    """What both capacity questions share: the first decision round, the rounds extra slots go to
    (`span`: never a round outside the counting window; `first`, the reported from_round), the
    baseline's median unmet demand by track and its slots from the first decision round."""
    start = decision_start(prep, a)
    span = np.zeros(len(prep.rounds))
    span[start:] = 1.0
    span[~setup.window] = 0.0
    first = int(np.argmax(span > 0)) if span.any() else start
    unmet = np.median(base_res.per_round["unmet_demand"][:, start:], axis=0).sum(axis=0)   # [K]
    base_slots = setup.slots[start:].sum(axis=(0, 1))
    return start, span, first, unmet, base_slots


def solve_capacity(prep: Prepared, setup: RoundsSetup, base_res, targets: dict, a: Assumptions,
                   scenario: str = "baseline") -> pd.DataFrame:
    """The fewest extra slots per round, per track, that meet each track-group target with
    probability 0.5 and 0.8 (vectorised bisection of each draw's threshold; see docs/MODEL.md)."""
    draws = prep.draws
    D, R, K = draws.n, len(prep.rounds), len(TRACKS)
    start, span, first, unmet, base_slots = _decision_rounds(prep, setup, base_res, a)
    rows = []
    hi_cap = float(prep.grads_in.sum(axis=(2, 3)).max() * max(a.rounds_eligible, 1) * 2 + 10)
    todo = []
    for group in ("design", "fab_pkg_test"):
        ks = [k for k, t in enumerate(TRACKS) if TRACK_GROUP[t] == group]
        w = unmet[ks] if unmet[ks].sum() > 0 else base_slots[ks]
        share = np.zeros(K)
        share[ks] = w / w.sum() if w.sum() > 0 else 1 / len(ks)
        target = targets.get(("track_group", group))
        if target is not None:
            todo.append((group, share, target))

    def practice_ready(res, _draws, _idx):
        pr, wp, _ = engineers_by_year(setup, res)
        return {g: v[1] for (dim, g), v in group_totals(pr, wp).items() if dim == "track_group"}

    # Issue 15: the capacity question is asked of practice (P, `solve_practice_capacity`); "engineers"
    # rests on a judgment prior and is no longer solved for (it doubled the cost of a run).
    # The rounds before the first decision round are the same in every candidate: simulated once.
    pre = rounds_prefix(setup, prep.grads_in, draws, int(np.argmax(span > 0))) if span.any() else None
    pr0, wp0, _ = engineers_by_year(setup, base_res)
    base_p = {g: v[1] for (dim, g), v in group_totals(pr0, wp0).items() if dim == "track_group"}
    solved = _group_thresholds(setup, draws, prep.grads_in, todo, span, hi_cap, practice_ready, "engineers", pre,
                               base_p)
    for (group, share, target), (thr, _, f_hi) in zip(todo, solved):
        ks = [k for k, t in enumerate(TRACKS) if TRACK_GROUP[t] == group]
        f0 = base_p[group]                                                   # baseline on every draw
        for measure in ("practice_ready",):
            for p in PROBABILITIES:
                srt = np.sort(thr)
                x = srt[int(np.ceil(p * len(thr))) - 1]
                feasible = np.isfinite(x)
                per_track = np.ceil(share * x) if feasible else np.full(K, np.nan)
                achieved = np.nan
                if feasible:
                    ex = np.broadcast_to(per_track[None, None, :] * span[None, :, None], (1, R, K))
                    achieved = float((_metric(setup, prep, draws, ex, group, measure, pre) >= target).mean())
                else:
                    achieved = float(np.mean(f_hi >= target))
                n_rounds = int(span.sum())
                last = [i for i in range(R) if span[i] > 0][-1] if n_rounds else start
                change = ""
                if feasible and per_track[ks].sum() > 0:
                    slots_txt = ", ".join(f"{TRACKS[k]}: {per_track[k]:.0f}" for k in ks if per_track[k] > 0)
                    change = (f"add_host: {{host_code: EXTRA-{group.upper()}, host_type: company, "
                              f"from_round: {prep.rounds[first]}, to_round: {prep.rounds[last]}, "
                              f"slots: {{{slots_txt}}}}}")
                for k in ks:
                    rows.append((scenario, measure, group, TRACKS[k], p, target,
                                 float(per_track[k]) if feasible else np.nan,
                                 float(np.ceil(x)) if feasible else np.nan, prep.rounds[first], prep.rounds[last],
                                 n_rounds, float(per_track[k] * n_rounds) if feasible else np.nan,
                                 float(share[k]), bool(feasible), achieved, float(np.mean(f0 >= target)),
                                 float(np.median(f0)), float(np.median(f_hi)), change,
                                 "" if feasible else "not reachable with slots alone: even with every applicant "
                                 "placed in every round the target is met in too few draws"))
    return pd.DataFrame(rows, columns=[
        "scenario", "measure", "target_group", "track", "probability", "target", "extra_slots_per_round",
        "extra_slots_per_round_group", "from_round", "to_round", "rounds", "extra_slots_total", "track_share",
        "feasible", "achieved_probability", "baseline_probability", "baseline_p50", "unlimited_slots_p50",
        "scenario_change", "note"])


def marginal_engineers(prep: Prepared, setup: RoundsSetup, a: Assumptions, scenario: str = "baseline",
                       persons=None) -> pd.DataFrame:
    """Engineers (and practice-ready engineers) by the horizon gained per extra slot, per track and round;
    with `persons`, also practice-ready persons (P) and employed persons (E) per slot.

    Speed: every probe (one more slot in one round and track) and the base run go into ONE simulation,
    stacked along the draw axis, on the first `MARGINAL_DRAWS` draws (a per-slot mean and its P10-P90
    need far fewer draws than the targets' probabilities; docs/MODEL.md, "Performance")."""
    R, K = len(prep.rounds), len(TRACKS)
    Dm = min(prep.draws.n, MARGINAL_DRAWS)
    probes = [(i, k) for i in range(prep.first_projected, R) if setup.window[i] for k in range(K)]
    n = len(probes) + 1                                             # block 0: the base run
    idx = np.tile(np.arange(Dm), n)
    draws = prep.draws.take(idx)
    step = 1.0
    ex = np.zeros((n * Dm, R, K))
    for j, (i, k) in enumerate(probes, start=1):
        ex[j * Dm:(j + 1) * Dm, i, k] = step
    grads = prep.grads_in[idx]

    def blocks(x):                                                  # [n * Dm] -> [n, Dm]
        return x.reshape(n, Dm)

    # The rounds before the first probe are the same in every block: simulated once, on the Dm draws.
    first = prep.first_projected
    base_draws = prep.draws.take(np.arange(Dm))

    def pre(g):
        return rounds_prefix(setup, g[:Dm], base_draws, first) if probes else None

    res = simulate_rounds(setup, grads, draws, ex, prefix=pre(grads), rows=idx)
    pr, wp, _ = engineers_by_year(setup, res)
    e, p = blocks((pr + wp).sum(axis=(1, 2, 3))), blocks(pr.sum(axis=(1, 2, 3)))
    unmet = res.per_round["unmet_demand"][:Dm]
    PP = EE = None
    if persons is not None:
        sub = replace(prep, draws=draws, grads_in=grads)
        g_c = ms.counted_pool(grads, persons)
        m = ms.compute(sub, setup, simulate_rounds(setup, g_c, draws, ex, prefix=pre(g_c), rows=idx, only="entry"),
                       a, persons)
        PP, EE = blocks(m.P.sum(axis=(1, 2))), blocks(m.E.sum(axis=(1, 2)))
    rows = []
    for j, (i, k) in enumerate(probes, start=1):
        de, dp = (e[j] - e[0]) / step, (p[j] - p[0]) / step
        qe, qp = q3(de), q3(dp)
        binding = float(np.mean(unmet[:, i, k] > 1e-9))
        extra_cols = [np.nan] * 6
        if PP is not None:
            dP, dE = (PP[j] - PP[0]) / step, (EE[j] - EE[0]) / step
            qP, qE = q3(dP), q3(dE)
            extra_cols = [float(dP.mean()), float(qP[0]), float(qP[2]), float(dE.mean()), float(qE[0]),
                          float(qE[2])]
        rows.append((scenario, TRACKS[k], prep.rounds[i], float(de.mean()), *map(float, qe), float(dp.mean()),
                     *map(float, qp), binding, *extra_cols))
    return pd.DataFrame(rows, columns=[
        "scenario", "track", "round", "marginal_engineers_per_slot", "marginal_engineers_p10",
        "marginal_engineers_p50", "marginal_engineers_p90", "marginal_practice_ready_per_slot",
        "marginal_practice_ready_p10", "marginal_practice_ready_p50", "marginal_practice_ready_p90",
        "probability_slots_bind", "marginal_p_per_slot", "marginal_p_p10", "marginal_p_p90",
        "marginal_e_per_slot", "marginal_e_p10", "marginal_e_p90"])


def _cheapest_host_type(prep: Prepared, a: Assumptions, track: str, setup: RoundsSetup | None = None) -> tuple[str, float]:
    """The cheapest host type (cost_per_slot) among the types of the hosts that take the track and offer
    slots in the scenario (a planned host without slots, e.g. a domestic lab not yet open, is not a host)."""
    hosts = prep.cal.panel.hosts
    active = set(hosts["host_code"]) if setup is None else {
        h for h, n in zip(setup.host_codes, setup.slots.sum(axis=(0, 2))) if n > 0}
    types = {ht for code, ht, tr in zip(hosts["host_code"], hosts["host_type"], hosts["tracks"].fillna(""))
             if track in str(tr).split("|") and code in active}
    costs = {ht: float(c) for ht, c in (a.cost_per_slot or {}).items() if not types or ht in types}
    if not costs:
        return "company", float((a.cost_per_slot or {}).get("company", np.nan))
    ht = min(costs, key=costs.get)
    return ht, costs[ht]


def solve_practice_capacity(prep: Prepared, setup: RoundsSetup, base_res, a: Assumptions, persons,
                            scale: float = 1.0, scenario: str = "baseline") -> pd.DataFrame:
    """The capacity question asked of P: per track group, the fewest extra slots per round (split over
    its tracks by unmet demand, at the cheapest host type taking each track) that meet the P goal
    (`practice_goal`) with probability `goal_probability`; what it costs; whether the budget covers it;
    and P bought per slot and per unit of budget (docs/MODEL.md, "Decisions")."""
    draws = prep.draws
    D, R, K = draws.n, len(prep.rounds), len(TRACKS)
    start, span, first, unmet, base_slots = _decision_rounds(prep, setup, base_res, a)
    grads_c = ms.counted_pool(prep.grads_in, persons)
    m0 = ms.compute(prep, setup, base_res, a, persons)
    hi_cap = float(prep.grads_in.sum(axis=(2, 3)).max() * max(a.rounds_eligible, 1) * 2 + 10)
    p_goal = float(a.goal_probability)
    rows = []
    n_rounds = int(span.sum())
    last = [i for i in range(R) if span[i] > 0][-1] if n_rounds else start
    todo = []
    for group in ("design", "fab_pkg_test"):
        goal = ms.goal_for(a, m0.T, group)
        if goal is None:
            continue
        ks = [k for k, t in enumerate(TRACKS) if TRACK_GROUP[t] == group]
        w = unmet[ks] if unmet[ks].sum() > 0 else base_slots[ks]
        share = np.zeros(K)
        share[ks] = w / w.sum() if w.sum() > 0 else 1 / len(ks)
        todo.append((group, share, goal))

    def p_rows(res, draws_t, idx):
        sub = replace(prep, draws=draws_t, grads_in=prep.grads_in[idx])
        return {g: v for (dim, g), v in ms.groups(ms.compute(sub, setup, res, a, persons).P, levels=False).items()
                if dim == "track_group"}

    pre = rounds_prefix(setup, grads_c, draws, int(np.argmax(span > 0))) if span.any() else None
    base_P = {g: v for (dim, g), v in ms.groups(m0.P, levels=False).items() if dim == "track_group"}
    solved = _group_thresholds(setup, draws, grads_c, todo, span, hi_cap, p_rows, "entry", pre, base_P)
    for (group, share, goal), (thr, _, f_hi) in zip(todo, solved):
        ks = [k for k, t in enumerate(TRACKS) if TRACK_GROUP[t] == group]
        f0 = ms.groups(m0.P, levels=False)[("track_group", group)]          # baseline P on every draw
        goal_solved = np.asarray(goal)[:len(f_hi)] if np.ndim(goal) else goal

        def p_of(extra):
            res = simulate_rounds(setup, grads_c, draws, extra, prefix=pre, only="entry")
            return ms.groups(ms.compute(prep, setup, res, a, persons).P, levels=False)[("track_group", group)]

        x = np.sort(thr)[int(np.ceil(p_goal * len(thr))) - 1]
        feasible = bool(np.isfinite(x))
        per_track = np.ceil(share * x) if feasible else np.full(K, np.nan)
        if feasible:
            ex = per_track[None, None, :] * span[None, :, None]
            p_sol = p_of(ex)
            achieved = float(np.mean(p_sol >= goal))
            # Marginal P of one more slot per round on top of the solution (spread like it).
            p_more = p_of(ex + share[None, None, :] * span[None, :, None])
            marginal = float(np.mean(p_more - p_sol) / max(n_rounds, 1))
        else:
            p_sol, achieved, marginal = f_hi, float(np.mean(f_hi >= goal_solved)), np.nan
        for k in ks:
            ht, cost = _cheapest_host_type(prep, a, TRACKS[k], setup)
            slots_total = float(per_track[k] * n_rounds) if feasible else np.nan
            cost_total = slots_total * cost if feasible else np.nan
            national_cost = cost_total / scale if feasible else np.nan
            budget = a.budget
            rows.append((scenario, group, TRACKS[k], p_goal, float(np.median(goal)), float(np.median(f0)),
                         float(np.mean(f0 >= goal)), float(per_track[k]) if feasible else np.nan,
                         prep.rounds[first], prep.rounds[last], n_rounds, slots_total, ht, cost, cost_total,
                         national_cost, float(budget) if budget is not None else np.nan,
                         (bool(national_cost <= budget) if feasible else False) if budget is not None else None,
                         feasible, achieved, float(np.median(p_sol)), marginal,
                         marginal / cost * 1e6 if feasible and cost else np.nan, float(scale),
                         "" if feasible else "not reachable with slots alone: even with every applicant placed "
                         "the goal is met in too few draws"))
    out = pd.DataFrame(rows, columns=[
        "scenario", "target_group", "track", "probability", "goal_p50", "baseline_p_p50", "baseline_probability",
        "extra_slots_per_round", "from_round", "to_round", "rounds", "extra_slots_total", "host_type",
        "cost_per_slot", "cost_total", "cost_total_national", "budget", "within_budget", "feasible",
        "achieved_probability", "p_with_solution_p50", "marginal_p_per_slot", "p_per_million", "scale", "note"])
    # The budget covers the whole answer (both groups), not a track: compare the sum with it.
    whole = float(out["cost_total_national"].sum()) if len(out) and out["feasible"].all() else np.nan
    out["cost_all_groups_national"] = whole
    if a.budget is not None:
        out["within_budget"] = bool(whole <= float(a.budget)) if whole == whole else False
    return out


# ----------------------------------------------------------------------------------------------
# The cheapest mix of rounds, tracks and host types; the best P within a budget (issue 15)
# ----------------------------------------------------------------------------------------------

# Linearised values (P per dollar) within 1% of each other are a tie: those slots are bought together,
# evenly, rather than all in whichever round happens to be a hair ahead (docs/MODEL.md, "Decisions").
MIX_TIE = 0.01
MIX_COLUMNS = ["scenario", "answer", "target_group", "round", "track", "host_type", "slots", "slots_national",
               "cost_per_slot", "cost_national", "marginal_p", "p_per_million"]
BUDGET_COLUMNS = ["scenario", "answer", "target_group", "probability", "goal_p50", "baseline_p_p50",
                  "baseline_probability", "feasible", "slots_national", "cost_national", "budget", "within_budget",
                  "p_mean", "p_p10", "p_p50", "p_p90", "probability_meeting", "p_per_million_average",
                  "p_per_million_marginal", "scale", "note"]


def _host_types(prep: Prepared, a: Assumptions, track: str, setup: RoundsSetup | None = None) -> dict[str, float]:
    """Host type -> cost per slot, for the types of the hosts that take the track and offer slots in the
    scenario (a planned host without slots, e.g. a domestic lab not yet open, is not a host)."""
    hosts = prep.cal.panel.hosts
    active = set(hosts["host_code"]) if setup is None else {
        h for h, n in zip(setup.host_codes, setup.slots.sum(axis=(0, 2))) if n > 0}
    types = {ht for code, ht, tr in zip(hosts["host_code"], hosts["host_type"], hosts["tracks"].fillna(""))
             if track in str(tr).split("|") and code in active}
    return {ht: float(c) for ht, c in (a.cost_per_slot or {}).items() if ht in types}


@dataclass
class MixPath:
    """A monotone path of extra-slot mixes: at `z` slots bought (data scale) the mix is linear between the
    breakpoints. Segments are (round position, track, host type); each is bought in order of P per dollar,
    ties together and evenly, each up to its cap. More z never takes a slot away (so P never falls)."""
    segs: list                 # (i, k, host_type, P per slot, national cost of a data-scale slot, group, cap)
    z: np.ndarray              # [B] slots bought at each breakpoint
    mix: np.ndarray            # [B, S] slots of each segment at each breakpoint
    cost_nat: np.ndarray       # [S] national cost of one data-scale slot of each segment (cost / scale)
    onehot: np.ndarray         # [S, R * K]
    R: int
    K: int

    @property
    def z_max(self) -> float:
        return float(self.z[-1])

    def at(self, z) -> np.ndarray:
        """Slots per segment [n, S] at z slots bought (z: [n]; clipped to the path)."""
        z = np.clip(np.asarray(z, float), 0, self.z_max)
        if len(self.z) < 2:
            return np.zeros((len(z), len(self.segs)))
        j = np.clip(np.searchsorted(self.z, z, side="right") - 1, 0, len(self.z) - 2)
        w = (z - self.z[j]) / np.maximum(self.z[j + 1] - self.z[j], 1e-12)
        return self.mix[j] + w[:, None] * (self.mix[j + 1] - self.mix[j])

    def extra(self, mix: np.ndarray) -> np.ndarray:
        """Extra slots [n, R, K] of mixes [n, S]."""
        return (mix @ self.onehot).reshape(len(mix), self.R, self.K)

    def cost(self, mix: np.ndarray) -> np.ndarray:
        return mix @ self.cost_nat

    def z_for_cost(self, budget: float) -> float:
        """Slots bought when `budget` (national) is spent along the path (the whole path if it costs less)."""
        cb = self.cost(self.mix)
        return float(np.interp(budget, cb, self.z)) if budget < cb[-1] else self.z_max


def _mix_segments(prep: Prepared, setup: RoundsSetup, a: Assumptions, marginal: pd.DataFrame, span: np.ndarray,
                  unmet_slots: np.ndarray, scale: float, groups: list[str]) -> list:
    """(i, k, host_type, P per slot, national cost per data-scale slot, group, cap in data-scale slots) for every
    decision round, track of `groups` and host type taking it. P per slot: the simulation's marginal probes
    (`model_marginal.marginal_p_per_slot`; the same for every host type: completion is national). Caps: a
    round's extra slots in a track are worth something only up to its unmet demand (baseline, P50, in slots);
    of that, the cheaper host types come first, each up to `extra_slot_limit`."""
    mp = {(r, t): float(v) for r, t, v in zip(marginal["round"], marginal["track"], marginal["marginal_p_per_slot"])}
    limit = {ht: float(v) * scale for ht, v in (a.extra_slot_limit or {}).items() if v is not None}
    segs = []
    for k, t in enumerate(TRACKS):
        g = TRACK_GROUP[t]
        if g not in groups:
            continue
        types = sorted(_host_types(prep, a, t, setup).items(), key=lambda kv: (kv[1], kv[0]))
        for i in np.nonzero(span > 0)[0]:
            m = mp.get((prep.rounds[i], t), np.nan)
            if not m > 1e-9:                    # no probe, or a slot there buys nothing (late round, no demand)
                continue
            left = float(unmet_slots[i, k])
            for ht, cost in types:
                cap = min(left, limit.get(ht, np.inf))
                if cap > 1e-9 and cost > 0:
                    segs.append((int(i), k, ht, m, cost / scale, g, cap))
                    left -= cap
    return segs


def _mix_path(segs: list, R: int, K: int, track_cap: np.ndarray | None = None) -> MixPath:
    """Breakpoints of the path: segments in order of P per dollar, within `MIX_TIE` filled together
    (equal slots each, every one up to its cap). track_cap [K]: extra slots worth buying in a track over all
    rounds (its applicants the baseline never places: a slot can place each of them only once)."""
    S = len(segs)
    left = np.full(K, np.inf) if track_cap is None else np.asarray(track_cap, float).copy()
    order = sorted(range(S), key=lambda s: (-segs[s][3] / segs[s][4], segs[s][0], segs[s][1]))
    zs, mixes = [0.0], [np.zeros(S)]
    full = np.zeros(S)
    p = 0
    while p < S:
        v0 = segs[order[p]][3] / segs[order[p]][4]
        tier = [order[q] for q in range(p, S) if segs[order[q]][3] / segs[order[q]][4] >= v0 * (1 - MIX_TIE)]
        caps = np.array([segs[s][6] for s in tier])
        ks = np.array([segs[s][1] for s in tier])
        for k in np.unique(ks):                     # a tier buys no more of a track than is left of it
            own = ks == k
            caps[own] *= min(1.0, max(left[k], 0.0) / caps[own].sum())
            left[k] -= caps[own].sum()
        for level in np.unique(caps[caps > 1e-9]):
            mix = full.copy()
            mix[tier] = np.minimum(caps, level)
            zs.append(float(mix.sum()))
            mixes.append(mix)
        full[tier] = caps
        p += len(tier)
    onehot = np.zeros((S, R * K))
    for s, seg in enumerate(segs):
        onehot[s, seg[0] * K + seg[1]] = 1.0
    return MixPath(segs=segs, z=np.array(zs), mix=np.array(mixes), cost_nat=np.array([s[4] for s in segs]),
                   onehot=onehot, R=R, K=K)


def _whole_slots(path: MixPath, mix: np.ndarray, scale: float, up: bool) -> np.ndarray:
    """Whole national slots per segment (up for a goal, down for a budget), back at the data's scale."""
    nat = mix / scale
    nat = np.ceil(nat - 1e-6) if up else np.floor(nat + 1e-6)
    return np.maximum(nat, 0) * scale


def solve_budget_mix(prep: Prepared, setup: RoundsSetup, base_res, a: Assumptions, persons, marginal: pd.DataFrame,
                     scale: float = 1.0, scenario: str = "baseline") -> dict[str, pd.DataFrame]:
    """The cheapest mix of extra slots over (round, track, host type) that meets each group's P goal with
    probability `goal_probability`; whether it fits `budget`, and if not the mix with the most P within it;
    P bought per 1,000,000 (average over the mix, and at the margin: the next million along the path).

    Method (docs/MODEL.md, "Decisions"): a greedy on the linearised problem (P per slot from the marginal
    probes, per dollar at each host type's cost, capped by unmet demand and `extra_slot_limit`) gives a
    monotone path of mixes; each draw's threshold along the path is found by simulation (as for the capacity
    question), the answer is the `goal_probability` quantile of them, rounded up to whole national slots,
    and checked by simulation on every draw. The budget's mix spends the budget along the same order."""
    D, R, K = prep.draws.n, len(prep.rounds), len(TRACKS)
    start, span, first, unmet, base_slots = _decision_rounds(prep, setup, base_res, a)
    fill = float(np.median(prep.draws.slot_fill)) if prep.draws.slot_fill is not None else 1.0
    unmet_slots = np.median(base_res.per_round["unmet_demand"], axis=0) / max(fill, 1e-9)    # [R, K]
    # Applicants the baseline never places from the first decision round on: aged out, or still waiting
    # at the horizon (in slots: a slot places `fill` of them).
    never = (np.median(base_res.per_round["aged_out"][:, start:], axis=0).sum(axis=0)
             + np.median(base_res.per_round["unmet_demand"][:, -1], axis=0)) / max(fill, 1e-9)   # [K]
    grads_c = ms.counted_pool(prep.grads_in, persons)
    m0 = ms.compute(prep, setup, base_res, a, persons)
    p0 = ms.groups(m0.P, levels=False)
    p_goal = float(a.goal_probability)
    budget = None if a.budget is None else float(a.budget)
    group_names = [g for g in ("design", "fab_pkg_test") if ms.goal_for(a, m0.T, g) is not None]
    paths = {g: _mix_path(_mix_segments(prep, setup, a, marginal, span, unmet_slots, scale, [g]), R, K, never)
             for g in group_names}

    Dm = min(D, MARGINAL_DRAWS)
    # Extra slots go only to rounds of the span (`_mix_segments`): the rounds before it are simulated once.
    pre_c = rounds_prefix(setup, grads_c, prep.draws, int(np.argmax(span > 0))) if span.any() else None

    def p_by_group(blocks: list) -> dict[str, list]:
        """P per group of mixes stacked along the draw axis, the first on every draw, the others (the next
        million) on the first `MARGINAL_DRAWS` draws, like the marginal probes: {group: [[D], [Dm], ...]}."""
        idx = np.concatenate([np.arange(D)] + [np.arange(Dm)] * (len(blocks) - 1))
        extra = np.concatenate([np.broadcast_to(b, (D if j == 0 else Dm, R, K)) for j, b in enumerate(blocks)])
        draws_t = prep.draws.take(idx)
        res = simulate_rounds(setup, grads_c[idx], draws_t, extra, prefix=pre_c, rows=idx, only="entry")
        sub = replace(prep, draws=draws_t, grads_in=prep.grads_in[idx])
        pg = ms.groups(ms.compute(sub, setup, res, a, persons).P, levels=False)
        cuts = np.cumsum([D] + [Dm] * (len(blocks) - 1))[:-1]
        return {g: np.split(pg[("track_group", g)], cuts) for g in ("design", "fab_pkg_test")}

    # Each draw's threshold along its group's path (z / z_max in [0, 1]), all groups in one simulation a step.
    Ds = min(D, SOLVE_DRAWS)
    todo = [g for g in group_names if paths[g].z_max > 0]
    z_goal, feasible = {}, {}
    for g in group_names:
        if g not in todo:
            goal = ms.goal_for(a, m0.T, g)
            feasible[g] = bool(np.mean(p0[("track_group", g)] >= goal) >= p_goal)
            z_goal[g] = 0.0
    if todo:
        idx = np.tile(np.arange(Ds), len(todo))
        draws_t = prep.draws.take(idx)
        grads_t = grads_c[idx]
        sub = replace(prep, draws=draws_t, grads_in=prep.grads_in[idx])
        target = np.concatenate([ms.goal_for(a, m0.T, g)[:Ds] for g in todo])


        def f(t, rows=None):
            ex = np.concatenate([paths[g].extra(paths[g].at(t[j * Ds:(j + 1) * Ds] * paths[g].z_max))
                                 for j, g in enumerate(todo)])
            if rows is None:
                pg = ms.groups(ms.compute(sub, setup, simulate_rounds(setup, grads_t, draws_t, ex, prefix=pre_c,
                                                                      rows=idx, only="entry"), a, persons).P,
                               levels=False)
                return np.concatenate([pg[("track_group", g)][j * Ds:(j + 1) * Ds] for j, g in enumerate(todo)])
            # Only the draws still open (see _thresholds); the mixes are built for every draw as before.
            draws_r = draws_t.take(rows)
            sub_r = replace(prep, draws=draws_r, grads_in=prep.grads_in[idx[rows]])
            pg = ms.groups(ms.compute(sub_r, setup, simulate_rounds(setup, grads_t[rows], draws_r, ex[rows],
                                                                    prefix=pre_c, rows=idx[rows], only="entry"),
                                      a, persons).P, levels=False)
            out, group_of = np.empty(len(rows)), rows // Ds
            for j, g in enumerate(todo):
                out[group_of == j] = pg[("track_group", g)][group_of == j]
            return out

        # At t = 0 the mix is empty: P is the scenario's own (p0).
        thr, _, _ = _thresholds(f, target, 1.0, len(todo) * Ds, tol=1e-3,
                                f_lo=np.concatenate([p0[("track_group", g)][:Ds] for g in todo]))
        for j, g in enumerate(todo):
            x = np.sort(thr[j * Ds:(j + 1) * Ds])[int(np.ceil(p_goal * Ds)) - 1]
            feasible[g] = bool(np.isfinite(x))
            z_goal[g] = float(x) * paths[g].z_max if feasible[g] else paths[g].z_max

    def mix_of(z: dict, up: bool) -> dict[str, np.ndarray]:
        return {g: _whole_slots(paths[g], paths[g].at([z[g]])[0], scale, up) for g in group_names}

    def evaluate(mixes: dict, next_cost: float = 1e6) -> dict:
        """{group: (P with the mix on every draw, P gained per `next_cost` (national) by the next slots along
        the group's path, on the first `MARGINAL_DRAWS` draws; 0 at the end of the path)}."""
        ex0 = sum((paths[g].extra(mixes[g][None]) for g in group_names), np.zeros((1, R, K)))
        blocks, added = [ex0], {}
        for g in group_names:
            c = float(paths[g].cost(mixes[g][None])[0])
            z_next = paths[g].z_for_cost(c + next_cost)
            more = np.maximum(paths[g].at([z_next])[0], mixes[g]) - mixes[g]
            added[g] = float(paths[g].cost(more[None])[0])     # under next_cost where the mix is ahead of the path
            blocks.append(ex0 + paths[g].extra(more[None]))
        pg = p_by_group(blocks)
        return {g: (pg[g][0], (pg[g][1 + j] - pg[g][0][:Dm]) * (next_cost / added[g] if added[g] > 0 else 0.0))
                for j, g in enumerate(group_names)}

    def summary(answer: str, mixes: dict, ev: dict, fits: bool | None, notes: dict) -> list:
        rows, tot = [], {"slots": 0.0, "cost": 0.0, "p": np.zeros(D), "p0": np.zeros(D), "pm": 0.0}
        for g in group_names:
            goal = ms.goal_for(a, m0.T, g)
            base = p0[("track_group", g)]
            p_mix, gain_next = ev[g]
            cost = float(paths[g].cost(mixes[g][None])[0])
            slots = float(mixes[g].sum() / scale)
            q = q3(p_mix)
            # Per 1,000,000 of national budget, in national persons (P at the data's scale / scale).
            avg = float(np.mean(p_mix - base) / scale / cost * 1e6) if cost > 0 else np.nan
            rows.append((scenario, answer, g, p_goal, float(np.median(goal)), float(np.median(base)),
                         float(np.mean(base >= goal)), feasible[g], slots, cost, budget, fits, float(p_mix.mean()),
                         *map(float, q), float(np.mean(p_mix >= goal)), avg,
                         float(np.mean(gain_next)) / scale, float(scale), notes.get(g, "")))
            tot["slots"] += slots
            tot["cost"] += cost
            tot["p"] += p_mix
            tot["p0"] += base
            tot["pm"] = max(tot["pm"], float(np.mean(gain_next)))  # the better next million, in either group
        q = q3(tot["p"])
        both = np.ones(D, dtype=bool)
        for g in group_names:
            both &= ev[g][0] >= ms.goal_for(a, m0.T, g)
        rows.append((scenario, answer, "all", p_goal, np.nan, float(np.median(tot["p0"])), np.nan,
                     all(feasible.values()), tot["slots"], tot["cost"], budget, fits, float(tot["p"].mean()),
                     *map(float, q), float(both.mean()) if group_names else np.nan,
                     float(np.mean(tot["p"] - tot["p0"]) / scale / tot["cost"] * 1e6) if tot["cost"] > 0 else np.nan,
                     tot["pm"] / scale, float(scale), "both groups together (probability: both goals met)"))
        return rows

    def mix_rows(answer: str, mixes: dict) -> list:
        rows = []
        for g in group_names:
            for s, (i, k, ht, m, cost_nat, _, _) in enumerate(paths[g].segs):
                n = float(mixes[g][s])
                if n > 1e-9:
                    cost = cost_nat * scale
                    rows.append((scenario, answer, g, prep.rounds[i], TRACKS[k], ht, n, n / scale, cost,
                                 n * cost_nat, m, m / cost * 1e6))
        return rows

    goal_mix = mix_of(z_goal, up=True)
    ev = evaluate(goal_mix)
    # The thresholds were solved on the first SOLVE_DRAWS draws: if every draw says the probability falls a
    # little short, buy 1% more along the path (at most three times) rather than report a near miss.
    for _ in range(3):
        short = [g for g in group_names if feasible[g] and paths[g].z_max > z_goal[g]
                 and np.mean(ev[g][0] >= ms.goal_for(a, m0.T, g)) < p_goal]
        if not short:
            break
        for g in short:
            z_goal[g] = min(z_goal[g] * 1.01 + scale, paths[g].z_max)
        goal_mix = mix_of(z_goal, up=True)
        ev = evaluate(goal_mix)
    cost_all = sum(float(paths[g].cost(goal_mix[g][None])[0]) for g in group_names)
    all_ok = all(feasible.values())
    fits = None if budget is None else bool(all_ok and cost_all <= budget)
    notes = {g: "" if feasible[g] else "not reachable along the cheapest path (slots up to unmet demand and the host "
             "types' limits): the row is the whole path" for g in group_names}
    summ = summary("cheapest_mix_for_goal", goal_mix, ev, fits, notes)
    mixr = mix_rows("cheapest_mix_for_goal", goal_mix)
    if budget is not None and not fits and group_names:
        # The most P within the budget: one path over both groups' segments, spent up to the budget.
        both = _mix_path(_mix_segments(prep, setup, a, marginal, span, unmet_slots, scale, group_names), R, K, never)
        spent = _whole_slots(both, both.at([both.z_for_cost(budget)])[0], scale, up=False)
        # Rounding down left some budget: spend it on whole national slots, best P per dollar first.
        caps = np.array([seg[6] for seg in both.segs])
        value = np.array([seg[3] / seg[4] for seg in both.segs])
        for s in sorted(range(len(both.segs)), key=lambda s: (-round(value[s] / value.max(), 3), both.segs[s][0])):
            room = min(np.floor((budget - float(both.cost(spent[None])[0])) / (both.cost_nat[s] * scale) + 1e-9),
                       np.floor((caps[s] - spent[s]) / scale + 1e-6))
            if room >= 1:
                spent[s] += room * scale
        b_mix = {g: np.array([spent[s] if both.segs[s][5] == g else 0.0 for s in range(len(both.segs))])
                 for g in group_names}
        # Express each group's share on its own path (same segments, same order) for the summary.
        b_own = {}
        for g in group_names:
            pos = {(seg[0], seg[1], seg[2]): s for s, seg in enumerate(paths[g].segs)}
            own = np.zeros(len(paths[g].segs))
            for s, seg in enumerate(both.segs):
                if seg[5] == g and b_mix[g][s] > 0:
                    own[pos[(seg[0], seg[1], seg[2])]] = b_mix[g][s]
            b_own[g] = own
        ev_b = evaluate(b_own)
        summ += summary("best_within_budget", b_own, ev_b, True,
                        {g: "the most P the budget buys (greedy on P per dollar, both groups)" for g in group_names})
        mixr += mix_rows("best_within_budget", b_own)
    budget, mix = pd.DataFrame(summ, columns=BUDGET_COLUMNS), pd.DataFrame(mixr, columns=MIX_COLUMNS)
    for frame in (budget, mix):  # whole national slots: sums of whole numbers, without float residue
        frame["slots_national"] = frame["slots_national"].round()
    return {"model_budget": budget, "model_budget_mix": mix}


# ----------------------------------------------------------------------------------------------
# Backtest
# ----------------------------------------------------------------------------------------------

BACKTEST_COLUMNS = ["track", "metric", "term", "fit_to_term", "predicted", "predicted_p10", "predicted_p90",
                    "observed", "error", "pct_error", "within_p10_p90", "track_coverage"]


def backtest_cutoff(con, latest: str | None = None) -> tuple[list[str], int]:
    """The fit-to terms (origins) of the rolling backtest and the terms each holds out: two terms (an
    academic year) when at least six terms are in the panel, one when four or five are, none otherwise
    (the fit needs transitions out of both semesters). Every origin with at least four terms of fit (three
    when one term is held out) whose held-out terms are all observed is backtested, the last
    `BACKTEST_ORIGINS` of them: one origin gives six figures a track, too few to tell 0.5 from 0.8
    coverage. `latest`: the latest term the model uses."""
    terms = [r[0] for r in con.execute("SELECT DISTINCT term FROM staging.enrollment WHERE ? IS NULL OR term <= ? "
                                       "ORDER BY 1", [latest, latest]).fetchall()]
    holdout = 2 if len(terms) >= 6 else 1 if len(terms) >= 4 else 0
    if not holdout:
        return [], 0
    min_fit = 4 if holdout == 2 else 3
    origins = [terms[i] for i in range(min_fit - 1, len(terms) - holdout)]
    return origins[-BACKTEST_ORIGINS:], holdout


BACKTEST_ORIGINS = 6   # the most recent origins backtested (each ~1 s at 200 draws on the demo)


def backtest(panels, a: Assumptions, draws_n: int, seed: int, holdout_terms: int = 2) -> pd.DataFrame:
    """Fit on each panel of `panels` (one Panel, or a list: one per origin, each cut off `holdout_terms`
    terms before data that exists), project those terms, and compare graduates, students on the rolls
    and intakes per track with what the universities reported. `track_coverage` pools every origin."""
    frames = [_backtest_origin(p, a, draws_n, seed, holdout_terms)
              for p in (panels if isinstance(panels, (list, tuple)) else [panels])]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=BACKTEST_COLUMNS[:-1])
    # Share of the track's held-out figures (origins x terms x metrics) inside P10-P90: about 0.8 if the
    # intervals are right.
    out["track_coverage"] = out.groupby("track")["within_p10_p90"].transform("mean").astype(float)
    return out


def _backtest_origin(panel, a: Assumptions, draws_n: int, seed: int, holdout_terms: int) -> pd.DataFrame:
    cal = calibrate(panel, a, summary=False)
    draws = draw_parameters(cal, a, draws_n, seed)
    out = project_cohorts(cal, draws, holdout_terms, ledger=True)
    k_of = cal.cells["k"].to_numpy(np.int64)
    observed = panel.by_track_term
    rows = []
    for step in range(holdout_terms):
        ti = cal.last_ti + 1 + step
        for metric, arr in (("graduates", out["graduates"]), ("students", out["stock"]), ("intake", out["intake"])):
            per_track = np.stack([arr[:, k_of == k, step].sum(axis=1) for k in range(len(TRACKS))], axis=1)
            for k, t in enumerate(TRACKS + ["all"]):
                x = per_track.sum(axis=1) if t == "all" else per_track[:, k]
                o = observed[(observed["ti"] == ti) & ((observed["track"] == t) | (t == "all"))][metric].sum()
                lo, med, hi = q3(x)
                rows.append((t, metric, term_from_index(ti), panel.last_term, float(med), float(lo), float(hi),
                             float(o), float(med - o), float((med - o) / o) if o else np.nan, bool(lo <= o <= hi)))
    return pd.DataFrame(rows, columns=BACKTEST_COLUMNS[:-1])


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------

def _engineers_frame(scenario: str, pr, wp, years) -> pd.DataFrame:
    rows = []
    eng = pr + wp
    cum = np.cumsum(eng, axis=1)
    cum_pr = np.cumsum(pr, axis=1)
    stats = {}
    for name, arr in (("practice_ready", pr), ("without_practice", wp), ("engineers", eng), ("cumulative", cum),
                      ("cumulative_practice_ready", cum_pr)):
        stats[name] = (arr.mean(axis=0), q3(arr))
    for yi, y in enumerate(years):
        for k, t in enumerate(TRACKS):
            for l, lv in enumerate(LEVELS):
                row = [scenario, y, t, TRACK_GROUP[t], lv, LEVEL_GROUP[lv]]
                for name in stats:
                    m, q = stats[name]
                    row += [float(m[yi, k, l]), float(q[0, yi, k, l]), float(q[1, yi, k, l]), float(q[2, yi, k, l])]
                rows.append(row)
    cols = ["scenario", "year", "track", "track_group", "degree_level", "level_group"]
    for name in stats:
        cols += [name, f"{name}_p10", f"{name}_p50", f"{name}_p90"]
    return pd.DataFrame(rows, columns=cols)


def _rounds_frame(scenario: str, prep: Prepared, setup: RoundsSetup, res) -> pd.DataFrame:
    rec = res.per_round
    keep = [i for i in range(len(prep.rounds)) if setup.year[i] >= setup.count_from_year or i in setup.observed]
    med = {n: np.median(v, axis=0) for n, v in rec.items()}
    q = {n: q3(rec[n]) for n in ("eligible", "applicants", "slots_used", "placed", "unmet_demand", "practice_ready")}
    rows = []
    for i in keep:
        for k, t in enumerate(TRACKS):
            basis = "observed" if i in setup.observed else "projected"
            rows.append((scenario, prep.rounds[i], int(setup.year[i]), t, basis,
                         med["eligible"][i, k], q["eligible"][0, i, k], q["eligible"][2, i, k],
                         med["applicants"][i, k], q["applicants"][0, i, k], q["applicants"][2, i, k],
                         med["slots_offered"][i, k], med["slots_available"][i, k],
                         med["slots_used"][i, k], q["slots_used"][0, i, k], q["slots_used"][2, i, k],
                         med["placed"][i, k], q["placed"][0, i, k], q["placed"][2, i, k],
                         med["completed"][i, k], med["withdrew"][i, k],
                         med["practice_ready"][i, k], q["practice_ready"][0, i, k], q["practice_ready"][2, i, k],
                         med["unmet_demand"][i, k], q["unmet_demand"][0, i, k], q["unmet_demand"][2, i, k],
                         med["unused_slots"][i, k], med["spill_in"][i, k], med["spill_out"][i, k],
                         med["aged_out"][i, k], float(np.mean(rec["unmet_demand"][:, i, k] > 1e-9))))
    out = pd.DataFrame(rows, columns=[
        "scenario", "round", "year", "track", "basis", "eligible", "eligible_p10", "eligible_p90",
        "applicants", "applicants_p10", "applicants_p90", "slots_offered", "slots_available",
        "slots_used", "slots_used_p10", "slots_used_p90", "placed", "placed_p10", "placed_p90",
        "completed", "withdrew", "practice_ready", "practice_ready_p10", "practice_ready_p90",
        "unmet_demand", "unmet_demand_p10", "unmet_demand_p90", "unused_slots", "spill_in", "spill_out",
        "aged_out", "probability_slots_bind"])
    out.insert(out.columns.get_loc("slots_available") + 1, "slots", out["slots_available"])  # report compatibility
    return out


def _headline_frame(scenario: str, pr, wp, targets: dict) -> pd.DataFrame:
    rows = []
    for (dim, cat), (e, p) in group_totals(pr, wp).items():
        tgt = targets.get((dim, cat), np.nan)
        qe, qp = q3(e), q3(p)
        prob = float(np.mean(e >= tgt)) if tgt == tgt else np.nan
        prob_p = float(np.mean(p >= tgt)) if tgt == tgt else np.nan
        rows.append((scenario, dim, cat, tgt, float(e.mean()), *map(float, qe), prob,
                     float(p.mean()), *map(float, qp), prob_p, float(qe[1]),
                     float(tgt - qe[1]) if tgt == tgt else np.nan, float(p.mean() / e.mean()) if e.mean() else 0.0))
    return pd.DataFrame(rows, columns=[
        "scenario", "dimension", "category", "target", "engineers_mean", "p10", "p50", "p90",
        "probability_meeting_target", "practice_ready_mean", "practice_ready_p10", "practice_ready_p50",
        "practice_ready_p90", "probability_practice_ready_meeting_target", "engineers_by_horizon", "gap",
        "practice_ready_share"])


def _bottleneck_frame(scenario: str, prep: Prepared, setup: RoundsSetup, res) -> pd.DataFrame:
    rec = res.per_round
    sel = [i for i in range(prep.first_projected, len(prep.rounds)) if setup.window[i]]
    rows = []
    for k, t in enumerate(TRACKS):
        if not sel:
            continue
        bound = rec["unmet_demand"][:, sel, k] > 1e-9                 # [D, rounds]
        slot_bound = bound.mean(axis=1) >= 0.5                         # per draw: slots bind in most rounds
        unmet = rec["unmet_demand"][:, sel, k].sum(axis=1)
        unused = rec["unused_slots"][:, sel, k].sum(axis=1)
        placed = rec["placed"][:, sel, k].sum(axis=1)
        applicants_new = prep.grads_in[:, sel, k].sum(axis=-1) * prep.draws.application[:, None]
        qu = q3(unmet)
        p_slots = float(slot_bound.mean())
        rows.append((scenario, t, TRACK_GROUP[t], len(sel), float(np.median(bound.sum(axis=1))), p_slots,
                     "slots" if p_slots >= 0.5 else "graduates", float(qu[1]), float(qu[0]), float(qu[2]),
                     float(np.median(unused)), float(np.median(rec["slots_offered"][:, sel, k].sum(axis=1))),
                     float(np.median(placed)), float(np.median(applicants_new.sum(axis=1)))))
    return pd.DataFrame(rows, columns=[
        "scenario", "track", "track_group", "rounds", "rounds_slot_bound", "probability_slots_bind", "binding",
        "unmet_demand", "unmet_demand_p10", "unmet_demand_p90", "unused_slots", "slots_offered", "placed",
        "new_applicants"])


def _universities_frame(scenario: str, prep: Prepared, setup: RoundsSetup, res) -> pd.DataFrame:
    ent = per_entrant(setup, res, prep.draws)
    uk = prep.uk_all
    k_of = uk["k"].to_numpy(np.int64)
    D, R = prep.draws.n, len(prep.rounds)
    win = setup.window
    eng = np.zeros((D, len(uk)))
    pr = np.zeros((D, len(uk)))
    placed = np.zeros((D, len(uk)))
    grads = np.zeros((D, len(uk)))
    # Round by round, in float64 (a round's entrants are contiguous; products into one buffer).
    term = np.empty((D, len(uk)))
    for i in range(R):
        g = prep.grads_uk[i].astype(np.float64)
        for name, acc in (("engineers", eng), ("practice_ready", pr), ("placed", placed)):
            np.multiply(g, ent[name][:, i, k_of], out=term)
            acc += term
        if win[i]:
            grads += g
    university_codes = uk["u"].to_numpy()
    univ = pd.Index(sorted(set(university_codes)))
    ui = univ.get_indexer(university_codes)
    # Sum each university's columns per draw (bincount's order: column by column, from 0), all draws at once:
    # the r-th column of every university that has one, for r = 0, 1, ...
    rank = pd.Series(ui).groupby(ui).cumcount().to_numpy()

    def agg(m):
        out = np.zeros((D, len(univ)))
        for r in range(int(rank.max()) + 1 if len(rank) else 0):
            cols = np.flatnonzero(rank == r)
            out[:, ui[cols]] += m[:, cols]
        return out
    E, P, PL, GR = agg(eng), agg(pr), agg(placed), agg(grads)
    total = E.sum(axis=1, keepdims=True)
    qe = q3(E)
    obs = prep.cal.panel.placements_univ.groupby("u")[["placed", "completed"]].sum()
    region = prep.cal.panel.universities.set_index("university_code")["region"]
    rows = []
    for j, u in enumerate(univ):
        g_mean = GR[:, j].mean()
        rows.append((scenario, u, region.get(u), float(g_mean), float(PL[:, j].mean()),
                     float(PL[:, j].mean() / g_mean) if g_mean > 0 else np.nan, float(P[:, j].mean()),
                     float(E[:, j].mean()), float(qe[0, j]), float(qe[1, j]), float(qe[2, j]),
                     float(np.mean(E[:, j] / np.where(total[:, 0] > 0, total[:, 0], 1))),
                     int(obs["placed"].get(u, 0)), int(obs["completed"].get(u, 0))))
    return pd.DataFrame(rows, columns=[
        "scenario", "university_code", "region", "graduates", "placed", "placement_rate", "practice_ready",
        "engineers", "engineers_p10", "engineers_p50", "engineers_p90", "contribution_share",
        "observed_placed", "observed_completed"])


def _graduates_frame(scenario: str, by_year: pd.DataFrame) -> pd.DataFrame:
    return by_year.assign(scenario=scenario)[[
        "scenario", "year", "track", "degree_level", "basis", "graduates", "graduates_p10", "graduates_p50",
        "graduates_p90"]]


def _graduates_by_year(prep: Prepared) -> pd.DataFrame:
    """Graduates by calendar year of graduation (a term's graduates finish in year ti // 2 + 1)."""
    D, R, K, L = prep.grads_in.shape
    last_obs_ti = prep.cal.last_ti
    rows = []
    off = prep.r0 - 2 + int(prep.a.final_year_rounds)   # entry position i holds graduates of term i + off
    years = sorted({(off + i) // 2 + 1 for i in range(R)})
    for y in years:
        idx = [i for i in range(R) if (off + i) // 2 + 1 == y]
        basis = "observed" if all(off + i <= last_obs_ti for i in idx) else "projected"
        if y > prep.a.horizon_year:
            continue
        arr = prep.grads_in[:, idx].sum(axis=1)
        m, q = arr.mean(axis=0), q3(arr)
        for k, t in enumerate(TRACKS):
            for l, lv in enumerate(LEVELS):
                rows.append((y, t, lv, basis, float(m[k, l]), float(q[0, k, l]), float(q[1, k, l]), float(q[2, k, l])))
    return pd.DataFrame(rows, columns=["year", "track", "degree_level", "basis", "graduates", "graduates_p10",
                                       "graduates_p50", "graduates_p90"])


def _cohorts_frame(scenario: str, prep: Prepared) -> pd.DataFrame:
    """Projected students on the rolls (end of term), new students, graduates and leavers per term."""
    L = len(LEVELS)
    rows = []
    stats = {n: (v.mean(axis=0), q3(v)) for n, v in prep.cohorts.items()}
    for step in range(prep.n_terms):
        term = term_from_index(prep.cal.last_ti + 1 + step)
        for k, t in enumerate(TRACKS):
            for l, lv in enumerate(LEVELS):
                j = k * L + l
                row = [scenario, term, t, lv]
                for n in ("students", "intake", "graduates", "exits"):
                    m, q = stats[n]
                    row += [float(m[step, j]), float(q[0, step, j]), float(q[2, step, j])]
                rows.append(row)
    cols = ["scenario", "term", "track", "degree_level"]
    for n in ("students", "intake", "graduates", "exits"):
        cols += [n, f"{n}_p10", f"{n}_p90"]
    return pd.DataFrame(rows, columns=cols)


def _progress_frame(scenario: str, pr, wp, years, targets: dict) -> pd.DataFrame:
    """Cumulative engineers year by year against each 2030 target."""
    rows = []
    for yi, y in enumerate(years):
        for (dim, cat), (e, p) in group_totals(pr[:, :yi + 1], wp[:, :yi + 1]).items():
            tgt = targets.get((dim, cat), np.nan)
            qe, qp = q3(e), q3(p)
            rows.append((scenario, y, dim, cat, tgt, float(e.mean()), *map(float, qe), float(p.mean()),
                         *map(float, qp), float(qe[1] / tgt) if tgt == tgt and tgt else np.nan,
                         float(np.mean(e >= tgt)) if tgt == tgt else np.nan))
    return pd.DataFrame(rows, columns=[
        "scenario", "year", "dimension", "category", "target", "cumulative_mean", "cumulative_p10",
        "cumulative_p50", "cumulative_p90", "cumulative_practice_ready_mean", "cumulative_practice_ready_p10",
        "cumulative_practice_ready_p50", "cumulative_practice_ready_p90", "share_of_target_p50",
        "probability_target_reached"])


def milestone_specs(scenario: Scenario, cal: Calibration, a: Assumptions) -> list[tuple]:
    """(year, measure, dimension, category, persons, source) of a scenario: the reference targets of every
    year from the programme's start to the horizon (ref.targets, counts of persons trained), then the
    scenario's own `milestones`, which add to them or replace the same year, measure and category."""
    from transforms.model.scenarios import MILESTONE_CATEGORIES
    start = int(str(a.trained_from)[:4])
    spec = {}
    t = cal.panel.targets
    for r in t.itertuples():
        y = int(r.target_year)
        if start <= y <= a.horizon_year and r.category in MILESTONE_CATEGORIES:
            spec[(y, "trained", r.dimension, r.category)] = (float(r.target), "ref.targets")
    for y, body in sorted((scenario.milestones or {}).items()):
        for measure, cats in body.items():
            for cat, n in cats.items():
                spec[(int(y), measure, MILESTONE_CATEGORIES[cat], cat)] = (float(n), "scenario")
    return [(y, m, d, c, n, src) for (y, m, d, c), (n, src) in sorted(spec.items()) if start <= y <= a.horizon_year]


def milestones_frame(scenario: str, specs: list[tuple], prep: Prepared, setup: RoundsSetup, res, a: Assumptions,
                     persons_at, scale: float) -> pd.DataFrame:
    """T and P by the end of each milestone year (counted from the programme's start), against the
    milestone (national persons x scale), with P10-P90 and the probability of meeting it.
    persons_at(year): the persons of the panel for a window ending that year."""
    rows, cache = [], {}
    snaps = res.completed_by_entry_at or {}
    for y, measure, dim, cat, n, src in specs:
        if y not in cache:
            a_y = replace(a, horizon_year=y)
            before = [k for k in snaps if k <= y]
            comp = snaps[max(before)] if before else np.zeros_like(res.completed_by_entry)
            r_y = replace(res, completed_by_entry=comp)
            cache[y] = ms.compute(prep, setup, r_y, a_y, persons_at(y))
        m = cache[y]
        x = ms.groups(m.T if measure == "trained" else m.P)[(dim, cat)]
        goal = n * scale
        q = q3(x)
        rows.append((scenario, y, measure, dim, cat, goal, n, src, float(x.mean()), *map(float, q),
                     float(q[1] / goal) if goal else np.nan, float(np.mean(x >= goal))))
    return pd.DataFrame(rows, columns=MILESTONE_COLUMNS)


MILESTONE_COLUMNS = ["scenario", "year", "measure", "dimension", "category", "milestone", "milestone_national",
                     "source", "mean", "p10", "p50", "p90", "share_of_milestone_p50", "probability_meeting"]


def _scenarios_frame(scenarios: list[Scenario], assumptions: dict) -> pd.DataFrame:
    rows = []
    for s in scenarios:
        a = assumptions[s.name]
        overrides = "; ".join(f"{k}={v}" for k, v in sorted(s.assumptions.items()))
        changes = "; ".join(f"{kind}: {body}" for kind, body in s.changes)
        rows.append((s.name, s.description, s.author, s.date, s.reviewed_by, s.path, changes, overrides,
                     a.horizon_year, a.count_from_year))
    return pd.DataFrame(rows, columns=["scenario", "description", "author", "date", "reviewed_by", "file", "changes",
                                       "assumption_overrides", "horizon_year", "count_from_year"])


# ----------------------------------------------------------------------------------------------
# The whole model
# ----------------------------------------------------------------------------------------------

def _cohort_key(a: Assumptions) -> tuple:
    return tuple(repr(getattr(a, f)) for f in COHORT_FIELDS)


def run_model(con, scenarios: list[str] | list[Scenario] | None = None, draws: int = DEFAULT_DRAWS,
              seed: int = DEFAULT_SEED, folder=None, decisions: bool = True, backtest_draws: int | None = 200,
              base: Assumptions = Assumptions(), scale: float = 1.0) -> dict[str, pd.DataFrame]:
    """Run every scenario from the warehouse `con`; return the marts as data frames (and timings).

    scale: the warehouse's share of national size (1 for real data; the demo's 1/N, see
    `transforms.model.scenarios.demo_scale`): national targets, goals in persons and slots are scaled by it."""
    timings = {}
    t0 = time.perf_counter()
    if scenarios and all(isinstance(s, Scenario) for s in scenarios):
        scs = sorted(scenarios, key=lambda s: s.name != "baseline")
    else:
        scs = find_scenarios(scenarios, folder)
    latest = latest_term(con)  # marts.current_term: terms after it (too few universities yet) are not data
    cutoff, holdout = backtest_cutoff(con, latest) if backtest_draws else (None, 0)
    # One scan of staging.enrollment for the panels and the persons (read apart, each scan cost ~1 s at national
    # size); dropped before the scenarios, which need only what is read from it here.
    rows = EnrollmentRows(con)
    try:
        model_rows = con.execute(f"SELECT count(*) FROM {rows.table}").fetchone()[0]
        panels = load_panels(con, [latest] + list(cutoff or []), rows)
        panel = panels[0]
        # last term -> PersonsWindows: the person rows read once for every counting window (the scenarios'
        # and milestone years'); every calibration of the run has the panel's last term.
        windows = {term_index(panel.last_term): PersonsWindows(con, term_index(panel.last_term), rows)}
    finally:
        rows.close()
    timings["load"] = time.perf_counter() - t0
    per_a = {s.name: s.assumptions_over(base) for s in scs}
    # The backtest reads only its own panels: on a large panel it runs in a thread of its own beside the
    # scenarios' rounds, whose single-threaded stretches (frames, solvers) leave a core idle; not beside the
    # cohort projection, which keeps both cores busy (`start_backtest`, in between). On a
    # small panel the two threads' short numpy and pandas calls only queue for the GIL. Its draws are seeded.
    backtest_job = (panels[1:], per_a[scs[0].name], min(backtest_draws, draws), seed, holdout) if cutoff else None
    backtest_run = None
    beside = bool(backtest_job) and model_rows >= BACKTEST_BESIDE_ROWS

    def start_backtest():
        """Once the first scenario's cohorts are projected (the cores are free from then on)."""
        nonlocal backtest_run
        if beside and backtest_run is None:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-backtest")
            backtest_run = pool.submit(_timed, backtest, *backtest_job)
            pool.shutdown(wait=False)   # the thread ends with its one job, whatever happens here
    cals, preps, people, prep_frames = {}, {}, {}, {}

    def persons_of(key, last_ti):
        if key not in people:
            if last_ti not in windows:
                windows[last_ti] = PersonsWindows(con, last_ti)
            people[key] = windows[last_ti].get(*key)
        return people[key]
    outs = {name: [] for name in MARTS}
    for s in scs:
        a = per_a[s.name]
        t1 = time.perf_counter()
        cal_key = (a.lost_as_exit, a.intake_trend_years, a.completion_prior, a.conversion_prior)
        if cal_key not in cals:
            cals[cal_key] = calibrate(panel, a)
        cal = cals[cal_key]
        key = (cal_key, _cohort_key(a), a.application_rate, a.without_practice_ratio, repr(a.fixed),
               a.rounds_eligible, a.count_from_year)
        if key not in preps:
            preps[key] = prepare(cal, a, draws, seed)
        prep = preps[key]
        start_backtest()
        timings[f"prepare:{s.name}"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        setup = rounds_setup(prep, s, a, scale)
        res = simulate_rounds(setup, prep.grads_in, prep.draws)
        pr, wp, years = engineers_by_year(setup, res)
        targets = {key: v * scale for key, v in _targets(cal, a).items()}
        pkey = (trained_from_term(a), horizon_term(a))
        persons = persons_of(pkey, cal.last_ti)
        a_goal = a if scale == 1.0 else replace(a, practice_goal={g: (v if float(v) <= 1 else float(v) * scale)
                                                                  for g, v in (a.practice_goal or {}).items()})
        grads_counted = ms.counted_pool(prep.grads_in, persons)
        specs = milestone_specs(s, cal, a)
        # T, P and E read only the *_by_entry arrays; the decisions (baseline) also the per-round records.
        res_counted = simulate_rounds(setup, grads_counted, prep.draws,
                                      snapshot_years=tuple(sorted({sp[0] for sp in specs})),
                                      only=None if decisions and s.name == "baseline" else "entry")

        def persons_at(y, a=a, cal=cal):
            return persons_of((trained_from_term(a), horizon_term(replace(a, horizon_year=y))), cal.last_ti)
        m = ms.compute(prep, setup, res_counted, a_goal, persons)
        outs["model_measures"].append(ms.measures_frame(s.name, m, targets, a_goal, scale))
        outs["model_milestones"].append(milestones_frame(s.name, specs, prep, setup, res_counted, a, persons_at, scale))
        outs["model_trained_scope"].append(ms.sensitivity_frame(s.name, m, targets.get(("total", "all"), np.nan)))
        outs["model_engineers"].append(_engineers_frame(s.name, pr, wp, years))
        if key not in prep_frames:  # the same for every scenario sharing the prepared cohorts
            prep_frames[key] = (_graduates_by_year(prep), _cohorts_frame(s.name, prep))
        by_year, cohorts = prep_frames[key]
        outs["model_graduates"].append(_graduates_frame(s.name, by_year))
        outs["model_cohorts"].append(cohorts.assign(scenario=s.name))
        outs["model_progress"].append(_progress_frame(s.name, pr, wp, years, targets))
        outs["model_rounds"].append(_rounds_frame(s.name, prep, setup, res))
        outs["model_headline"].append(_headline_frame(s.name, pr, wp, targets))
        outs["model_bottleneck"].append(_bottleneck_frame(s.name, prep, setup, res))
        outs["model_universities"].append(_universities_frame(s.name, prep, setup, res))
        timings[f"rounds:{s.name}"] = time.perf_counter() - t1
        if decisions and s.name == "baseline":
            t1 = time.perf_counter()
            outs["model_capacity_solution"].append(solve_capacity(prep, setup, res, targets, a, s.name))
            marginal = marginal_engineers(prep, setup, a, s.name, persons)
            outs["model_marginal"].append(marginal)
            outs["model_practice_capacity"].append(solve_practice_capacity(prep, setup, res_counted, a_goal, persons,
                                                                           scale, s.name))
            t2 = time.perf_counter()
            for name, frame in solve_budget_mix(prep, setup, res_counted, a_goal, persons, marginal, scale,
                                                s.name).items():
                outs[name].append(frame)
            timings["budget_mix"] = time.perf_counter() - t2
            timings["decisions"] = time.perf_counter() - t1
    for w in windows.values():
        w.close()
    base_cal = next(iter(cals.values()))
    params = pd.DataFrame(base_cal.summary, columns=["name", "value", "lower", "upper", "source"])
    params.insert(0, "scenario", scs[0].name)
    params = pd.concat([params, pd.DataFrame([
        ("baseline", "draws", float(draws), None, None, "Monte Carlo draws (flow parameter)"),
        ("baseline", "seed", float(seed), None, None, "random seed (flow parameter): same warehouse, scenarios "
                                                      "and seed give identical marts"),
        ("baseline", "scale", float(scale), None, None, "share of national size of the data (demo: its "
                                                        "national_fraction, judgment); targets and slots scaled by it")],
        columns=params.columns)], ignore_index=True)
    fallbacks = [dict(fb) for fb in base_cal.fallbacks]
    if backtest_draws and not cutoff:
        n_terms = int(panel.by_track_term["ti"].nunique()) if panel.by_track_term is not None else 0
        fallbacks.append({"parameter": "backtest", "strata": 0,
                          "reason": f"{n_terms} term(s) of enrollment in the warehouse: the backtest holds out the "
                                    "last term(s) and needs at least 4",
                          "used": "not run: marts.model_backtest is empty"})
        fb = fallbacks[-1]
        params = pd.concat([params, pd.DataFrame([(scs[0].name, "fallback.backtest", 0.0, None, None,
                                                   f"fallback: {fb['reason']}; used: {fb['used']}")],
                                                 columns=params.columns)], ignore_index=True)
    outs["model_parameters"] = [params]
    _log_fallbacks(fallbacks)
    if backtest_job:
        frame, timings["backtest"] = backtest_run.result() if backtest_run else _timed(backtest, *backtest_job)
        outs["model_backtest"].append(frame)
    outs["model_scenarios"] = [_scenarios_frame(scs, per_a)]
    result = {}
    for name, frames in outs.items():
        frames = [f for f in frames if f is not None and len(f.columns)]
        result[name] = pd.concat(frames, ignore_index=True) if frames else _empty(name)
    timings["total"] = time.perf_counter() - t0
    result["_timings"] = timings
    result["_fallbacks"] = fallbacks
    return result


def _timed(fn, *args):
    t0 = time.perf_counter()
    return fn(*args), time.perf_counter() - t0


def _logger():
    """This module's standard logger; inside a pipeline run flows/pipeline.py forwards the `transforms`
    loggers to the Prefect run's log (`transforms_log_to_run`), so transforms/ needs no Prefect here."""
    return logging.getLogger(__name__)


def _log_fallbacks(fallbacks: list[dict]) -> None:
    """A warning per parameter the warehouse could not calibrate (also rows `fallback.*` of model_parameters)."""
    if not fallbacks:
        return
    log = _logger()
    log.warning("model: %d parameter(s) could not be calibrated from the warehouse and fell back to documented "
                "defaults (marts.model_parameters, name LIKE 'fallback.%%'; docs/MODEL.md)", len(fallbacks))
    for fb in fallbacks:
        log.warning("model fallback %s: %s; used: %s", fb["parameter"], fb["reason"], fb["used"])


def _empty(name: str) -> pd.DataFrame:
    if name == "model_capacity_solution":
        return pd.DataFrame(columns=["scenario", "measure", "target_group", "track", "probability", "target",
                                     "extra_slots_per_round"])
    if name == "model_marginal":
        return pd.DataFrame(columns=["scenario", "track", "round", "marginal_engineers_per_slot"])
    if name == "model_backtest":
        return pd.DataFrame(columns=BACKTEST_COLUMNS)
    if name == "model_milestones":
        return pd.DataFrame(columns=MILESTONE_COLUMNS)
    if name == "model_budget":
        return pd.DataFrame(columns=BUDGET_COLUMNS)
    if name == "model_budget_mix":
        return pd.DataFrame(columns=MIX_COLUMNS)
    if name == "model_practice_capacity":
        return pd.DataFrame(columns=["scenario", "target_group", "track", "probability", "extra_slots_per_round",
                                     "feasible", "note"])
    return pd.DataFrame()


def write_outputs(con, outputs: dict[str, pd.DataFrame]) -> list[str]:
    """Replace every `marts.model_*` table in one transaction. Returns the tables written."""
    written = []
    con.execute("BEGIN TRANSACTION")
    try:
        for name, frame in outputs.items():
            if name.startswith("_"):
                continue
            frame = frame.copy()
            for col in frame.columns:
                if frame[col].dtype == object:
                    frame[col] = frame[col].astype("string") if frame[col].map(
                        lambda v: v is None or isinstance(v, str)).all() else frame[col]
            con.register("model_out", frame)
            con.execute(f"CREATE OR REPLACE TABLE marts.{name} AS SELECT * FROM model_out")
            con.unregister("model_out")
            written.append(f"marts.{name}")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return written


def headline_text(outputs: dict[str, pd.DataFrame], scenario: str = "baseline") -> str:
    h = outputs["model_headline"]
    h = h[h["scenario"] == scenario]
    lines = []
    for r in h.itertuples():
        lines.append(f"{r.dimension}:{r.category}: engineers P50 {r.p50:,.0f} (P10 {r.p10:,.0f} - P90 {r.p90:,.0f}) "
                     f"vs target {r.target:,.0f}, P(meet) {r.probability_meeting_target:.2f}; practice-ready P50 "
                     f"{r.practice_ready_p50:,.0f} (P10 {r.practice_ready_p10:,.0f} - P90 {r.practice_ready_p90:,.0f})")
    return "\n".join(lines)


def measures_text(outputs: dict[str, pd.DataFrame], scenario: str = "baseline") -> str:
    """T, P and E of a scenario in one line (see transforms/model/measures.py: headline_line)."""
    return ms.headline_line(outputs["model_measures"], scenario)


def main(argv: list[str] | None = None) -> int:
    import duckdb

    p = argparse.ArgumentParser(prog="python -m transforms.model.projection", description=__doc__.split("\n")[0])
    p.add_argument("warehouse", help="a lab2fab DuckDB warehouse (use a copy if a pipeline may be writing)")
    p.add_argument("--scenario", action="append", default=None,
                   help="scenario name in data/scenarios or a YAML path; repeat; default all")
    p.add_argument("--scenario-dir", default=None)
    p.add_argument("--draws", type=int, default=DEFAULT_DRAWS)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--no-decisions", action="store_true")
    p.add_argument("--write", action="store_true", help="write marts.model_* into the warehouse")
    args = p.parse_args(argv)
    con = duckdb.connect(args.warehouse, read_only=not args.write)
    try:
        out = run_model(con, args.scenario, args.draws, args.seed, folder=args.scenario_dir or scenario_dir(None),
                        decisions=not args.no_decisions)
        if args.write:
            write_outputs(con, out)
    finally:
        con.close()
    for s in out["model_headline"]["scenario"].unique():
        print(f"== {s}")
        print(measures_text(out, s))
        print(headline_text(out, s))
    for fb in out.get("_fallbacks", []):
        print(f"fallback {fb['parameter']}: {fb['reason']}; used: {fb['used']}")
    print("timings (s):", {k: round(v, 2) for k, v in out["_timings"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
