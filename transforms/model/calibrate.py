"""Calibration of the lab-to-fab model from the warehouse (see docs/MODEL.md, "Calibration").

Everything the model needs is read from `staging.*` and `ref.*` by `load_panel` (SQL, aggregated in
DuckDB: no per-student data leaves this module) and turned into posterior distributions by
`calibrate`:

* national term-to-term transition probabilities of the student panel, per degree level, semester,
  study year and status (Dirichlet posteriors);
* per university and track, relative drop-out and graduation odds, partially pooled toward the
  national rate (beta-binomial, composition-standardised, concentration by maximum marginal likelihood);
* intake trends per track and degree level (log-linear, Student-t slope uncertainty);
* completion and conversion of internships (Beta posteriors with published figures as priors).

Where the warehouse cannot calibrate a parameter (one term of enrollment, no graduates yet, no
placement records, fewer than two years of intake) the documented default or prior is used instead
and recorded in `Calibration.fallbacks` and as `fallback.*` rows of `marts.model_parameters`
(see `_transition_fallbacks` for the on-time progression prior of the transitions).

`draw_parameters` samples all of them at once for the Monte Carlo. A run is reproducible from the
warehouse, the scenario files and the seed.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from transforms import vocabulary
from transforms.vocabulary import LEVEL_GROUP, NORMAL_YEARS, TRACK_GROUP, term_from_index, term_index

TRACKS = list(vocabulary.TRACKS)
LEVELS = list(vocabulary.DEGREE_LEVELS)
MAX_YEAR = 7  # data contract: study_year 1-7
# Outcomes of one term for a student studying or on leave: studying in the same / next study year,
# on leave in the same / next study year, graduated, left (dropped out, transferred, or lost).
OUTCOMES = ["S0", "S1", "L0", "L1", "G", "X"]
S0, S1, L0, L1, G, X = range(6)
FROM = ["studying", "on_leave"]

# Published figures used as priors (DOMAIN.md; sources repeated in docs/MODEL.md and marts.model_parameters).
SOURCE_COMPLETION = ("Korea's nano-infrastructure training network: 94.4% completion "
                     "(182 completers a year, 2,640 cumulative; DOMAIN.md)")
SOURCE_CONVERSION = ("NNFC six-month programme: 62 of 80 trainees employed (DOMAIN.md); cross-check: "
                     "Korea's nano-infrastructure network 74% employment")


@dataclass(frozen=True)
class Assumptions:
    """Model assumptions: every default is documented with its source in docs/MODEL.md.

    A scenario file may override any field under `assumptions:`.
    """

    horizon_year: int = 2030
    count_from_year: int = 2025          # Decision 1017/QĐ-TTg (Sep 2024): engineers counted from 2025 to 2030
    rounds_eligible: int = 3             # rounds a graduate stays eligible (18 months); demo pilot placements: lag <= 3
    application_rate: tuple[float, float] = (0.6, 20.0)  # Beta(mean, weight): judgment, no data on applications
    completion_prior: tuple[float, float] = (0.944, 40.0)  # Beta(mean, weight): Korea's network 94.4%
    conversion_prior: tuple[float, float] = (62 / 80, 40.0)  # Beta(mean, weight): NNFC 62 of 80 (weight halved)
    # Graduates who never had a placement become engineers at `ratio` x the conversion of completers.
    without_practice_ratio: tuple[float, float] = (1 / 3, 12.0)  # Beta(mean, weight): judgment, no data
    lost_as_exit: bool = True            # a student missing from the next submission and never seen again left
    exit_scale: float = 1.0              # multiplies every drop-out probability (0 = no attrition; sensitivity)
    intake_mode: str = "trend"           # "trend" (log-linear fit, uncertain slope) or "planned" (fixed growth)
    intake_growth: float | dict = 0.0    # planned growth a year (a number, or per track) when intake_mode = planned
    intake_trend_years: int = 5          # intakes of the last N academic years are fitted
    intake_growth_bounds: tuple[float, float] = (-0.10, 0.20)
    host_type_conversion: dict = field(default_factory=dict)  # host_type -> factor on conversion (default 1)
    decision_from_round: str | None = None  # extra slots of the capacity solution start here (default: first projected)
    # Counting persons (docs/MODEL.md, "What is counted"): T from the first graduation on or after this
    # month (YYYY-MM; Decision 1017/QĐ-TTg was signed on 21 Sep 2024) to the end of the horizon year.
    trained_from: str = "2024-09"
    final_year_rounds: int = 1           # rounds a student is eligible BEFORE graduating (judgment: the final semester)
    conversion_lag_months: int = 6       # a completer's job counts 6 months after the round ends (NNFC: within six months)
    # P goal per track group: a share of T (<= 1) or a number of persons (> 1). Judgment: no published goal.
    practice_goal: dict = field(default_factory=lambda: {"design": 0.2, "fab_pkg_test": 0.2})
    goal_probability: float = 0.8        # the capacity and budget answers meet the P goal with this probability
    # Cost of one six-month slot by host type (USD, stipend + travel + host fee): judgment, no published figure.
    cost_per_slot: dict = field(default_factory=lambda: {"company": 9000.0, "research_centre": 7000.0,
                                                         "university": 6000.0, "domestic_lab": 2500.0})
    budget: float | None = None          # budget for extra slots over the decision rounds (None: report the cost only)
    # Most extra slots a host type can take a round in each track (national; absent: no limit). Judgment: about
    # as many again as the baseline plan gives Korean university centres (90 a round) and research centres (160).
    extra_slot_limit: dict = field(default_factory=lambda: {"university": 100.0, "research_centre": 200.0})
    # Share of announced host slots that hosts fill: Beta(mean, weight) prior, judgment, updated with the
    # observed rounds (placements / announced slots of the same round and track).
    slot_fill_prior: tuple[float, float] = (0.85, 20.0)
    # Year-to-year noise (issue 15): each term's graduations and drop-outs of a cell are binomial around the
    # draw's rates (exact for small cells), and each term's intake Poisson around the trend (docs/MODEL.md).
    flow_noise: bool = True
    fixed: dict = field(default_factory=dict)  # parameter -> fixed value (point mass), for sensitivity and tests

    @classmethod
    def with_overrides(cls, base: "Assumptions", overrides: dict | None) -> "Assumptions":
        if not overrides:
            return base
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown assumption(s) {unknown}; known: {sorted(known)}")
        clean = {}
        for k, v in overrides.items():
            current = getattr(base, k)
            if isinstance(current, tuple) and isinstance(v, (list, tuple)):
                v = tuple(float(x) for x in v)
            clean[k] = v
        return replace(base, **clean)


INTAKE_SIGMA_MAX = 0.3   # cap on the residual standard deviation of log intakes (a few years of data)
INTAKE_YEARS_MAX = 12    # projected academic years covered by the draws
FIXABLE = ("completion_rate", "conversion_rate", "application_rate", "without_practice_ratio", "slot_fill")


# ----------------------------------------------------------------------------------------------
# Reading the warehouse
# ----------------------------------------------------------------------------------------------

@dataclass
class Panel:
    """Aggregates of the warehouse the model is calibrated on (no per-student rows)."""

    last_term: str
    first_term: str
    transitions: pd.DataFrame   # u, track, level, sem, y, from_status, outcome, n
    stock: pd.DataFrame         # u, track, level, y, status, n  (each university's latest submission)
    intake: pd.DataFrame        # u, track, level, ti, n
    graduates: pd.DataFrame     # u, track, level, ti, n
    placements: pd.DataFrame    # round, track, placed, completed, withdrew, jobs_yes, jobs_no
    placements_univ: pd.DataFrame  # round, u, track, placed, completed
    placement_lags: pd.DataFrame   # lag (rounds after first eligibility), n
    host_slots: pd.DataFrame    # round, host_code, track, slots
    hosts: pd.DataFrame         # host_code, host_type, tracks
    targets: pd.DataFrame
    universities: pd.DataFrame  # university_code, region
    by_track_term: pd.DataFrame = None  # track, ti, graduates, students, intake (all terms; for the backtest)
    stale_universities: int = 0  # universities whose latest submission is too old to carry forward
    carried_forward: int = 0    # universities missing the last term, carried forward from an earlier one


def codes(values: pd.Series, names: list) -> np.ndarray:
    """Each value's position in `names`, as `values.map(names.index)` (a ValueError for a value not in it)
    without a Python call per row; int64 even when empty."""
    idx = pd.Index(names).get_indexer(values)
    if (idx < 0).any():
        raise ValueError(f"{values[idx < 0].iloc[0]!r} is not in list")
    return idx.astype(np.int64)


def _ti_sql(col: str = "term") -> str:
    return f"(CAST(left({col}, 4) AS INTEGER) * 2 + CAST(right({col}, 1) AS INTEGER) - 1)"


def load_panel(con, cutoff_term: str | None = None) -> Panel:
    """Aggregate the student panel and the reference data, using terms up to `cutoff_term` only."""
    return load_panels(con, [cutoff_term])[0]


STATUSES = list(vocabulary.STATUSES)  # this order is the model's status index


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


# A programme's counting share (docs/MODEL.md, "What is counted"): core programmes in full, related ones at their
# documented share; NULL where programmes.csv is wrong (`persons.check_programmes` names the row and field).
COUNTING_SHARE_SQL = """CASE WHEN p.scope = 'core' THEN 1.0
                             WHEN p.scope = 'related' THEN TRY_CAST(p.counting_share AS DOUBLE) ELSE NULL END"""


class EnrollmentRows:
    """The rows of `staging.enrollment` the model reads (programmes of its tracks, its degree levels), in one
    scan, as a temporary table until `close`: the panel (`load_panels`) and the persons
    (`persons.PersonsWindows`) both read it, so a run reads and hashes the 64-character keys once.

    Columns: ui (university code, see `universities`), k, l, st (indexes into TRACKS, LEVELS, STATUSES), ti,
    y (study year 1..MAX_YEAR), intake_year, sid = hash(student_key), person = hash(person_key, or
    's:' + student_key where the person is not known), no_person, core, share (`COUNTING_SHARE_SQL`).
    With `window` (the panel needs it), each student's next row too: next_ti, next_st, next_y, is_first."""

    _made = itertools.count()

    def __init__(self, con, window: bool = True):
        n = next(self._made)   # names of its own: a standalone load_panel or load_persons drops only its own
        self.con, self.window = con, window
        self.table, self.univ_table = f"model_rows_{n}", f"model_univ_{n}"
        tracks = ", ".join(f"'{t}'" for t in TRACKS)
        con.execute(f"""CREATE OR REPLACE TEMP TABLE {self.univ_table} AS
                        SELECT university_code AS u,
                               CAST(row_number() OVER (ORDER BY university_code) - 1 AS INTEGER) AS ui
                        FROM (SELECT DISTINCT university_code FROM staging.enrollment)""")
        # Small integer codes keep the sort light. hash() gives 64-bit ids: two students sharing one would
        # also need the same university and terms to mix (p ~ n^2 / 2^64); two persons sharing one,
        # p ~ n^2 / 2^65, about 3e-8 at a million persons.
        rows = f"""
            SELECT mu.ui, CAST(list_position({_sql_list(TRACKS)}, p.track) - 1 AS TINYINT) AS k,
                   CAST(list_position({_sql_list(LEVELS)}, e.degree_level) - 1 AS TINYINT) AS l,
                   hash(e.student_key) AS sid, CAST({_ti_sql('e.term')} AS INTEGER) AS ti,
                   CAST(least(greatest(e.study_year, 1), {MAX_YEAR}) AS TINYINT) AS y,
                   CAST(list_position({_sql_list(STATUSES)}, e.status) - 1 AS TINYINT) AS st,
                   CAST(e.intake_year AS INTEGER) AS intake_year,
                   hash(coalesce(e.person_key, 's:' || e.student_key)) AS person, e.person_key IS NULL AS no_person,
                   p.scope = 'core' AS core, {COUNTING_SHARE_SQL} AS share
            FROM staging.enrollment e JOIN ref.programmes p USING (programme_code)
            JOIN {self.univ_table} mu ON mu.u = e.university_code
            WHERE p.track IN ({tracks}) AND e.degree_level IN {tuple(LEVELS)}"""
        if window:
            rows = f"""
                SELECT *, lead(ti) OVER w AS next_ti, lead(st) OVER w AS next_st, lead(y) OVER w AS next_y,
                       lag(ti) OVER w IS NULL AS is_first
                FROM ({rows}) WINDOW w AS (PARTITION BY sid ORDER BY ti)"""
        con.execute(f"CREATE OR REPLACE TEMP TABLE {self.table} AS {rows}")

    def universities(self) -> np.ndarray:
        """university_code by ui."""
        return self.con.execute(f"SELECT u FROM {self.univ_table} ORDER BY ui").df()["u"].to_numpy()

    def close(self) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {self.table}")
        self.con.execute(f"DROP TABLE IF EXISTS {self.univ_table}")


def load_panels(con, cutoffs: list[str | None], rows: EnrollmentRows | None = None) -> list[Panel]:
    """One pass over `staging.enrollment` (each student's rows ordered by term), then the aggregates
    for each cutoff term (None = all terms): the model and its backtest share the pass. `rows`: that pass
    already made (with its window) and kept by the caller for the persons; else made here and dropped."""
    own = rows is None
    if own:
        rows = EnrollmentRows(con)
    elif not rows.window:
        raise ValueError("load_panels needs EnrollmentRows with window=True (each student's next row)")
    seq = rows.table
    tracks = ", ".join(f"'{t}'" for t in TRACKS)
    univ = rows.universities()

    def q(sql, params=None):
        return label(con.execute(sql, params or []).df())

    def label(df):
        """The codes of a result as the panel's names: ui -> u, k -> track, l -> level, st -> status."""
        if "ui" in df:
            df.insert(0, "u", univ[df.pop("ui").to_numpy(int)])
        if "k" in df:
            df["track"] = np.array(TRACKS, dtype=object)[df.pop("k").to_numpy(int)]
        if "l" in df:
            df["level"] = np.array(LEVELS, dtype=object)[df.pop("l").to_numpy(int)]
        if "st" in df:
            df["status"] = np.array(STATUSES, dtype=object)[df.pop("st").to_numpy(int)]
        return df

    stud, leave, grad = (STATUSES.index(x) for x in ("studying", "on_leave", "graduated"))
    active = f"st IN ({stud}, {leave})"
    try:
        bounds = con.execute(f"SELECT max(ti), min(ti) FROM {seq}").fetchone()
        if bounds[0] is None:
            raise ValueError("staging.enrollment has no students of the programme's tracks (programmes in "
                             "ref.programmes, degree levels " + "/".join(LEVELS) + "): the model has nothing to "
                             "calibrate on or project. Load at least one term of enrollment submissions (or "
                             "check ref.programmes) before running the model stage.")
        by_track_term = q(f"""SELECT k, ti, count(*) FILTER (WHERE st = {grad}) AS graduates,
                                     count(*) FILTER (WHERE {active}) AS students,
                                     count(*) FILTER (WHERE is_first AND y = 1 AND {active}
                                                      AND intake_year >= ti // 2) AS intake
                              FROM {seq} GROUP BY ALL ORDER BY ALL""")
        hosts = q("SELECT host_code, host_type, tracks FROM ref.hosts ORDER BY host_code")
        host_slots = q(f"SELECT round, host_code, track, CAST(slots AS DOUBLE) AS slots FROM ref.host_slots "
                       f"WHERE slots > 0 AND track IN ({tracks}) ORDER BY ALL")
        targets = q("SELECT * FROM ref.targets ORDER BY ALL")
        universities = q("SELECT university_code, region FROM ref.universities ORDER BY 1")
        # Each active row's step to the student's next row, counted once for every cut-off: a cut-off's
        # transitions below only sum these counts (a pass over the rows per cut-off cost ~0.15 s at national size).
        # Kept only where the university submitted the next term (else the step says nothing).
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE model_steps AS
            WITH sub AS (SELECT DISTINCT ui, ti FROM {seq})
            SELECT a.ui, a.k, a.l, a.ti, a.y, a.st, a.next_ti, a.next_st, a.next_y, count(*) AS n
            FROM {seq} a JOIN sub ON sub.ui = a.ui AND sub.ti = a.ti + 1
            WHERE a.{active} GROUP BY ALL""")
        # The per-cut-off aggregates below are the rows of a cut-off-free aggregate whose key decides the
        # cut-off (term, first graduation term, round): read once, each cut-off keeps its rows (in the same
        # order: a filter keeps ORDER BY order). A pass over the rows per cut-off cost ~1 s at national size.
        last_tis = [int(bounds[0]) if cutoff is None else term_index(cutoff) for cutoff in cutoffs]
        oldest = min(last_tis) - 2                  # the oldest submission any cut-off's stock can be from
        intake_all = q(f"""SELECT ui, k, l, ti, count(*) AS n FROM {seq}
                           WHERE is_first AND y = 1 AND {active} AND intake_year >= ti // 2
                           GROUP BY ALL ORDER BY ALL""")
        graduates_all = q(f"SELECT ui, k, l, ti, count(*) AS n FROM {seq} WHERE st = {grad} GROUP BY ALL ORDER BY ALL")
        submitted = con.execute(f"SELECT DISTINCT ui, ti FROM {seq} ORDER BY ALL").df()
        stock_raw = con.execute(f"""SELECT ui, k, l, y, st, ti AS from_ti, count(*) AS n FROM {seq}
                                    WHERE {active} AND ti >= {oldest} GROUP BY ALL ORDER BY ALL""").df()
        stock_key = (stock_raw["ui"].to_numpy(np.int64), stock_raw["from_ti"].to_numpy(np.int64))
        stock_all = label(stock_raw.copy())
        # Placements by the first graduation term of their student (g.ti) and round; a cut-off's lags are its
        # first graduations and rounds (the first graduation up to a cut-off is the first one, if it is by then).
        lags_all = con.execute(f"""
            WITH g AS (SELECT sid, min(ti) AS ti FROM {seq} WHERE st = {grad} GROUP BY 1)
            SELECT p.round, (CAST(left(p.round, 4) AS INTEGER) * 2 + CAST(right(p.round, 1) AS INTEGER) - 1)
                   - (g.ti + 2) AS lag, g.ti AS gti, count(*) AS n
            FROM staging.placements p JOIN g ON g.sid = hash(p.student_key)
            GROUP BY ALL ORDER BY ALL""").df()

        def upto(df, last_ti):
            return df[df["ti"].to_numpy() <= last_ti].reset_index(drop=True)
        panels = []
        for cutoff, last_ti in zip(cutoffs, last_tis):
            first_ti = int(bounds[1])
            tr = q(f"""
                SELECT a.ui, a.k, a.l, a.ti % 2 AS sem, a.y, a.st AS from_st,
                       CASE WHEN a.next_ti IS NULL OR a.next_ti > $1 THEN 'lost'
                            WHEN a.next_ti > a.ti + 1 THEN 'gap'
                            WHEN a.next_st IN (3, 4) THEN 'X'
                            WHEN a.next_st = {grad} THEN 'G'
                            WHEN a.next_st = {stud} THEN (CASE WHEN a.next_y > a.y THEN 'S1' ELSE 'S0' END)
                            WHEN a.next_st = {leave} THEN (CASE WHEN a.next_y > a.y THEN 'L1' ELSE 'L0' END)
                            ELSE 'gap' END AS outcome,
                       CAST(sum(a.n) AS BIGINT) AS n
                FROM model_steps a WHERE a.ti + 1 <= $1
                GROUP BY ALL ORDER BY ALL""", [last_ti])
            tr["from_status"] = np.array(STATUSES, dtype=object)[tr.pop("from_st").to_numpy(int)]
            # Each university's latest submission within the last year is its current stock.
            sub = submitted[submitted["ti"] <= last_ti]
            latest = sub.groupby("ui", as_index=False, sort=True)["ti"].max()
            fresh = latest[latest["ti"] >= last_ti - 2]
            from_ti = np.full(len(univ), -1, dtype=np.int64)
            from_ti[fresh["ui"].to_numpy(np.int64)] = fresh["ti"].to_numpy(np.int64)
            stock = stock_all[from_ti[stock_key[0]] == stock_key[1]].reset_index(drop=True)
            intake = upto(intake_all, last_ti)
            graduates = upto(graduates_all, last_ti)
            last_round = f"{(last_ti + 2) // 2}H{(last_ti + 2) % 2 + 1}"  # rounds over by the end of the last term
            placements = q(f"""
                SELECT round, track, count(*) AS placed,
                       count(*) FILTER (WHERE outcome = 'completed') AS completed,
                       count(*) FILTER (WHERE outcome = 'withdrew') AS withdrew,
                       count(*) FILTER (WHERE outcome = 'completed' AND semiconductor_job = 'yes') AS jobs_yes,
                       count(*) FILTER (WHERE outcome = 'completed' AND semiconductor_job = 'no') AS jobs_no
                FROM staging.placements WHERE round <= ? AND track IN ({tracks}) GROUP BY ALL ORDER BY ALL""",
                           [last_round])
            placements_univ = q(f"""
                SELECT round, university_code AS u, track, count(*) AS placed,
                       count(*) FILTER (WHERE outcome = 'completed') AS completed
                FROM staging.placements WHERE round <= ? AND track IN ({tracks}) GROUP BY ALL ORDER BY ALL""",
                                [last_round])
            keep = (lags_all["gti"].to_numpy() <= last_ti) & (lags_all["round"].to_numpy(object) <= last_round)
            lags = lags_all[keep].groupby("lag", as_index=False, sort=True)["n"].sum()
            panels.append(Panel(
                last_term=term_from_index(last_ti), first_term=term_from_index(first_ti), transitions=tr,
                stock=stock, intake=intake, graduates=graduates, placements=placements,
                placements_univ=placements_univ, placement_lags=lags, host_slots=host_slots, hosts=hosts,
                targets=targets, universities=universities, by_track_term=by_track_term,
                stale_universities=int((latest["ti"] < last_ti - 2).sum()),
                carried_forward=int((fresh["ti"] < last_ti).sum())))
        return panels
    finally:
        con.execute("DROP TABLE IF EXISTS model_steps")
        if own:
            rows.close()


# ----------------------------------------------------------------------------------------------
# Calibration
# ----------------------------------------------------------------------------------------------

@dataclass
class Calibration:
    """Posterior distributions of every model parameter (numpy arrays, indexed as documented)."""

    panel: Panel
    last_ti: int
    cells: pd.DataFrame            # one row per (u, track, level): cell, uk, k, l; sorted by level, u, track
    uk: pd.DataFrame               # one row per (u, track)
    years: np.ndarray              # study years used per level (L,)
    trans_alpha: np.ndarray        # Dirichlet posterior parameters [L, 2 sem, Y, 2 from, 6 outcomes]
    trans_mean: np.ndarray         # posterior means, same shape
    exit_post: np.ndarray          # Beta posterior (a, b) per uk: [UK, 2]
    exit_expected: np.ndarray      # composition-standardised national rate per uk (UK,)
    grad_post: np.ndarray
    grad_expected: np.ndarray
    kappa: dict                    # concentration of the beta-binomial per rate
    stock0: np.ndarray             # [C, Y, 2] students at the last term by study year and status
    intake_base: np.ndarray        # [K, L, 2 sem] last observed intake per semester
    intake_base_year: np.ndarray   # [K, L, 2] academic year of that intake
    intake_growth: np.ndarray      # [K, L] fitted growth (log-linear slope)
    intake_growth_se: np.ndarray   # [K, L]
    intake_dof: np.ndarray         # [K, L] residual degrees of freedom
    intake_resid_var: np.ndarray   # [K, L] residual variance of log intake around the trend
    intake_sxx: np.ndarray         # [K, L] sum of squared year deviations of the fit
    intake_share: np.ndarray       # [C] share of its (k, l) intake
    grads_obs: pd.DataFrame        # cell, ti, n (observed graduates)
    completion_post: tuple[float, float]
    conversion_post: tuple[float, float]
    observed_rounds: pd.DataFrame  # round, k, placed, completed, withdrew, jobs_yes, jobs_no, unknown
    summary: list = field(default_factory=list)  # rows for marts.model_parameters
    # Parameters the data could not calibrate and the documented default used instead: dicts with
    # parameter, strata (or units), reason, used. Also rows `fallback.*` of marts.model_parameters.
    fallbacks: list = field(default_factory=list)
    slot_fill_post: tuple[float, float] = (17.0, 3.0)   # Beta posterior of the share of announced slots filled
    # Second-semester intake as a ratio of the same academic year's first-semester intake, pooled over the
    # trend years: Gamma posterior (shape, rate) [K, L, 2]; used where `intake_spring_ok` [K, L].
    intake_spring_post: np.ndarray = None
    intake_spring_ok: np.ndarray = None


def _beta_from(mean: float, weight: float) -> tuple[float, float]:
    return mean * weight, (1 - mean) * weight


def _fit_kappa(o: np.ndarray, n: np.ndarray, m: np.ndarray) -> float:
    """Concentration of a beta-binomial with known means m, by maximum marginal likelihood."""
    keep = (n > 0) & (m > 0) & (m < 1)
    o, n, m = o[keep], n[keep], m[keep]
    if len(o) < 3:
        return 1e6

    def nll(logk):
        k = np.exp(logk)
        return -np.sum(special.betaln(o + k * m, n - o + k * (1 - m)) - special.betaln(k * m, k * (1 - m)))

    res = optimize.minimize_scalar(nll, bounds=(np.log(1.0), np.log(1e6)), method="bounded")
    return float(np.exp(res.x))


# Fallback prior of the transitions where the panel cannot calibrate them (docs/MODEL.md, "Calibration"):
# on-time progression (studying students move up a study year every September and graduate from the
# normal length on; students on leave return the next term), at the level's drop-out and leave rates
# where any transitions of the level were observed, with no drop-out where none were. It is an
# assumption, not an estimate: FALLBACK_WEIGHT pseudo-students (like the judgment priors of
# `Assumptions`), so a few observed transitions move it and a full term of data overrides it.
FALLBACK_WEIGHT = 20.0
FALLBACK_TRACE = 1e-4
SEMESTER_NAME = {0: "first term (Sep-Jan)", 1: "second term (Feb-Jun)"}


def on_time_outcome(level: str, sem: int, y: int, from_idx: int) -> int:
    """The outcome of a term for a student progressing on time (study year `y`, 1-based)."""
    if from_idx == 1:
        return S0                               # on leave: back to studying the next term
    if y >= NORMAL_YEARS[level]:
        return G                                # final year or later: graduates
    return S1 if sem == 1 else S0               # the study year changes in September


def _transition_fallbacks(counts: np.ndarray, panel: Panel) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Prior shares and weights of the strata the panel cannot calibrate (weight 0 elsewhere: the level
    average applies), and a record of every fallback: parameter, strata, reason, what was used."""
    L, _, Y, F, O = counts.shape
    prior = np.zeros(counts.shape)
    weight = np.zeros(counts.shape[:-1])
    pooled = counts.sum(axis=2)                 # [L, sem, from, outcome]
    level_pool = counts.sum(axis=(1, 2))        # [L, from, outcome]
    terms = f"{panel.first_term}..{panel.last_term}" if panel.first_term != panel.last_term else panel.last_term
    btt = panel.by_track_term
    n_terms = (int(btt.loc[btt["ti"] <= term_index(panel.last_term), "ti"].nunique()) if btt is not None
               else term_index(panel.last_term) - term_index(panel.first_term) + 1)
    present = set(panel.stock["level"]) | set(panel.intake["level"])
    records: dict[str, dict] = {}
    for li, lv in enumerate(LEVELS):
        if lv not in present and counts[li].sum() <= 0:
            continue                                # no students of the level: nothing to project
        for f in range(F):
            for sem in range(2):
                p_obs = pooled[li, sem, f]
                for y in range(1, Y + 1):
                    o = on_time_outcome(lv, sem, y, f)
                    if p_obs.sum() > 0 and (f == 1 or o != G or level_pool[li, f, G] > 0):
                        continue                    # the level average stands (documented default)
                    if p_obs.sum() > 0:             # no graduation observed at all: cannot be estimated
                        base, kind = p_obs / p_obs.sum(), "graduation"
                        reason = (f"no {lv} student graduated in the panel ({terms}): the graduation rate "
                                  "cannot be estimated")
                        used = ("students from the normal final year on graduate on time (prior weight "
                                f"{FALLBACK_WEIGHT:g} pseudo-students), at the level's observed drop-out and "
                                "leave rates of the same term")
                    elif level_pool[li, f].sum() > 0:  # transitions of the level, out of the other term only
                        base, kind = level_pool[li, f] / level_pool[li, f].sum(), "transitions"
                        reason = (f"no transitions of {lv} students {FROM[f].replace('_', ' ')} out of the "
                                  f"{SEMESTER_NAME[sem]} in the panel ({terms})")
                        used = ("on-time progression at the level's drop-out and leave rates observed out of "
                                f"the other term (prior weight {FALLBACK_WEIGHT:g} pseudo-students)")
                    else:
                        base, kind = np.zeros(O), "transitions"
                        reason = (f"no transitions of {lv} students {FROM[f].replace('_', ' ')} in the panel "
                                  f"({terms}, {n_terms} term{'s' if n_terms != 1 else ''}"
                                  + (": one term has no term-to-term transitions" if n_terms == 1 else "") + ")")
                        used = ("on-time progression with no drop-out and no leave (an optimistic assumption; "
                                f"prior weight {FALLBACK_WEIGHT:g} pseudo-students)")
                    share = base.copy()
                    cont = share[S0] + share[S1]          # continuing students progress on time
                    share[S0] = share[S1] = 0.0
                    share[o] += cont
                    if share.sum() <= 0:
                        share[o] = 1.0
                    share = (share + FALLBACK_TRACE) / (share + FALLBACK_TRACE).sum()
                    prior[li, sem, y - 1, f] = share
                    weight[li, sem, y - 1, f] = FALLBACK_WEIGHT
                    key = f"graduation.{lv}" if kind == "graduation" else f"transitions.{lv}.{FROM[f]}.term{sem + 1}"
                    rec = records.setdefault(key, {"parameter": key, "strata": 0, "reason": reason, "used": used})
                    rec["strata"] += 1
    return prior, weight, list(records.values())


def calibrate(panel: Panel, a: Assumptions = Assumptions(), summary: bool = True) -> Calibration:
    """summary=False: leave `cal.summary` (the rows of marts.model_parameters) empty; the backtest's
    calibrations never report them."""
    last_ti = term_index(panel.last_term)
    tr = panel.transitions.copy()
    if not a.lost_as_exit:
        tr = tr[tr["outcome"] != "lost"]
    tr["outcome"] = tr["outcome"].replace({"lost": "X"})
    tr = tr[tr["outcome"].isin(OUTCOMES) & tr["level"].isin(LEVELS)]
    L = len(LEVELS)
    counts = np.zeros((L, 2, MAX_YEAR, 2, 6))
    # Integer indices even when the frame is empty (one term, no transitions): `.map` on an empty
    # Series gives an object/float array, which numpy refuses as an index (the old IndexError).
    li = codes(tr["level"], LEVELS)
    np.add.at(counts, (li, tr["sem"].to_numpy(int), tr["y"].to_numpy(int) - 1,
                       codes(tr["from_status"], FROM),
                       codes(tr["outcome"], OUTCOMES)),
              tr["n"].to_numpy(float))
    # Prior: one pseudo-student spread like the level's outcomes pooled over study years (a stratum
    # never observed falls back to the level's average), plus a trace so no outcome is impossible.
    pooled = counts.sum(axis=2, keepdims=True)
    pooled_share = (pooled + 1e-3) / (pooled + 1e-3).sum(axis=-1, keepdims=True)
    structural = np.ones(6)
    alpha = counts + 1.0 * pooled_share * structural
    # Where the panel cannot calibrate a stratum (no transitions out of that semester and status for
    # the level: a single term, or only one semester's transitions; or a level none of whose students
    # has graduated yet), the level average is replaced by the on-time progression prior (FALLBACK_*).
    prior, weight, fallbacks = _transition_fallbacks(counts, panel)
    fb = weight > 0
    alpha = np.where(fb[..., None], counts + weight[..., None] * prior, alpha)
    mean = alpha / alpha.sum(axis=-1, keepdims=True)

    # Cells: every (university, track, level) with students now, or with intake in recent years.
    st = panel.stock[panel.stock["level"].isin(LEVELS)]
    recent = panel.intake[panel.intake["ti"] >= last_ti - 2 * a.intake_trend_years]
    keys = pd.concat([st[["u", "track", "level"]], recent[["u", "track", "level"]]]).drop_duplicates()
    keys = keys[keys["level"].isin(LEVELS) & keys["track"].isin(TRACKS)]
    keys["l"] = codes(keys["level"], LEVELS)
    keys["k"] = codes(keys["track"], TRACKS)
    keys = keys.sort_values(["l", "u", "k"]).reset_index(drop=True)
    keys["cell"] = np.arange(len(keys))
    uk = keys[["u", "track", "k"]].drop_duplicates().sort_values(["u", "k"]).reset_index(drop=True)
    uk["uk"] = np.arange(len(uk))
    keys = keys.merge(uk[["u", "track", "uk"]], on=["u", "track"]).sort_values("cell").reset_index(drop=True)

    # Partial pooling per (university, track): observed events against the events expected from the
    # national rates for the same mix of level, semester, study year and status (indirect standardisation).
    trc = tr.merge(uk[["u", "track", "uk"]], on=["u", "track"], how="inner")
    idx = (codes(trc["level"], LEVELS), trc["sem"].to_numpy(int), trc["y"].to_numpy(int) - 1,
           codes(trc["from_status"], FROM))
    n = trc["n"].to_numpy(float)
    is_x = (trc["outcome"] == "X").to_numpy()
    is_g = (trc["outcome"] == "G").to_numpy()
    p_x, p_g = mean[idx + (X,)], mean[idx + (G,)]
    can_grad = p_g >= 0.05  # graduation is compared where it is a real possibility
    U = len(uk)
    ukv = trc["uk"].to_numpy(np.int64)
    n_x = np.bincount(ukv, weights=n, minlength=U)
    e_x = np.bincount(ukv, weights=n * p_x, minlength=U)
    o_x = np.bincount(ukv, weights=n * is_x, minlength=U)
    n_g = np.bincount(ukv, weights=n * can_grad, minlength=U)
    e_g = np.bincount(ukv, weights=n * p_g * can_grad, minlength=U)
    o_g = np.bincount(ukv, weights=n * is_g * can_grad, minlength=U)
    nat_x = e_x.sum() / max(n_x.sum(), 1)
    nat_g = e_g.sum() / max(n_g.sum(), 1)
    m_x = np.where(n_x > 0, e_x / np.maximum(n_x, 1e-12), nat_x).clip(1e-6, 1 - 1e-6)
    m_g = np.where(n_g > 0, e_g / np.maximum(n_g, 1e-12), nat_g).clip(1e-6, 1 - 1e-6)
    # Nothing to compare universities on (no student-terms, or none where graduation is possible):
    # complete pooling, every university at the national rate. The odds ratio is then exactly 1 up to
    # draw noise of 1e-3 (a national rate of 0 would make Beta(1, 1e6) odds ratios spread 0.1-2.3).
    for name, n_, m_ in (("exit", n_x, m_x), ("graduation", n_g, m_g)):
        if len(uk) and n_.sum() <= 0:
            m_[:] = 0.5
            fallbacks.append({"parameter": f"{name}_odds_ratio", "strata": len(uk),
                              "reason": ("no student-terms in the panel to compare universities on" if name == "exit"
                                         else "no student-terms in the panel where graduation is possible "
                                              "(no student graduated, or none reached a final year)"),
                              "used": "complete pooling: every university and track at the national rate "
                                      "(odds ratio 1)"})
    kx, kg = _fit_kappa(o_x, n_x, m_x), _fit_kappa(o_g, n_g, m_g)
    exit_post = np.stack([kx * m_x + o_x, kx * (1 - m_x) + n_x - o_x], axis=1)
    grad_post = np.stack([kg * m_g + o_g, kg * (1 - m_g) + n_g - o_g], axis=1)

    # Current stock per cell.
    C = len(keys)
    cell_of = keys.set_index(["u", "track", "level"])["cell"]
    stock0 = np.zeros((C, MAX_YEAR, 2))
    st = st.merge(keys[["u", "track", "level", "cell"]], on=["u", "track", "level"])
    np.add.at(stock0, (st["cell"].to_numpy(np.int64), st["y"].to_numpy(int) - 1,
                       codes(st["status"], FROM)),
              st["n"].to_numpy(float))
    # Study years simulated per level: the normal length plus two, or more if students are seen there.
    seen_years = counts.sum(axis=(1, 3, 4))  # [L, Y]
    years = np.array([min(MAX_YEAR, max(NORMAL_YEARS[lv] + 2, int(np.nonzero(seen_years[li])[0].max(initial=-1)) + 1,
                                        int(np.nonzero(stock0[(keys["l"] == li).to_numpy()].sum(axis=(0, 2)))[0]
                                            .max(initial=-1)) + 1))
                      for li, lv in enumerate(LEVELS)])

    # Intakes: trend per (track, level) over the last academic years, shares per university.
    K = len(TRACKS)
    it = panel.intake[panel.intake["level"].isin(LEVELS) & panel.intake["track"].isin(TRACKS)].copy()
    it["k"], it["l"] = codes(it["track"], TRACKS), codes(it["level"], LEVELS)
    it["sem"], it["year"] = it["ti"] % 2, it["ti"] // 2
    base = np.zeros((K, L, 2))
    base_year = np.zeros((K, L, 2))
    growth, growth_se, dof = np.zeros((K, L)), np.full((K, L), 0.05), np.ones((K, L))
    resid_var, sxx = np.full((K, L), 0.05 ** 2), np.ones((K, L))
    last_year = last_ti // 2
    first_year = last_year - a.intake_trend_years + 1
    # The last academic year observed in each semester: its intake is the base of the projection
    # (zero if the track and level took no new students that year).
    last_sem_year = {sem: (last_ti - ((last_ti - sem) % 2)) // 2 for sem in (0, 1)}
    # The sums per (track, level, semester, year) and per (track, level, year) in two group-bys rather than
    # several per (track, level) (the counts are integers: the same sums).
    by_sem_year = it.groupby(["k", "l", "sem", "year"])["n"].sum()
    sems_seen = {key[:3] for key in by_sem_year.index}
    by_sem_year = by_sem_year.to_dict()
    by_year = it[it["year"] >= first_year].groupby(["k", "l", "year"])["n"].sum()
    years_of = {kl: grp.droplevel([0, 1]) for kl, grp in by_year.groupby(level=[0, 1])}
    for k, l in sorted({key[:2] for key in sems_seen}):
        for sem in (0, 1):
            if (k, l, sem) in sems_seen:
                base[k, l, sem] = by_sem_year.get((k, l, sem, last_sem_year[sem]), 0.0)
                base_year[k, l, sem] = last_sem_year[sem]
        yearly = years_of.get((k, l), by_year.iloc[:0].droplevel([0, 1]))
        yearly = yearly[yearly > 0]
        if len(yearly) < 2 and base[k, l].sum() > 0:
            seen = ", ".join(str(int(y)) for y in yearly.index) or "none"
            fallbacks.append({"parameter": f"intake_growth[{TRACKS[k]},{LEVELS[l]}]", "strata": 1,
                              "reason": (f"{len(yearly)} academic year(s) with first-year intake in the last "
                                         f"{a.intake_trend_years} years ({seen}): no trend can be fitted"),
                              "used": "flat intake from the last observed year (growth 0 a year, standard error "
                                      "5% a year)" + ("" if a.intake_mode == "trend"
                                                      else "; not used: intake_mode = planned")})
        if len(yearly) >= 3:
            x, yv = yearly.index.to_numpy(float), np.log(yearly.to_numpy(float))
            slope, intercept, *_ = stats.linregress(x, yv)
            resid = yv - (intercept + slope * x)
            s2 = max((resid ** 2).sum() / (len(x) - 2), 0.005 ** 2)
            sxx[k, l] = ((x - x.mean()) ** 2).sum()
            growth[k, l], resid_var[k, l], dof[k, l] = slope, s2, len(x) - 2
            growth_se[k, l] = np.sqrt(s2 / sxx[k, l])
        elif len(yearly) == 2:
            x, yv = yearly.index.to_numpy(float), np.log(yearly.to_numpy(float))
            growth[k, l], growth_se[k, l], dof[k, l] = (yv[1] - yv[0]) / (x[1] - x[0]), 0.05, 1
            sxx[k, l] = 0.05 ** 2 / 0.05 ** 2
    # Second-semester intake (students first seen in February: late admissions, or a first-term row that was
    # quarantined) as a ratio of the same academic year's first-semester intake, pooled over the trend
    # years with both semesters observed: its counts are small (~0.5% of the autumn on the demo), so the
    # last year's count alone is one noisy Poisson draw, and projecting it as the base biased the
    # second-semester intakes. Gamma(0.5 + spring, autumn) posterior of the ratio (Jeffreys prior).
    spring_post = np.zeros((K, L, 2))
    spring_ok = np.zeros((K, L), dtype=bool)
    both = it[(it["year"] >= first_year) & (it["year"] * 2 + 1 <= last_ti)]
    by_sem = both.groupby(["k", "l", "sem"])["n"].sum().to_dict()
    for k, l in sorted({key[:2] for key in by_sem}):
        aut, spr = float(by_sem.get((k, l, 0), 0)), float(by_sem.get((k, l, 1), 0))
        if aut > 0:
            spring_post[k, l] = (0.5 + spr, aut)
            spring_ok[k, l] = True
    # University shares of the (track, level) intake: the last two academic years with intake.
    share = np.zeros(C)
    rec = it[it["year"] >= last_year - 1].merge(keys[["u", "track", "level", "cell"]], on=["u", "track", "level"])
    per_cell = rec.groupby("cell")["n"].sum()
    share[per_cell.index.to_numpy(np.int64)] = per_cell.to_numpy(float)
    kl_cell = keys["k"].to_numpy(np.int64) * L + keys["l"].to_numpy(np.int64)
    tot = np.bincount(kl_cell, weights=share, minlength=K * L)
    share = np.where(tot[kl_cell] > 0, share / np.maximum(tot[kl_cell], 1e-12), 0.0)

    go = panel.graduates.merge(keys[["u", "track", "level", "cell"]], on=["u", "track", "level"], how="left")
    grads_obs = go[["u", "track", "level", "cell", "ti", "n"]].copy()
    # A university missing the last term(s) is carried forward ONCE, here: its stock is moved on from its
    # latest submission to the last term with the national mean transitions of the right semesters, and
    # the graduates of the missing terms are imputed (counted once, as graduates of those terms). The
    # projection then starts every university at the same term in the same semester: no phantom graduates.
    if "from_ti" in st and (st["from_ti"] < last_ti).any():
        stock0, imputed = _carry_forward(stock0, st, keys, mean, years, last_ti)
        if len(imputed):
            grads_obs = pd.concat([grads_obs, imputed], ignore_index=True)

    # Internships: completion and conversion, Beta priors from published figures updated with outcomes.
    pl = panel.placements
    comp = _beta_from(*a.completion_prior)
    conv = _beta_from(*a.conversion_prior)
    completed, withdrew = float(pl["completed"].sum()), float(pl["withdrew"].sum())
    yes, no = float(pl["jobs_yes"].sum()), float(pl["jobs_no"].sum())
    completion_post = (comp[0] + completed, comp[1] + withdrew)
    conversion_post = (conv[0] + yes, conv[1] + no)
    # Slot delivery: in the observed rounds, how many of the announced slots were filled.
    fill = _beta_from(*a.slot_fill_prior)
    hs = panel.host_slots
    if len(pl) and len(hs):
        ann = hs[hs["round"].isin(set(pl["round"]))].groupby(["round", "track"])["slots"].sum()  # observed rounds only
        got = pl.set_index(["round", "track"])["placed"].reindex(ann.index).fillna(0.0)
        filled = float(np.minimum(got, ann).sum()) if len(ann) else 0.0
        fill = (fill[0] + filled, fill[1] + float(ann.sum()) - filled)
    slot_fill_post = fill
    last_round = f"{(last_ti + 2) // 2}H{(last_ti + 2) % 2 + 1}"
    if completed + withdrew <= 0:
        fallbacks.append({"parameter": "completion_rate", "strata": 0,
                          "reason": f"no completed or withdrawn placement in staging.placements up to round "
                                    f"{last_round}",
                          "used": f"the published prior alone: {SOURCE_COMPLETION}"})
    if yes + no <= 0:
        fallbacks.append({"parameter": "conversion_rate", "strata": 0,
                          "reason": f"no completed placement with a known job outcome in staging.placements up to "
                                    f"round {last_round}",
                          "used": f"the published prior alone: {SOURCE_CONVERSION}"})
    obs = pl.copy()
    obs["k"] = codes(obs["track"], TRACKS)
    obs["unknown"] = obs["completed"] - obs["jobs_yes"] - obs["jobs_no"]

    cal = Calibration(panel=panel, last_ti=last_ti, cells=keys, uk=uk, years=years, trans_alpha=alpha,
                      trans_mean=mean, exit_post=exit_post, exit_expected=m_x, grad_post=grad_post,
                      grad_expected=m_g, kappa={"exit": kx, "graduation": kg}, stock0=stock0, intake_base=base,
                      intake_base_year=base_year, intake_growth=growth, intake_growth_se=growth_se, intake_dof=dof,
                      intake_resid_var=resid_var, intake_sxx=sxx,
                      intake_share=share, intake_spring_post=spring_post, intake_spring_ok=spring_ok,
                      grads_obs=grads_obs, completion_post=completion_post,
                      slot_fill_post=slot_fill_post,
                      conversion_post=conversion_post, observed_rounds=obs, fallbacks=fallbacks)
    if summary:
        cal.summary = _summary(cal, a, counts, o_x, n_x, o_g, n_g, completed, withdrew, yes, no)
    return cal


def _carry_forward(stock0: np.ndarray, st: pd.DataFrame, keys: pd.DataFrame, mean: np.ndarray, years: np.ndarray,
                   last_ti: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Move the stock of cells whose latest submission is before `last_ti` on to `last_ti` with the
    national posterior-mean transitions [L, sem, Y, from, outcome]; return it and the imputed graduates
    (u, track, level, cell, ti, n) of the missing terms."""
    stock0 = stock0.copy()
    rows = []
    late = st[st["from_ti"] < last_ti].groupby("cell")["from_ti"].max()
    for cell, from_ti in late.items():
        li = int(keys.at[cell, "l"])
        Y = int(years[li])
        state = stock0[cell, :Y].copy()                                         # [Y, 2 from]
        for ti in range(int(from_ti), last_ti):
            m = mean[li, ti % 2, :Y]                                             # [Y, 2, 6]
            grads = float((state * m[..., G]).sum())
            nxt = np.zeros_like(state)
            up = np.minimum(np.arange(Y) + 1, Y - 1)
            for f in range(2):
                np.add.at(nxt[:, 0], np.arange(Y), state[:, f] * m[:, f, S0])
                np.add.at(nxt[:, 0], up, state[:, f] * m[:, f, S1])
                np.add.at(nxt[:, 1], np.arange(Y), state[:, f] * m[:, f, L0])
                np.add.at(nxt[:, 1], up, state[:, f] * m[:, f, L1])
            state = nxt
            rows.append((keys.at[cell, "u"], keys.at[cell, "track"], keys.at[cell, "level"], int(cell), ti + 1, grads))
        stock0[cell, :Y] = state
    return stock0, pd.DataFrame(rows, columns=["u", "track", "level", "cell", "ti", "n"]).assign(imputed=True)


def _beta_q(a_: float, b_: float) -> tuple[float, float, float]:
    return a_ / (a_ + b_), float(stats.beta.ppf(0.1, a_, b_)), float(stats.beta.ppf(0.9, a_, b_))


def _summary(cal: Calibration, a: Assumptions, counts, o_x, n_x, o_g, n_g, completed, withdrew, yes, no) -> list:
    """Rows of marts.model_parameters: name, value, lower (P10), upper (P90), source."""
    rows = []
    fallback_of = {fb["parameter"]: fb for fb in cal.fallbacks}
    add = lambda name, v, lo, hi, src: rows.append((name, float(v), lo if lo is None else float(lo),  # noqa: E731
                                                    hi if hi is None else float(hi), src))
    pl = cal.panel.placements
    m, lo, hi = _beta_q(*cal.completion_post)
    add("completion_rate", m, lo, hi, f"Beta prior {SOURCE_COMPLETION}, prior weight {a.completion_prior[1]:g}, "
        f"updated with {completed:.0f} completed and {withdrew:.0f} withdrew in {pl['round'].nunique()} "
        "observed rounds")
    m, lo, hi = _beta_q(*cal.conversion_post)
    add("conversion_rate", m, lo, hi, f"Beta prior {SOURCE_CONVERSION}, prior weight {a.conversion_prior[1]:g}, "
        f"updated with {yes:.0f} semiconductor jobs of {yes + no:.0f} completers with a known outcome")
    m, lo, hi = _beta_q(*cal.slot_fill_post)
    add("slot_fill", m, lo, hi, f"share of announced host slots filled: Beta prior mean {a.slot_fill_prior[0]:g}, "
        f"weight {a.slot_fill_prior[1]:g} (judgment), updated with the placements against the announced slots of "
        f"{pl['round'].nunique()} observed rounds")
    ar = _beta_from(*a.application_rate)
    m, lo, hi = _beta_q(*ar)
    add("application_rate", m, lo, hi, "assumption (judgment): no data on applications; Beta prior "
        f"mean {a.application_rate[0]:g}, weight {a.application_rate[1]:g}")
    wr = _beta_from(*a.without_practice_ratio)
    m, lo, hi = _beta_q(*wr)
    add("without_practice_ratio", m, lo, hi, "assumption (judgment): conversion of graduates without a placement "
        "as a share of the conversion of completers; no data; Beta prior "
        f"mean {a.without_practice_ratio[0]:.3g}, weight {a.without_practice_ratio[1]:g}")
    # National panel rates, per level (per-term exit, annual summary).
    mean = cal.trans_mean
    tot = counts.sum(axis=-1)
    for li, lv in enumerate(LEVELS):
        n_lv = tot[li].sum()
        if n_lv <= 0:
            continue
        ex = counts[li, ..., X].sum() / n_lv
        add(f"exit_per_term.{lv}", ex, None, None, f"estimated: {n_lv:.0f} student-terms of the panel "
            "(dropped out, transferred, or not seen again in their university's next submission)")
        lv_from_leave = counts[li, :, :, 1, :]
        ret = (lv_from_leave[..., S0].sum() + lv_from_leave[..., S1].sum()) / max(lv_from_leave.sum(), 1)
        add(f"return_from_leave_per_term.{lv}", ret, None, None,
            f"estimated: {lv_from_leave.sum():.0f} student-terms on leave")
        stud = counts[li, :, :, 0, :]
        add(f"leave_per_term.{lv}", (stud[..., L0].sum() + stud[..., L1].sum()) / max(stud.sum(), 1), None, None,
            "estimated: studying -> on leave")
        final = counts[li, 0, NORMAL_YEARS[lv] - 1, 0, :]
        if final.sum() > 0:
            add(f"graduation_final_spring.{lv}", final[G] / final.sum(), None, None,
                f"estimated: share of final-year ({NORMAL_YEARS[lv]}) students in a first-semester term who "
                "graduate at the end of the year")
    add("pooling_concentration.exit", cal.kappa["exit"], None, None,
        "beta-binomial concentration (pseudo-students of the national rate) by maximum marginal likelihood")
    add("pooling_concentration.graduation", cal.kappa["graduation"], None, None,
        "beta-binomial concentration by maximum marginal likelihood")
    # The quantiles of every university and track in one call per posterior (one scipy call per value
    # cost ~0.3 s a calibration at 1/16 national size); element by element the same numbers.
    odds = lambda p: p / (1 - p)  # noqa: E731
    ratios = {}
    for name, post, exp_ in (("exit", cal.exit_post, cal.exit_expected), ("graduation", cal.grad_post,
                                                                           cal.grad_expected)):
        post = np.asarray(post, dtype=float).reshape(-1, 2)
        aa, bb = post[:, 0], post[:, 1]
        e = odds(np.asarray(exp_, dtype=float))
        ratios[name] = (odds(aa / (aa + bb)) / e, odds(stats.beta.ppf(0.1, aa, bb)) / e,
                        odds(stats.beta.ppf(0.9, aa, bb)) / e)
    for row in cal.uk.itertuples():
        for name in ("exit", "graduation"):
            r, rlo, rhi = (x[row.uk] for x in ratios[name])
            add(f"{name}_odds_ratio[{row.u},{row.track}]", r, rlo, rhi,
                "partial pooling (beta-binomial) of the university and track toward the national rate")
    for k, t in enumerate(TRACKS):
        for li, lv in enumerate(LEVELS):
            if cal.intake_base[k, li].sum() <= 0:
                continue
            g, se = cal.intake_growth[k, li], cal.intake_growth_se[k, li]
            tq = stats.t.ppf(0.9, max(cal.intake_dof[k, li], 1))
            fb = fallback_of.get(f"intake_growth[{t},{lv}]")
            add(f"intake_growth[{t},{lv}]", np.expm1(g), np.expm1(g - tq * se), np.expm1(g + tq * se),
                f"fallback ({fb['reason']}): {fb['used']}" if fb else
                f"estimated: log-linear trend of first-year intakes over the last {a.intake_trend_years} years "
                f"(used when intake_mode = trend); bounds {a.intake_growth_bounds}")
    lags = cal.panel.placement_lags
    if len(lags):
        add("placement_lag_max_observed", lags["lag"].max(), None, None,
            "observed: rounds between first eligibility and placement in the pilot rounds "
            f"(rounds_eligible = {a.rounds_eligible})")
    for k, v in (("horizon_year", a.horizon_year), ("count_from_year", a.count_from_year),
                 ("rounds_eligible", a.rounds_eligible), ("exit_scale", a.exit_scale)):
        add(k, v, None, None, "assumption (docs/MODEL.md)")
    add("universities_carried_forward", cal.panel.carried_forward, None, None,
        "universities without a submission for the last term: stock carried forward from their latest one")
    add("universities_stale", cal.panel.stale_universities, None, None,
        "universities whose latest submission is more than a year old: left out of the projection")
    # What the data could not calibrate: one row per parameter that fell back to its default, the value
    # is the number of strata (transitions) or units it covers.
    for fb in cal.fallbacks:
        add(f"fallback.{fb['parameter']}", fb["strata"], None, None, f"fallback: {fb['reason']}; used: {fb['used']}")
    return rows


# ----------------------------------------------------------------------------------------------
# Posterior draws
# ----------------------------------------------------------------------------------------------

@dataclass
class Draws:
    """One Monte Carlo sample of every parameter; the first axis is the draw."""

    n: int
    trans: np.ndarray        # [D, L, 2, Y, 2, 6] transition probabilities (float32)
    exit_or: np.ndarray      # [D, UK] odds ratio of drop-out of the university and track
    grad_or: np.ndarray      # [D, UK]
    intake_growth: np.ndarray  # [D, K, L] yearly growth (log scale)
    intake_eps: np.ndarray     # [D, K, L, years ahead] deviation of each projected year's log intake from the trend
    completion: np.ndarray   # [D]
    conversion: np.ndarray   # [D]
    application: np.ndarray  # [D]
    without_ratio: np.ndarray  # [D]
    slot_fill: np.ndarray = None  # [D] share of announced host slots filled (None: all)
    flow_seed: int | None = None  # seed of the year-to-year flow and intake noise (None: expected values only)
    intake_spring: np.ndarray = None  # [D, K, L] second-semester intake / first-semester intake of the same year

    @property
    def without_practice(self) -> np.ndarray:
        return self.conversion * self.without_ratio

    def take(self, idx: np.ndarray) -> "Draws":
        """The draws at positions `idx` (repeats allowed): the decisions stack several probes of the
        same draws into one simulation, which costs far less than one simulation a probe."""
        idx = np.asarray(idx, dtype=np.int64)
        arrays = {f: getattr(self, f) for f in ("trans", "exit_or", "grad_or", "intake_growth", "intake_eps",
                                                "completion", "conversion", "application", "without_ratio",
                                                "slot_fill", "intake_spring")}
        return Draws(n=len(idx), flow_seed=self.flow_seed,
                     **{f: (None if v is None else v[idx]) for f, v in arrays.items()})


def draw_parameters(cal: Calibration, a: Assumptions, n: int, seed: int) -> Draws:
    """Sample every parameter from its posterior. Each parameter block has its own random stream
    (spawned from `seed`), so scenarios that share a parameter share its draws exactly (common
    random numbers): a scenario's difference from the baseline is never Monte Carlo noise."""
    gens = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(9)]  # child i is the same for any count
    g = gens[0].standard_gamma(np.broadcast_to(cal.trans_alpha, (n,) + cal.trans_alpha.shape))
    trans = (g / g.sum(axis=-1, keepdims=True)).astype(np.float32)
    if a.exit_scale != 1.0:  # sensitivity: scale drop-out, the other outcomes share the difference
        x_old = trans[..., X].copy()
        x_new = np.minimum(x_old * a.exit_scale, 1.0)
        rest = np.where(x_old < 1, (1 - x_new) / np.maximum(1 - x_old, 1e-12), 0.0)
        trans *= rest[..., None]
        trans[..., X] = x_new

    def odds_ratio(rng, post, expected):
        r = rng.beta(post[:, 0], post[:, 1], (n, len(post)))
        r = np.clip(r, 1e-9, 1 - 1e-9)
        e = expected[None, :]
        return ((r / (1 - r)) / (e / (1 - e))).astype(np.float32)

    exit_or = odds_ratio(gens[1], cal.exit_post, cal.exit_expected)
    grad_or = odds_ratio(gens[2], cal.grad_post, cal.grad_expected)
    lo, hi = np.log1p(a.intake_growth_bounds[0]), np.log1p(a.intake_growth_bounds[1])
    # Normal-inverse-chi-square posterior of the log-linear intake trend (flat prior): a residual
    # variance per draw, then the slope given it, then each projected year's deviation from the trend.
    rng = gens[3]
    dof = np.maximum(cal.intake_dof, 1)
    sig2 = np.minimum(dof * cal.intake_resid_var / rng.chisquare(dof, (n,) + dof.shape), INTAKE_SIGMA_MAX ** 2)
    z = rng.standard_normal((n,) + dof.shape)
    eps = rng.standard_normal((n,) + dof.shape + (INTAKE_YEARS_MAX,)) * np.sqrt(sig2)[..., None]
    if a.intake_mode == "trend":
        growth = np.clip(cal.intake_growth[None] + np.sqrt(sig2 / cal.intake_sxx) * z, lo, hi)
    elif a.intake_mode == "planned":
        plan = a.intake_growth
        per_track = np.array([float(plan.get(tk, plan.get("all", 0.0))) if isinstance(plan, dict) else float(plan)
                              for tk in TRACKS])
        growth = np.broadcast_to(np.log1p(per_track)[None, :, None], (n,) + cal.intake_growth.shape).copy()
        eps = np.zeros_like(eps)  # a plan is an input, not an estimate
    else:
        raise ValueError(f"intake_mode must be 'trend' or 'planned', not {a.intake_mode!r}")
    fixed = dict(a.fixed or {})
    unknown = sorted(set(fixed) - set(FIXABLE))
    if unknown:
        raise ValueError(f"cannot fix {unknown}; fixable parameters: {list(FIXABLE)}")

    # Its own stream (child 10 of 11: the other children are unchanged), so the earlier draws stay the same.
    sp = cal.intake_spring_post
    spring = None
    if sp is not None:
        g_sp = np.random.default_rng(np.random.SeedSequence(seed).spawn(11)[10])
        spring = (g_sp.standard_gamma(np.maximum(sp[..., 0], 1e-9), (n,) + sp.shape[:2])
                  / np.where(sp[..., 1] > 0, sp[..., 1], 1.0)).astype(np.float32)
        if a.intake_mode == "planned":  # a plan is an input: the ratio at its posterior mean
            spring = np.broadcast_to(sp[..., 0] / np.where(sp[..., 1] > 0, sp[..., 1], 1.0),
                                     (n,) + sp.shape[:2]).astype(np.float32).copy()

    def beta(i, name, ab):
        x = gens[i].beta(ab[0], ab[1], n)
        return np.full(n, float(fixed[name])) if name in fixed else x

    return Draws(n=n, trans=trans, exit_or=exit_or, grad_or=grad_or, intake_growth=growth, intake_eps=eps,
                 completion=beta(4, "completion_rate", cal.completion_post),
                 conversion=beta(5, "conversion_rate", cal.conversion_post),
                 application=beta(6, "application_rate", _beta_from(*a.application_rate)),
                 without_ratio=beta(7, "without_practice_ratio", _beta_from(*a.without_practice_ratio)),
                 slot_fill=beta(8, "slot_fill", cal.slot_fill_post), intake_spring=spring,
                 # Its own stream (child 9: children 0-8 are the same whatever the number spawned).
                 flow_seed=int(np.random.SeedSequence(seed).spawn(10)[9].generate_state(1)[0]) if a.flow_noise
                 else None)


__all__ = ["Assumptions", "Calibration", "Draws", "Panel", "calibrate", "draw_parameters", "load_panel", "load_panels",
           "TRACKS", "LEVELS", "TRACK_GROUP", "LEVEL_GROUP"]
