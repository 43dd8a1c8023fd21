"""Persons, not degrees: what the warehouse says about who counts toward T (docs/MODEL.md, "What is counted").

Decision 1017/QĐ-TTg counts *people trained* at bachelor level or above, and its levels add up to the
total, so each person counts once, at the highest level reached. The pseudonymised national id
(`staging.enrollment.person_key`) follows a person across levels, universities and transfers;
`student_key` (university + student id) does not. Everything here is aggregated in DuckDB: no
per-person row leaves this module.

* `observed`: persons who graduated in the counting window up to the last observed term, by the
  track and level of their highest graduation, for three programme scopes (`counted`: each
  programme at its documented share; `core`: core programmes only; `all`: core and related in full).
* `weight`: the share of each (track, level)'s students on the rolls at the last term that counts,
  per scope (applied to projected graduates, who are not persons yet).
* `continuation`: per level, the share of recent entrants who already hold a counting degree of a
  lower level (a bachelor going on to a master's): their projected graduation moves them up a
  level instead of adding a person.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from transforms.model.calibrate import LEVELS, STATUSES, TRACKS, EnrollmentRows

SCOPES = ("counted", "core", "all")
# Ordering of levels for "highest level reached" (bachelor and engineer are the same target group;
# an engineer degree is the longer first degree, so it ranks above a bachelor).
RANK = {"bachelor": 1, "engineer": 2, "master": 3, "doctor": 4}
# What a continuer held before: a master's student a first degree, a doctoral student a master's.
LOWER = {"master": ("bachelor", "engineer"), "doctor": ("master",)}


class ProgrammeScopeError(ValueError):
    """programmes.csv lacks a usable scope or counting share (the message names the row and field)."""


@dataclass
class Persons:
    observed: dict        # scope -> [K, L] persons graduated in the window (observed terms), highest level
    weight: dict          # scope -> [K, L] counting share of students on the rolls at the last term
    continuation: np.ndarray  # [L] share of entrants holding a lower counting degree (0 for first degrees)
    records: int          # graduation records in the window (observed), all scopes in full
    persons: int          # distinct persons among them
    without_person_key: int   # graduation records without a person_key (counted by student_key instead)


def check_programmes(con) -> None:
    """Every programme has scope core|related and a counting share in [0, 1] (related) with a source."""
    cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = 'ref' "
                                      "AND table_name = 'programmes'").fetchall()}
    missing = [c for c in ("scope", "counting_share", "share_source") if c not in cols]
    if missing:
        raise ProgrammeScopeError(f"data/reference/programmes.csv lacks column(s) {', '.join(missing)}: each "
                                  "programme must be marked core or related with the share that counts and its source "
                                  "(data/reference/README.md)")
    bad = con.execute("""SELECT row_number() OVER () + 1 AS line, programme_code, scope, counting_share
                         FROM ref.programmes""").df()
    share = pd.to_numeric(bad["counting_share"], errors="coerce")
    wrong = bad[~bad["scope"].isin(["core", "related"]) | share.isna() | (share < 0) | (share > 1)]
    if len(wrong):
        r = wrong.iloc[0]
        field = "scope" if r["scope"] not in ("core", "related") else "counting_share"
        raise ProgrammeScopeError(f"data/reference/programmes.csv line {int(r['line'])} (programme "
                                  f"{r['programme_code']}): field {field} = {r[field]!r}; scope must be core or "
                                  "related and counting_share a number from 0 to 1")


def load_persons(con, ti_from: int, ti_to: int, last_ti: int) -> Persons:
    """Aggregates of the panel by person (see the module docstring). ti_from/ti_to: the counting
    window's graduation terms; last_ti: the last observed term (cut-off of the backtest included)."""
    windows = PersonsWindows(con, last_ti)
    try:
        return windows.get(ti_from, ti_to)
    finally:
        windows.close()


class PersonsWindows:
    """`load_persons` for several counting windows with the same last term (a run's scenarios and milestone
    years). The rows up to `last_ti` are read once, here: the stock and the continuers are kept, and the
    graduation rows (a small share of the rows) in a temporary table until `close`; each window then costs
    one query on it (the same queries, the same numbers).

    rows: `calibrate.EnrollmentRows` the caller made for the panel too (a run reads staging.enrollment once);
    read here only, so the caller may close them once this is made. Without: a scan of its own."""

    _made = itertools.count()

    def __init__(self, con, last_ti: int, rows: EnrollmentRows | None = None):
        self.con, self.last_ti = con, int(last_ti)
        self._windows = {}
        self.table = f"model_person_grads_{next(self._made)}"   # its own: a load_persons meanwhile drops only its own
        check_programmes(con)
        own = rows is None
        if own:
            rows = EnrollmentRows(con, window=False)
        try:
            self._shared = self._read(rows.table)
        except BaseException:
            self.close()
            raise
        finally:
            if own:
                rows.close()

    def _read(self, rows: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        con, last_ti = self.con, self.last_ti
        stud, leave, grad = (STATUSES.index(x) for x in ("studying", "on_leave", "graduated"))
        code = {v: i for i, v in enumerate(LEVELS)}
        rank = "list_extract([" + ", ".join(str(RANK[v]) for v in LEVELS) + "], l + 1)"
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {self.table} AS
            SELECT person, no_person, sid, l, k, {rank} AS rank, core, share, ti FROM {rows}
            WHERE st = {grad} AND ti <= {last_ti}""")
        stock = con.execute(f"""
            SELECT k, l, core, share, count(*) AS n FROM {rows}
            WHERE ti = {last_ti} AND st IN ({stud}, {leave}) GROUP BY ALL ORDER BY ALL""").df()
        # Continuers: entrants of the last two academic years at master/doctor level whose person graduated
        # at a lower level (any counting programme, any university) before entering.
        entering = ", ".join(str(code[v]) for v in LOWER)
        lower = " OR ".join(f"(f.l = {code[v]} AND q.l IN ({', '.join(str(code[x]) for x in held)}))"
                            for v, held in LOWER.items())
        cont = con.execute(f"""
            WITH first AS (SELECT person, l, min(ti) AS ti FROM {rows}
                           WHERE l IN ({entering}) AND st IN ({stud}, {leave}) AND NOT no_person
                                 AND ti <= {last_ti} GROUP BY ALL)
            SELECT f.l, count(*) AS entrants,
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM {self.table} q WHERE q.person = f.person
                                                  AND q.ti < f.ti AND ({lower}))) AS continuers
            FROM first f WHERE f.ti >= {last_ti} - 3 GROUP BY ALL""").df()
        return stock, cont

    def get(self, ti_from: int, ti_to: int) -> Persons:
        if self._shared is None:
            raise RuntimeError(f"PersonsWindows (last term {self.last_ti}) used after close")
        # The graduation rows end at the last term: windows ending at or after it read the same rows (the
        # milestone years past the data), so they are the same query, asked once.
        window = (int(ti_from), min(int(ti_to), self.last_ti))
        if window not in self._windows:
            self._windows[window] = self._get(*window)
        return self._windows[window]

    def _get(self, ti_from: int, ti_to: int) -> Persons:
        con, (stock, cont) = self.con, self._shared
        grads = con.execute(f"""
            WITH g AS (SELECT person, no_person, sid, l, k, rank, core, share, min(ti) AS ti
                       FROM {self.table} WHERE ti BETWEEN {int(ti_from)} AND {int(ti_to)} GROUP BY ALL),
                 top AS (SELECT *, row_number() OVER (PARTITION BY person ORDER BY rank DESC, ti DESC) AS r FROM g)
            SELECT (SELECT count(*) FROM g) AS records, (SELECT count(DISTINCT person) FROM g) AS persons,
                   (SELECT count(*) FROM g WHERE no_person) AS without_key,
                   k, l, core, share, count(*) AS n
            FROM top WHERE r = 1 GROUP BY ALL ORDER BY ALL""").df()
        K, L = len(TRACKS), len(LEVELS)

        # The frames are in ORDER BY order: their float sums (shares) are the same every run (a parallel
        # GROUP BY returns its rows in any order, which moved the sums in the last bit).
        def by_scope(df: pd.DataFrame) -> dict:
            out = {sc: np.zeros((K, L)) for sc in SCOPES}
            for r in df.itertuples():
                k, l = int(r.k), int(r.l)
                out["all"][k, l] += r.n
                out["core"][k, l] += r.n * bool(r.core)
                out["counted"][k, l] += r.n * float(r.share)
            return out

        observed = by_scope(grads)
        st = by_scope(stock)

        def share(num, den, default):
            return np.where(den > 0, num / np.where(den > 0, den, 1), default)

        # Per (track, level): the share of its students on the rolls that counts; where a level has nobody on
        # the rolls (new intakes only), the track's share over all levels.
        weight = {}
        for sc in SCOPES:
            track_share = share(st[sc].sum(axis=1), st["all"].sum(axis=1), 1.0 if sc == "all" else 0.0)
            weight[sc] = share(st[sc], st["all"], np.broadcast_to(track_share[:, None], (K, L)))
        continuation = np.zeros(L)
        for r in cont.itertuples():
            if r.entrants:
                continuation[int(r.l)] = r.continuers / r.entrants
        head = grads.iloc[0] if len(grads) else None
        return Persons(observed=observed, weight=weight, continuation=continuation,
                       records=int(head.records) if head is not None else 0,
                       persons=int(head.persons) if head is not None else 0,
                       without_person_key=int(head.without_key) if head is not None else 0)

    def close(self) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {self.table}")
        self._shared, self._windows = None, {}
