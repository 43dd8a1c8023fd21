"""The run's report: headline figures from the warehouse, as one self-contained HTML page
and as markdown for the Prefect artifact."""
from __future__ import annotations

import html
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd



def headline(con) -> dict:
    """The few numbers a reader asks first; the same dict feeds the CLI, artifacts and report."""
    h = con.execute("""SELECT dimension, category, engineers_by_horizon, target, gap, practice_ready_share
                       FROM marts.model_headline WHERE scenario = 'baseline'""").df()
    files = con.execute("""SELECT status, count(*) AS files, sum(rows_read) AS rows_read, sum(rows_loaded) AS rows_loaded,
                                  sum(rows_quarantined) AS rows_quarantined FROM ops.manifest GROUP BY ALL ORDER BY 1""").df()
    bottleneck = con.execute("SELECT track, binding, unmet_demand FROM marts.model_bottleneck "
                             "WHERE scenario = 'baseline' ORDER BY track").df()
    last_term = con.execute("SELECT max(term) FROM staging.enrollment").fetchone()[0]
    total = h[h.dimension == "total"].iloc[0]
    return {
        "last_term": last_term,
        "engineers_2030": float(total.engineers_by_horizon),
        "target_2030": float(total.target),
        "gap_2030": float(total.gap),
        "practice_ready_share": float(total.practice_ready_share),
        "by_group": h,
        "bottleneck": bottleneck,
        "files": files,
    }


def markdown(h: dict) -> str:
    lines = [f"# lab2fab: projection to 2030 (data to term {h['last_term']})", "",
             f"**{h['engineers_2030']:,.0f}** semiconductor engineers projected by 2030 against the target of "
             f"**{h['target_2030']:,.0f}** (gap {h['gap_2030']:,.0f}; {h['practice_ready_share']:.0%} with Korean lab-to-fab practice).",
             "", "| group | projected | target | gap |", "|---|---:|---:|---:|"]
    for r in h["by_group"].itertuples():
        lines.append(f"| {r.dimension}: {r.category} | {r.engineers_by_horizon:,.0f} | {r.target:,.0f} | {r.gap:,.0f} |")
    lines += ["", "| track | what binds | unmet demand (applicants over slots, all projected rounds) |", "|---|---|---:|"]
    for r in h["bottleneck"].itertuples():
        lines.append(f"| {r.track} | {r.binding} | {r.unmet_demand:,.0f} |")
    lines += ["", "| files | count | rows read | loaded | quarantined |", "|---|---:|---:|---:|---:|"]
    for r in h["files"].itertuples():
        lines.append(f"| {r.status} | {r.files} | {r.rows_read:,} | {r.rows_loaded:,} | {r.rows_quarantined:,} |")
    return "\n".join(lines)


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, classes="t", float_format=lambda x: f"{x:,.1f}", na_rep="..")


def render_html(con, h: dict) -> str:
    rounds = con.execute("""SELECT round, track, basis, round(eligible) AS eligible, round(applicants) AS applicants,
                                   slots, round(placed) AS placed, round(unmet_demand) AS unmet_demand
                            FROM marts.model_rounds WHERE scenario = 'baseline' ORDER BY round, track""").df()
    status = con.execute("""SELECT term, submission_status, count(*) AS universities FROM marts.submission_status
                            GROUP BY ALL ORDER BY ALL""").df().pivot_table(
        index="term", columns="submission_status", values="universities", fill_value=0).reset_index()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = f"""
<h1>lab2fab: semiconductor engineers to 2030</h1>
<p class="lead"><b>{h['engineers_2030']:,.0f}</b> engineers projected by 2030 against the national target of
<b>{h['target_2030']:,.0f}</b> (Decision 1017/QĐ-TTg): a gap of <b>{h['gap_2030']:,.0f}</b>.
{h['practice_ready_share']:.0%} of them would have lab-to-fab practice in Korea. Data to term {html.escape(str(h['last_term']))}.</p>
<h2>Against the targets</h2>{_table(h['by_group'])}
<h2>Where the bottleneck is</h2>
<p>A track is slot-bound when applicants exceed the slots offered in most projected rounds.</p>{_table(h['bottleneck'])}
<h2>Internship rounds</h2>{_table(rounds)}
<h2>Submissions by term</h2>{_table(status)}
<h2>Files</h2>{_table(h['files'])}
<p class="foot">Generated {stamp}. Slot numbers are scenario inputs, not published figures. See docs/MODEL.md.</p>"""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lab2fab report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table.t{{border-collapse:collapse;margin:.5em 0 1.5em}}table.t td,table.t th{{padding:.2em .7em;border-bottom:1px solid #ddd;text-align:right}}
.lead{{font-size:1.2em}}.foot{{color:#777;font-size:.85em}}</style></head><body>{body}</body></html>"""


def write_report(con, target: Path, h: dict) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(render_html(con, h), encoding="utf-8")
    os.replace(tmp, target)
    return target
