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

from transforms.model.calibrate import LEVELS, TRACKS

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


def _scope_sql() -> str:
    return """CASE WHEN p.scope = 'core' THEN 1.0 WHEN p.scope = 'related' THEN TRY_CAST(p.counting_share AS DOUBLE)
                   ELSE NULL END"""


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
    years): the person rows, the stock and the continuers are read once and kept in a temporary table
    until `close`; each window then costs one query (the same queries, the same numbers)."""

    _made = itertools.count()

    def __init__(self, con, last_ti: int):
        self.con, self.last_ti, self._shared = con, int(last_ti), None
        self.table = f"model_person_rows_{next(self._made)}"   # its own: a load_persons meanwhile drops only its own

    def get(self, ti_from: int, ti_to: int) -> Persons:
        con, last_ti = self.con, self.last_ti
        if self._shared is None:
            check_programmes(con)
            tracks = ", ".join(f"'{t}'" for t in TRACKS)
            levels = ", ".join(f"'{v}'" for v in LEVELS)
            # 64-bit hashes of the 64-character keys keep the table and its GROUP BYs light (two persons
            # sharing a hash: p ~ n^2 / 2^65, about 3e-8 at a million persons).
            ti = "(CAST(left(e.term, 4) AS INTEGER) * 2 + CAST(right(e.term, 1) AS INTEGER) - 1)"
            rank = "CASE e.degree_level " + " ".join(f"WHEN '{k}' THEN {v}" for k, v in RANK.items()) + " END"
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE {self.table} AS
                SELECT hash(coalesce(e.person_key, 's:' || e.student_key)) AS person, e.person_key IS NULL AS no_person,
                       hash(e.student_key) AS student_key, CAST({ti} AS INTEGER) AS ti, e.degree_level AS level, p.track, {rank} AS rank, e.status,
                       p.scope = 'core' AS core, {_scope_sql()} AS share
                FROM staging.enrollment e JOIN ref.programmes p USING (programme_code)
                WHERE p.track IN ({tracks}) AND e.degree_level IN ({levels}) AND {ti} <= {int(last_ti)}""")
            stock = con.execute(f"""
                SELECT track, level, core, share, count(*) AS n FROM {self.table}
                WHERE ti = {int(last_ti)} AND status IN ('studying', 'on_leave') GROUP BY ALL ORDER BY ALL""").df()
            # Continuers: entrants of the last two academic years at master/doctor level whose person graduated
            # at a lower level (any counting programme, any university) before entering.
            cont = con.execute(f"""
                WITH first AS (SELECT person, level, min(ti) AS ti FROM {self.table}
                               WHERE level IN ('master', 'doctor') AND status IN ('studying', 'on_leave')
                                     AND NOT no_person GROUP BY ALL),
                     prior AS (SELECT person, level, ti FROM {self.table} WHERE status = 'graduated')
                SELECT f.level, count(*) AS entrants,
                       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM prior q WHERE q.person = f.person AND q.ti < f.ti AND
                            ((f.level = 'master' AND q.level IN ('bachelor', 'engineer')) OR
                             (f.level = 'doctor' AND q.level = 'master')))) AS continuers
                FROM first f WHERE f.ti >= {int(last_ti)} - 3 GROUP BY ALL""").df()
            self._shared = (stock, cont)
        stock, cont = self._shared
        grads = con.execute(f"""
            WITH g AS (SELECT person, no_person, student_key, level, track, rank, core, share, min(ti) AS ti
                       FROM {self.table} WHERE status = 'graduated' AND ti BETWEEN {int(ti_from)} AND {int(ti_to)}
                       GROUP BY ALL),
                 top AS (SELECT *, row_number() OVER (PARTITION BY person ORDER BY rank DESC, ti DESC) AS r FROM g)
            SELECT (SELECT count(*) FROM g) AS records, (SELECT count(DISTINCT person) FROM g) AS persons,
                   (SELECT count(*) FROM g WHERE no_person) AS without_key,
                   track, level, core, share, count(*) AS n
            FROM top WHERE r = 1 GROUP BY ALL ORDER BY ALL""").df()
        K, L = len(TRACKS), len(LEVELS)

        # The frames are in ORDER BY order: their float sums (shares) are the same every run (a parallel
        # GROUP BY returns its rows in any order, which moved the sums in the last bit).
        def by_scope(df: pd.DataFrame) -> dict:
            out = {sc: np.zeros((K, L)) for sc in SCOPES}
            for r in df.itertuples():
                k, l = TRACKS.index(r.track), LEVELS.index(r.level)
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
                continuation[LEVELS.index(r.level)] = r.continuers / r.entrants
        head = grads.iloc[0] if len(grads) else None
        return Persons(observed=observed, weight=weight, continuation=continuation,
                       records=int(head.records) if head is not None else 0,
                       persons=int(head.persons) if head is not None else 0,
                       without_person_key=int(head.without_key) if head is not None else 0)

    def close(self) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {self.table}")
        self._shared = None
