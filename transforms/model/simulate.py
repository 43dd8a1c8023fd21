"""The two simulation engines of the lab-to-fab model, vectorised over Monte Carlo draws.

* `project_cohorts`: students by cell (university x track x degree level), study year and status,
  term by term: progression, leave and return, drop-out, graduation, new intakes.
* `simulate_rounds`: six-month internship rounds: eligible pool, applications, slots by host and
  track with one spill-over pass, completion, conversion, ageing out.

Both are expected-value (fluid) flows given each draw's parameters: each array is draws x ...,
and the only Python loops are over terms, rounds and the four degree levels. Every step conserves
people: see `ledger=True` and tests/test_model.py.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from transforms.model.calibrate import LEVELS, G, L0, L1, S0, S1, X, Calibration, Draws

F32 = np.float32
CHUNK = 128   # draws projected together (fixed, so the noise and the result do not depend on the threads)


# ----------------------------------------------------------------------------------------------
# Cohorts
# ----------------------------------------------------------------------------------------------

def intake_projection(cal: Calibration, draws: Draws, n_terms: int) -> np.ndarray:
    """New first-year students per draw, cell and projected term [D, C, n_terms]."""
    parts = [part for _, _, part in _intake_chunks(cal, draws, n_terms, [(0, draws.n)])]
    return parts[0]


def _intake_chunks(cal: Calibration, draws: Draws, n_terms: int, jobs: list[tuple[int, int]]):
    """`intake_projection` draw block by draw block: yields (d0, d1, new students [d1 - d0, C, n_terms]) for
    consecutive blocks `jobs` covering the draws in order. The Poisson counts come from one generator in the
    array's order, so the blocks together are the same numbers as the whole (a block's counts can be
    projected while the next block's are drawn)."""
    cells = cal.cells
    k, l = cells["k"].to_numpy(np.int64), cells["l"].to_numpy(np.int64)
    out = np.zeros((draws.n, len(cells), n_terms), dtype=F32)
    for step in range(n_terms):
        ti = cal.last_ti + 1 + step
        sem, year = ti % 2, ti // 2
        ratio = 1.0
        if sem == 1 and draws.intake_spring is not None and cal.intake_spring_ok is not None:
            # Second semester: the draw's ratio to the same year's first-semester trend (calibrate.py), where
            # one was estimated; elsewhere the last observed second-semester intake, as before.
            use = cal.intake_spring_ok[k, l]                    # [C]
            src = np.where(use, 0, 1)
            ratio = np.where(use[None, :], draws.intake_spring[:, k, l], 1.0)
        else:
            src = np.full(len(k), sem)
        base = cal.intake_base[k, l, src]                       # [C]
        ahead = year - cal.intake_base_year[k, l, src]          # [C]
        eps = draws.intake_eps[:, k, l, np.clip(ahead - 1, 0, draws.intake_eps.shape[-1] - 1).astype(int)]
        grow = np.exp(draws.intake_growth[:, k, l] * ahead[None, :] + np.where(ahead > 0, eps, 0.0))  # [D, C]
        out[:, :, step] = np.where(base > 0, base * cal.intake_share, 0.0)[None, :] * grow * ratio
    # Year-to-year intake noise: a term's new students are a count, Poisson around the draw's trend.
    rng = None if draws.flow_seed is None else np.random.default_rng([draws.flow_seed, 1])
    for d0, d1 in jobs:
        yield d0, d1, out[d0:d1] if rng is None else rng.poisson(out[d0:d1]).astype(F32)


def _exit_rate(pg2, keep):
    """Drop-out rate of each state from its graduation and staying rates."""
    return 1 - keep - pg2


def threads() -> int:
    """Worker threads for the cohort projection (numpy releases the GIL on large arrays):
    $LAB2FAB_MODEL_THREADS, else the number of cores, at most 4."""
    from transforms.config import settings

    return settings().model_threads or min(os.cpu_count() or 1, 4)


def project_cohorts(cal: Calibration, draws: Draws, n_terms: int, *, ledger: bool = False,
                    summary: bool = False, intake: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Project every cell `n_terms` terms past the last observed one.

    Returns `graduates` [D, C, n_terms] (graduates in projected term t = last + 1 + step) and `intake`,
    the new students [D, C, n_terms] (`intake`, else `intake_projection`'s); with `ledger=True`, per step:
    `stock` (studying + on leave) and `exits` [D, C, n_terms] too, and `intake` in float64; with
    `summary=True`, `stock_kl` and `exits_kl` [D, n_terms, K * L] by track and degree level.
    The draws are split into chunks projected in parallel threads; each chunk's arithmetic does
    not depend on the others, so the result is the same whatever the number of threads. Without `intake`,
    a chunk is projected as soon as its new students are drawn (the draws of the next go on meanwhile).
    """
    D, C = draws.n, len(cal.cells)
    # Chunks of a fixed size, whatever the number of threads: each chunk's flow noise has its own seed.
    jobs = [(d0, min(d0 + CHUNK, D)) for d0 in range(0, D, CHUNK)]
    if intake is None:
        new_students = _intake_chunks(cal, draws, n_terms, jobs)
        intake = np.zeros((D, C, n_terms), dtype=F32)
    else:
        new_students = ((d0, d1, None) for d0, d1 in jobs)
    out = {"graduates": np.zeros((D, C, n_terms), dtype=F32), "intake": intake}
    if ledger:
        out.update({name: np.zeros((D, C, n_terms)) for name in ("stock", "exits", "intake")})
    if summary:
        KL = len(cal.intake_base) * len(LEVELS)
        out.update({name: np.zeros((D, n_terms, KL)) for name in ("stock_kl", "exits_kl")})
    # Continuation shares: given a student continues, where to (S0, S1, L0, L1) [D, L, 2, Y, 2, 4].
    cont = draws.trans[..., [S0, S1, L0, L1]]
    csum = cont.sum(axis=-1, keepdims=True)
    safe = np.zeros_like(cont)
    safe[..., 0] = 1.0
    cont = np.where(csum > 0, cont / np.where(csum > 0, csum, 1), safe).astype(F32)
    written = {k: v for k, v in out.items() if k != "intake"}   # the chunks' outputs

    def run(d0: int, d1: int) -> None:
        rng = None if draws.flow_seed is None else np.random.default_rng([draws.flow_seed, 2, d0])
        _project_chunk(cal, draws.trans[d0:d1], cont[d0:d1], draws.exit_or[d0:d1], draws.grad_or[d0:d1],
                       intake[d0:d1], n_terms, {k: v[d0:d1] for k, v in written.items()}, ledger, summary, rng)

    def chunks():
        for d0, d1, part in new_students:
            if part is not None:
                intake[d0:d1] = part
            yield d0, d1

    workers = min(threads(), len(jobs))
    if workers <= 1:
        for j in chunks():
            run(*j)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for f in [pool.submit(run, *j) for j in chunks()]:
                f.result()
    if ledger:
        out["intake"][:] = intake
    return out


def _transition_matrix(q: np.ndarray, Y: int) -> np.ndarray:
    """Where continuing students go [D, 2Y, 2Y], from continuation shares q [D, Y, 2, 4] (S0, S1, L0, L1).
    State index = status * Y + (study year - 1); a student in the last simulated study year stays there."""
    D = q.shape[0]
    T = np.zeros((D, 2 * Y, 2 * Y), dtype=F32)
    y = np.arange(Y)
    y_next = np.minimum(y + 1, Y - 1)
    for f in range(2):
        rows = f * Y + y
        for o, (dest, ys) in enumerate(((0, y), (0, y_next), (1, y), (1, y_next))):
            T[:, rows, dest * Y + ys] += q[:, :, f, o]
    return T


SMALL_COUNT_VAR = 25.0  # below this binomial variance a cell's count is drawn exactly; above, its normal approximation


def _count_like(rng: np.random.Generator, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """A count with this mean and binomial variance (var <= mean): where var < SMALL_COUNT_VAR, Binomial(N, p)
    with p = 1 - var/mean and N = mean/p persons (the fluid flows have fractional persons: the fraction f
    counts as one more trial worth f), so the mean is exact, the count lies in [0, N] however skewed, and
    N is at most the cell's persons (Cauchy-Schwarz); the variance falls short by at most p(1-p)/4. Elsewhere
    the normal approximation (a sd of 5 or more: symmetric enough)."""
    m = np.asarray(mean, dtype=np.float64)
    v = np.minimum(np.asarray(var, dtype=np.float64), m)
    out = m + np.sqrt(v) * rng.standard_normal(m.shape)
    small = (v < SMALL_COUNT_VAR) & (m > 0)
    if small.any():
        ms, vs = m[small], v[small]
        p = np.clip(1 - vs / ms, 1e-6, 1.0)
        n = ms / p
        whole = np.floor(n)
        out[small] = rng.binomial(whole.astype(np.int64), p) + (n - whole) * (rng.random(n.shape) < p)
    out[m <= 0] = 0.0
    return out


def _project_chunk(cal: Calibration, trans, cont, exit_or, grad_or, intake, n_terms: int, out: dict,
                   ledger: bool, summary: bool = False, rng: np.random.Generator | None = None) -> None:
    """One chunk of draws: state [D, Cl, 2Y] per level block, one batched matrix product a term.
    rng: year-to-year noise; a cell's graduations and drop-outs in a term are binomial around the
    draw's rates (variance sum of n.p.(1-p) over its states; exact for small cells, `_count_like`). The noise
    moves the term's two rates, and whoever neither graduates nor leaves stays: people are still conserved."""
    cells = cal.cells
    D = trans.shape[0]
    uk_of = cells["uk"].to_numpy(np.int64)
    levels = cells["l"].to_numpy(np.int64)
    for li in range(len(LEVELS)):
        block = np.nonzero(levels == li)[0]
        if len(block) == 0:
            continue
        c0, c1 = block[0], block[-1] + 1
        Y = int(cal.years[li])
        start = np.concatenate([cal.stock0[c0:c1, :Y, 0], cal.stock0[c0:c1, :Y, 1]], axis=1).astype(F32)
        state = np.ascontiguousarray(np.broadcast_to(start, (D, c1 - c0, 2 * Y)))
        ore = exit_or[:, uk_of[c0:c1]][:, :, None]                  # [D, Cl, 1]
        org = grad_or[:, uk_of[c0:c1]][:, :, None]
        rates = {}
        n_l = len(LEVELS)
        K = out["stock_kl"].shape[-1] // n_l if summary else 0
        if summary:
            to_k = np.zeros((c1 - c0, K), dtype=F32)                # cell -> track of this level block
            to_k[np.arange(c1 - c0), cells["k"].to_numpy(np.int64)[c0:c1]] = 1
            cols = np.arange(K) * n_l + li

        def sem_rates(sem: int):
            """Per cell and state: share staying on the rolls, graduating, leaving [D, Cl, 2Y], with the
            odds ratios of the university and track applied; and the continuation matrix."""
            if sem not in rates:
                pe = np.concatenate([trans[:, li, sem, :Y, f, X] for f in range(2)], axis=1)[:, None, :]
                pg = np.concatenate([trans[:, li, sem, :Y, f, G] for f in range(2)], axis=1)[:, None, :]
                pe2 = ore * pe / (1 + pe * (ore - 1))
                pg2 = org * pg / (1 + pg * (org - 1))
                tot = pe2 + pg2
                if np.any(tot > 1):
                    scale = np.where(tot > 1, 1 / np.maximum(tot, 1e-12), 1).astype(F32)
                    pe2, pg2 = pe2 * scale, pg2 * scale
                keep = 1 - pe2 - pg2
                pe2 = pe2 if (ledger or summary) else None
                # The binomial variance per person of each rate (the same every term of this semester).
                var = None if rng is None else tuple(r * (1 - r) for r in (pg2, _exit_rate(pg2, keep) if pe2 is None
                                                                              else pe2))
                rates[sem] = (keep, pg2, pe2, _transition_matrix(cont[:, li, sem, :Y], Y), var)
            return rates[sem]

        for step in range(n_terms):
            sem = (cal.last_ti + step) % 2                          # semester of the term moved from
            keep, pg2, pe2, T, var = sem_rates(sem)
            grads = np.einsum("dcs,dcs->dc", state, pg2)
            if rng is not None:
                # The cell's graduations and drop-outs are counts: each is drawn with the cell's expected count
                # and binomial variance (sum of n.p.(1-p) over its states; `_count_like`: exact binomial for
                # small cells), and the difference from the expected count is spread over the states in
                # proportion to the room each has in that direction (up: its stayers, graduations first and
                # drop-outs from the stayers left; down: its own count), so no state goes below zero, there is
                # no shift where p is 0 or 1, whoever neither graduates nor leaves stays (people are
                # conserved), and the mean is exact unless a draw exceeds the room (then it is capped: rare for
                # graduations, whose room is every stayer). A symmetric normal clipped at each state's rate (the
                # earlier approximation) lost about half the variance of the many small cells (a university's
                # few final-year students), which made the national intervals too narrow.
                pe2 = np.broadcast_to(pe2 if pe2 is not None else _exit_rate(pg2, keep), state.shape)
                noisy = []
                for rate, var_s in zip((pg2, pe2), var):
                    mean_c = grads if rate is pg2 else np.einsum("dcs,dcs->dc", state, rate)
                    diff = _count_like(rng, mean_c, np.einsum("dcs,dcs->dc", state, var_s)) - mean_c
                    up_c, down_c = np.einsum("dcs,dcs->dc", state, keep), mean_c      # room (persons) of the cell
                    diff = np.clip(diff, -down_c, up_c)
                    # A state's share of the room is its persons x keep (up) or x rate (down), so its rate moves
                    # by the cell's difference / the cell's room x keep (up) or x rate (down).
                    f_up = np.where(diff > 0, diff / np.where(up_c > 0, up_c, 1), 0).astype(F32)[..., None]
                    f_dn = np.where(diff < 0, diff / np.where(down_c > 0, down_c, 1), 0).astype(F32)[..., None]
                    # new = max(rate + f_up * keep + f_dn * rate, 0) (float32 rounding at -100%), then
                    # keep = max(keep - (new - rate), 0). A cell moves one way only (f_up or f_dn is 0, and
                    # adding 0 changes nothing), so new = rate + f * (keep up, rate down): the same numbers.
                    new = np.where((diff > 0)[..., None], keep, rate)
                    new *= f_up + f_dn
                    np.add(rate, new, out=new)
                    np.maximum(new, 0, out=new)
                    if rate is pg2:                               # the drop-outs' room; after them keep is redone
                        moved = np.subtract(new, rate)
                        np.subtract(keep, moved, out=moved)
                        keep = np.maximum(moved, 0, out=moved)
                    noisy.append(new)
                pg2, pe2 = noisy
                keep = np.subtract(1, pg2)
                keep -= pe2
                np.maximum(keep, 0, out=keep)                     # float32 rounding
                grads = np.einsum("dcs,dcs->dc", state, pg2)
            out["graduates"][:, c0:c1, step] = grads
            if ledger or summary:
                exits = np.einsum("dcs,dcs->dc", state, pe2)
                if ledger:
                    out["exits"][:, c0:c1, step] = exits
                if summary:
                    out["exits_kl"][:, step, cols] = exits @ to_k
            state = np.matmul(state * keep, T)
            state[..., 0] += intake[:, c0:c1, step]                  # new students: studying, first year
            if ledger:
                out["stock"][:, c0:c1, step] = state.sum(axis=-1, dtype=np.float64)
            if summary:
                out["stock_kl"][:, step, cols] = state.sum(axis=-1) @ to_k


# ----------------------------------------------------------------------------------------------
# Internship rounds
# ----------------------------------------------------------------------------------------------

@dataclass
class RoundsSetup:
    """Everything about rounds that does not change between draws."""

    rounds: list[str]             # round codes, consecutive
    year: np.ndarray              # calendar year of each round [R]
    slots: np.ndarray             # host slots [R, H, K] (scenario applied)
    accepts: np.ndarray           # host takes track [H, K] (bool)
    host_factor: np.ndarray       # conversion factor of the host's type [H]
    observed: dict                # round position -> dict of observed arrays [K]
    eligible_rounds: int          # W
    count_from_year: int
    horizon_year: int
    host_codes: list[str]
    # Round whose completers can be in a job by the end of the horizon year (round end + conversion lag);
    # None: every round. Completers of the other rounds count as employed at the without-practice rate.
    converts_by_horizon: np.ndarray | None = None

    @property
    def window(self) -> np.ndarray:
        return (self.year >= self.count_from_year) & (self.year <= self.horizon_year)


@dataclass
class RoundsResult:
    per_round: dict[str, np.ndarray]   # name -> [D, R, K]
    practice_ready: np.ndarray         # [D, R, K, L] by the round they completed in
    without_practice: np.ndarray       # [D, R, K, L] by the round they left the pool in (last: horizon)
    pi: np.ndarray                     # [D, R, K] placement probability of an applicant in the round
    pr_rate: np.ndarray                # [D, R, K] practice-ready engineers per placed student
    wd_rate: np.ndarray                # [D, R, K] withdrawals per placed student
    moved_frac: np.ndarray = None      # [D, R, K] non-applicants moved to applicants in observed rounds
    ledger: dict | None = None
    # Persons, by the round they ENTERED the pool [D, R, K, L] (transforms/model/measures.py): placed students
    # who completed (any round up to the horizon), and of them those whose round converts by the horizon,
    # with the expected number in a semiconductor job (c·v·f per placed student).
    completed_by_entry: np.ndarray = None
    completed_in_time_by_entry: np.ndarray = None
    jobs_in_time_by_entry: np.ndarray = None
    # completed_by_entry as it stood at the end of each year asked for (`snapshot_years`): interim milestones.
    completed_by_entry_at: dict = None


@dataclass
class RoundsPrefix:
    """The rounds before `upto` simulated once, without extra slots, for the caller's draws and graduates
    (`rounds_prefix`). The decision solvers simulate many extra-slot candidates that add slots only from
    `upto` on: each resumes here, and the rounds before are the same numbers without being simulated again."""

    upto: int
    state: dict


def rounds_prefix(setup: RoundsSetup, grads_in: np.ndarray, draws: Draws, upto: int) -> RoundsPrefix:
    """The state of `simulate_rounds` at the start of round `upto` (extra slots of 0 before it), with the
    slots the hosts fill in each later round (they depend on the draw's slot delivery alone)."""
    R, _, K = setup.slots.shape
    state = simulate_rounds(setup, grads_in, draws, np.zeros((1, R, K)), _stop_at=upto)
    fill = np.ones(draws.n) if draws.slot_fill is None else draws.slot_fill
    offered = np.zeros((draws.n, R, K))
    for i in range(upto, R):
        offered[:, i] = (setup.slots[i][None] * fill[:, None, None]).sum(axis=1)   # as in simulate_rounds
    state["offered"] = offered
    return RoundsPrefix(upto, state)


def simulate_rounds(setup: RoundsSetup, grads_in: np.ndarray, draws: Draws, extra: np.ndarray | None = None,
                    *, ledger: bool = False, snapshot_years: tuple = (), prefix: RoundsPrefix | None = None,
                    rows: np.ndarray | None = None, only: str | None = None,
                    _stop_at: int | None = None) -> RoundsResult:
    """Run the rounds for every draw.

    grads_in: graduates entering the pool at each round [D or 1, R, K, L] (graduates of term r - 2).
    extra: extra slots per draw, round and track [D or 1, R, K] (capacity solver, marginal analysis);
           they belong to no host, so they neither spill over nor change the host-type mix.
    prefix: resume at round `prefix.upto` from its state (`rounds_prefix`: same graduates and draws, or
           the draws `rows` of its draws); used only where `extra` adds nothing before that round, so the
           result is the same as simulating every round. Each draw's rounds depend on that draw alone.
    only: None, every output; "engineers": practice_ready and without_practice only; "entry": the
           *_by_entry arrays only (the solvers' metrics): the others are None (per_round empty), not computed.
    """
    if only not in (None, "engineers", "entry") or (only and ledger):
        raise ValueError(f"simulate_rounds: only={only!r} (None, 'engineers' or 'entry'; None with ledger)")
    rec_on, eng_on, entry_on = only is None, only in (None, "engineers"), only in (None, "entry")
    D = draws.n
    R, H, K = setup.slots.shape
    Lv = grads_in.shape[-1]
    W = setup.eligible_rounds
    a = draws.application[:, None, None]
    fill = np.ones(D) if draws.slot_fill is None else draws.slot_fill
    c = draws.completion[:, None]
    v = draws.conversion[:, None]
    q0 = draws.without_practice[:, None, None]
    pool = np.zeros((D, K, Lv, W))
    nonapp = np.zeros((D, K, Lv, W))
    names = ("eligible", "applicants", "slots_offered", "slots_available", "slots_used", "placed", "completed",
             "withdrew", "unmet_demand", "unused_slots", "spill_in", "spill_out", "aged_out", "practice_ready")
    rec = {n: np.zeros((D, R, K)) for n in names} if rec_on else {}
    pr_out = np.zeros((D, R, K, Lv)) if eng_on else None
    comp_entry, jobs_ok_entry = ((np.zeros((D, R, K, Lv)) if entry_on else None) for _ in range(2))
    # Completers of in-time rounds: the same as comp_entry until the first round that is not in time
    # (usually the last ones), so it is only copied from comp_entry there (ok_same until then).
    comp_ok_entry, ok_same = None, True
    snaps = {}
    in_time = np.ones(R, dtype=bool) if setup.converts_by_horizon is None else setup.converts_by_horizon
    wp_out = np.zeros((D, R, K, Lv)) if eng_on else None
    pi_all, pr_rate_all, wd_rate_all = ((np.zeros((D, R, K)) if rec_on else None) for _ in range(3))
    # share of non-applicants found to have applied (observed rounds)
    moved_frac = np.zeros((D, R, K)) if rec_on else None
    led = {n: np.zeros((D, R)) for n in ("entered", "nonapplicant", "waiting", "practice_ready", "completed_no_job",
                                         "withdrew", "aged_out")} if ledger else None
    cum = {n: np.zeros(D) for n in led} if ledger else None
    uniform_factor = bool(np.all(setup.host_factor == 1.0))
    multi_track = setup.accepts.sum(axis=1) > 1      # hosts that can pass unused slots to another track
    multi_track = (setup.accepts[multi_track].any(axis=0)) if multi_track.any() else np.zeros(K, dtype=bool)
    # Spill-over is computed only for the draws that can have any (below) when no host has slots in a track it
    # does not take: then every other draw's spill-over is exactly zero.
    spill_by_draw = not np.any((setup.slots.sum(axis=0) > 0) & ~setup.accepts)
    # Non-applicants matter after the last observed round only for the per-round records.
    last_observed = max(setup.observed) if setup.observed else -1
    i_first, offered_pre = 0, None
    if prefix is not None and not ledger and not snapshot_years and 0 < prefix.upto < R and (
            extra is None or not np.any(extra[:, :prefix.upto])):
        st = prefix.state
        upto = prefix.upto

        def pick(x):
            """A per-round array of the prefix [D, R, ...] for these draws: its rounds from `upto` on are still 0."""
            out = np.zeros((D,) + x.shape[1:])
            out[:, :upto] = x[:, :upto] if rows is None else x[rows, :upto]
            return out

        def pick_all(x):
            return x.copy() if rows is None else x[rows]

        pool, nonapp = pick_all(st["pool"]), pick_all(st["nonapp"])
        if eng_on:
            pr_out, wp_out = pick(st["pr_out"]), pick(st["wp_out"])
        if entry_on:
            comp_entry, jobs_ok_entry = pick(st["comp_entry"]), pick(st["jobs_ok_entry"])
            ok_same = st["ok_same"]
            comp_ok_entry = None if ok_same else pick(st["comp_ok_entry"])
        if rec_on:
            pi_all, pr_rate_all, wd_rate_all = pick(st["pi_all"]), pick(st["pr_rate_all"]), pick(st["wd_rate_all"])
            moved_frac = pick(st["moved_frac"])
            rec = {n: pick(v) for n, v in st["rec"].items()}
        offered_pre = pick_all(st["offered"]) if "offered" in st else None
        i_first = prefix.upto
    for i in range(i_first, R):
        if i == _stop_at:
            return {"pool": pool, "nonapp": nonapp, "pr_out": pr_out, "wp_out": wp_out, "comp_entry": comp_entry,
                    "comp_ok_entry": comp_ok_entry, "ok_same": ok_same, "jobs_ok_entry": jobs_ok_entry,
                    "pi_all": pi_all, "pr_rate_all": pr_rate_all, "wd_rate_all": wd_rate_all, "moved_frac": moved_frac,
                    "rec": rec}
        new = np.broadcast_to(grads_in[:, i], (D, K, Lv))
        pool[..., 0] += a * new
        track_nonapp = rec_on or i <= last_observed
        if track_nonapp:
            nonapp[..., 0] += (1 - a) * new
        if eng_on:
            wp_out[:, i] += q0 * (1 - a) * new                  # non-applicants enter the industry without practice
        A = pool.reshape(D, K, -1).sum(axis=-1)                  # applicants per track [D, K]
        obs = setup.observed.get(i)
        if obs is not None and (obs["placed"][None, :] > A + 1e-12).any():
            # More were placed than this draw's applicants: the records are the truth, so some graduates
            # counted as non-applicants did apply. Move them (pro rata) and undo their earlier count.
            avail = nonapp.reshape(D, K, -1).sum(axis=-1)
            need = np.minimum(np.maximum(obs["placed"][None, :] - A, 0), avail)
            frac = np.where(avail > 0, need / np.where(avail > 0, avail, 1), 0.0)
            moved = nonapp * frac[..., None, None]
            nonapp -= moved
            pool += moved
            for w in range(min(W, i + 1) if eng_on else 0):         # entered w rounds ago
                wp_out[:, i - w] -= q0 * moved[..., w]
            if rec_on:
                moved_frac[:, i] = frac
            if ledger:
                cum["nonapplicant"] -= moved.sum(axis=(1, 2, 3))
            A = pool.reshape(D, K, -1).sum(axis=-1)
        if rec_on:
            rec["eligible"][:, i] = A + nonapp.reshape(D, K, -1).sum(axis=-1)
            rec["applicants"][:, i] = A
        s_hk = setup.slots[i]                                    # [H, K]
        # Hosts fill a share of the slots they announce (slot delivery, one share per draw); so do the extra
        # slots of the capacity solution (a planner negotiates announced slots).
        s_dhk = s_hk[None] * fill[:, None, None] if offered_pre is None or not uniform_factor else None  # [D, H, K]
        offered = s_dhk.sum(axis=1) if offered_pre is None else offered_pre[:, i]
        if extra is not None:
            offered = offered + np.broadcast_to(extra[:, i], (D, K)) * fill[:, None]
        spill_in = spill_out = np.zeros((D, K))
        if obs is not None:
            placed = np.minimum(A, obs["placed"][None, :])
            used = placed
            n_obs = np.maximum(obs["placed"], 1e-12)[None, :]
            pr_rate = np.broadcast_to((obs["jobs_yes"] + v * obs["unknown"]) / n_obs, (D, K))
            wd_rate = np.broadcast_to(obs["withdrew"] / n_obs, (D, K))
            comp_rate = np.broadcast_to(obs["completed"] / n_obs, (D, K))
            offered = np.maximum(offered, obs["placed"][None, :])  # a round over quota still used its places
        else:
            used1 = np.minimum(A, offered)
            rem = A - used1
            frac_unused = np.where(offered > 0, 1 - used1 / np.where(offered > 0, offered, 1), 0.0)  # [D, K]
            host_slots = s_hk.sum(axis=1) > 0
            taken = None
            if spill_by_draw:
                sel = (frac_unused[:, multi_track] > 0).any(axis=1) & (rem > 0).any(axis=1)
                spilling, sel = bool(sel.any()), (None if sel.all() else np.flatnonzero(sel))
            else:
                spilling, sel = bool((frac_unused[:, multi_track] > 0).any() and (rem > 0).any()), None
            if spilling:
                # Spill-over: a host's unused slots go to the other tracks it takes, in proportion to
                # their unmet demand (one pass; slots a track cannot fill stay unused).
                if s_dhk is None:
                    s_dhk = s_hk[None] * fill[:, None, None]
                s_sel, fu, rm = (s_dhk, frac_unused, rem) if sel is None else (s_dhk[sel], frac_unused[sel], rem[sel])
                u_hk = s_sel * fu[:, None, :]                    # unused host slots by their own track [D, H, K]
                u_h = u_hk.sum(axis=-1)
                w_hk = setup.accepts[None] * rm[:, None, :]       # demand each host could still take [D, H, K]
                w_sum = w_hk.sum(axis=-1, keepdims=True)
                offer = np.where(w_sum > 0, u_h[..., None] * w_hk / np.where(w_sum > 0, w_sum, 1), 0.0)
                O = offer.sum(axis=1)
                spill_in = np.minimum(rm, O)
                taken = offer * np.where(O > 0, spill_in / np.where(O > 0, O, 1), 0.0)[:, None, :]
                rho = np.where(u_h > 0, taken.sum(axis=-1) / np.where(u_h > 0, u_h, 1), 0.0)
                spill_out = (u_hk * rho[..., None]).sum(axis=1)
                if sel is not None:                               # the other draws: no spill-over
                    parts = (spill_in, spill_out, taken)
                    spill_in, spill_out, taken = np.zeros((D, K)), np.zeros((D, K)), np.zeros((D, H, K))
                    spill_in[sel], spill_out[sel], taken[sel] = parts
            placed = used1 + spill_in
            used = used1 + spill_out
            if uniform_factor or not host_slots.any():
                f_eff = 1.0
            else:
                # Conversion factor of the hosts the placed students went to (extra slots count as 1).
                used_share = 1 - frac_unused
                f_own = (s_dhk * used_share[:, None, :] * setup.host_factor[None, :, None]).sum(axis=1)
                f_extra = 0.0 if extra is None else np.broadcast_to(extra[:, i], (D, K)) * fill[:, None] * used_share
                f_spill = 0.0 if taken is None else (taken * setup.host_factor[None, :, None]).sum(axis=1)
                f_eff = np.where(placed > 0, (f_own + f_extra + f_spill) / np.where(placed > 0, placed, 1), 1.0)
            pr_rate = c * np.minimum(v * f_eff, 1.0)
            wd_rate = np.broadcast_to(1 - c, (D, K))
            comp_rate = np.broadcast_to(c, (D, K))
        pi = np.where(A > 0, placed / np.where(A > 0, A, 1), 0.0)
        if eng_on or rec_on:
            waiting = pool.sum(axis=-1)                           # [D, K, L]
            placed_kl = pi[..., None] * waiting
        # Who completed, by the round they entered (pool index w = entered w rounds ago).
        if entry_on:
            if ok_same and not in_time[i]:
                comp_ok_entry, ok_same = comp_entry.copy(), False
            comp_w = pool * (pi * comp_rate)[..., None, None]
            # Entered w = 0 .. n-1 rounds ago: entry rounds i - n + 1 .. i, each added to once (one slab).
            n_w = min(W, i + 1)
            comp_entry[:, i - n_w + 1:i + 1] += np.moveaxis(comp_w[..., n_w - 1::-1], -1, 1)
        if entry_on and in_time[i]:
            if not ok_same:
                comp_ok_entry[:, i - n_w + 1:i + 1] += np.moveaxis(comp_w[..., n_w - 1::-1], -1, 1)
            jobs_ok_entry[:, i - n_w + 1:i + 1] += np.moveaxis(pool[..., n_w - 1::-1] * (pi * pr_rate)[..., None, None],
                                                               -1, 1)
        pool *= (1 - pi)[..., None, None]
        if eng_on or rec_on:
            pr_kl = placed_kl * pr_rate[..., None]
            wd_kl = placed_kl * wd_rate[..., None]
        if eng_on:
            pr_out[:, i] = pr_kl
            wp_out[:, i] += q0 * wd_kl                            # withdrew: back to the market without practice
        aged = pool[..., W - 1].copy()
        if i < R - 1:
            if eng_on:
                wp_out[:, i] += q0 * aged                         # aged out unplaced
            pool[..., 1:] = pool[..., :-1].copy()
            pool[..., 0] = 0
            if track_nonapp:
                nonapp[..., 1:] = nonapp[..., :-1].copy()
                nonapp[..., 0] = 0
        else:
            aged = np.zeros_like(aged)
            if eng_on:
                wp_out[:, i] += q0 * pool.sum(axis=-1)            # still waiting at the horizon
        if not rec_on:
            if setup.year[i] in snapshot_years and (i == R - 1 or setup.year[i + 1] != setup.year[i]):
                snaps[int(setup.year[i])] = comp_entry.copy()
            continue
        rec["slots_offered"][:, i] = offered
        rec["slots_available"][:, i] = offered + spill_in
        rec["slots_used"][:, i] = used
        rec["placed"][:, i] = placed
        rec["completed"][:, i] = placed * comp_rate
        rec["withdrew"][:, i] = placed * wd_rate
        rec["unmet_demand"][:, i] = A - placed
        rec["unused_slots"][:, i] = np.maximum(offered - used, 0)
        rec["spill_in"][:, i] = spill_in
        rec["spill_out"][:, i] = spill_out
        rec["aged_out"][:, i] = aged.sum(axis=-1)
        rec["practice_ready"][:, i] = pr_kl.sum(axis=-1)
        pi_all[:, i], pr_rate_all[:, i], wd_rate_all[:, i] = pi, pr_rate, wd_rate
        if ledger:
            cum["entered"] += new.sum(axis=(1, 2))
            cum["nonapplicant"] += ((1 - a) * new).sum(axis=(1, 2))
            cum["practice_ready"] += pr_kl.sum(axis=(1, 2))
            cum["completed_no_job"] += (placed_kl * (1 - pr_rate[..., None] - wd_rate[..., None])).sum(axis=(1, 2))
            cum["withdrew"] += wd_kl.sum(axis=(1, 2))
            cum["aged_out"] += aged.sum(axis=(1, 2))
            for n in cum:
                led[n][:, i] = cum[n]
            led["waiting"][:, i] = pool.sum(axis=(1, 2, 3))
        if setup.year[i] in snapshot_years and (i == R - 1 or setup.year[i + 1] != setup.year[i]):
            snaps[int(setup.year[i])] = comp_entry.copy()
    if entry_on and ok_same:
        comp_ok_entry = comp_entry.copy()
    return RoundsResult(completed_by_entry_at=snaps, per_round=rec, practice_ready=pr_out, without_practice=wp_out, pi=pi_all,
                        pr_rate=pr_rate_all, wd_rate=wd_rate_all, moved_frac=moved_frac, ledger=led,
                        completed_by_entry=comp_entry, completed_in_time_by_entry=comp_ok_entry,
                        jobs_in_time_by_entry=jobs_ok_entry)


def per_entrant(setup: RoundsSetup, res: RoundsResult, draws: Draws) -> dict[str, np.ndarray]:
    """Expected outcome, by the horizon and within the counting window, of ONE graduate entering the
    pool at round i in track k [D, R, K]: engineers, practice-ready engineers, placements.

    Allocation is proportional within a track, so every applicant of a track has the same chance in a
    round; a university's expected contribution is its entrants times these numbers (exact for the
    fluid model: the sum over universities equals the national total).
    """
    D, R, K = res.pi.shape
    W = setup.eligible_rounds
    win = setup.window.astype(float)
    a = draws.application[:, None]
    q0 = draws.without_practice[:, None]
    moved = res.moved_frac if res.moved_frac is not None else np.zeros((D, R, K))
    eng = np.zeros((D, R, K))
    pr = np.zeros((D, R, K))
    placed = np.zeros((D, R, K))
    for i0 in range(R):
        app = np.broadcast_to(a, (D, K)).copy()                    # applicants still waiting (share of one)
        non = 1 - app                                              # non-applicants still eligible
        e = non * q0 * win[i0]
        p_ = np.zeros((D, K))
        pl = np.zeros((D, K))
        for j in range(W):
            i = i0 + j
            if i >= R:
                break
            m = non * moved[:, i]                                  # found to have applied (observed rounds)
            non = non - m
            app = app + m
            e -= m * q0 * win[i0]
            got = app * res.pi[:, i]
            pl += got
            p_ += got * res.pr_rate[:, i] * win[i]
            e += got * (res.pr_rate[:, i] + res.wd_rate[:, i] * q0) * win[i]
            app = app - got
            if i == R - 1 or j == W - 1:
                e += app * q0 * win[i]                            # aged out, or still waiting at the horizon
        eng[:, i0] = e
        pr[:, i0] = p_
        placed[:, i0] = pl
    return {"engineers": eng, "practice_ready": pr, "placed": placed}
