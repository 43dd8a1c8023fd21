"""The cheapest mix of rounds, tracks and host types for the P goal, and the best P within a budget
(transforms/model/projection.py: solve_budget_mix; docs/MODEL.md, "Decisions").

Closed forms on a synthetic warehouse where slots bind in every round: 3,000 design graduates a year,
everyone applies, completion 0.9, hosts fill every slot, no drop-out, so each extra design slot in a
round of the window buys exactly 0.9 practice-ready persons (P) and the costs per slot are known.
Real DuckDB, real simulation; nothing is mocked.
"""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from test_model import BINDING, CORE_DESIGN, FIXED, _only_design, _prepared, build_warehouse
from transforms.model import measures as ms
from transforms.model import projection as model
from transforms.model.simulate import simulate_rounds

C = 0.9                                  # P per extra slot where slots bind (completion x fill 1)
COSTS = {"university": 6000.0, "research_centre": 7000.0, "company": 9000.0}
UNI_LIMIT = 10.0                         # university centres take at most 10 extra design slots a round


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    path = build_warehouse(tmp_path_factory.mktemp("budget") / "w.duckdb", BINDING, programme=CORE_DESIGN)
    a, prep, setup, persons = _prepared(path, {"fixed": FIXED, "exit_scale": 0.0, "flow_noise": False},
                                        _only_design())
    res = simulate_rounds(setup, ms.counted_pool(prep.grads_in, persons), prep.draws)
    base = float(np.median(ms.groups(ms.compute(prep, setup, res, a, persons).P)[("track_group", "design")]))
    marginal = model.marginal_engineers(prep, setup, a, "t", persons)
    a = replace(a, cost_per_slot=COSTS, extra_slot_limit={"university": UNI_LIMIT})
    return a, prep, setup, persons, res, base, marginal


def _solve(setting, extra_p: float, budget: float | None = None):
    a, prep, setup, persons, res, base, marginal = setting
    a = replace(a, practice_goal={"design": base + extra_p}, budget=budget)    # fab_pkg_test: no goal
    out = model.solve_budget_mix(prep, setup, res, a, persons, marginal)
    summary = out["model_budget"].set_index(["answer", "target_group"])
    return summary, out["model_budget_mix"]


def _decision_rounds(setting) -> int:
    """Decision rounds where a slot buys the full 0.9 (in 2025 part of the pool graduated before T's
    window opened, Sep 2024, so a slot there buys less and the mix does not go there)."""
    a, prep, setup, persons, res, *_ = setting
    span = model._decision_rounds(prep, setup, res, a)[1]
    m = setting[-1].query("track == 'design'").set_index("round")["marginal_p_per_slot"]
    return sum(1 for i, r in enumerate(prep.rounds) if span[i] > 0 and m.get(r, 0) == pytest.approx(C, rel=1e-6))


def test_marginal_p_per_slot_is_the_completion_rate_where_slots_bind(setting):
    m = setting[-1].query("track == 'design'").set_index("round")["marginal_p_per_slot"]
    np.testing.assert_allclose(m.loc["2026H1":], C, rtol=1e-6)
    assert (m.loc[:"2025H2"] < C).all()


def test_the_mix_is_the_cheapest_university_first_then_research_centres_never_companies(setting):
    # 200 extra slots are needed (180 more persons / 0.9). Universities take at most 10 a round, so they
    # give 10 in every decision round; the rest goes to the next cheapest type, research centres; no
    # slot goes to the dearest type. Cost: 6,000 x 10 x rounds + 7,000 x the rest.
    n = _decision_rounds(setting)
    need = 200
    assert UNI_LIMIT * n < need
    summary, mix = _solve(setting, C * need)
    goal = mix[mix.answer == "cheapest_mix_for_goal"]
    by_type = goal.groupby("host_type")["slots_national"].sum()
    assert set(by_type.index) == {"university", "research_centre"}
    assert by_type["university"] == pytest.approx(UNI_LIMIT * n)
    assert (goal.query("host_type == 'university'")["slots"] == UNI_LIMIT).all()
    assert by_type.sum() == pytest.approx(need, abs=n)                  # whole slots per round, rounded up
    row = summary.loc[("cheapest_mix_for_goal", "design")]
    assert row["cost_national"] == pytest.approx(6000 * by_type["university"] + 7000 * by_type["research_centre"])
    assert row["feasible"] and row["probability_meeting"] >= 0.8
    assert row["p_p50"] == pytest.approx(setting[5] + C * by_type.sum(), rel=1e-6)   # checked by simulation
    # P per 1,000,000 on average: persons bought / cost.
    assert row["p_per_million_average"] == pytest.approx(C * by_type.sum() / row["cost_national"] * 1e6, rel=1e-6)
    # At the margin the next million buys research-centre slots: 0.9 / 7,000 per dollar.
    assert row["p_per_million_marginal"] == pytest.approx(C / 7000 * 1e6, rel=0.02)
    assert ("best_within_budget", "design") not in summary.index       # no budget given: no budget answer


def test_a_budget_that_covers_the_mix_says_so(setting):
    summary, mix = _solve(setting, C * 50, budget=10e6)
    row = summary.loc[("cheapest_mix_for_goal", "design")]
    assert row["within_budget"] and row["cost_national"] <= 10e6
    assert "best_within_budget" not in set(mix["answer"])


def test_budget_below_the_mix_gives_the_best_p_within_it(setting):
    # 500,000 buys 83 university slots (all below the universities' limit): 0.9 x 83 more persons,
    # at 150 persons per million.
    n = _decision_rounds(setting)
    summary, mix = _solve(setting, C * 200, budget=500_000)
    assert not summary.loc[("cheapest_mix_for_goal", "design"), "within_budget"]
    row = summary.loc[("best_within_budget", "design")]
    assert row["cost_national"] <= 500_000 and row["cost_national"] > 500_000 - 6000
    best = mix[mix.answer == "best_within_budget"]
    assert set(best["host_type"]) == {"university"} and (best["slots"] <= UNI_LIMIT).all()
    assert row["slots_national"] == 83 and 83 < UNI_LIMIT * n
    assert row["p_p50"] == pytest.approx(setting[5] + C * 83, rel=1e-6)
    assert row["probability_meeting"] == 0.0
    assert row["p_per_million_average"] == pytest.approx(C / 6000 * 1e6, rel=1e-6)


def test_more_budget_never_lowers_p(setting):
    ps, costs = [], []
    for budget in (0.0, 100_000, 400_000, 700_000, 1_000_000, 1_250_000):
        summary, _ = _solve(setting, C * 200, budget=budget)
        row = summary.loc[("best_within_budget", "design")]
        assert row["cost_national"] <= budget + 1e-6
        ps.append(row["p_p50"])
        costs.append(row["cost_national"])
    assert all(b >= a - 1e-9 for a, b in zip(ps, ps[1:]))
    assert all(b >= a for a, b in zip(costs, costs[1:]))
    assert ps[0] == pytest.approx(setting[5]) and ps[-1] > ps[0]


@pytest.mark.parametrize("assumptions, message", [
    ({"cost_per_slot": {"hotel": 100}}, "unknown host type"),
    ({"cost_per_slot": {"company": -1}}, "company must be a number >= 0"),
    ({"extra_slot_limit": {"university": "many"}}, "university must be a number >= 0"),
    ({"extra_slot_limit": [100]}, "must be a mapping host type"),
    ({"budget": "fifty million"}, "budget must be a number"),
    ({"goal_probability": 1.5}, "goal_probability must be a number in (0, 1]"),
])
def test_bad_decision_inputs_are_refused_naming_the_file(assumptions, message):
    from transforms.model.scenarios import ScenarioError, parse_scenario
    spec = {"name": "s", "description": "d", "author": "a", "date": "2026-12-01", "assumptions": assumptions}
    with pytest.raises(ScenarioError, match=re.escape(message)) as e:
        parse_scenario(spec, "data/scenarios/s.yaml")
    assert "data/scenarios/s.yaml" in str(e.value)


def test_no_limit_puts_every_slot_at_the_cheapest_type(setting):
    a, prep, setup, persons, res, base, marginal = setting
    a = replace(a, practice_goal={"design": base + C * 200}, extra_slot_limit={"university": None})
    mix = model.solve_budget_mix(prep, setup, res, a, persons, marginal)["model_budget_mix"]
    assert set(mix["host_type"]) == {"university"}
    assert mix["slots_national"].sum() == pytest.approx(200, abs=_decision_rounds(setting))
