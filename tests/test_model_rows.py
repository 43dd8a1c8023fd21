"""One scan of staging.enrollment for the model (calibrate.EnrollmentRows, issue 17).

The panel (`load_panels`) and the persons (`persons.PersonsWindows`) read the same temporary table of the
rows the model needs, so a run reads and hashes the keys once. Checked here: the persons from the shared
rows equal an independent pandas reading of the definition (docs/MODEL.md, "What is counted") and a
standalone `load_persons`, for several last terms; the panels are the same shared or not; and `run_model`
hashes staging.enrollment's keys in one statement and leaves no temporary table behind. Real DuckDB files.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from transforms.model import projection as model
from transforms.model.calibrate import LEVELS, STATUSES, TRACKS, EnrollmentRows, load_panels
from transforms.model.persons import LOWER, RANK, SCOPES, PersonsWindows, load_persons
from transforms.vocabulary import term_from_index, term_index
from transforms.warehouse import db as warehouse

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference"
COLUMNS = ["file_id", "university_code", "term", "line", "student_key", "person_key", "gender", "programme_code",
           "degree_level", "intake_year", "study_year", "status", "gpa", "birth_year"]
FIRST, LAST = "2021-1", "2025-1"


def _programmes() -> pd.DataFrame:
    p = pd.read_csv(REFERENCE / "programmes.csv", dtype=str)
    return p[p["track"].isin(TRACKS)]


def _warehouse(path: Path, seed: int = 3, n: int = 400) -> pd.DataFrame:
    """Students of core and related programmes at three universities: some graduate and go on to a master's or
    a doctorate elsewhere under the same person_key, some have no person_key, take leave, drop out or skip a
    term. Returns the rows written to staging.enrollment."""
    ref = path.parent / "reference"
    ref.mkdir(exist_ok=True)
    for name in ("programmes", "hosts", "host_slots", "targets", "universities"):
        shutil.copy(REFERENCE / f"{name}.csv", ref / f"{name}.csv")
    rng = np.random.default_rng(seed)
    codes = _programmes()["programme_code"].tolist()
    t_first, t_last = term_index(FIRST), term_index(LAST)
    rows, line = [], 0
    for i in range(n):
        person = None if rng.random() < 0.15 else f"p{i:04d}"
        ti = int(rng.integers(t_first, t_last + 1))
        for level in (["bachelor", "master", "doctor"] if rng.random() < 0.5 else [str(rng.choice(LEVELS))]):
            univ, prog = str(rng.choice(["HUST", "UET", "HCMUT"])), str(rng.choice(codes))
            key, y, intake, status = f"{univ}:{i}:{level}", int(rng.integers(1, 4)), ti // 2, None
            while ti <= t_last and status not in ("graduated", "dropped_out"):
                status = str(rng.choice(["studying", "on_leave", "graduated", "dropped_out"], p=[.7, .08, .17, .05]))
                line += 1
                rows.append(("f", univ, term_from_index(ti), line, key, person, "F", prog, level, intake, y, status,
                             None, None))
                ti += 2 if rng.random() < 0.05 else 1   # a skipped term now and then
                y += ti % 2 == 0                        # a new academic year in September
            if status != "graduated":
                break
            ti -= int(rng.random() < 0.3)               # the next level in the graduation's term: no continuer
    con = warehouse.connect(path)
    try:
        warehouse.load_reference(con, ref)
        df = pd.DataFrame(rows, columns=COLUMNS)
        con.register("rows", df)
        con.execute("INSERT INTO staging.enrollment SELECT * FROM rows")
        con.unregister("rows")
    finally:
        con.close()
    return df


def _persons_by_pandas(df: pd.DataFrame, ti_from: int, ti_to: int, last_ti: int) -> dict:
    """The persons' aggregates read straight from the definition (persons.py's module docstring)."""
    p = _programmes()
    share = np.where(p["scope"] == "core", 1.0, pd.to_numeric(p["counting_share"]))
    p = p.assign(core=p["scope"] == "core", share=share)[["programme_code", "track", "core", "share"]]
    r = df.merge(p, on="programme_code")
    r = r[r["degree_level"].isin(LEVELS)].assign(ti=r["term"].map(term_index))
    r = r[r["ti"] <= last_ti].assign(person=r["person_key"].fillna("s:" + r["student_key"]))
    K, L = len(TRACKS), len(LEVELS)

    def by_scope(frame):
        out = {sc: np.zeros((K, L)) for sc in SCOPES}
        for t in frame.itertuples():
            k, lv = TRACKS.index(t.track), LEVELS.index(t.degree_level)
            out["all"][k, lv] += 1
            out["core"][k, lv] += t.core
            out["counted"][k, lv] += t.share
        return out

    grads = r[(r["status"] == "graduated") & r["ti"].between(ti_from, ti_to)]
    g = grads.groupby(["person", "student_key", "degree_level", "track", "core", "share"], as_index=False).agg(
        ti=("ti", "min"), no_person=("person_key", lambda s: s.isna().all()))
    g["rank"] = g["degree_level"].map(RANK)
    top = g.sort_values(["rank", "ti"], ascending=False).drop_duplicates("person")
    active = r[r["status"].isin(["studying", "on_leave"])]
    st = by_scope(active[active["ti"] == last_ti])
    weight = {}
    for sc in SCOPES:
        den_t, num_t = st["all"].sum(axis=1), st[sc].sum(axis=1)
        track = np.where(den_t > 0, num_t / np.where(den_t > 0, den_t, 1), 1.0 if sc == "all" else 0.0)
        weight[sc] = np.where(st["all"] > 0, st[sc] / np.where(st["all"] > 0, st["all"], 1), track[:, None])
    continuation = np.zeros(L)
    first = (active[active["person_key"].notna() & active["degree_level"].isin(list(LOWER))]
             .groupby(["person", "degree_level"], as_index=False)["ti"].min())
    first = first[first["ti"] >= last_ti - 3]
    held = r[r["status"] == "graduated"]
    for level, f in first.groupby("degree_level"):
        lower = held[held["degree_level"].isin(LOWER[level])]
        cont = sum(bool(((lower["person"] == x.person) & (lower["ti"] < x.ti)).any()) for x in f.itertuples())
        continuation[LEVELS.index(level)] = cont / len(f)
    return {"observed": by_scope(top), "weight": weight, "continuation": continuation, "records": len(g),
            "persons": g["person"].nunique(), "without_person_key": int(g["no_person"].sum())}


def _assert_same(persons, expected: dict) -> None:
    for sc in SCOPES:
        np.testing.assert_allclose(persons.observed[sc], expected["observed"][sc], rtol=1e-12, err_msg=sc)
        np.testing.assert_allclose(persons.weight[sc], expected["weight"][sc], rtol=1e-12, err_msg=sc)
    np.testing.assert_allclose(persons.continuation, expected["continuation"], rtol=1e-12)
    assert (persons.records, persons.persons, persons.without_person_key) == (
        expected["records"], expected["persons"], expected["without_person_key"])


def test_persons_from_the_shared_rows_match_the_definition_and_load_persons(tmp_path):
    df = _warehouse(tmp_path / "w.duckdb")
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        rows = EnrollmentRows(con)
        t_last = term_index(LAST)
        # The rows hold every term; a last term before the newest (the run's marts.current_term) keeps to its own.
        windows = {last: PersonsWindows(con, last, rows) for last in (t_last, t_last - 2)}
        rows.close()                 # the windows read the rows when made: the scan may go at once
        for last, w in windows.items():
            for ti_from, ti_to in ((last - 5, last), (term_index(FIRST), last - 1), (last - 1, last + 10)):
                shared = w.get(ti_from, ti_to)
                assert shared.records > 0
                _assert_same(shared, _persons_by_pandas(df, ti_from, ti_to, last))
                alone = load_persons(con, ti_from, ti_to, last)
                _assert_same(alone, _persons_by_pandas(df, ti_from, ti_to, last))
            assert w.get(last - 5, last).continuation[LEVELS.index("master")] > 0   # the data has continuers
            w.close()
        with pytest.raises(RuntimeError, match="after close"):
            windows[t_last].get(t_last - 5, t_last)
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()[0] == 0
    finally:
        con.close()


def test_panels_are_the_same_from_shared_rows(tmp_path):
    _warehouse(tmp_path / "w.duckdb")
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        cutoffs = [None, term_from_index(term_index(LAST) - 2)]
        alone = load_panels(con, cutoffs)
        rows = EnrollmentRows(con)
        shared = load_panels(con, cutoffs, rows)
        assert con.execute(f"SELECT count(*) FROM {rows.table}").fetchone()[0] > 0   # left to its owner
        rows.close()
        for a, b in zip(alone, shared):
            for name in ("transitions", "stock", "intake", "graduates", "placement_lags", "by_track_term"):
                pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True, obj=name)
            assert (a.last_term, a.first_term, a.carried_forward) == (b.last_term, b.first_term, b.carried_forward)
        with pytest.raises(ValueError, match="window=True"):
            load_panels(con, cutoffs, EnrollmentRows(con, window=False))
    finally:
        con.close()


class _Statements:
    """A connection that records the SQL it runs (run_model takes any object with DuckDB's methods)."""

    def __init__(self, con):
        self.con, self.sql = con, []

    def execute(self, sql, params=None):
        self.sql.append(" ".join(sql.split()))
        return self.con.execute(sql, params or [])

    def __getattr__(self, name):
        return getattr(self.con, name)


def test_run_model_hashes_the_enrollment_keys_in_one_statement(tmp_path):
    _warehouse(tmp_path / "w.duckdb", n=250)
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        rec = _Statements(con)
        sc = model.Scenario("baseline", "b", "test", "2026-12-01")
        out = model.run_model(rec, [sc], draws=20, seed=3, decisions=False, backtest_draws=None)
        assert len(out["model_trained_scope"])
        keyed = [s for s in rec.sql if "staging.enrollment" in s and "student_key" in s]
        assert len(keyed) == 1 and "person_key" in keyed[0], keyed
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()[0] == 0
    finally:
        con.close()


def test_each_cutoff_keeps_the_rows_its_own_queries_would_read(tmp_path):
    # Issue 17: the intakes, graduates, stock and placement lags of every cut-off are read once for all terms
    # and kept per cut-off; here they are against the per-cut-off SQL they replaced (the definition).
    _warehouse(tmp_path / "w.duckdb")
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        rows = EnrollmentRows(con)
        seq = rows.table
        univ = rows.universities()
        cutoffs = [None] + [term_from_index(term_index(LAST) - i) for i in (1, 2, 4)]
        panels = load_panels(con, cutoffs, rows)

        def q(sql, params):
            df = con.execute(sql, params).df()
            if "ui" in df:
                df.insert(0, "u", univ[df.pop("ui").to_numpy(int)])
            for col, names, new in (("k", TRACKS, "track"), ("l", LEVELS, "level"), ("st", STATUSES, "status")):
                if col in df:
                    df[new] = np.array(names, dtype=object)[df.pop(col).to_numpy(int)]
            return df
        active = "st IN (0, 1)"
        for cutoff, panel in zip(cutoffs, panels):
            last = term_index(cutoff or LAST)
            last_round = f"{(last + 2) // 2}H{(last + 2) % 2 + 1}"
            latest = con.execute(f"SELECT ui, max(ti) AS ti FROM {seq} WHERE ti <= $1 GROUP BY 1 ORDER BY 1",
                                 [last]).df()
            fresh = latest[latest["ti"] >= last - 2]
            con.register("fresh", fresh)
            expected = {
                "stock": q(f"""SELECT p.ui, p.k, p.l, p.y, p.st, f.ti AS from_ti, count(*) AS n
                               FROM {seq} p JOIN fresh f ON f.ui = p.ui AND f.ti = p.ti
                               WHERE p.{active} GROUP BY ALL ORDER BY ALL""", []),
                "intake": q(f"""SELECT ui, k, l, ti, count(*) AS n FROM {seq}
                                WHERE ti <= $1 AND is_first AND y = 1 AND {active} AND intake_year >= ti // 2
                                GROUP BY ALL ORDER BY ALL""", [last]),
                "graduates": q(f"SELECT ui, k, l, ti, count(*) AS n FROM {seq} WHERE ti <= $1 AND st = 2 "
                               "GROUP BY ALL ORDER BY ALL", [last]),
                "placement_lags": q(f"""
                    WITH g AS (SELECT sid, min(ti) AS ti FROM {seq} WHERE st = 2 AND ti <= $1 GROUP BY 1)
                    SELECT (CAST(left(p.round, 4) AS INTEGER) * 2 + CAST(right(p.round, 1) AS INTEGER) - 1)
                           - (g.ti + 2) AS lag, count(*) AS n
                    FROM staging.placements p JOIN g ON g.sid = hash(p.student_key) WHERE p.round <= $2
                    GROUP BY ALL ORDER BY 1""", [last, last_round])}
            con.unregister("fresh")
            for name, frame in expected.items():
                pd.testing.assert_frame_equal(getattr(panel, name), frame, check_exact=True, obj=f"{cutoff} {name}")
            assert len(panel.stock) and len(panel.intake) and len(panel.graduates)
            assert (panel.stale_universities, panel.carried_forward) == (
                int((latest["ti"] < last - 2).sum()), int((fresh["ti"] < last).sum()))
        rows.close()
    finally:
        con.close()


def test_windows_ending_after_the_last_term_are_read_once(tmp_path):
    # The graduation rows end at the last term: a window ending later (a milestone year past the data) is the
    # window ending at it, asked of DuckDB once.
    df = _warehouse(tmp_path / "w.duckdb")
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        last = term_index(LAST) - 1
        w = PersonsWindows(con, last)
        first = w.get(last - 5, last)
        assert w.get(last - 5, last + 4) is first and w.get(last - 5, last + 10) is first
        assert w.get(last - 5, last - 1) is not first
        _assert_same(w.get(last - 5, last + 4), _persons_by_pandas(df, last - 5, last + 4, last))
        w.close()
    finally:
        con.close()


def test_codes_are_the_positions_and_refuse_an_unknown_value():
    from transforms.model.calibrate import codes
    s = pd.Series(["master", "bachelor", "doctor", "master"], dtype="str")
    assert codes(s, LEVELS).tolist() == [LEVELS.index(v) for v in s] and codes(s, LEVELS).dtype == np.int64
    assert codes(s.iloc[:0], LEVELS).dtype == np.int64
    with pytest.raises(ValueError, match="'diploma' is not in list"):
        codes(pd.Series(["master", "diploma"]), LEVELS)
