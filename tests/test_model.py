"""The lab-to-fab model (transforms/model/projection.py, calibrate.py, simulate.py, scenarios.py).

Closed-form cases, conservation, the capacity solution fed back, determinism, scenarios, partial
pooling, and the model on a warehouse built by the real pipeline. Real DuckDB files throughout.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from transforms.model import projection as model
from transforms.warehouse import db as warehouse
from transforms.model.calibrate import TRACKS, Assumptions, Panel, calibrate, draw_parameters, load_panel
from transforms.model.scenarios import Scenario, ScenarioError, find_scenarios, load_scenario, parse_scenario
from transforms.model.simulate import project_cohorts, simulate_rounds
from transforms.vocabulary import term_from_index, term_index

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "data" / "reference"
SCENARIOS = REPO / "data" / "scenarios"
DOCS = REPO / "docs" / "MODEL.md"
DRAWS = 200

# ----------------------------------------------------------------------------------------------
# A small synthetic warehouse whose answers are known
# ----------------------------------------------------------------------------------------------


def _reference(tmp: Path) -> Path:
    """The reference tables the model reads, loaded by the real loader."""
    ref = tmp / "reference"
    ref.mkdir(exist_ok=True)
    for name in ("programmes", "hosts", "host_slots", "targets", "universities"):
        shutil.copy(REFERENCE / f"{name}.csv", ref / f"{name}.csv")
    return ref


def build_warehouse(path: Path, cohorts: list[tuple], first: str = "2023-1", last: str = "2024-2",
                    university: str = "HUST", programme: str = "7480101") -> Path:
    """Bachelor students of one design programme. Each cohort (n, study year in its first term, intake
    year[, first term]) moves up a study year every September and graduates in the spring term of
    year 4; nobody drops out."""
    con = warehouse.connect(path)
    try:
        warehouse.load_reference(con, _reference(path.parent))
        rows = []
        sid = 0
        for n, year0, intake, *start in cohorts:
            t0 = term_index(start[0] if start else first)
            for _ in range(n):
                sid += 1
                y = year0
                for ti in range(t0, term_index(last) + 1):
                    if ti > t0 and ti % 2 == 0:
                        y += 1                      # a new academic year
                    term = term_from_index(ti)
                    grad = y == 4 and ti % 2 == 1
                    rows.append(("f", university, term, sid, f"s{sid}", None, "M", programme, "bachelor", intake, y,
                                 "graduated" if grad else "studying", None, None))
                    if grad:
                        break
        frame = pd.DataFrame(rows, columns=["file_id", "university_code", "term", "line", "student_key", "person_key",
                                            "gender", "programme_code", "degree_level", "intake_year", "study_year",
                                            "status", "gpa", "birth_year"])
        con.register("rows", frame)
        con.execute("INSERT INTO staging.enrollment SELECT * FROM rows")
        con.unregister("rows")
    finally:
        con.close()
    return path


# 3,000 new students a year (2023 and 2024 intakes seen: the trend is flat), all in design.
BINDING = [(3000, 4, 2020), (3000, 3, 2021), (3000, 2, 2022), (3000, 1, 2023), (3000, 1, 2024, "2024-1")]
FIXED = {"completion_rate": 0.9, "conversion_rate": 0.8, "application_rate": 1.0, "without_practice_ratio": 0.0}


def _only_design(extra_changes=()) -> list:
    """Scenario changes: no slots outside design (so nothing spills into design)."""
    return [("multiply_slots", {"track": ["fabrication", "packaging_testing", "equipment"], "factor": 0.0})] + list(
        extra_changes)


def _run(path: Path, scenarios: list[Scenario], draws: int = 50, **kw) -> dict:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return model.run_model(con, scenarios, draws=draws, seed=7, **kw)
    finally:
        con.close()


def test_closed_form_unlimited_slots_no_attrition(tmp_path):
    # 100 + 200 graduate in the panel (June 2024, June 2025); 300 are in year 3 at the last term and
    # graduate in June 2026. Unlimited slots, everybody applies, nobody drops out:
    # engineers = graduates x completion x conversion.
    path = build_warehouse(tmp_path / "w.duckdb", [(100, 4, 2020), (200, 3, 2021), (300, 2, 2022)])
    unlimited = Scenario("unlimited", "unlimited slots", "test", "2026-11-28", changes=[
        ("add_host", {"host_code": "KR-ALL", "host_type": "company", "tracks": TRACKS,
                      "slots": {t: 1e7 for t in TRACKS}})],
        assumptions={"fixed": FIXED, "exit_scale": 0.0, "count_from_year": 2024})
    out = _run(path, [unlimited], decisions=False, backtest_draws=None)
    eng = out["model_engineers"]
    total_pr = eng["practice_ready"].sum()
    grads = out["model_graduates"]
    in_window = grads[(grads.year >= 2024) & (grads.year <= 2030)]["graduates"].sum()
    assert in_window == pytest.approx(600, rel=0.01)                    # the synthetic cohorts, as projected
    assert total_pr == pytest.approx(in_window * 0.9 * 0.8, rel=1e-6)   # exact identity in the model
    assert total_pr == pytest.approx(600 * 0.9 * 0.8, rel=0.01)         # and the closed form
    assert eng["without_practice"].sum() == pytest.approx(0, abs=1e-9)
    h = out["model_headline"].set_index(["dimension", "category"])
    assert h.loc[("total", "all"), "engineers_mean"] == pytest.approx(total_pr, rel=1e-6)
    # Rates fixed: what uncertainty is left is the timing of the few students who might not graduate on time.
    assert h.loc[("total", "all"), "p10"] == pytest.approx(h.loc[("total", "all"), "p90"], rel=0.01)


def test_closed_form_binding_slots(tmp_path):
    # 3,000 graduates a year against at most a few hundred design slots: slots bind in every round,
    # so practice-ready engineers = slots x completion x conversion, round by round.
    path = build_warehouse(tmp_path / "w.duckdb", BINDING)
    sc = Scenario("design_only", "design slots only", "test", "2026-11-28", changes=_only_design(),
                  assumptions={"fixed": FIXED, "exit_scale": 0.0})
    out = _run(path, [sc], decisions=False, backtest_draws=None)
    r = out["model_rounds"]
    r = r[(r.track == "design") & (r.basis == "projected") & (r.year >= 2025)]
    slots = pd.read_csv(REFERENCE / "host_slots.csv").query("track == 'design'").groupby("round")["slots"].sum()
    assert (r["unmet_demand"] > 0).all()
    expected = r["round"].map(slots).fillna(0)
    np.testing.assert_allclose(r["placed"], expected, rtol=1e-9)
    np.testing.assert_allclose(r["practice_ready"], expected * 0.9 * 0.8, rtol=1e-9)
    e = out["model_engineers"].query("track == 'design'")
    assert e["practice_ready"].sum() == pytest.approx(slots[slots.index >= "2025"].sum() * 0.72, rel=1e-9)
    b = out["model_bottleneck"].set_index("track")
    assert b.loc["design", "binding"] == "slots"


def test_spill_over_fills_design_from_multi_track_hosts(tmp_path):
    # Only design students exist: slots of other tracks at hosts that also take design spill over to
    # design (documented rule); slots at single-track hosts stay unused.
    path = build_warehouse(tmp_path / "w.duckdb", BINDING)
    sc = Scenario("spill", "baseline slots", "test", "2026-11-28", assumptions={"fixed": FIXED, "exit_scale": 0.0})
    out = _run(path, [sc], decisions=False, backtest_draws=None)
    slots = pd.read_csv(REFERENCE / "host_slots.csv")
    hosts = pd.read_csv(REFERENCE / "hosts.csv").set_index("host_code")["tracks"]
    takes_design = slots["host_code"].map(lambda h: "design" in hosts[h].split("|"))
    reachable = slots[takes_design].groupby("round")["slots"].sum()
    r = out["model_rounds"].query("basis == 'projected' and year >= 2025")
    d = r[r.track == "design"].set_index("round")
    np.testing.assert_allclose(d["placed"], d.index.map(reachable), rtol=1e-9)
    other = r[r.track != "design"].groupby("round")[["spill_out", "slots_used"]].sum()
    np.testing.assert_allclose(other["spill_out"], d["spill_in"].reindex(other.index), rtol=1e-9)


# ----------------------------------------------------------------------------------------------
# The model on a warehouse built by the real pipeline
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_warehouse(prefect_harness, small_demo, tmp_path_factory) -> Path:
    """The small demo collection through the real pipeline (ingest, validate, load, transform, model)."""
    from flows.pipeline import pipeline

    demo_dir, _ = small_demo
    data_dir = tmp_path_factory.mktemp("model-pipeline")
    shutil.copytree(demo_dir / "landing", data_dir / "landing")
    result = pipeline(data_dir=str(data_dir))
    assert result["changed"]
    return data_dir


@pytest.fixture()
def wh(demo_warehouse, tmp_path) -> Path:
    """A private copy of the pipeline's warehouse to experiment on."""
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(demo_warehouse / "published" / "lab2fab.duckdb", copy)
    return copy


def _documented_columns() -> dict[str, list[str]]:
    """docs/MODEL.md: the `| column | ... |` table under each `### marts.model_*` heading."""
    text = DOCS.read_text(encoding="utf-8")
    out, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^#{2,4} `?(marts\.model_\w+)`?", line)
        if m:
            current = m.group(1)
            out[current] = []
        elif current and line.startswith("| `"):
            out[current] += re.findall(r"`(\w+)`", line.split("|")[1])
    return out


def test_pipeline_writes_every_mart_documented(demo_warehouse):
    con = duckdb.connect(str(demo_warehouse / "published" / "lab2fab.duckdb"), read_only=True)
    try:
        documented = _documented_columns()
        for name in model.MARTS:
            cols = [r[0] for r in con.execute(f"SELECT column_name FROM duckdb_columns() WHERE schema_name = 'marts' "
                                              f"AND table_name = '{name}' ORDER BY column_index").fetchall()]
            assert cols, f"marts.{name} missing"
            missing = [c for c in cols if c not in documented.get(f"marts.{name}", [])]
            assert not missing, f"marts.{name}: columns not documented in docs/MODEL.md: {missing}"
        h = con.execute("SELECT * FROM marts.model_headline").df()
        assert set(h["scenario"]) == {s.name for s in find_scenarios(None, SCENARIOS)}
        base = h[h.scenario == "baseline"]
        assert len(base) == 6 and (base["p10"] <= base["p50"]).all() and (base["p50"] <= base["p90"]).all()
        assert base["probability_meeting_target"].between(0, 1).all()
        assert (base["engineers_by_horizon"] == base["p50"]).all()
        assert np.allclose(base["gap"], base["target"] - base["p50"])
        # The report reads the baseline rows only.
        from transforms.publish import report
        assert report.headline(con)["engineers_2030"] == pytest.approx(
            float(base.query("dimension == 'total'")["p50"].iloc[0]))
        r = con.execute("SELECT * FROM marts.model_rounds WHERE basis = 'projected'").df()
        assert (r["placed"] <= r["slots"] + 1e-9).all() and (r["slots_used"] <= r["slots_offered"] + 1e-9).all()
        # Observed rounds place exactly who the programme office recorded, in every draw.
        obs = con.execute("""SELECT r.round, r.track, r.placed, r.placed_p10, r.placed_p90, count(p.round) AS recorded
                             FROM marts.model_rounds r LEFT JOIN staging.placements p USING (round, track)
                             WHERE r.basis = 'observed' AND r.scenario = 'baseline' GROUP BY ALL""").df()
        assert len(obs) and np.allclose(obs["placed"], obs["recorded"]) and np.allclose(obs["placed_p10"], obs["recorded"])
        u = con.execute("SELECT * FROM marts.model_universities WHERE scenario = 'baseline'").df()
        total = base.query("dimension == 'total'")["engineers_mean"].iloc[0]
        assert u["engineers"].sum() == pytest.approx(total, rel=1e-6)  # contributions add up to the nation
        assert u["placement_rate"].dropna().between(0, 1).all()
        p = con.execute("SELECT * FROM marts.model_parameters").df().set_index("name")
        assert 0 < p.loc["completion_rate", "value"] < 1 and "94.4%" in p.loc["completion_rate", "source"]
        assert "62 of 80" in p.loc["conversion_rate", "source"]
        bt = con.execute("SELECT * FROM marts.model_backtest").df()
        assert set(bt["metric"]) == {"graduates", "students", "intake"} and set(TRACKS) <= set(bt["track"])
        assert con.execute("SELECT count(*) FROM marts.model_marginal").fetchone()[0] > 0
        # The national targets are out of reach of six universities: the solver says so.
        sol = con.execute("SELECT * FROM marts.model_capacity_solution").df()
        assert len(sol) and not sol["feasible"].any() and sol["note"].str.contains("not reachable").all()
    finally:
        con.close()


def test_same_seed_same_marts_and_threads_do_not_matter(wh, monkeypatch):
    monkeypatch.setenv("LAB2FAB_MODEL_THREADS", "1")
    a = _run(wh, find_scenarios(["baseline", "more_slots"], SCENARIOS), draws=DRAWS)
    monkeypatch.setenv("LAB2FAB_MODEL_THREADS", "2")
    b = _run(wh, find_scenarios(["baseline", "more_slots"], SCENARIOS), draws=DRAWS)
    for name in model.MARTS:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name, check_exact=True)
    con = duckdb.connect(str(wh), read_only=True)
    try:
        c = model.run_model(con, ["baseline"], draws=DRAWS, seed=8, decisions=False, backtest_draws=None)
    finally:
        con.close()
    assert not a["model_headline"].query("scenario == 'baseline'")["p50"].equals(c["model_headline"]["p50"])


def test_more_capacity_never_fewer_engineers(wh):
    con = duckdb.connect(str(wh), read_only=True)
    try:
        panel = load_panel(con)
    finally:
        con.close()
    scs = {s.name: s for s in find_scenarios(None, SCENARIOS)}
    a = scs["baseline"].assumptions_over(Assumptions())
    prep = model.prepare(calibrate(panel, a), a, DRAWS, 11)
    totals = {}
    for name, sc in scs.items():
        sa = sc.assumptions_over(Assumptions())
        setup = model.rounds_setup(prep, sc, sa)
        res = simulate_rounds(setup, prep.grads_in, prep.draws)
        pr, wp, _ = model.engineers_by_year(setup, res)
        totals[name] = ((pr + wp).sum(axis=(1, 2, 3)), pr.sum(axis=(1, 2, 3)))
    base_e, base_p = totals.pop("baseline")
    for name, (e, p) in totals.items():
        assert (e >= base_e - 1e-9).all() and (p >= base_p - 1e-9).all(), name   # draw by draw (common random numbers)


def test_more_slots_more_engineers_where_slots_bind(tmp_path):
    # Design students only, far more than slots: every added design slot is used.
    path = build_warehouse(tmp_path / "w.duckdb", BINDING)
    out = _run(path, find_scenarios(["baseline", "more_slots", "domestic_labs_2028", "new_host_2027"], SCENARIOS),
               draws=DRAWS, decisions=False, backtest_draws=None)
    h = out["model_headline"].query("dimension == 'total'").set_index("scenario")
    for name in ("more_slots", "domestic_labs_2028"):
        assert h.loc[name, "practice_ready_p50"] > h.loc["baseline", "practice_ready_p50"] + 100
        assert h.loc[name, "p50"] > h.loc["baseline", "p50"]
        assert h.loc[name, "probability_meeting_target"] >= h.loc["baseline", "probability_meeting_target"]
    # The new host takes fabrication and packaging students only: nothing changes for design.
    assert h.loc["new_host_2027", "practice_ready_p50"] == pytest.approx(h.loc["baseline", "practice_ready_p50"])


def test_conservation_every_step(wh):
    """Every simulated student is in exactly one state at every step: cohorts (on the rolls, graduated,
    left) and rounds (waiting, non-applicant, practice-ready, completed without a job, withdrew, aged out)."""
    con = duckdb.connect(str(wh), read_only=True)
    try:
        cal = calibrate(load_panel(con))
    finally:
        con.close()
    a = Assumptions()
    draws = draw_parameters(cal, a, 64, 3)
    n = 10
    out = project_cohorts(cal, draws, n, ledger=True)
    start = cal.stock0.sum(axis=(1, 2))                                     # [C]
    inflow = start[None, :, None] + np.cumsum(out["intake"], axis=2)
    accounted = out["stock"] + np.cumsum(out["graduates"].astype(np.float64), axis=2) + np.cumsum(out["exits"], axis=2)
    np.testing.assert_allclose(accounted, inflow, rtol=1e-4, atol=1e-2)
    assert (out["graduates"] >= 0).all() and (out["exits"] >= -1e-6).all()
    prep = model.prepare(cal, a, 64, 3)
    setup = model.rounds_setup(prep, find_scenarios(["more_slots"], SCENARIOS)[1], a)
    res = simulate_rounds(setup, prep.grads_in, prep.draws, ledger=True)
    led = res.ledger
    states = sum(led[k] for k in ("nonapplicant", "waiting", "practice_ready", "completed_no_job", "withdrew",
                                  "aged_out"))
    np.testing.assert_allclose(states, led["entered"], rtol=1e-9, atol=1e-6)
    for k, v in led.items():
        assert (v >= -1e-9).all(), k


@pytest.mark.parametrize("measure, col", [("practice_ready", "probability_practice_ready_meeting_target"),
                                          ("engineers", "probability_meeting_target")])
def test_solved_capacity_meets_the_target_when_fed_back(tmp_path, measure, col):
    # Design students only, 3,000 graduates a year: the design target is set between what the baseline
    # slots give and what unlimited slots would give, so the answer is neither 0 nor unreachable.
    path = build_warehouse(tmp_path / "w.duckdb", BINDING)
    baseline = find_scenarios(["baseline"], SCENARIOS)[0]
    sol = _run(path, [baseline], draws=DRAWS, backtest_draws=None)["model_capacity_solution"]
    row = sol[(sol.target_group == "design") & (sol.measure == measure)].iloc[0]
    target = round(row.baseline_p50 + 0.4 * (row.unlimited_slots_p50 - row.baseline_p50))
    con = duckdb.connect(str(path))
    try:
        con.execute("UPDATE ref.targets SET target = ? WHERE category = 'design'", [target])
    finally:
        con.close()
    sol = _run(path, [baseline], draws=DRAWS, backtest_draws=None)["model_capacity_solution"]
    assert not sol.query("target_group == 'fab_pkg_test'")["feasible"].any()   # no fabrication students at all
    for p in model.PROBABILITIES:
        first = sol[(sol.target_group == "design") & (sol.measure == measure) & (sol.probability == p)].iloc[0]
        assert first.feasible and first.extra_slots_per_round > 0 and first.achieved_probability >= p
        assert first.baseline_probability < p

        def fed_back(slots: float) -> float:
            sc = Scenario("fed_back", "solution fed back", "test", "2026-11-28", changes=[
                ("add_host", {"host_code": "KR-EXTRA", "host_type": "company", "tracks": ["design"],
                              "slots": {"design": slots}, "from_round": first.from_round,
                              "to_round": first.to_round})])
            h = _run(path, [baseline, sc], draws=DRAWS, decisions=False, backtest_draws=None)["model_headline"]
            return h[(h.scenario == "fed_back") & (h.category == "design")][col].iloc[0]

        # The solution, fed back as a new host from `from_round` to `to_round`, meets the target ...
        assert fed_back(first.extra_slots_per_round) >= p
        # ... and it is the fewest: two slots a round fewer fall short.
        assert fed_back(first.extra_slots_per_round - 2) < p


def test_marginal_engineers_per_slot(tmp_path, wh):
    # Where slots bind in every round, one more slot is one more placement: completion x conversion
    # practice-ready engineers, and completion x (conversion - q0) engineers in all (without the slot
    # the student would have entered the industry without practice at q0 = ratio x conversion).
    path = build_warehouse(tmp_path / "w.duckdb", BINDING)
    sc = Scenario("baseline", "design slots only", "test", "2026-11-28", changes=_only_design(),
                  assumptions={"fixed": dict(FIXED, without_practice_ratio=0.25), "exit_scale": 0.0})
    m = _run(path, [sc], draws=50, backtest_draws=None)["model_marginal"].query("track == 'design'")
    assert len(m) >= 8 and (m["probability_slots_bind"] == 1).all()
    np.testing.assert_allclose(m["marginal_practice_ready_per_slot"], 0.9 * 0.8, rtol=1e-6)
    np.testing.assert_allclose(m["marginal_engineers_per_slot"], 0.9 * (0.8 - 0.2), rtol=1e-6)
    # On the demo the rounds run out of graduates: a slot helps at most that much, never harms.
    out = _run(wh, find_scenarios(["baseline"], SCENARIOS), draws=DRAWS, backtest_draws=None)
    m = out["model_marginal"]
    assert (m["marginal_practice_ready_per_slot"] >= -1e-9).all() and (m["marginal_engineers_per_slot"] >= -1e-9).all()
    assert (m["marginal_practice_ready_per_slot"] <= 1).all()
    assert (m["marginal_engineers_per_slot"] <= m["marginal_practice_ready_per_slot"] + 1e-9).all()


# ----------------------------------------------------------------------------------------------
# Calibration and scenarios
# ----------------------------------------------------------------------------------------------


def _pooling_panel(rng, spread: float) -> Panel:
    """40 universities whose drop-out odds vary around a national 3% a term with log-sd `spread`;
    sizes from 10 to 20,000 student-terms."""
    rows = []
    sizes = np.geomspace(10, 20000, 40).astype(int)
    true_or = np.exp(rng.normal(0, spread, 40))
    for i, (n, o) in enumerate(zip(sizes, true_or)):
        x = rng.binomial(n, o * 0.03 / (1 - 0.03 + o * 0.03))
        u = f"U{i:02d}"
        rows += [(u, "design", "bachelor", 0, 2, "studying", "X", x),
                 (u, "design", "bachelor", 0, 2, "studying", "S0", n - x)]
    tr = pd.DataFrame(rows, columns=["u", "track", "level", "sem", "y", "from_status", "outcome", "n"])
    stock = tr[["u", "track", "level"]].drop_duplicates().assign(y=2, status="studying", n=10)
    empty = pd.DataFrame(columns=["u", "track", "level", "ti", "n"])
    return Panel(last_term="2024-2", first_term="2023-1", transitions=tr, stock=stock, intake=empty,
                 graduates=empty, placements=pd.DataFrame(columns=["round", "track", "placed", "completed", "withdrew",
                                                                   "jobs_yes", "jobs_no"]),
                 placements_univ=pd.DataFrame(columns=["round", "u", "track", "placed", "completed"]),
                 placement_lags=pd.DataFrame(columns=["lag", "n"]), host_slots=pd.DataFrame(), hosts=pd.DataFrame(),
                 targets=pd.DataFrame(), universities=pd.DataFrame(columns=["university_code", "region"]))


def test_partial_pooling_shrinks_small_universities_toward_the_national_rate():
    panel = _pooling_panel(np.random.default_rng(5), spread=0.4)
    cal = calibrate(panel)
    assert cal.kappa["exit"] < 1e5                       # the real spread between universities is found
    tr = panel.transitions.pivot_table(index="u", columns="outcome", values="n", aggfunc="sum")
    n = tr["X"] + tr["S0"]
    raw = tr["X"] / n
    uk = cal.uk.set_index("u")["uk"][raw.index].to_numpy()
    post = pd.Series(cal.exit_post[uk, 0] / cal.exit_post[uk].sum(axis=1), index=raw.index)
    national = pd.Series(cal.exit_expected[uk], index=raw.index)
    # Share of the way from the university's own rate to the national rate.
    pull = (post - raw).abs() / ((national - raw).abs() + 1e-12)
    small, big = n.nsmallest(10).index, n.nlargest(5).index
    assert pull[small].median() > 0.5 and pull[big].median() < 0.1
    # Without any real spread the same method pools (almost) completely.
    flat = calibrate(_pooling_panel(np.random.default_rng(5), spread=0.0))
    assert flat.kappa["exit"] > 10 * cal.kappa["exit"]


def test_scenario_files_are_valid_and_reviewed_data():
    names = []
    for path in sorted(SCENARIOS.glob("*.yaml")):
        sc = load_scenario(path)
        assert sc.description and sc.author and sc.date
        names.append(sc.name)
    assert {"baseline", "more_slots", "new_host_2027", "domestic_labs_2028"} <= set(names)


@pytest.mark.parametrize("spec, message", [
    ({"name": "x", "description": "d", "date": "2026-01-01"}, "author"),
    ({"name": "x", "description": "d", "author": "a", "date": "2026-01-01",
      "changes": [{"multiply_slots": {"track": "lithography", "factor": 2}}]}, "unknown track"),
    ({"name": "x", "description": "d", "author": "a", "date": "2026-01-01",
      "changes": [{"add_slots": {"host_code": "KR-SEC", "track": "design", "slots": 5, "from_round": "2027-1"}}]},
     "YYYYHn"),
    ({"name": "x", "description": "d", "author": "a", "date": "2026-01-01", "assumptions": {"magic": 1}},
     "unknown assumption"),
    ({"name": "x", "description": "d", "author": "a", "date": "not a date"}, "ISO date"),
])
def test_bad_scenarios_are_refused_with_a_reason(spec, message):
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(spec, "data/scenarios/x.yaml")


def test_command_line_and_benchmark_run_on_any_warehouse(tmp_path, capsys):
    path = build_warehouse(tmp_path / "w.duckdb", BINDING)
    assert model.main([str(path), "--scenario", "more_slots", "--draws", "50", "--write"]) == 0
    printed = capsys.readouterr().out
    assert "== baseline" in printed and "== more_slots" in printed
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert set(r[0] for r in con.execute("SELECT DISTINCT scenario FROM marts.model_headline").fetchall()) == {
            "baseline", "more_slots"}
    finally:
        con.close()
    import importlib.util

    spec = importlib.util.spec_from_file_location("model_bench", REPO / "bench" / "model_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.bench_model(path, draws=50, decisions=False, backtest=False)
    assert result["draws"] == 50 and result["seconds_total"] > 0 and result["scenarios"] == 4


# ----------------------------------------------------------------------------------------------
# Sparse warehouses: the first term of a new programme, no graduates yet, no placements
# ----------------------------------------------------------------------------------------------


def _model_stage(path: Path, draws: int = 50) -> tuple[dict, list[str], dict[str, pd.DataFrame]]:
    """What the pipeline's model stage does (flows/pipeline.py): every reviewed scenario, decisions and
    backtest on, `run_model` then `write_outputs` on the working warehouse; returns the marts as written."""
    con = warehouse.connect(path)
    try:
        out = model.run_model(con, None, draws=draws, seed=7, folder=model.scenario_dir(None))
        written = model.write_outputs(con, out)
        marts = {name: con.execute(f"SELECT * FROM marts.{name}").df() for name in model.MARTS}
    finally:
        con.close()
    return out, written, marts


def _fallbacks(marts: dict) -> pd.Series:
    p = marts["model_parameters"]
    return p[p["name"].str.startswith("fallback.")].set_index("name")["source"]


def _assert_marts_sane(written: list[str], marts: dict) -> None:
    assert sorted(written) == sorted(f"marts.{n}" for n in model.MARTS)
    h = marts["model_headline"]
    assert set(h["scenario"]) == {s.name for s in find_scenarios(None, SCENARIOS)}
    assert h[["p10", "p50", "p90", "practice_ready_p50"]].notna().all().all()
    assert ((h["p10"] <= h["p50"] + 1e-9) & (h["p50"] <= h["p90"] + 1e-9)).all()
    total = h.query("scenario == 'baseline' and dimension == 'total'").iloc[0]
    assert total["p50"] > 0 and 0 < total["practice_ready_p50"] <= total["p50"]
    for name in ("model_engineers", "model_progress", "model_rounds", "model_graduates", "model_cohorts",
                 "model_universities", "model_capacity_solution", "model_marginal", "model_scenarios"):
        assert len(marts[name]), name
    c = marts["model_cohorts"]
    assert (c[["students", "intake", "graduates", "exits"]] >= -1e-6).all().all()


def _graduates_by_year(marts: dict) -> pd.Series:
    g = marts["model_graduates"].query("scenario == 'baseline'")
    return g.groupby("year")["graduates"].sum()


def test_single_term_warehouse_runs_on_fallbacks_and_records_them(tmp_path, caplog):
    # The first term of a new programme: 300 first-years, 200 second-years and 100 final-year
    # students in 2024-1, nothing else. One term has no term-to-term transitions: before the fix
    # calibrate() died with an IndexError on the empty transition frame.
    path = build_warehouse(tmp_path / "w.duckdb", [(300, 1, 2024), (200, 2, 2023), (100, 4, 2021)],
                           first="2024-1", last="2024-1")
    with caplog.at_level("WARNING", logger="transforms.model.projection"):
        out, written, marts = _model_stage(path)
    _assert_marts_sane(written, marts)
    fb = _fallbacks(marts)
    for name in ("transitions.bachelor.studying.term1", "transitions.bachelor.studying.term2",
                 "exit_odds_ratio", "graduation_odds_ratio", "intake_growth[design,bachelor]",
                 "completion_rate", "conversion_rate", "backtest"):
        assert f"fallback.{name}" in fb.index, name
    assert "one term has no term-to-term transitions" in fb["fallback.transitions.bachelor.studying.term1"]
    assert "on-time progression" in fb["fallback.transitions.bachelor.studying.term1"]
    assert "fallback" in marts["model_parameters"].set_index("name").loc["intake_growth[design,bachelor]", "source"]
    # Levels without students are not reported as fallbacks (nothing to project there).
    assert not fb.index.str.contains("master|doctor|engineer\\.").any()
    # On-time progression without drop-out: the final-year students graduate in June 2025, the
    # second-years in June 2027, the first-years in June 2028.
    g = _graduates_by_year(marts)
    assert g[2025] == pytest.approx(100, rel=0.02)
    assert g[2026] == pytest.approx(0, abs=1)
    assert g[2027] == pytest.approx(200, rel=0.02)
    assert g[2028] == pytest.approx(300, rel=0.02)
    assert marts["model_backtest"].empty
    # The same record reaches the caller and the log.
    assert {f["parameter"] for f in out["_fallbacks"]} == set(fb.index.str.removeprefix("fallback."))
    assert "fell back to documented defaults" in caplog.text and "transitions.bachelor.studying.term1" in caplog.text


def test_warehouse_without_graduates_projects_on_time_graduation(tmp_path):
    # Four terms of a programme whose oldest students are in their third year: nobody has graduated,
    # so the panel cannot calibrate graduation (before: IndexError in prepare(), and with that fixed,
    # zero graduates for ever). Progression, drop-out and leave are still estimated from the panel.
    path = build_warehouse(tmp_path / "w.duckdb", [(300, 1, 2023), (200, 2, 2022)], first="2023-1", last="2024-2")
    _, written, marts = _model_stage(path)
    _assert_marts_sane(written, marts)
    fb = _fallbacks(marts)
    assert "no bachelor student graduated" in fb["fallback.graduation.bachelor"]
    assert "fallback.graduation_odds_ratio" in fb.index
    assert not any(n.startswith("fallback.transitions.bachelor.studying") for n in fb.index)  # estimated
    p = marts["model_parameters"].set_index("name")
    assert p.loc["exit_per_term.bachelor", "source"].startswith("estimated")
    g = _graduates_by_year(marts)
    assert g[2025] == pytest.approx(0, abs=1e-9)                       # observed: none
    assert g[2026] == pytest.approx(200, rel=0.02)                     # third-years of 2024 (June 2026)
    assert g[2027] == pytest.approx(300, rel=0.02)
    assert len(marts["model_backtest"])                                 # 4 terms: the backtest runs


def test_few_terms_borrow_the_other_terms_rates(tmp_path):
    # Two terms: transitions out of the first term only. Out of the second term the model assumes
    # on-time progression at the drop-out and leave rates of the first term (recorded), not the
    # uniform spread of one pseudo-student it fell to before (a sixth of the students graduating
    # from their first year).
    path = build_warehouse(tmp_path / "w.duckdb", [(300, 1, 2024), (200, 3, 2022)], first="2024-1", last="2024-2")
    con = duckdb.connect(str(path), read_only=True)
    try:
        cal = calibrate(load_panel(con))
    finally:
        con.close()
    names = {f["parameter"]: f for f in cal.fallbacks}
    assert "other term" in names["transitions.bachelor.studying.term2"]["used"]
    assert "transitions.bachelor.studying.term1" not in names
    bachelor = 0
    g_first_year = cal.trans_mean[bachelor, 1, 0, 0, 4]               # second term, year 1, studying -> G
    move_up = cal.trans_mean[bachelor, 1, 0, 0, 1]                    # -> S1 (next study year)
    assert g_first_year < 0.01 and move_up > 0.98


def test_no_placements_uses_the_published_priors_and_says_so(tmp_path):
    # Graduates and four terms of enrollment, but no placement round recorded yet.
    path = build_warehouse(tmp_path / "w.duckdb", [(100, 4, 2020), (200, 3, 2021), (300, 2, 2022)])
    _, written, marts = _model_stage(path)
    _assert_marts_sane(written, marts)
    fb = _fallbacks(marts)
    assert "no completed or withdrawn placement" in fb["fallback.completion_rate"]
    assert "no completed placement with a known job outcome" in fb["fallback.conversion_rate"]
    assert not any(n.startswith(("fallback.transitions.bachelor.studying", "fallback.graduation")) for n in fb.index)
    p = marts["model_parameters"].set_index("name")
    assert p.loc["completion_rate", "value"] == pytest.approx(0.944)
    assert p.loc["conversion_rate", "value"] == pytest.approx(62 / 80)
    assert (marts["model_rounds"]["basis"] == "projected").all()


def test_no_enrollment_at_all_stops_with_a_clear_message(tmp_path):
    path = build_warehouse(tmp_path / "w.duckdb", [])
    con = warehouse.connect(path)
    try:
        with pytest.raises(ValueError, match="Load at least one term of enrollment"):
            model.run_model(con, None, draws=20, seed=7, folder=model.scenario_dir(None))
    finally:
        con.close()


def test_pipeline_panel_falls_back_only_where_it_has_no_data(demo_warehouse):
    # The small demo (4 terms, pilot rounds) calibrates the large levels, graduation, completion and
    # conversion from data; only thin strata (doctors, leave out of one term) fall back, each recorded.
    con = duckdb.connect(str(demo_warehouse / "published" / "lab2fab.duckdb"), read_only=True)
    try:
        fb = con.execute("SELECT name, source FROM marts.model_parameters WHERE name LIKE 'fallback.%'").df()
    finally:
        con.close()
    assert fb["source"].str.startswith("fallback: ").all()
    calibrated = ("fallback.transitions.bachelor.studying", "fallback.transitions.master.studying",
                  "fallback.transitions.engineer.studying", "fallback.graduation", "fallback.completion_rate",
                  "fallback.conversion_rate", "fallback.exit_odds_ratio", "fallback.backtest")
    assert not fb["name"].str.startswith(calibrated).any(), fb["name"].tolist()


def test_pipeline_model_stage_on_the_first_term_of_a_new_programme(prefect_harness, tmp_path):
    # The pipeline's own model stage (a Prefect task) on a data folder whose warehouse holds one
    # term: it writes the marts and logs the fallbacks, no traceback.
    from flows.pipeline import model_stage as stage
    from transforms.config import get_paths

    data_dir = tmp_path / "data"
    wh_path = get_paths(data_dir).warehouse
    build_warehouse(wh_path, [(300, 1, 2024), (100, 4, 2021)], first="2024-1", last="2024-1")
    result = stage(str(data_dir), draws=30)
    assert result["engineers_2030"] > 0 and "baseline" in result["scenarios"]
    con = duckdb.connect(str(wh_path), read_only=True)
    try:
        names = {r[0] for r in con.execute("SELECT name FROM marts.model_parameters WHERE name LIKE 'fallback.%'")
                 .fetchall()}
    finally:
        con.close()
    assert {"fallback.transitions.bachelor.studying.term1", "fallback.backtest"} <= names
