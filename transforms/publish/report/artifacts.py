"""The headline as the CLI and the Prefect artifacts show it: a markdown note and a table by target."""
from __future__ import annotations


def headline_table(h: dict) -> list[dict]:
    """The headline by target (baseline): the rows of the Prefect table artifact. Each target of the
    Decision is set against T, the persons trained (its own measure); P and E of the same group stand
    beside it, never in its place (docs/MODEL.md, "What is counted")."""
    m = h["measures"]
    if m is None or m.empty:
        return []
    p50 = {(r.measure, r.dimension, r.category): r.p50 for r in m.itertuples()}
    rows = []
    for r in m.query("measure == 'trained' and target == target").itertuples():
        def beside(measure: str) -> int | None:
            value = p50.get((measure, r.dimension, r.category))
            return None if value is None or value != value else round(float(value))

        rows.append({"dimension": r.dimension, "category": r.category, "measure": "trained",
                     "target": round(float(r.target)),
                     "p10": round(float(r.p10)), "p50": round(float(r.p50)), "p90": round(float(r.p90)),
                     "probability_meeting_target": round(float(r.probability_meeting_target), 3),
                     "practice_ready_p50": beside("practice_ready"),
                     "employed_p50_assumption_driven": beside("employed"),
                     "scale": round(float(r.scale), 6)})
    return rows


def markdown(h: dict) -> str:
    lines = [f"# lab2fab: projection to 2030 (data to term {h['last_term']})", ""]
    if h.get("measures_line"):
        lines += [h["measures_line"] + ".", "", "| measure | group | P50 | P10 | P90 | target | P(meet) |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for r in h["measures"].query("dimension in ('total', 'track_group')").itertuples():
            tgt = f"{r.target:,.0f}" if r.target == r.target else ""
            prob = f"{r.probability_meeting_target:.0%}" if r.probability_meeting_target == r.probability_meeting_target else ""
            lines.append(f"| {r.measure} | {r.dimension}: {r.category} | {r.p50:,.0f} | {r.p10:,.0f} | {r.p90:,.0f} | "
                         f"{tgt} | {prob} |")
        lines += ["", "Earlier measure (engineers = practice-ready + a judgment prior on everyone else):", ""]
    lines += [
             f"**{h['engineers_2030']:,.0f}** semiconductor engineers projected by 2030 against the target of "
             f"**{h['target_2030']:,.0f}** (gap {h['gap_2030']:,.0f}; {h['practice_ready_share']:.0%} with Korean lab-to-fab practice).",
             "", "| group | projected (P50) | P10 | P90 | target | gap | P(meet target) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in h["by_group"].itertuples():
        p10 = f"{r.p10:,.0f}" if hasattr(r, "p10") else ""
        p90 = f"{r.p90:,.0f}" if hasattr(r, "p90") else ""
        prob = f"{r.probability_meeting_target:.0%}" if hasattr(r, "probability_meeting_target") else ""
        lines.append(f"| {r.dimension}: {r.category} | {r.engineers_by_horizon:,.0f} | {p10} | {p90} | "
                     f"{r.target:,.0f} | {r.gap:,.0f} | {prob} |")
    lines += ["", "| track | what binds | unmet demand (applicants over slots, all projected rounds) |", "|---|---|---:|"]
    for r in h["bottleneck"].itertuples():
        lines.append(f"| {r.track} | {r.binding} | {r.unmet_demand:,.0f} |")
    lines += ["", "| files | count | rows read | loaded | quarantined |", "|---|---:|---:|---:|---:|"]
    for r in h["files"].itertuples():
        lines.append(f"| {r.status} | {r.files} | {r.rows_read:,} | {r.rows_loaded:,} | {r.rows_quarantined:,} |")
    return "\n".join(lines)


