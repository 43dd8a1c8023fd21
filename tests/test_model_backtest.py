"""The model's backtest and the semester timing it checks (issue 15: "the backtest's P10-P90 covers
about 80% of held-out terms, reported per track").

Synthetic panels whose semester timing is known: January and June graduations, first- and
second-semester intakes. Real DuckDB warehouses built by the real loader; no mocks.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from transforms.model import projection as model
from transforms.model.calibrate import G, TRACKS, Assumptions, calibrate, draw_parameters, load_panel, load_panels
from transforms.model.simulate import _count_like, intake_projection, project_cohorts
from transforms.vocabulary import term_from_index, term_index
from transforms.warehouse import db as warehouse

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference"
COLUMNS = ["file_id", "university_code", "term", "line", "student_key", "person_key", "gender", "programme_code",
           "degree_level", "intake_year", "study_year", "status", "gpa", "birth_year"]


def _warehouse(path: Path, first: str, last: str, autumn: int, spring: dict[int, int], off_cycle: int = 0,
               extend: int = 0) -> Path:
    """Bachelors of one design programme (HUST, 7480101). Each academic year `autumn` students enter in
    September and `spring[year]` in February (first seen in the second semester, study year 1). A student
    moves up a study year each September and graduates in June of year 4; `off_cycle` students of each
    September intake take one term of leave in their second autumn, so they graduate in January of year 5
    (study year 5); the next `extend` take a fifth year and graduate in June of it. Nobody drops out.
    Students of earlier intakes are on the rolls from `first`."""
    ref = path.parent / "reference"
    ref.mkdir(exist_ok=True)
    for name in ("programmes", "hosts", "host_slots", "targets", "universities"):
        shutil.copy(REFERENCE / f"{name}.csv", ref / f"{name}.csv")
    t_first, t_last = term_index(first), term_index(last)
    rows, sid = [], 0

    def student(start: int, leave_at: int | None, extra: int = 0) -> None:
        nonlocal sid
        sid += 1
        intake = start // 2
        k_grad = 7 + (leave_at is not None) + extra - (start % 2)   # terms after entry of the graduating term
        for ti in range(start, min(start + k_grad, t_last) + 1):
            k = ti - start
            if ti < t_first:
                continue
            status = ("graduated" if k == k_grad else "on_leave" if k == leave_at else "studying")
            y = min(ti // 2 - intake + 1, 5)
            rows.append(("f", "HUST", term_from_index(ti), k, f"s{sid}", None, "M", "7480101", "bachelor", intake,
                         y, status, None, None))

    for year in range(t_first // 2 - 4, t_last // 2 + 1):
        for j in range(autumn):
            student(2 * year, 2 if j < off_cycle else None, 2 if off_cycle <= j < off_cycle + extend else 0)
        for _ in range(spring.get(year, 0)):
            student(2 * year + 1, None)
    con = warehouse.connect(path)
    try:
        warehouse.load_reference(con, ref)
        con.register("rows", pd.DataFrame(rows, columns=COLUMNS))
        con.execute("INSERT INTO staging.enrollment SELECT * FROM rows")
        con.unregister("rows")
    finally:
        con.close()
    return path


def test_second_semester_intake_is_the_pooled_ratio_not_last_year_s_count(tmp_path):
    # Second-semester intakes of 10, 30, 20 and then 60 (an unusual year) beside 1,000 each September:
    # the pooled ratio is 120 / 4,000, so next February's intake is about 30, not last year's 60.
    spring = {2021: 10, 2022: 30, 2023: 20, 2024: 60}
    path = _warehouse(tmp_path / "w.duckdb", "2021-1", "2024-2", 1000, spring)
    con = warehouse.connect(path, read_only=True)
    try:
        panel = load_panel(con)
    finally:
        con.close()
    a = Assumptions(intake_mode="planned", intake_growth=0.0)     # flat: the ratio is what is tested
    cal = calibrate(panel, a)
    shape, rate = cal.intake_spring_post[0, 0]
    assert (shape, rate) == (0.5 + 120, 4000)
    draws = draw_parameters(cal, a, 2000, 7)
    intake = intake_projection(cal, draws, 2)                   # 2025-1 (September), 2025-2 (February)
    autumn, feb = intake[:, :, 0].sum(axis=1), intake[:, :, 1].sum(axis=1)
    assert autumn.mean() == pytest.approx(1000, rel=0.01)
    assert feb.mean() == pytest.approx(1000 * 120.5 / 4000, rel=0.05)
    # Poisson noise around the ratio (planned mode: the ratio at its posterior mean).
    assert feb.var() == pytest.approx(feb.mean(), rel=0.15)
    # In trend mode the ratio's own uncertainty comes on top of the Poisson noise.
    a_t = Assumptions()
    draws_t = draw_parameters(calibrate(panel, a_t), a_t, 2000, 7)
    r = draws_t.intake_spring[:, 0, 0]
    assert r.mean() == pytest.approx(120.5 / 4000, rel=0.03)
    assert r.std() == pytest.approx(np.sqrt(120.5) / 4000, rel=0.1)


def test_known_semester_timing_is_recovered_without_bias(tmp_path):
    # 1,000 September entrants a year, 30 of them off-cycle (January graduates), 12 February entrants:
    # a stationary panel, so the expected-value projection must match every held-out figure.
    path = _warehouse(tmp_path / "w.duckdb", "2021-1", "2025-2", 1000, dict.fromkeys(range(2015, 2026), 12),
                      off_cycle=30)
    con = warehouse.connect(path, read_only=True)
    try:
        origins, holdout = model.backtest_cutoff(con)
        panels = load_panels(con, origins)
    finally:
        con.close()
    assert (origins, holdout) == (["2022-2", "2023-1", "2023-2", "2024-1", "2024-2"], 2)
    bt = model.backtest(panels, Assumptions(flow_noise=False), 100, 3, holdout)
    assert set(bt["fit_to_term"]) == set(origins) and len(bt) == len(origins) * 2 * 3 * (len(TRACKS) + 1)
    grads = bt[(bt["metric"] == "graduates") & (bt["track"] == "design")]
    jan, june = grads[grads["term"].str.endswith("-1")], grads[grads["term"].str.endswith("-2")]
    assert (jan["observed"] == 30).all() and (june["observed"] == 970 + 12).all()
    np.testing.assert_allclose(jan["predicted"], jan["observed"], rtol=0.05)
    np.testing.assert_allclose(june["predicted"], june["observed"], rtol=0.02)
    feb = bt[(bt["metric"] == "intake") & bt["term"].str.endswith("-2") & (bt["track"] == "design")]
    np.testing.assert_allclose(feb["predicted"], 12, rtol=0.1)
    # Coverage is reported per track, pooled over every origin.
    cov = bt.groupby("track")["within_p10_p90"].mean()
    np.testing.assert_allclose(bt.groupby("track")["track_coverage"].first(), cov)
    assert {"design", "all"} <= set(cov.index)


@pytest.mark.parametrize("last, expected", [("2021-2", ([], 0)), ("2022-2", (["2022-1"], 1)),
                                            ("2023-2", (["2022-2"], 2)),
                                            ("2024-2", (["2022-2", "2023-1", "2023-2"], 2))])
def test_backtest_origins_need_four_terms_of_fit_and_observed_held_out_terms(tmp_path, last, expected):
    path = _warehouse(tmp_path / "w.duckdb", "2021-1", last, 20, {})
    con = warehouse.connect(path, read_only=True)
    try:
        assert model.backtest_cutoff(con) == expected
        # `latest` (marts.current_term) bounds the terms the backtest may hold out.
        assert model.backtest_cutoff(con, "2021-2") == ([], 0)
    finally:
        con.close()


def test_counts_are_binomial_for_small_and_fractional_cells():
    rng = np.random.default_rng(11)
    for mean, var in ((0.153, 0.13), (1.13, 0.15), (2.1 * 10 / 3, 2.1), (600.0, 108.0)):
        x = _count_like(rng, np.full(200_000, mean), np.full(200_000, var))
        assert x.mean() == pytest.approx(mean, rel=0.01)
        assert x.var() == pytest.approx(var, rel=0.05 if var > 1 else 0.2)       # fractional persons: at most p(1-p)/4 short
        assert x.min() >= 0


def test_year_to_year_noise_of_a_small_cell_has_the_binomial_variance(tmp_path):
    # One university, 10 September entrants a year, 3 of whom take a fifth year: 7 of its 10 final-year
    # students graduate each June. With one draw's parameters repeated, a June's graduates spread with the
    # binomial variance 10 x 0.7 x 0.3 = 2.1 (the extenders graduate for sure), their mean unchanged.
    path = _warehouse(tmp_path / "w.duckdb", "2021-1", "2024-1", 10, {}, extend=3)
    con = warehouse.connect(path, read_only=True)
    try:
        cal = calibrate(load_panel(con), Assumptions())
    finally:
        con.close()
    one = draw_parameters(cal, Assumptions(), 1, 3)
    many = one.take(np.zeros(20_000, dtype=int))
    g = project_cohorts(cal, many, 1)["graduates"][:, :, 0].sum(axis=1)
    g_exp = project_cohorts(cal, replace(many, flow_seed=None), 1)["graduates"][0, :, 0].sum()
    assert g_exp == pytest.approx(10, abs=0.3)
    assert g.mean() == pytest.approx(g_exp, rel=0.01)
    # The binomial variance of the draw's rates, summed over the cell's states (the earlier study years have
    # a small prior rate too): 10 x 0.7 x 0.3 and a little more.
    Y = int(cal.years[0])
    pg = one.trans[0, 0, cal.last_ti % 2, :Y, :, G].astype(float)
    odds = one.grad_or[0, 0] * pg / (1 - pg)
    pg = odds / (1 + odds)
    binomial = float((cal.stock0[0, :Y] * pg * (1 - pg)).sum())
    assert 2.1 <= binomial < 4
    assert g.var() == pytest.approx(binomial, rel=0.1)
    assert g.min() >= 0 and g.max() <= cal.stock0[0].sum() + 1e-3                # never more than the persons


def test_cohorts_drawn_chunk_by_chunk_are_the_whole_projection(tmp_path):
    # Issue 17: without `intake`, project_cohorts draws each chunk's new students just before projecting it
    # (the next chunk's Poisson counts are drawn while the first is projected). One generator in the array's
    # order: the same new students as intake_projection's, and the same projection as when given them.
    path = _warehouse(tmp_path / "w.duckdb", "2021-1", "2024-2", 300, {2022: 20, 2023: 25, 2024: 30}, off_cycle=5)
    con = warehouse.connect(path, read_only=True)
    try:
        cal = calibrate(load_panel(con), Assumptions())
    finally:
        con.close()
    draws = draw_parameters(cal, Assumptions(), 300, 5)               # three chunks, the last a short one
    intake = intake_projection(cal, draws, 4)
    assert draws.flow_seed is not None and not np.array_equal(intake[0], intake[1])   # Poisson counts
    given = project_cohorts(cal, draws, 4, summary=True, ledger=True, intake=intake)
    drawn = project_cohorts(cal, draws, 4, summary=True, ledger=True)
    assert set(given) == set(drawn)
    for name in given:
        np.testing.assert_array_equal(given[name], drawn[name], err_msg=name)
    np.testing.assert_array_equal(drawn["intake"], intake)
    assert project_cohorts(cal, draws, 4)["intake"].dtype == np.float32
    np.testing.assert_array_equal(project_cohorts(cal, draws, 4)["intake"], intake)
