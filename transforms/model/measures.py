"""The three measures the Decision and the programme count, kept apart (docs/MODEL.md, "What is counted").

* **T, trained**: distinct persons graduating from a counting programme at bachelor level or above,
  from `trained_from` (default Sep 2024, Decision 1017/QĐ-TTg) to the end of the horizon year, by
  track and by the highest level reached (the levels add up to the total). Slots do not drive it.
* **P, practice-ready**: persons of T who completed lab-to-fab practice by the horizon (whenever the
  practice was: final-year practice before the window counts). Capacity limits it.
* **E, employed**: persons of T in a semiconductor job by the horizon: completers at the conversion
  rate *v·f* once their conversion lag has passed, everyone else at the without-practice rate q₀
  (a judgment prior). Assumption-driven; never the headline.

Each is a per-draw array, so every number has P10/P50/P90 and a probability of meeting a target.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from transforms.model.calibrate import LEVEL_GROUP, LEVELS, TRACK_GROUP, TRACKS
from transforms.model.persons import SCOPES, Persons

QUANTILES = (0.1, 0.5, 0.9)
MEASURE_LABEL = {
    "trained": "T: persons trained (graduated bachelor+ from a counting programme in the window); the Decision's measure",
    "practice_ready": "P: persons of T who completed lab-to-fab practice by the horizon; the programme's measure",
    "employed": "E: persons of T in a semiconductor job by the horizon; ASSUMPTION-DRIVEN (conversion without "
                "practice is a judgment prior), never the headline",
}


@dataclass
class Measures:
    T: np.ndarray              # [D, K, L] persons trained, by track and highest level
    P: np.ndarray              # [D, K, L] practice-ready persons, by track and the level they practised at
    E: np.ndarray              # [D, K, L] employed persons
    T_scope: dict              # scope -> [D] total T (sensitivity: counted, core only, core + related in full)
    graduations: np.ndarray    # [D, K, L] graduations (degrees) in the window, before de-duplication


def window_positions(prep, a) -> np.ndarray:
    """Per pool-entry position: does its graduation term fall in T's window? (entry = term + 2 − lead)."""
    from transforms.model.projection import horizon_term, trained_from_term
    lead = int(a.final_year_rounds)
    ti = np.arange(len(prep.rounds)) + prep.r0 - 2 + lead
    return (ti >= trained_from_term(a)) & (ti <= horizon_term(a))


def _dedupe(graduations: np.ndarray, observed: np.ndarray, proj: np.ndarray, continuation: np.ndarray) -> np.ndarray:
    """Persons by track and highest level: observed persons as counted by person_key, plus projected
    graduations less the continuers among them (who move up a level from a degree already counted)."""
    T = observed[None] + proj
    for lv, lower in (("master", ("bachelor", "engineer")), ("doctor", ("master",))):
        li = LEVELS.index(lv)
        moved = proj[..., li] * continuation[li]                               # [D, K]
        lows = [LEVELS.index(x) for x in lower]
        avail = T[..., lows].sum(axis=-1)
        moved = np.minimum(moved, avail)
        share = np.where(avail[..., None] > 0, T[..., lows] / np.where(avail[..., None] > 0, avail[..., None], 1), 0)
        T[..., lows] -= moved[..., None] * share
    return np.maximum(T, 0)


def compute(prep, setup, res, a, persons: Persons) -> Measures:
    """T, P and E per draw from a scenario's prepared cohorts and simulated rounds."""
    from transforms.model.projection import horizon_term, trained_from_term
    D, R, K, L = prep.grads_in.shape
    lead = int(a.final_year_rounds)
    win = window_positions(prep, a)
    ti = np.arange(R) + prep.r0 - 2 + lead
    projected = win & (ti > prep.cal.last_ti)
    q0 = prep.draws.without_practice[:, None, None]
    grads = prep.grads_in[:, win].sum(axis=1)                                   # degrees in the window
    T_scope, T = {}, None
    # Graduates imputed for a university that missed the last term(s) (calibrate._carry_forward) are not
    # persons in the panel yet: they count like projected graduates, once.
    go = prep.cal.grads_obs
    imp = np.zeros((K, L))
    if "imputed" in go:
        gi = go[go["imputed"].fillna(False).astype(bool) & go["track"].isin(TRACKS) & go["level"].isin(LEVELS)]
        gi = gi[(gi["ti"] >= trained_from_term(a)) & (gi["ti"] <= horizon_term(a))]
        np.add.at(imp, (gi["track"].map(TRACKS.index).to_numpy(np.int64), gi["level"].map(LEVELS.index).to_numpy(np.int64)),
                  gi["n"].to_numpy(float))
    for sc in SCOPES:
        proj = (prep.grads_in[:, projected].sum(axis=1) + imp[None]) * persons.weight[sc][None]
        t_sc = _dedupe(grads, persons.observed[sc], proj, persons.continuation)
        T_scope[sc] = t_sc.sum(axis=(1, 2))
        if sc == "counted":
            T = t_sc
    # `res` is the rounds run on the counted pool (`counted_pool`): everyone placed there counts.
    w = persons.weight["counted"][None]
    completed = res.completed_by_entry[:, win].sum(axis=1)                    # [D, K, L]
    comp_ok = res.completed_in_time_by_entry[:, win].sum(axis=1)
    jobs_ok = res.jobs_in_time_by_entry[:, win].sum(axis=1)
    # Degrees -> persons per track (a continuer is one person; practice is once a person), so P <= T.
    degrees = (grads * w).sum(axis=2, keepdims=True)
    t_k = T.sum(axis=2, keepdims=True)
    per_person = np.where(degrees > 0, np.minimum(t_k / np.where(degrees > 0, degrees, 1), 1.0), 1.0)
    P = completed * per_person
    # Completers whose job can be seen by the horizon at v·f; everyone else of T at q0 (incl. late completers).
    E = q0 * T + (jobs_ok - q0 * comp_ok) * per_person
    return Measures(T=T, P=P, E=np.maximum(E, 0), T_scope=T_scope, graduations=grads)


def counted_pool(grads_in: np.ndarray, persons: Persons) -> np.ndarray:
    """The graduates who compete for slots, for T, P and E: those of counting programmes (a related
    programme's semiconductor specialisations only, at its counting share). Judgment: the programme
    selects its interns from the students it counts; the earlier engineers measure keeps every graduate
    of the tracks in the pool."""
    return grads_in * persons.weight["counted"][None, None]


def groups(x: np.ndarray, levels: bool = True) -> dict[tuple[str, str], np.ndarray]:
    """(dimension, category) -> per-draw totals of a [D, K, L] array."""
    out = {("total", "all"): x.sum(axis=(1, 2))}
    for g in ("design", "fab_pkg_test"):
        ks = [k for k, t in enumerate(TRACKS) if TRACK_GROUP[t] == g]
        out[("track_group", g)] = x[:, ks].sum(axis=(1, 2))
    for k, t in enumerate(TRACKS):
        out[("track", t)] = x[:, k].sum(axis=1)
    if levels:
        for g in ("bachelor_engineer", "master", "doctor"):
            ls = [l for l, v in enumerate(LEVELS) if LEVEL_GROUP[v] == g]
            out[("degree_level", g)] = x[:, :, ls].sum(axis=(1, 2))
    return out


def goal_for(a, T: np.ndarray, group: str) -> np.ndarray | None:
    """The P goal of a track group per draw: a share of T (<= 1) or a number of persons."""
    g = (a.practice_goal or {}).get(group)
    if g is None:
        return None
    g = float(g)
    tg = groups(T)[("track_group", group)]
    return tg * g if g <= 1 else np.full(len(tg), g)


def measures_frame(scenario: str, m: Measures, targets: dict, a, scale: float) -> pd.DataFrame:
    """marts.model_measures: one row per measure, dimension and category."""
    rows = []
    for measure, arr in (("trained", m.T), ("practice_ready", m.P), ("employed", m.E)):
        for (dim, cat), x in groups(arr).items():
            tgt = targets.get((dim, cat), np.nan) if measure == "trained" else np.nan
            if measure == "practice_ready" and dim == "track_group":
                goal = goal_for(a, m.T, cat)
                tgt = float(np.median(goal)) if goal is not None else np.nan
                prob = float(np.mean(x >= goal)) if goal is not None else np.nan
            else:
                prob = float(np.mean(x >= tgt)) if tgt == tgt else np.nan
            q = np.quantile(x, QUANTILES)
            basis = {"trained": "data and projection", "practice_ready": "data, slots and projection",
                     "employed": "assumption-driven"}[measure]
            rows.append((scenario, measure, dim, cat, float(x.mean()), *map(float, q), tgt, prob,
                         float(q[1] / tgt) if tgt == tgt and tgt else np.nan, basis, float(scale),
                         MEASURE_LABEL[measure]))
    return pd.DataFrame(rows, columns=[
        "scenario", "measure", "dimension", "category", "mean", "p10", "p50", "p90", "target",
        "probability_meeting_target", "share_of_target_p50", "basis", "scale", "definition"])


def sensitivity_frame(scenario: str, m: Measures, target_total: float) -> pd.DataFrame:
    """marts.model_trained_scope: T under the three programme scopes (core only / counted / all in full)."""
    label = {"core": "core programmes only", "counted": "core + related at their documented shares (the headline)",
             "all": "core + related in full (every student of a related major counts)"}
    rows = []
    for sc in ("core", "counted", "all"):
        x = m.T_scope[sc]
        q = np.quantile(x, QUANTILES)
        rows.append((scenario, sc, label[sc], float(x.mean()), *map(float, q), target_total,
                     float(np.mean(x >= target_total)) if target_total == target_total else np.nan))
    return pd.DataFrame(rows, columns=["scenario", "scope", "description", "mean", "p10", "p50", "p90", "target",
                                       "probability_meeting_target"])


def headline_line(frame: pd.DataFrame, scenario: str = "baseline") -> str:
    """The one-line headline (CLI, log, report): T against the Decision's target, then P against its goal;
    E last and labelled. States the scale when the warehouse is a fraction of national size."""
    f = frame[(frame["scenario"] == scenario) & (frame["dimension"] == "total")].set_index("measure")
    if not len(f):
        return ""
    scale = float(f["scale"].iloc[0])
    t, p, e = f.loc["trained"], f.loc["practice_ready"], f.loc["employed"]
    scaled = f" (targets and slots scaled to 1/{1 / scale:,.0f} national, the demo's size)" if scale < 1 else ""
    return (f"trained (T) {t.p50:,.0f} persons by the horizon "
            f"(P10-P90 {t.p10:,.0f}-{t.p90:,.0f}) against the target of {t.target:,.0f}{scaled}, "
            f"P(meet) {t.probability_meeting_target:.2f}; practice-ready (P) {p.p50:,.0f} ({p.p10:,.0f}-{p.p90:,.0f}); "
            f"employed (E, assumption-driven) {e.p50:,.0f} ({e.p10:,.0f}-{e.p90:,.0f})")
