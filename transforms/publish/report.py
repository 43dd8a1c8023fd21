"""The run's report: the pipeline, the gap and the quality of the data, as pictures.

One self-contained HTML page (``data/published/report.html``): every chart is an Altair
(Vega-Lite) chart, rendered in the browser by the Vega, Vega-Lite and Vega-Embed JavaScript
inlined once in the page (taken from the pinned ``vl-convert-python`` package), so the file
works offline and loads nothing from the network. The page records its own script errors in
``<pre id="report-errors">`` and marks each chart container ``data-rendered="ok"`` once drawn,
so a headless browser (tests/test_report.py) can tell whether every chart rendered.

Every label, title and one-line reading exists in English and Vietnamese (``language="en"`` or
``"vi"``), with numbers formatted for each (50,000 / 50.000). Figures published per university
(and per region) follow HESA's rounding for published figures: counts are rounded to the nearest
5 and counts under 10 are suppressed and shown as ``..``; a percentage is shown only when its
base is at least 23 people and the count it describes at least 10 (the page states the method).

``headline(con)`` and ``markdown(h)`` feed the CLI and the Prefect artifacts.
"""
from __future__ import annotations

import functools
import html
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import altair as alt
import pandas as pd

from transforms.vocabulary import NORMAL_YEARS, SUBMISSION_STATUSES, TRACKS, parse_term, round_index
from transforms.warehouse.db import latest_term

LANGUAGES = ("en", "vi")
SUPPRESSED = ".."
MIN_COUNT = 10          # counts under this are not published per university or region
MIN_BASE = 22.5         # HESA: percentages on fewer than 22.5 people are suppressed
ICT = timedelta(hours=7)  # received_at is stored in UTC; windows close at midnight Vietnam time

# (en, vi) for every label that comes from data codes.
TRACK_LABELS = {
    "design": ("Design", "Thiết kế"),
    "fabrication": ("Fabrication", "Chế tạo"),
    "packaging_testing": ("Packaging & testing", "Đóng gói – kiểm thử"),
    "equipment": ("Equipment", "Thiết bị"),
}
TARGET_LABELS = {
    "all": ("All semiconductor engineers", "Tổng số kỹ sư bán dẫn"),
    "design": ("Chip design", "Thiết kế vi mạch"),
    "fab_pkg_test": ("Fabrication, packaging & testing", "Chế tạo, đóng gói và kiểm thử"),
    "bachelor_engineer": ("Bachelors and engineers", "Cử nhân và kỹ sư"),
    "master": ("Masters", "Thạc sĩ"),
    "doctor": ("Doctors", "Tiến sĩ"),
}
STATUS_ORDER = SUBMISSION_STATUSES
STATUS_LABELS = {
    "accepted": ("Accepted", "Được chấp nhận"),
    "accepted_with_issues": ("Accepted, some rows quarantined", "Chấp nhận, một số dòng bị cách ly"),
    "accepted_with_warnings": ("Accepted with warnings", "Chấp nhận kèm cảnh báo"),
    "late": ("Late (after the window closed)", "Nộp muộn (sau hạn)"),
    "rejected": ("Rejected", "Bị từ chối"),
    "missing": ("Not received", "Chưa nộp"),
}
STATUS_COLOURS = ("#4c9a5f", "#9cc97f", "#e3c04f", "#f08a3c", "#d1495b", "#9e9e9e")
REGION_LABELS = {
    "Red River Delta": ("Red River Delta", "Đồng bằng sông Hồng"),
    "Northern Midlands and Mountains": ("Northern Midlands and Mountains", "Trung du và miền núi phía Bắc"),
    "North Central and Central Coast": ("North Central and Central Coast", "Bắc Trung Bộ và Duyên hải miền Trung"),
    "Central Highlands": ("Central Highlands", "Tây Nguyên"),
    "Southeast": ("Southeast", "Đông Nam Bộ"),
    "Mekong Delta": ("Mekong Delta", "Đồng bằng sông Cửu Long"),
}
SCENARIO_LABELS = {
    "baseline": ("Baseline", "Kịch bản gốc"),
    "more_slots": ("Korean hosts +50% slots from 2027H1", "Đối tác Hàn Quốc +50% chỗ từ 2027H1"),
    "new_host_2027": ("New Korean fab & packaging host, 2027H2", "Thêm đơn vị chế tạo – đóng gói Hàn Quốc, 2027H2"),
    "domestic_labs_2028": ("Vietnam's shared and university labs, 2028", "Phòng thí nghiệm dùng chung và của trường, 2028"),
}
MEASURE_LABELS = {
    "engineers": ("engineers", "kỹ sư"),
    "practice_ready": ("practice-ready engineers", "kỹ sư sẵn sàng thực hành"),
}
# d3-format locales handed to Vega (axis labels, text marks, tooltips).
D3_LOCALES = {
    "en": {"decimal": ".", "thousands": ",", "grouping": [3], "currency": ["$", ""]},
    "vi": {"decimal": ",", "thousands": ".", "grouping": [3], "currency": ["", " ₫"]},
}
FONT = "'Noto Sans', 'DejaVu Sans', system-ui, sans-serif"


# --------------------------------------------------------------------------------------------
# Language and number formatting

@dataclass(frozen=True)
class Lang:
    """Text and numbers in one language."""

    code: str = "en"

    def __post_init__(self):
        if self.code not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, not {self.code!r}")

    def t(self, en: str, vi: str) -> str:
        return vi if self.code == "vi" else en

    def pick(self, pair: tuple[str, str] | None, fallback: str = "") -> str:
        return (pair[1] if self.code == "vi" else pair[0]) if pair else fallback

    def n(self, x, digits: int = 0) -> str:
        """A number with thousands separators: 50,000 (en) or 50.000 (vi)."""
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return SUPPRESSED
        s = f"{x:,.{digits}f}"
        return s.translate(str.maketrans(",.", ".,")) if self.code == "vi" else s

    def pct(self, x, digits: int = 0) -> str:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return SUPPRESSED
        s = f"{100 * x:.{digits}f}%"
        return s.replace(".", ",") if self.code == "vi" else s

    def track(self, code: str) -> str:
        return self.pick(TRACK_LABELS.get(code), code)

    def target(self, code: str) -> str:
        return self.pick(TARGET_LABELS.get(code), code)

    def status(self, code: str) -> str:
        return self.pick(STATUS_LABELS.get(code), code)

    def region(self, name: str | None) -> str:
        return self.pick(REGION_LABELS.get(name or ""), name or "?")

    def scenario(self, name: str) -> str:
        return self.pick(SCENARIO_LABELS.get(name), name)

    def measure(self, code: str) -> str:
        return self.pick(MEASURE_LABELS.get(code), code)


def publishable_count(x) -> int | None:
    """A count as it may be published per university or region (HESA rounding): None (shown
    as '..') when under 10, else rounded to the nearest 5, halves up."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or pd.isna(x):
        return None
    x = float(x)
    if x < MIN_COUNT:
        return None
    return int(5 * math.floor(x / 5 + 0.5))


def publishable_share(part, base) -> float | None:
    """part / base, or None when the base is under 22.5 people or the part under 10."""
    if base is None or pd.isna(base) or part is None or pd.isna(part):
        return None
    if float(base) < MIN_BASE or float(part) < MIN_COUNT:
        return None
    return float(part) / float(base)


# --------------------------------------------------------------------------------------------
# Headline: CLI, artifacts, top of the page

def headline(con) -> dict:
    """The few numbers a reader asks first; the same dict feeds the CLI, artifacts and report."""
    h = con.execute("""SELECT dimension, category, engineers_by_horizon, target, gap, practice_ready_share,
                              p10, p50, p90, probability_meeting_target, practice_ready_p50,
                              probability_practice_ready_meeting_target
                       FROM marts.model_headline WHERE scenario = 'baseline'""").df()
    files = con.execute("""SELECT status, count(*) AS files, sum(rows_read) AS rows_read, sum(rows_loaded) AS rows_loaded,
                                  sum(rows_quarantined) AS rows_quarantined FROM ops.manifest GROUP BY ALL ORDER BY 1""").df()
    bottleneck = con.execute("SELECT track, binding, unmet_demand FROM marts.model_bottleneck "
                             "WHERE scenario = 'baseline' ORDER BY track").df()
    last_term = latest_term(con)  # marts.current_term: a stray or barely begun term does not move it
    total = h[h.dimension == "total"].iloc[0]
    measures = _measures(con)
    return {
        "measures": measures,
        "measures_line": _measures_line(measures),
        "last_term": last_term,
        "engineers_2030": float(total.engineers_by_horizon),
        "target_2030": float(total.target),
        "gap_2030": float(total.gap),
        "practice_ready_share": float(total.practice_ready_share),
        "engineers_2030_p10": float(total.p10),
        "engineers_2030_p90": float(total.p90),
        "probability_meeting_target": float(total.probability_meeting_target),
        "by_group": h,
        "bottleneck": bottleneck,
        "files": files,
    }


def _measures(con) -> pd.DataFrame:
    """marts.model_measures of the baseline (T, P, E), empty if the model has not written it."""
    import duckdb

    try:
        return con.execute("SELECT * FROM marts.model_measures WHERE scenario = 'baseline'").df()
    except duckdb.Error:
        return pd.DataFrame()


def _measures_line(m: pd.DataFrame) -> str:
    if not len(m):
        return ""
    from transforms.model.measures import headline_line  # the model's own wording (CLI, log, page agree)
    return headline_line(m)


def headline_table(h: dict) -> list[dict]:
    """The headline by target (baseline): the rows of the Prefect table artifact."""
    rows = []
    for r in h["by_group"].itertuples():
        rows.append({"dimension": r.dimension, "category": r.category, "target": round(float(r.target)),
                     "p10": round(float(r.p10)), "p50": round(float(r.p50)), "p90": round(float(r.p90)),
                     "probability_meeting_target": round(float(r.probability_meeting_target), 3),
                     "practice_ready_p50": round(float(r.practice_ready_p50)),
                     "probability_practice_ready_meeting_target":
                         round(float(r.probability_practice_ready_meeting_target), 3)})
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


# --------------------------------------------------------------------------------------------
# The data behind the page (aggregates only)

def _latest_academic_year(terms: list[str]) -> int:
    """The latest academic year with both semesters in the data (else the latest one seen)."""
    seen = {parse_term(t) for t in terms}
    complete = [y for (y, s) in seen if s == 1 and (y, 2) in seen]
    return max(complete) if complete else max(y for y, _ in seen)


def submissions(con) -> pd.DataFrame:
    """Every participating university and term, with one status in STATUS_ORDER: the mart's
    `status_with_late` (marts.submission_status defines status and lateness once)."""
    return con.execute("""
        SELECT university_code, name_vi, term, submission_status, received_at, reason,
               rows_quarantined, rows_with_warnings, status_with_late AS status, late
        FROM marts.submission_status
        ORDER BY term, university_code""").df()


def _funnel(con, year: int) -> tuple[pd.DataFrame, dict]:
    first, rounds = f"{year}-1", (f"{year}H2", f"{year + 1}H1")
    final = " OR ".join(f"(degree_level = '{lvl}' AND study_year >= {n})" for lvl, n in NORMAL_YEARS.items())
    enrol = con.execute(f"""
        SELECT track, sum(students) FILTER (WHERE status IN ('studying', 'on_leave')) AS enrolled,
               sum(students) FILTER (WHERE status IN ('studying', 'on_leave') AND ({final})) AS final_year
        FROM marts.enrollment_by_term WHERE term = ? GROUP BY ALL""", [first]).df()
    grads = con.execute("SELECT track, sum(graduates) AS graduated FROM marts.graduates WHERE academic_year = ? "
                        "GROUP BY ALL", [year]).df()
    placed = con.execute("""SELECT track, sum(placed) AS placed, sum(completed) AS completed,
                                   sum(semiconductor_jobs) AS practice_ready
                            FROM marts.placements_by_round WHERE round IN (?, ?) GROUP BY ALL""", list(rounds)).df()
    wide = pd.DataFrame({"track": list(TRACKS)})
    for part in (enrol, grads, placed):
        wide = wide.merge(part, on="track", how="left")
    wide = wide.fillna(0)
    stages = ["enrolled", "final_year", "graduated", "placed", "completed", "practice_ready"]
    long = wide.melt(id_vars="track", value_vars=stages, var_name="stage", value_name="students")
    long["students"] = long["students"].astype(float)
    return long, {"year": year, "first_term": first, "terms": (f"{year}-1", f"{year}-2"), "rounds": rounds}


# --------------------------------------------------------------------------------------------
# Charts

@dataclass
class Figure:
    """One chart on the page: its container id, the Vega-Lite spec, and the line under it."""

    id: str
    spec: dict
    reading: str
    period: str


def _title(text: str, period: str) -> alt.TitleParams:
    return alt.TitleParams(text=text, subtitle=[period], anchor="start")


def _finish(chart, lang: Lang) -> dict:
    chart = (chart.configure(font=FONT, background="white")
             .configure_title(fontSize=15, subtitleFontSize=12, subtitleColor="#555", anchor="start", offset=10)
             .configure_axis(labelFontSize=11, titleFontSize=12, labelLimit=260)
             .configure_legend(labelFontSize=11, titleFontSize=12, labelLimit=320, orient="top")
             .configure_header(labelFontSize=12, titleFontSize=12, labelLimit=360))
    return chart.to_dict()


def _series(layer, label: str, scale: alt.Scale):
    """A layer drawn in the colour of one named series of a shared legend."""
    return layer.transform_calculate(series=json.dumps(label)).encode(
        color=alt.Color("series:N", scale=scale, legend=alt.Legend(title=None)))


def _colour_scale(pairs: list[tuple[str, str]]) -> alt.Scale:
    return alt.Scale(domain=[a for a, _ in pairs], range=[b for _, b in pairs])


def chart_gap(con, lang: Lang, h: dict) -> Figure:
    df = con.execute("""SELECT p.year, p.category, p.target, p.cumulative_p10, p.cumulative_p50, p.cumulative_p90,
                               p.cumulative_practice_ready_p50
                        FROM marts.model_progress p
                        WHERE p.scenario = 'baseline' AND p.dimension IN ('total', 'track_group')
                        ORDER BY p.year""").df()
    hb = h["by_group"].set_index("category")
    order = [c for c in ("all", "design", "fab_pkg_test") if c in set(df["category"])]
    panels = {}
    for c in order:
        r = hb.loc[c]
        panels[c] = lang.t(f"{lang.target(c)}: target {lang.n(r.target)} | P(meet by 2030) {lang.pct(r.probability_meeting_target)}",
                           f"{lang.target(c)}: chỉ tiêu {lang.n(r.target)} | Xác suất đạt năm 2030: {lang.pct(r.probability_meeting_target)}")
    df["panel"] = df["category"].map(panels)
    df["year"] = df["year"].astype(str)
    series = [(lang.t("Engineers, P50", "Kỹ sư, trung vị (P50)"), "#1f5fa8"),
              (lang.t("P10–P90 range", "Khoảng P10–P90"), "#9ec3ea"),
              (lang.t("Practice-ready engineers, P50", "Kỹ sư sẵn sàng thực hành, P50"), "#2e9c6a"),
              (lang.t("2030 target", "Chỉ tiêu 2030"), "#d1495b")]
    colour = _colour_scale(series)
    x = alt.X("year:O", title=lang.t("Year (cumulative to the end of the year)", "Năm (cộng dồn đến cuối năm)"),
              axis=alt.Axis(labelAngle=0))
    ytitle = lang.t("Engineers, cumulative from 2025 (people)", "Kỹ sư, cộng dồn từ 2025 (người)")
    base = alt.Chart()
    band = _series(base.mark_area(opacity=0.45), series[1][0], colour).encode(
        x=x, y=alt.Y("cumulative_p10:Q", title=ytitle, axis=alt.Axis(format=",.0f")), y2="cumulative_p90:Q")
    line = _series(base.mark_line(point=True, strokeWidth=2.5), series[0][0], colour).encode(
        x=x, y="cumulative_p50:Q",
        tooltip=[alt.Tooltip("year:O", title=lang.t("Year", "Năm")),
                 alt.Tooltip("cumulative_p10:Q", format=",.0f", title="P10"),
                 alt.Tooltip("cumulative_p50:Q", format=",.0f", title="P50"),
                 alt.Tooltip("cumulative_p90:Q", format=",.0f", title="P90")])
    ready = _series(base.mark_line(strokeDash=[5, 3], strokeWidth=2), series[2][0], colour).encode(
        x=x, y="cumulative_practice_ready_p50:Q")
    target = _series(base.mark_rule(strokeDash=[6, 4], strokeWidth=2), series[3][0], colour).encode(y="target:Q")
    chart = (alt.layer(band, line, ready, target, data=df)
             .properties(width=300, height=260)
             .facet(facet=alt.Facet("panel:N", sort=[panels[c] for c in order],
                                    header=alt.Header(title=None, labelExpr="split(datum.value, ' | ')",
                                                      labelAnchor="start", labelFontWeight="bold")),
                    columns=3)
             .resolve_scale(y="independent")
             .properties(title=_title(lang.t("The gap: engineers projected to 2030 against the targets",
                                              "Khoảng cách: số kỹ sư dự báo đến 2030 so với chỉ tiêu"),
                                      lang.t(f"Baseline scenario, data to term {h['last_term']}; Decision 1017/QĐ-TTg targets",
                                             f"Kịch bản gốc, dữ liệu đến học kỳ {h['last_term']}; chỉ tiêu theo Quyết định 1017/QĐ-TTg"))))
    t = hb.loc["all"]
    parts_en, parts_vi = [], []
    for c in ("design", "fab_pkg_test"):
        if c in hb.index:
            r = hb.loc[c]
            parts_en.append(f"{lang.target(c).lower()} {lang.n(r.p50)} of {lang.n(r.target)} ({lang.pct(r.probability_meeting_target)})")
            parts_vi.append(f"{lang.target(c).lower()} {lang.n(r.p50)} trên {lang.n(r.target)} ({lang.pct(r.probability_meeting_target)})")
    reading = lang.t(
        f"By 2030 the baseline projects {lang.n(t.p50)} engineers (P10 {lang.n(t.p10)} – P90 {lang.n(t.p90)}), "
        f"{lang.pct(t.p50 / t.target)} of the {lang.n(t.target)} target; probability of meeting it "
        f"{lang.pct(t.probability_meeting_target)}. By track group: {'; '.join(parts_en)}.",
        f"Đến 2030, kịch bản gốc dự báo {lang.n(t.p50)} kỹ sư (P10 {lang.n(t.p10)} – P90 {lang.n(t.p90)}), "
        f"bằng {lang.pct(t.p50 / t.target)} chỉ tiêu {lang.n(t.target)}; xác suất đạt chỉ tiêu "
        f"{lang.pct(t.probability_meeting_target)}. Theo nhóm lĩnh vực: {'; '.join(parts_vi)}.")
    years = f"{df['year'].min()}–{df['year'].max()}" if len(df) else ""
    period = lang.t(f"Model years {years}; data to term {h['last_term']}",
                    f"Các năm mô hình {years}; dữ liệu đến học kỳ {h['last_term']}")
    return Figure("chart-gap", _finish(chart, lang), reading, period)


def chart_funnel(con, lang: Lang, terms: list[str]) -> Figure:
    year = _latest_academic_year(terms)
    df, info = _funnel(con, year)
    stage_labels = {
        "enrolled": lang.t(f"Enrolled (term {info['first_term']})", f"Đang học (học kỳ {info['first_term']})"),
        "final_year": lang.t("In final year", "Năm cuối"),
        "graduated": lang.t("Graduated in the year", "Tốt nghiệp trong năm"),
        "placed": lang.t("Placed in an internship round", "Được xếp thực tập"),
        "completed": lang.t("Completed the internship", "Hoàn thành thực tập"),
        "practice_ready": lang.t("Practice-ready engineer (semiconductor job)", "Kỹ sư sẵn sàng thực hành (việc làm bán dẫn)"),
    }
    order = list(stage_labels.values())
    df["stage_label"] = df["stage"].map(stage_labels)
    df["track_label"] = df["track"].map(lang.track)
    xmax = max(1.0, float(df["students"].max())) * 1.3
    base = alt.Chart().encode(
        y=alt.Y("stage_label:N", sort=order, title=None, axis=alt.Axis(labelLimit=300)),
        x=alt.X("students:Q", title=lang.t("Students (people)", "Sinh viên (người)"),
                scale=alt.Scale(domain=[0, xmax], nice=False), axis=alt.Axis(format=",.0f", tickCount=3)))
    bars = base.mark_bar(color="#1f5fa8").encode(
        color=alt.Color("stage_label:N", sort=order, legend=None,
                        scale=alt.Scale(range=["#1f5fa8", "#3d7dc4", "#6a9fd8", "#f08a3c", "#e3c04f", "#2e9c6a"])),
        tooltip=[alt.Tooltip("stage_label:N", title=lang.t("Stage", "Giai đoạn")),
                 alt.Tooltip("students:Q", format=",.0f", title=lang.t("Students", "Sinh viên"))])
    labels = base.mark_text(align="left", dx=3, fontSize=11).encode(text=alt.Text("students:Q", format=",.0f"))
    period = lang.t(f"Academic year {year}–{year + 1}: enrolment term {info['first_term']}, graduates in terms "
                    f"{info['terms'][0]} and {info['terms'][1]}, internship rounds {info['rounds'][0]} and {info['rounds'][1]}",
                    f"Năm học {year}–{year + 1}: sinh viên học kỳ {info['first_term']}, tốt nghiệp trong học kỳ "
                    f"{info['terms'][0]} và {info['terms'][1]}, đợt thực tập {info['rounds'][0]} và {info['rounds'][1]}")
    chart = (alt.layer(bars, labels, data=df).properties(width=175, height=190)
             .facet(column=alt.Column("track_label:N", sort=[lang.track(t) for t in TRACKS],
                                      header=alt.Header(title=None, labelFontWeight="bold")))
             .properties(title=_title(lang.t("The funnel: from enrolment to practice-ready engineer, by track",
                                              "Phễu đào tạo: từ nhập học đến kỹ sư sẵn sàng thực hành, theo lĩnh vực"),
                                      period)))
    tot = df.groupby("stage")["students"].sum()
    steps = ["enrolled", "final_year", "graduated", "placed", "completed", "practice_ready"]
    ratios = [(a, b, tot[b] / tot[a]) for a, b in zip(steps, steps[1:]) if tot[a] > 0]
    narrow = min(ratios, key=lambda r: r[2]) if ratios else None
    narrow_en = (f" The narrowest step is {stage_labels[narrow[0]].lower()} → {stage_labels[narrow[1]].lower()} "
                 f"({lang.pct(narrow[2], 1)} pass).") if narrow else ""
    narrow_vi = (f" Bước hẹp nhất là {stage_labels[narrow[0]].lower()} → {stage_labels[narrow[1]].lower()} "
                 f"({lang.pct(narrow[2], 1)} đi tiếp).") if narrow else ""
    reading = lang.t(
        f"Of {lang.n(tot['graduated'])} graduates in {year}–{year + 1}, {lang.n(tot['placed'])} were placed in an "
        f"internship round and {lang.n(tot['practice_ready'])} became practice-ready engineers.{narrow_en} "
        f"A cross-section of one year, not one cohort.",
        f"Trong {lang.n(tot['graduated'])} sinh viên tốt nghiệp năm học {year}–{year + 1}, {lang.n(tot['placed'])} "
        f"được xếp thực tập và {lang.n(tot['practice_ready'])} trở thành kỹ sư sẵn sàng thực hành.{narrow_vi} "
        f"Đây là lát cắt của một năm, không phải một khóa.")
    return Figure("chart-funnel", _finish(chart, lang), reading, period)


def chart_capacity_rounds(con, lang: Lang) -> Figure:
    df = con.execute("""SELECT round, track, basis, applicants, slots_offered, placed, unmet_demand
                        FROM marts.model_rounds WHERE scenario = 'baseline' ORDER BY round, track""").df()
    df["track_label"] = df["track"].map(lang.track)
    series = [(lang.t("Slots offered", "Số chỗ thực tập"), "#1f5fa8"),
              (lang.t("Applicants (demand), P50", "Người đăng ký (nhu cầu), P50"), "#333333"),
              (lang.t("Unmet demand (applicants not placed)", "Nhu cầu chưa đáp ứng (không được xếp chỗ)"), "#d1495b")]
    colour = _colour_scale(series)
    x = alt.X("round:O", title=lang.t("Six-month internship round", "Đợt thực tập sáu tháng"),
              axis=alt.Axis(labelAngle=-45))
    ytitle = lang.t("Students or slots per round", "Sinh viên hoặc chỗ mỗi đợt")
    base = alt.Chart()
    unmet = _series(base.mark_area(opacity=0.3), series[2][0], colour).encode(
        x=x, y=alt.Y("placed:Q", title=ytitle, axis=alt.Axis(format=",.0f")), y2="applicants:Q")
    slots = _series(base.mark_bar(opacity=0.85, width=alt.RelativeBandSize(0.6)), series[0][0], colour).encode(
        x=x, y="slots_offered:Q",
        tooltip=[alt.Tooltip("round:O", title=lang.t("Round", "Đợt")),
                 alt.Tooltip("basis:N", title=lang.t("Basis", "Cơ sở")),
                 alt.Tooltip("slots_offered:Q", format=",.0f", title=series[0][0]),
                 alt.Tooltip("applicants:Q", format=",.0f", title=series[1][0]),
                 alt.Tooltip("unmet_demand:Q", format=",.0f", title=series[2][0])])
    demand = _series(base.mark_line(point=True, strokeWidth=2), series[1][0], colour).encode(x=x, y="applicants:Q")
    observed = sorted(df.loc[df["basis"] == "observed", "round"].unique())
    projected = sorted(df.loc[df["basis"] == "projected", "round"].unique())
    span_en = (f"observed rounds {observed[0]}–{observed[-1]}; " if observed else "") + \
        (f"projected rounds {projected[0]}–{projected[-1]} (P50)" if projected else "")
    span_vi = (f"đợt đã diễn ra {observed[0]}–{observed[-1]}; " if observed else "") + \
        (f"đợt dự báo {projected[0]}–{projected[-1]} (P50)" if projected else "")
    period = lang.t(f"Baseline scenario; {span_en}", f"Kịch bản gốc; {span_vi}")
    chart = (alt.layer(unmet, slots, demand, data=df).properties(width=470, height=190)
             .facet(facet=alt.Facet("track_label:N", sort=[lang.track(t) for t in TRACKS],
                                    header=alt.Header(title=None, labelFontWeight="bold", labelAnchor="start")),
                    columns=2)
             .properties(title=_title(lang.t("Capacity: internship slots offered against demand, per round and track",
                                              "Năng lực: số chỗ thực tập so với nhu cầu, theo đợt và lĩnh vực"), period)))
    proj = df[df["basis"] == "projected"]
    bound = int((proj["unmet_demand"] > 0.5).sum())
    worst = proj.groupby("track")["unmet_demand"].sum().sort_values(ascending=False)
    worst_track = lang.track(worst.index[0]) if len(worst) else "-"
    reading = lang.t(
        f"In {bound} of {len(proj)} projected round-and-track cells applicants outnumber slots; unmet demand adds up "
        f"to {lang.n(proj['unmet_demand'].sum())} applications (P50), most in {worst_track.lower()}.",
        f"Ở {bound} trên {len(proj)} ô đợt–lĩnh vực dự báo, số người đăng ký vượt số chỗ; tổng nhu cầu chưa đáp ứng "
        f"là {lang.n(proj['unmet_demand'].sum())} lượt (P50), nhiều nhất ở lĩnh vực {worst_track.lower()}.")
    return Figure("chart-capacity", _finish(chart, lang), reading, period)


def chart_slot_use(con, lang: Lang) -> Figure:
    df = con.execute("""SELECT c.round, c.host_code, coalesce(h.name, c.host_code) AS host_name, c.track,
                               c.slots_offered, c.slots_used
                        FROM marts.capacity c LEFT JOIN ref.hosts h USING (host_code)""").df()
    observed = set(con.execute("SELECT DISTINCT round FROM marts.placements_by_round").df()["round"])
    df = (df.groupby(["round", "host_code", "host_name"], as_index=False)[["slots_offered", "slots_used"]].sum())
    df = df[df["slots_offered"] > 0].copy()
    df["observed"] = df["round"].isin(observed)
    df["use_rate"] = (df["slots_used"] / df["slots_offered"]).where(df["observed"])
    df["host_label"] = df["host_name"].str.replace(r"\s*\(.*?\)", "", regex=True).str.slice(0, 44)
    df["label"] = [f"{int(u)}/{int(o)}" if obs else f"{int(o)}"
                   for u, o, obs in zip(df["slots_used"], df["slots_offered"], df["observed"])]
    hosts = (df.groupby("host_label")["slots_offered"].sum().sort_values(ascending=False).index.tolist())
    rounds = sorted(df["round"].unique(), key=round_index)
    x = alt.X("round:O", sort=rounds, title=lang.t("Six-month internship round", "Đợt thực tập sáu tháng"),
              axis=alt.Axis(labelAngle=-45, orient="top"))
    y = alt.Y("host_label:N", sort=hosts, title=None, axis=alt.Axis(labelLimit=300))
    base = alt.Chart()
    grey = base.mark_rect(color="#eeeeee", stroke="white").encode(x=x, y=y)
    used = base.transform_filter("datum.observed").mark_rect(stroke="white").encode(
        x=x, y=y, color=alt.Color("use_rate:Q", title=lang.t("Slots used (share of offered)", "Tỷ lệ chỗ được sử dụng"),
                                  scale=alt.Scale(domain=[0, 1], scheme="greens"),
                                  legend=alt.Legend(format=".0%", orient="right")),
        tooltip=[alt.Tooltip("host_name:N", title=lang.t("Host", "Đơn vị")), alt.Tooltip("round:O"),
                 alt.Tooltip("slots_offered:Q", title=lang.t("Slots offered", "Số chỗ")),
                 alt.Tooltip("slots_used:Q", title=lang.t("Slots used", "Số chỗ đã dùng")),
                 alt.Tooltip("use_rate:Q", format=".0%", title=lang.t("Use", "Tỷ lệ dùng"))])
    text = base.mark_text(fontSize=10).encode(x=x, y=y, text="label:N",
                                              color=alt.condition("datum.use_rate > 0.6", alt.value("white"), alt.value("#333")))
    obs = sorted(observed, key=round_index)
    period = lang.t(
        (f"Rounds {obs[0]}–{obs[-1]}: slots used/offered (placements recorded); " if obs else "No placements recorded yet; ")
        + "later rounds: slots offered (scenario input, grey)",
        (f"Đợt {obs[0]}–{obs[-1]}: chỗ đã dùng/số chỗ (thực tập đã ghi nhận); " if obs else "Chưa có thực tập nào được ghi nhận; ")
        + "các đợt sau: số chỗ dự kiến (đầu vào kịch bản, màu xám)")
    chart = (alt.layer(grey, used, text, data=df)
             .properties(width=max(300, 62 * len(rounds)), height=max(120, 20 * len(hosts)),
                         title=_title(lang.t("Slot use per host and round", "Mức sử dụng chỗ thực tập theo đơn vị và đợt"),
                                      period)))
    o = df[df["observed"]]
    rate = o["slots_used"].sum() / o["slots_offered"].sum() if len(o) and o["slots_offered"].sum() else None
    later = df[~df["observed"]]
    reading = lang.t(
        (f"In the observed rounds hosts used {lang.n(o['slots_used'].sum())} of {lang.n(o['slots_offered'].sum())} slots "
         f"({lang.pct(rate)}); " if rate is not None else "No round has recorded placements yet; ")
        + f"{len(later['host_code'].unique())} hosts offer {lang.n(later['slots_offered'].sum())} slots in the later rounds.",
        (f"Ở các đợt đã diễn ra, các đơn vị đã dùng {lang.n(o['slots_used'].sum())} trên {lang.n(o['slots_offered'].sum())} chỗ "
         f"({lang.pct(rate)}); " if rate is not None else "Chưa đợt nào ghi nhận thực tập; ")
        + f"{len(later['host_code'].unique())} đơn vị dự kiến nhận {lang.n(later['slots_offered'].sum())} chỗ ở các đợt sau.")
    return Figure("chart-slot-use", _finish(chart, lang), reading, period)


def capacity_solution(con) -> pd.DataFrame:
    return con.execute("""SELECT measure, target_group, track, probability, target, extra_slots_per_round,
                                 extra_slots_per_round_group, from_round, to_round, feasible, achieved_probability,
                                 baseline_probability, baseline_p50, unlimited_slots_p50
                          FROM marts.model_capacity_solution WHERE scenario = 'baseline'
                          ORDER BY target_group, measure, probability, track""").df()


def chart_capacity_solution(con, lang: Lang, sol: pd.DataFrame) -> Figure:
    rows = []
    notes_en, notes_vi = [], []
    for (group, measure), g in sol.groupby(["target_group", "measure"], sort=False):
        p50 = g[g["probability"] == 0.5]
        r = (p50 if len(p50) else g).iloc[0]
        label = f"{lang.target(group)} – {lang.measure(measure)}"
        if bool(r.feasible) and pd.notna(r.extra_slots_per_round_group):
            sol_en = f"+{lang.n(r.extra_slots_per_round_group)} slots a round {r.from_round}–{r.to_round}: P(meet) {lang.pct(r.achieved_probability)}"
            sol_vi = f"+{lang.n(r.extra_slots_per_round_group)} chỗ mỗi đợt {r.from_round}–{r.to_round}: xác suất đạt {lang.pct(r.achieved_probability)}"
        else:
            sol_en, sol_vi = "not reachable with slots alone", "không đạt được chỉ bằng thêm chỗ"
        notes_en.append(f"{label}: {sol_en}")
        notes_vi.append(f"{label}: {sol_vi}")
        for key, value in (("baseline", r.baseline_p50), ("unlimited", r.unlimited_slots_p50)):
            rows.append({"row": label, "series": key, "value": float(value) if pd.notna(value) else None,
                         "target": float(r.target), "solution": lang.t(sol_en, sol_vi)})
    df = pd.DataFrame(rows, columns=["row", "series", "value", "target", "solution"])
    names = {"baseline": lang.t("Baseline slots, P50", "Số chỗ gốc, P50"),
             "unlimited": lang.t("Every applicant placed (unlimited slots), P50", "Mọi người đăng ký đều được xếp (không giới hạn chỗ), P50")}
    df["series_label"] = df["series"].map(names)
    order = list(dict.fromkeys(df["row"]))
    xmax = max([1.0] + df["value"].dropna().tolist() + df["target"].tolist()) * 1.6
    y = alt.Y("row:N", sort=order, title=None, axis=alt.Axis(labelLimit=340))
    x = alt.X("value:Q", title=lang.t("Engineers by 2030 (people)", "Kỹ sư đến 2030 (người)"),
              scale=alt.Scale(domain=[0, xmax], nice=False), axis=alt.Axis(format=",.0f"))
    base = alt.Chart()
    bars = base.mark_bar().encode(
        y=y, x=x, yOffset=alt.YOffset("series_label:N", sort=[names["baseline"], names["unlimited"]]),
        color=alt.Color("series_label:N", title=None, sort=[names["baseline"], names["unlimited"]],
                        scale=alt.Scale(range=["#1f5fa8", "#9ec3ea"])),
        tooltip=[alt.Tooltip("row:N", title=""), alt.Tooltip("series_label:N", title=""),
                 alt.Tooltip("value:Q", format=",.0f", title="P50")])
    target = base.mark_tick(color="#d1495b", thickness=3, size=34).encode(y=y, x=alt.X("target:Q"))
    sol_text = (base.transform_filter("datum.series == 'baseline'")
                .mark_text(align="left", dx=8, dy=0, fontSize=11, color="#222")
                .encode(y=y, x=alt.X("target:Q"), text="solution:N"))
    rng = sol[["from_round", "to_round"]].dropna()
    span = f"{rng['from_round'].iloc[0]}–{rng['to_round'].iloc[0]}" if len(rng) else ""
    period = lang.t(f"Baseline scenario, extra slots from round {span}; red tick: 2030 target; target met with probability 50%",
                    f"Kịch bản gốc, thêm chỗ từ đợt {span}; vạch đỏ: chỉ tiêu 2030; đạt chỉ tiêu với xác suất 50%")
    chart = (alt.layer(bars, target, sol_text, data=df)
             .properties(width=800, height=alt.Step(22), title=_title(
                 lang.t("What the solved extra capacity would do", "Tác động của năng lực bổ sung đã tính toán"), period)))
    reading = lang.t("; ".join(notes_en) + ".", "; ".join(notes_vi) + ".") if notes_en else lang.t(
        "No capacity solution in this run.", "Lần chạy này không có lời giải năng lực.")
    return Figure("chart-capacity-solution", _finish(chart, lang), reading, period)


def chart_marginal(con, lang: Lang) -> Figure:
    df = con.execute("""SELECT track, round, marginal_engineers_p10, marginal_engineers_p50, marginal_engineers_p90,
                               marginal_practice_ready_p50
                        FROM marts.model_marginal WHERE scenario = 'baseline'""").df()
    df["track_label"] = df["track"].map(lang.track)
    rounds = sorted(df["round"].unique(), key=round_index)
    x = alt.X("round:O", sort=rounds, title=lang.t("Round the extra slot is added", "Đợt được thêm một chỗ"),
              axis=alt.Axis(labelAngle=0))
    colour = alt.Color("track_label:N", title=lang.t("Track", "Lĩnh vực"), sort=[lang.track(t) for t in TRACKS])
    base = alt.Chart()
    line = base.mark_line(point=True).encode(
        x=x, y=alt.Y("marginal_engineers_p50:Q", title=lang.t("Extra engineers by 2030 per extra slot (people)",
                                                             "Kỹ sư tăng thêm đến 2030 trên mỗi chỗ (người)"),
                     axis=alt.Axis(format=".2f")),
        color=colour,
        tooltip=[alt.Tooltip("track_label:N", title=lang.t("Track", "Lĩnh vực")), alt.Tooltip("round:O"),
                 alt.Tooltip("marginal_engineers_p10:Q", format=".2f", title="P10"),
                 alt.Tooltip("marginal_engineers_p50:Q", format=".2f", title=lang.t("Engineers per slot, P50", "Kỹ sư mỗi chỗ, P50")),
                 alt.Tooltip("marginal_engineers_p90:Q", format=".2f", title="P90"),
                 alt.Tooltip("marginal_practice_ready_p50:Q", format=".2f",
                             title=lang.t("Practice-ready per slot, P50", "Sẵn sàng thực hành mỗi chỗ, P50"))])
    period = lang.t(f"Baseline scenario, rounds {rounds[0]}–{rounds[-1]}; P50 over the draws (P10 and P90 in the tooltip)"
                    if rounds else "Baseline scenario",
                    f"Kịch bản gốc, đợt {rounds[0]}–{rounds[-1]}; trung vị (P10, P90 khi rê chuột)" if rounds else "Kịch bản gốc")
    chart = alt.layer(line, data=df).properties(width=900, height=200, title=_title(
        lang.t("What one more slot would do", "Tác động của thêm một chỗ thực tập"), period))
    if len(df):
        first = df[df["round"] == rounds[0]]
        reading = lang.t(
            f"One extra slot in round {rounds[0]} adds about {lang.n(first['marginal_engineers_p50'].mean(), 2)} engineers "
            f"and {lang.n(first['marginal_practice_ready_p50'].mean(), 2)} practice-ready engineers by 2030 (P50, mean over tracks).",
            f"Thêm một chỗ ở đợt {rounds[0]} tăng khoảng {lang.n(first['marginal_engineers_p50'].mean(), 2)} kỹ sư "
            f"và {lang.n(first['marginal_practice_ready_p50'].mean(), 2)} kỹ sư sẵn sàng thực hành đến 2030 (P50, trung bình các lĩnh vực).")
    else:
        reading = lang.t("No marginal analysis in this run.", "Lần chạy này không có phân tích cận biên.")
    return Figure("chart-marginal", _finish(chart, lang), reading, period)


def chart_scenarios(con, lang: Lang, h: dict) -> Figure:
    df = con.execute("""SELECT scenario, category, target, p10, p50, p90, probability_meeting_target, practice_ready_p50
                        FROM marts.model_headline WHERE dimension IN ('total', 'track_group')""").df()
    names = list(dict.fromkeys(["baseline"] + sorted(df["scenario"].unique())))
    names = [s for s in names if s in set(df["scenario"])]
    df["scenario_label"] = df["scenario"].map(lang.scenario)
    order = [c for c in ("all", "design", "fab_pkg_test") if c in set(df["category"])]
    panels = {c: f"{lang.target(c)} ({lang.t('target', 'chỉ tiêu')} {lang.n(df.loc[df.category == c, 'target'].iloc[0])})"
              for c in order}
    df["panel"] = df["category"].map(panels)
    df["prob_label"] = df["probability_meeting_target"].map(
        lambda p: lang.t(f"P(meet) {lang.pct(p)}", f"Xác suất đạt {lang.pct(p)}"))
    y = alt.Y("scenario_label:N", sort=[lang.scenario(s) for s in names], title=None, axis=alt.Axis(labelLimit=300))
    base = alt.Chart()
    xtitle = lang.t("Engineers by 2030 (people): P50 and P10–P90", "Kỹ sư đến 2030 (người): P50 và P10–P90")
    rng = base.mark_rule(strokeWidth=3, color="#9ec3ea").encode(
        y=y, x=alt.X("p10:Q", title=xtitle, axis=alt.Axis(format="~s", tickCount=4)), x2="p90:Q")
    point = base.mark_point(filled=True, size=90, color="#1f5fa8").encode(
        y=y, x="p50:Q", tooltip=[alt.Tooltip("scenario_label:N", title=lang.t("Scenario", "Kịch bản")),
                                 alt.Tooltip("p10:Q", format=",.0f", title="P10"),
                                 alt.Tooltip("p50:Q", format=",.0f", title="P50"),
                                 alt.Tooltip("p90:Q", format=",.0f", title="P90"),
                                 alt.Tooltip("probability_meeting_target:Q", format=".0%",
                                             title=lang.t("P(meet target)", "Xác suất đạt"))])
    target = base.mark_rule(color="#d1495b", strokeDash=[6, 4], strokeWidth=2).encode(x="target:Q")
    text = base.mark_text(align="left", dx=6, fontSize=10, color="#444").encode(y=y, x="p90:Q", text="prob_label:N")
    period = lang.t(f"Scenario files in data/scenarios; data to term {h['last_term']}; red dashed line: 2030 target",
                    f"Các tệp kịch bản trong data/scenarios; dữ liệu đến học kỳ {h['last_term']}; đường đỏ: chỉ tiêu 2030")
    chart = (alt.layer(rng, point, target, text, data=df).properties(width=230, height=alt.Step(30))
             .facet(column=alt.Column("panel:N", sort=[panels[c] for c in order],
                                      header=alt.Header(title=None, labelFontWeight="bold")))
             .resolve_scale(x="independent")
             .properties(title=_title(lang.t("Scenarios side by side", "So sánh các kịch bản"), period)))
    tot = df[df["category"] == "all"].set_index("scenario")
    best = tot["p50"].idxmax()
    base_p50 = float(tot.loc["baseline", "p50"]) if "baseline" in tot.index else float("nan")
    reading = lang.t(
        f"Highest P50: {lang.scenario(best)}, {lang.n(tot.loc[best, 'p50'])} engineers by 2030 "
        f"({lang.n(tot.loc[best, 'p50'] - base_p50)} more than the baseline); the best probability of meeting 50,000 in any scenario is "
        f"{lang.pct(tot['probability_meeting_target'].max())}.",
        f"Trung vị cao nhất: {lang.scenario(best)}, {lang.n(tot.loc[best, 'p50'])} kỹ sư đến 2030 "
        f"(hơn kịch bản gốc {lang.n(tot.loc[best, 'p50'] - base_p50)}); xác suất đạt 50.000 cao nhất trong các kịch bản là "
        f"{lang.pct(tot['probability_meeting_target'].max())}.")
    return Figure("chart-scenarios", _finish(chart, lang), reading, period)


def university_table(con, subs: pd.DataFrame, last_term: str) -> pd.DataFrame:
    """One row per participating university; counts as published (None = suppressed)."""
    u = con.execute("""SELECT s.university_code, s.name_vi, s.province_2025, s.region, s.students_latest_term,
                              s.graduates_all_terms, s.placed, s.terms_missing, s.terms_rejected, s.rows_quarantined,
                              m.graduates AS model_graduates, m.placed AS model_placed
                       FROM marts.university_summary s
                       LEFT JOIN marts.model_universities m ON m.university_code = s.university_code AND m.scenario = 'baseline'
                       ORDER BY s.university_code""").df()
    latest = subs[subs["term"] == last_term].set_index("university_code")["status"] if len(subs) else pd.Series(dtype=str)
    u["status_latest"] = u["university_code"].map(latest).fillna("missing")
    u["students"] = u["students_latest_term"].map(publishable_count)
    u["graduates"] = u["graduates_all_terms"].map(publishable_count)
    u["placed_pub"] = u["placed"].map(publishable_count)
    u["placement_rate"] = [publishable_share(p, g) for p, g in zip(u["placed"], u["graduates_all_terms"])]
    u["projected_rate"] = [float(p) / float(g) if pd.notna(g) and float(g) >= MIN_BASE and pd.notna(p) else None
                           for p, g in zip(u["model_placed"], u["model_graduates"])]
    u["quarantined"] = u["rows_quarantined"].map(publishable_count)
    return u


def chart_regions(con, lang: Lang, unis: pd.DataFrame, last_term: str, year: int) -> Figure:
    grads = con.execute("""SELECT u.region, sum(g.graduates) AS graduates FROM marts.graduates g
                           JOIN ref.universities u USING (university_code) WHERE g.academic_year = ? GROUP BY ALL""",
                        [year]).df()
    eng = con.execute("""SELECT region, sum(engineers) AS engineers FROM marts.model_universities
                         WHERE scenario = 'baseline' GROUP BY ALL""").df()
    reg = (unis.groupby("region", dropna=False)
           .agg(universities=("university_code", "count"), students=("students_latest_term", "sum")).reset_index()
           .merge(grads, on="region", how="left").merge(eng, on="region", how="left"))
    reg["region_label"] = [f"{lang.region(r)} ({n} {lang.t('universities', 'trường')})"
                           for r, n in zip(reg["region"], reg["universities"])]
    measures = {"students": lang.t(f"Students in the programmes, term {last_term}", f"Sinh viên các ngành, học kỳ {last_term}"),
                "graduates": lang.t(f"Graduates, academic year {year}–{year + 1}", f"Tốt nghiệp, năm học {year}–{year + 1}"),
                "engineers": lang.t("Engineers projected 2025–2030 (mean)", "Kỹ sư dự báo 2025–2030 (trung bình)")}
    long = reg.melt(id_vars=["region", "region_label"], value_vars=list(measures), var_name="measure", value_name="raw")
    long["value"] = long["raw"].map(publishable_count)
    long["label"] = long["value"].map(lambda v: SUPPRESSED if v is None else lang.n(v))
    long["measure_label"] = long["measure"].map(measures)
    order = reg.sort_values("students", ascending=False)["region_label"].tolist()
    y = alt.Y("region_label:N", sort=order, title=None, axis=alt.Axis(labelLimit=340))
    colour = alt.Color("measure_label:N", title=None, sort=list(measures.values()),
                       scale=alt.Scale(range=["#1f5fa8", "#6a9fd8", "#2e9c6a"]))
    xmax = max([1.0] + long["value"].dropna().tolist()) * 1.15
    base = alt.Chart()
    bars = base.mark_bar().encode(
        y=y, yOffset=alt.YOffset("measure_label:N", sort=list(measures.values())),
        x=alt.X("value:Q", title=lang.t("People (rounded to the nearest 5)", "Người (làm tròn đến bội số của 5)"),
                scale=alt.Scale(domain=[0, xmax], nice=False), axis=alt.Axis(format=",.0f")),
        color=colour, tooltip=[alt.Tooltip("region_label:N", title=lang.t("Region", "Vùng")),
                               alt.Tooltip("measure_label:N", title=""), alt.Tooltip("label:N", title="")])
    text = base.mark_text(align="left", dx=3, fontSize=10).encode(
        y=y, yOffset=alt.YOffset("measure_label:N", sort=list(measures.values())),
        x=alt.X("value:Q"), text="label:N")
    period = lang.t(f"Participating universities; students term {last_term}, graduates academic year {year}–{year + 1}, "
                    f"projection baseline", f"Các trường tham gia; sinh viên học kỳ {last_term}, tốt nghiệp năm học "
                    f"{year}–{year + 1}, dự báo kịch bản gốc")
    chart = alt.layer(bars, text, data=long).properties(width=700, height=alt.Step(13), title=_title(
        lang.t("The regions", "Các vùng kinh tế – xã hội"), period))
    top = reg.sort_values("students", ascending=False).iloc[0] if len(reg) else None
    total = reg["students"].sum()
    reading = lang.t(
        f"{lang.region(top.region)} has the most students in the programmes ({lang.n(publishable_count(top.students))}, "
        f"{lang.pct(top.students / total if total else 0)} of the national total) and {top.universities} of the "
        f"{int(reg['universities'].sum())} participating universities." if top is not None else "No universities.",
        f"{lang.region(top.region)} có nhiều sinh viên các ngành nhất ({lang.n(publishable_count(top.students))}, "
        f"{lang.pct(top.students / total if total else 0)} cả nước) và {top.universities} trong "
        f"{int(reg['universities'].sum())} trường tham gia." if top is not None else "Không có trường nào.")
    return Figure("chart-regions", _finish(chart, lang), reading, period)


def chart_submissions(lang: Lang, subs: pd.DataFrame, last_term: str) -> Figure:
    counts = subs.groupby(["term", "status"]).size().rename("universities").reset_index()
    counts["status_label"] = counts["status"].map(lang.status)
    labels = [lang.status(s) for s in STATUS_ORDER]
    flagged = ("accepted_with_warnings", "late", "rejected", "missing")
    totals = counts.groupby("term")["universities"].sum()
    flagged_rows = counts[counts["status"].isin(flagged)]
    notes = pd.DataFrame(
        [{"term": term, "total": int(totals[term]),
          "note": ", ".join(f"{int(n)} {lang.status(st).split(' (')[0].lower()}" for st, n in zip(g["status"], g["universities"]))}
         for term, g in flagged_rows.groupby("term")], columns=["term", "total", "note"])
    chart = alt.Chart(counts).mark_bar().encode(
        x=alt.X("term:O", title=lang.t("Term (academic year–semester)", "Học kỳ (năm học–kỳ)"), axis=alt.Axis(labelAngle=0)),
        y=alt.Y("universities:Q", title=lang.t("Universities (count)", "Số trường"), axis=alt.Axis(format=",.0f")),
        color=alt.Color("status_label:N", title=None, sort=labels, scale=alt.Scale(domain=labels, range=list(STATUS_COLOURS))),
        order=alt.Order("status_order:Q"),
        tooltip=[alt.Tooltip("term:O", title=lang.t("Term", "Học kỳ")), alt.Tooltip("status_label:N", title=""),
                 alt.Tooltip("universities:Q", title=lang.t("Universities", "Số trường"))],
    ).transform_calculate(
        status_order="indexof(" + json.dumps(labels) + ", datum.status_label)")
    terms = sorted(subs["term"].unique()) if len(subs) else []
    period = lang.t(f"Enrolment submissions, terms {terms[0]}–{terms[-1]}" if terms else "No submissions",
                    f"Báo cáo sinh viên, học kỳ {terms[0]}–{terms[-1]}" if terms else "Chưa có báo cáo")
    note_layer = alt.Chart(notes).mark_text(dy=-7, fontSize=10, color="#b34700").encode(
        x=alt.X("term:O"), y=alt.Y("total:Q"), text="note:N")
    chart = alt.layer(chart, note_layer).properties(width=900, height=220, title=_title(
        lang.t("Data quality: which universities submitted, by term", "Chất lượng dữ liệu: trường nào đã nộp, theo học kỳ"),
        period))
    last = subs[subs["term"] == last_term]["status"].value_counts()
    n = int(last.sum())
    ok = int(last.get("accepted", 0) + last.get("accepted_with_issues", 0) + last.get("accepted_with_warnings", 0))
    reading = lang.t(
        f"Term {last_term}: {ok} of {n} universities submitted and were accepted "
        f"({int(last.get('accepted_with_warnings', 0))} with warnings, {int(last.get('accepted_with_issues', 0))} with some rows "
        f"quarantined); {int(last.get('late', 0))} late, {int(last.get('rejected', 0))} rejected, "
        f"{int(last.get('missing', 0))} not received. Over all terms: {int((subs['status'] == 'late').sum())} late, "
        f"{int((subs['status'] == 'rejected').sum())} rejected.",
        f"Học kỳ {last_term}: {ok} trên {n} trường đã nộp và được chấp nhận "
        f"({int(last.get('accepted_with_warnings', 0))} kèm cảnh báo, {int(last.get('accepted_with_issues', 0))} có dòng bị cách ly); "
        f"{int(last.get('late', 0))} nộp muộn, {int(last.get('rejected', 0))} bị từ chối, {int(last.get('missing', 0))} chưa nộp. "
        f"Tất cả các học kỳ: {int((subs['status'] == 'late').sum())} nộp muộn, {int((subs['status'] == 'rejected').sum())} bị từ chối.")
    return Figure("chart-submissions", _finish(chart, lang), reading, period)


def chart_quarantine(con, lang: Lang) -> Figure:
    df = con.execute("""SELECT q.rule_id, any_value(q.message_en) AS message_en, any_value(q.message_vi) AS message_vi,
                               count(DISTINCT (q.file_id, q.line)) AS rows_quarantined,
                               min(q.term) AS first_term, max(q.term) AS last_term
                        FROM ops.quarantine q JOIN ops.manifest m USING (file_id)
                        WHERE m.status = 'loaded'
                        GROUP BY q.rule_id ORDER BY rows_quarantined DESC""").df()
    df["message"] = df["message_vi"] if lang.code == "vi" else df["message_en"]
    chart = alt.Chart(df).mark_bar(color="#d1495b").encode(
        y=alt.Y("rule_id:N", sort="-x", title=lang.t("Contract rule", "Quy tắc dữ liệu"), axis=alt.Axis(labelLimit=320)),
        x=alt.X("rows_quarantined:Q", title=lang.t("Rows quarantined (student records)", "Số dòng bị cách ly (bản ghi sinh viên)"),
                axis=alt.Axis(format=",.0f")),
        tooltip=[alt.Tooltip("rule_id:N", title=lang.t("Rule", "Quy tắc")), alt.Tooltip("message:N", title=""),
                 alt.Tooltip("rows_quarantined:Q", format=",.0f", title=lang.t("Rows", "Số dòng"))])
    text = alt.Chart(df).mark_text(align="left", dx=3, fontSize=10).encode(
        y=alt.Y("rule_id:N", sort="-x"), x="rows_quarantined:Q", text=alt.Text("rows_quarantined:Q", format=",.0f"))
    span = f"{df['first_term'].min()}–{df['last_term'].max()}" if len(df) else ""
    period = lang.t(f"Current submissions, terms {span}; a row breaking several rules counts once per rule" if span
                    else "Current submissions", f"Các tệp hiện hành, học kỳ {span}; một dòng vi phạm nhiều quy tắc được tính ở mỗi quy tắc"
                    if span else "Các tệp hiện hành")
    chart = alt.layer(chart, text).properties(width=760, height=alt.Step(24), title=_title(
        lang.t("Data quality: rows quarantined, by rule", "Chất lượng dữ liệu: số dòng bị cách ly theo quy tắc"), period))
    total = con.execute("""SELECT count(DISTINCT (q.file_id, q.line)) FROM ops.quarantine q JOIN ops.manifest m USING (file_id)
                           WHERE m.status = 'loaded'""").fetchone()[0] or 0
    if len(df):
        top = df.iloc[0]
        reading = lang.t(
            f"{lang.n(total)} rows of current submissions are quarantined; the most common rule is {top.rule_id} "
            f"({lang.n(top.rows_quarantined)} rows): {top.message_en}",
            f"{lang.n(total)} dòng trong các tệp hiện hành bị cách ly; quy tắc gặp nhiều nhất là {top.rule_id} "
            f"({lang.n(top.rows_quarantined)} dòng): {top.message_vi}")
    else:
        reading = lang.t("No rows are quarantined.", "Không có dòng nào bị cách ly.")
    return Figure("chart-quarantine", _finish(chart, lang), reading, period)


# --------------------------------------------------------------------------------------------
# HTML

def _esc(x) -> str:
    return html.escape("" if x is None else str(x))


@functools.lru_cache(maxsize=1)
def _vega_js() -> str:
    """Vega, Vega-Lite and Vega-Embed in one script (from the pinned vl-convert-python).

    Bundling takes seconds on every run that writes a report, so the bundle is kept once per
    vl-convert and Vega-Lite version in the user's cache folder (rebuilt whenever it is missing)."""
    from importlib.metadata import version

    from altair.utils._importers import vl_version_for_vl_convert

    vl = vl_version_for_vl_convert()
    cache = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lab2fab"
             / f"vega-bundle-{version('vl-convert-python')}-{vl}.js")
    try:
        return cache.read_text(encoding="utf-8")
    except OSError:
        pass
    import vl_convert as vlc

    js = re.sub(r"</(script)", r"<\\/\\1", vlc.javascript_bundle(vl_version=vl), flags=re.IGNORECASE)
    try:  # whole or not at all: written beside, then renamed
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(js, encoding="utf-8")
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home: bundle again next time
    return js


def _figure_html(f: Figure, lang: Lang) -> str:
    return (f'<figure class="fig"><div class="chart" id="{f.id}" role="img" aria-label="{_esc(f.reading)}"></div>'
            f'<figcaption><span class="reading"><b>{_esc(lang.t("Reading", "Đọc biểu đồ"))}:</b> {_esc(f.reading)}</span>'
            f'<span class="src">{_esc(lang.t("Data", "Dữ liệu"))}: {_esc(f.period)}</span></figcaption></figure>')


def _num_cell(v, lang: Lang, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return f'<td class="num sup" data-sort="-1">{SUPPRESSED}</td>'
    shown = lang.pct(v) if pct else lang.n(v)
    return f'<td class="num" data-sort="{(round(v, 3) if pct else int(v))}">{shown}</td>'


def _universities_html(unis: pd.DataFrame, lang: Lang, last_term: str) -> str:
    heads = [("university", lang.t("University", "Trường"), "text"),
             ("region", lang.t("Region", "Vùng"), "text"),
             ("province", lang.t("Province (2025)", "Tỉnh/thành (2025)"), "text"),
             ("students", lang.t(f"Students in the programmes, term {last_term}", f"Sinh viên các ngành, học kỳ {last_term}"), "num"),
             ("graduates", lang.t("Graduates, all terms", "Tốt nghiệp, mọi học kỳ"), "num"),
             ("placed", lang.t("Placed in internships", "Đã được xếp thực tập"), "num"),
             ("rate", lang.t("Placement rate", "Tỷ lệ được xếp thực tập"), "num"),
             ("projected", lang.t("Projected share placed by 2030 (model)", "Tỷ lệ dự báo được xếp đến 2030 (mô hình)"), "num"),
             ("status", lang.t(f"Data quality, term {last_term}", f"Chất lượng dữ liệu, học kỳ {last_term}"), "text"),
             ("problems", lang.t("Terms missing / rejected", "Số học kỳ thiếu / bị từ chối"), "num"),
             ("quarantined", lang.t("Rows quarantined", "Số dòng bị cách ly"), "num")]
    th = "".join(f'<th data-type="{t}" aria-sort="none"><button type="button">{_esc(label)}</button></th>'
                 for _, label, t in heads)
    body = []
    order = unis.assign(_s=unis["students"].fillna(-1)).sort_values(["_s", "university_code"], ascending=[False, True])
    for r in order.itertuples():
        status_rank = STATUS_ORDER.index(r.status_latest) if r.status_latest in STATUS_ORDER else 9
        body.append(
            "<tr>"
            f'<td data-sort="{_esc(r.university_code)}"><b>{_esc(r.university_code)}</b> {_esc(r.name_vi)}</td>'
            f"<td>{_esc(lang.region(r.region))}</td><td>{_esc(r.province_2025)}</td>"
            + _num_cell(r.students, lang) + _num_cell(r.graduates, lang) + _num_cell(r.placed_pub, lang)
            + _num_cell(r.placement_rate, lang, pct=True) + _num_cell(r.projected_rate, lang, pct=True)
            + f'<td data-sort="{status_rank}"><span class="badge s-{_esc(r.status_latest)}">{_esc(lang.status(r.status_latest))}</span></td>'
            + f'<td class="num" data-sort="{int(r.terms_missing) * 100 + int(r.terms_rejected)}">{int(r.terms_missing)} / {int(r.terms_rejected)}</td>'
            + _num_cell(r.quarantined, lang) + "</tr>")
    return (f'<div class="scroll"><table class="t sortable" id="universities"><thead><tr>{th}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _attention_html(subs: pd.DataFrame, lang: Lang, limit: int = 200) -> str:
    bad = subs[subs["status"].isin(["late", "rejected", "accepted_with_warnings", "missing"])].copy()
    if bad.empty:
        return f'<p>{_esc(lang.t("No submission is late, rejected, missing or accepted with warnings.", "Không có báo cáo nào nộp muộn, bị từ chối, chưa nộp hay kèm cảnh báo."))}</p>'
    bad = bad.sort_values(["term", "status", "university_code"], ascending=[False, True, True])
    rows = []
    for r in bad.head(limit).itertuples():
        received = "" if pd.isna(r.received_at) else (pd.Timestamp(r.received_at) + ICT).strftime("%Y-%m-%d")
        rows.append(f"<tr><td>{_esc(r.term)}</td><td><b>{_esc(r.university_code)}</b> {_esc(r.name_vi)}</td>"
                    f'<td><span class="badge s-{_esc(r.status)}">{_esc(lang.status(r.status))}</span></td>'
                    f"<td>{_esc(received)}</td><td>{_esc('' if pd.isna(r.reason) else r.reason)}</td></tr>")
    more = (f'<p class="note">{_esc(lang.t(f"… and {len(bad) - limit} more.", f"… và {len(bad) - limit} báo cáo khác."))}</p>'
            if len(bad) > limit else "")
    heads = [lang.t("Term", "Học kỳ"), lang.t("University", "Trường"), lang.t("Status", "Tình trạng"),
             lang.t("Received (Vietnam time)", "Ngày nhận (giờ Việt Nam)"), lang.t("Reason", "Lý do")]
    return (f'<div class="scroll short"><table class="t left" id="attention"><thead><tr>'
            + "".join(f"<th>{_esc(x)}</th>" for x in heads) + f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>{more}")


def _solution_table_html(sol: pd.DataFrame, lang: Lang) -> str:
    if sol.empty:
        return ""
    heads = [lang.t("Target", "Chỉ tiêu"), lang.t("Measure", "Thước đo"), lang.t("Probability", "Xác suất"),
             lang.t("Track", "Lĩnh vực"), lang.t("Extra slots a round", "Số chỗ thêm mỗi đợt"),
             lang.t("Rounds", "Các đợt"), lang.t("P(meet) with them", "Xác suất đạt khi có thêm"),
             lang.t("P50 with unlimited slots", "P50 khi không giới hạn chỗ")]
    rows = []
    for r in sol.itertuples():
        extra = lang.n(r.extra_slots_per_round) if bool(r.feasible) and pd.notna(r.extra_slots_per_round) else \
            lang.t("not reachable with slots alone", "không đạt được chỉ bằng thêm chỗ")
        rows.append(f"<tr><td>{_esc(lang.target(r.target_group))} ({lang.n(r.target)})</td><td>{_esc(lang.measure(r.measure))}</td>"
                    f"<td class=num>{lang.pct(r.probability)}</td><td>{_esc(lang.track(r.track))}</td><td class=num>{_esc(extra)}</td>"
                    f"<td>{_esc(r.from_round)}–{_esc(r.to_round)}</td><td class=num>{lang.pct(r.achieved_probability)}</td>"
                    f"<td class=num>{lang.n(r.unlimited_slots_p50)}</td></tr>")
    return (f'<details><summary>{_esc(lang.t("The capacity solution, per track", "Lời giải năng lực, theo lĩnh vực"))}</summary>'
            f'<div class="scroll short"><table class="t"><thead><tr>' + "".join(f"<th>{_esc(x)}</th>" for x in heads)
            + f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div></details>")


def _scenario_table_html(con, lang: Lang) -> str:
    df = con.execute("SELECT scenario, description, reviewed_by FROM marts.model_scenarios ORDER BY scenario = 'baseline' DESC, scenario").df()
    rows = "".join(f"<tr><td><b>{_esc(lang.scenario(r.scenario))}</b><br><code>{_esc(r.scenario)}</code></td>"
                   f"<td>{_esc(r.description)}</td><td>{_esc(r.reviewed_by)}</td></tr>" for r in df.itertuples())
    heads = [lang.t("Scenario", "Kịch bản"), lang.t("What changes (from the scenario file)", "Thay đổi (theo tệp kịch bản)"),
             lang.t("Reviewed by", "Người duyệt")]
    return (f'<details><summary>{_esc(lang.t("What each scenario assumes", "Giả định của từng kịch bản"))}</summary>'
            f'<table class="t left"><thead><tr>' + "".join(f"<th>{_esc(x)}</th>" for x in heads)
            + f"</tr></thead><tbody>{rows}</tbody></table></details>")


CSS = """
body{font-family:'Noto Sans','DejaVu Sans',system-ui,sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em;margin:.2em 0}h2{margin-top:1.8em;border-bottom:2px solid #1f5fa8;padding-bottom:.2em}
nav a{margin-right:1em}.lead{font-size:1.15em}
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}.card{flex:1 1 150px;background:#f4f7fb;border-radius:8px;padding:.7em 1em}
.card .v{font-size:1.7em;font-weight:700;color:#1f5fa8}.card .k{font-size:.9em;color:#555}
.fig{margin:1.2em 0 2em}.chart{min-height:40px;overflow-x:auto}
figcaption{font-size:.95em;margin-top:.3em}figcaption .reading{display:block}figcaption .src{display:block;color:#666;font-size:.9em}
table.t{border-collapse:collapse;margin:.5em 0 1em;font-size:.88em}
table.t td,table.t th{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
table.t td.num{text-align:right;white-space:nowrap}td.sup{color:#888}
table.sortable th button{all:unset;cursor:pointer;font-weight:700}table.sortable th[aria-sort=ascending] button::after{content:" ▲"}
table.sortable th[aria-sort=descending] button::after{content:" ▼"}
.scroll{max-height:540px;overflow:auto;border:1px solid #eee}.scroll.short{max-height:320px}
thead th{position:sticky;top:0;background:#fff}
.badge{padding:.05em .45em;border-radius:4px;font-size:.9em;display:inline-block}
.s-accepted{background:#dcefe0}.s-accepted_with_issues{background:#eef6e3}.s-accepted_with_warnings{background:#fbf1cf}
.s-late{background:#fde2cf}.s-rejected{background:#f7d3d8}.s-missing{background:#e6e6e6}
.method{background:#f7f7f2;border-left:4px solid #bbb;padding:.6em 1em;font-size:.92em}
#universities td:nth-child(1){min-width:13em}#universities td:nth-child(2),#universities td:nth-child(3){min-width:7em}
.note,.foot{color:#666;font-size:.88em}#report-errors{color:#b00020;white-space:pre-wrap}
"""

# Installed before the Vega bundle, so that even an error while loading it is recorded on the page.
ERROR_SCRIPT = """
(function(){
  var pending = [];
  function flush(){ var el = document.getElementById('report-errors'); if (!el) return;
    while (pending.length) { el.hidden = false; el.textContent += pending.shift() + '\\n'; } }
  window.reportError = function(where, e){
    pending.push(where + ': ' + ((e && (e.stack || e.message)) || e)); flush(); };
  window.addEventListener('error', function(ev){ window.reportError('script', ev.error || ev.message); });
  window.addEventListener('unhandledrejection', function(ev){ window.reportError('promise', ev.reason); });
  document.addEventListener('DOMContentLoaded', flush);
})();
"""

SCRIPT = """
(function(){
  var report = window.reportError;
  var specs = JSON.parse(document.getElementById('report-specs').textContent);
  var locale = JSON.parse(document.getElementById('report-locale').textContent);
  if (typeof vegaEmbed !== 'function') { report('vega', 'vegaEmbed is not loaded'); return; }
  Object.keys(specs).forEach(function(id){
    var el = document.getElementById(id);
    var logger = {_l: 2, level: function(l){ if (l === undefined) return this._l; this._l = l; return this; },
                  error: function(){ report(id, Array.prototype.join.call(arguments, ' ')); return this; },
                  warn: function(){ el.setAttribute('data-warnings', (el.getAttribute('data-warnings') || '') + Array.prototype.join.call(arguments, ' ') + '; '); return this; },
                  info: function(){ return this; }, debug: function(){ return this; }};
    vegaEmbed(el, specs[id], {renderer: 'svg', actions: false, formatLocale: locale, logger: logger})
      .then(function(r){ el.setAttribute('data-rendered', 'ok'); })
      .catch(function(e){ el.setAttribute('data-rendered', 'error'); report(id, e); });
  });
  document.querySelectorAll('table.sortable').forEach(function(table){
    var ths = table.querySelectorAll('thead th');
    ths.forEach(function(th, i){
      th.querySelector('button').addEventListener('click', function(){
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        ths.forEach(function(o){ o.setAttribute('aria-sort', 'none'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        var num = th.getAttribute('data-type') === 'num';
        var rows = Array.prototype.slice.call(table.tBodies[0].rows);
        rows.sort(function(a, b){
          var x = a.cells[i].getAttribute('data-sort') || a.cells[i].textContent;
          var y = b.cells[i].getAttribute('data-sort') || b.cells[i].textContent;
          var c = num ? (parseFloat(x) - parseFloat(y)) : x.localeCompare(y);
          return asc ? c : -c;
        });
        rows.forEach(function(r){ table.tBodies[0].appendChild(r); });
      });
    });
  });
})();
"""


MEASURE_NAMES = {"trained": ("T: trained (persons)", "T: số người được đào tạo"),
                 "practice_ready": ("P: practice-ready (persons)", "P: số người đã thực hành lab-to-fab"),
                 "employed": ("E: employed (persons; assumption-driven)", "E: có việc làm (người; dựa trên giả định)")}


def _table(con, sql: str) -> pd.DataFrame:
    import duckdb

    try:
        return con.execute(sql).df()
    except duckdb.Error:  # an older warehouse without the measures marts: the section is left out
        return pd.DataFrame()


def _measures_html(con, h: dict, lang: Lang) -> str:
    """T, P and E side by side with P10–P90; T under the programme scopes; the P capacity and budget answer."""
    m = h.get("measures")
    if m is None or not len(m):
        return ""
    scale = float(m["scale"].iloc[0])
    note = (lang.t(f"This data folder is about 1/{1 / scale:,.0f} of national size (the demo): the national targets, the "
                   "P goals in persons and the host slots are scaled by the same factor, so like is compared with like.",
                   f"Thư mục dữ liệu này bằng khoảng 1/{1 / scale:,.0f} quy mô quốc gia (dữ liệu mẫu): chỉ tiêu quốc gia, "
                   "mục tiêu P và số chỗ thực tập được thu nhỏ cùng tỷ lệ.") if scale < 1 else "")
    defs = lang.t(
        "T counts distinct persons (pseudonymised national id) graduating at bachelor level or above from a counting "
        "programme from September 2024 to 2030, once each at the highest level reached: the Decision's measure. P counts "
        "those of them who completed lab-to-fab practice by 2030: the programme's measure, limited by slots. E counts those "
        "in a semiconductor job by 2030; it rests on assumptions (conversion without practice has no data) and is not the "
        "headline.",
        "T đếm số người (mã định danh đã giả danh hóa) tốt nghiệp đại học trở lên từ ngành được tính, từ 9/2024 đến 2030, "
        "mỗi người một lần ở bậc cao nhất: thước đo của Quyết định. P đếm những người trong số đó đã hoàn thành thực hành "
        "lab-to-fab đến 2030: thước đo của chương trình, bị giới hạn bởi số chỗ. E đếm người có việc làm bán dẫn đến 2030; "
        "dựa trên giả định, không phải con số chính.")
    rows = []
    for r in m.query("dimension in ('total', 'track_group', 'degree_level')").itertuples():
        if r.measure != "trained" and r.dimension == "degree_level":
            continue
        tgt = lang.n(r.target) if r.target == r.target else ""
        prob = lang.pct(r.probability_meeting_target) if r.probability_meeting_target == r.probability_meeting_target else ""
        rows.append(f"<tr><td>{_esc(lang.pick(MEASURE_NAMES[r.measure]))}</td><td>{_esc(lang.target(r.category))}</td>"
                    f"<td class='num'>{lang.n(r.p50)}</td><td class='num'>{lang.n(r.p10)} – {lang.n(r.p90)}</td>"
                    f"<td class='num'>{tgt}</td><td class='num'>{prob}</td></tr>")
    head = "".join(f"<th>{_esc(x)}</th>" for x in (lang.t("measure", "thước đo"), lang.t("group", "nhóm"), "P50", "P10 – P90",
                                                   lang.t("target / goal", "chỉ tiêu / mục tiêu"),
                                                   lang.t("P(meet)", "xác suất đạt")))
    out = [f"<p>{_esc(defs)} {_esc(note)}</p>", f"<table id='measures-table'><thead><tr>{head}</tr></thead><tbody>"
           + "".join(rows) + "</tbody></table>"]
    scope = _table(con, "SELECT * FROM marts.model_trained_scope WHERE scenario = 'baseline'")
    if len(scope):
        out.append(f"<h3>{_esc(lang.t('Which programmes count: T under three scopes', 'Ngành nào được tính: T theo ba phạm vi'))}</h3>")
        body = "".join(f"<tr><td>{_esc(r.description)}</td><td class='num'>{lang.n(r.p50)}</td>"
                       f"<td class='num'>{lang.n(r.p10)} – {lang.n(r.p90)}</td></tr>" for r in scope.itertuples())
        out.append(f"<table id='scope-table'><thead><tr><th>{_esc(lang.t('scope', 'phạm vi'))}</th><th>P50</th>"
                   f"<th>P10 – P90</th></tr></thead><tbody>{body}</tbody></table>")
    cap = _table(con, "SELECT * FROM marts.model_practice_capacity WHERE scenario = 'baseline'")
    if len(cap):
        out.append(f"<h3>{_esc(lang.t('Capacity asked of P: fewest extra slots per round, and what they cost', 'Năng lực cho P: số chỗ thêm ít nhất mỗi đợt và chi phí'))}</h3>")
        body = []
        for r in cap.itertuples():
            slots = lang.n(r.extra_slots_per_round) if r.feasible else lang.t("not reachable", "không đạt được")
            body.append(f"<tr><td>{_esc(lang.target(r.target_group))}</td><td>{_esc(lang.track(r.track))}</td>"
                        f"<td class='num'>{lang.n(r.goal_p50)}</td><td class='num'>{lang.pct(r.probability)}</td>"
                        f"<td class='num'>{slots}</td><td>{_esc(r.host_type)}</td>"
                        f"<td class='num'>{lang.n(r.cost_total_national) if r.feasible else ''}</td>"
                        f"<td class='num'>{lang.n(r.marginal_p_per_slot, 2) if r.marginal_p_per_slot == r.marginal_p_per_slot else ''}</td></tr>")
        hd = "".join(f"<th>{_esc(x)}</th>" for x in (
            lang.t("group", "nhóm"), lang.t("track", "lĩnh vực"), lang.t("P goal (P50)", "mục tiêu P (P50)"),
            lang.t("with probability", "với xác suất"), lang.t("extra slots a round", "chỗ thêm mỗi đợt"),
            lang.t("cheapest host type", "loại đơn vị rẻ nhất"), lang.t("cost, national (USD)", "chi phí toàn quốc (USD)"),
            lang.t("P per extra slot", "P mỗi chỗ thêm")))
        out.append(f"<table id='practice-capacity-table'><thead><tr>{hd}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    ms_ = _table(con, "SELECT * FROM marts.model_milestones WHERE scenario = 'baseline' ORDER BY year, measure, dimension")
    if len(ms_):
        out.append(f"<h3>{_esc(lang.t('Targets and interim milestones (T and P by the end of each year)', 'Chỉ tiêu và mốc trung gian (T và P đến cuối mỗi năm)'))}</h3>")
        body = "".join(f"<tr><td class='num'>{r.year}</td><td>{_esc(lang.pick(MEASURE_NAMES[r.measure]))}</td>"
                       f"<td>{_esc(lang.target(r.category))}</td><td class='num'>{lang.n(r.milestone)}</td>"
                       f"<td class='num'>{lang.n(r.p50)}</td><td class='num'>{lang.n(r.p10)} – {lang.n(r.p90)}</td>"
                       f"<td class='num'>{lang.pct(r.probability_meeting)}</td><td>{_esc(r.source)}</td></tr>"
                       for r in ms_.itertuples())
        hd = "".join(f"<th>{_esc(x)}</th>" for x in (
            lang.t("year", "năm"), lang.t("measure", "thước đo"), lang.t("group", "nhóm"), lang.t("milestone", "mốc"),
            "P50", "P10 – P90", lang.t("P(meet)", "xác suất đạt"), lang.t("source", "nguồn")))
        out.append(f"<table id='milestones-table'><thead><tr>{hd}</tr></thead><tbody>{body}</tbody></table>")
    bt = _table(con, "SELECT track, avg(track_coverage) AS coverage, count(*) AS n FROM marts.model_backtest "
                     "GROUP BY track ORDER BY track")
    if len(bt):
        cover = ", ".join(f"{lang.track(r.track) if r.track != 'all' else lang.t('all', 'tất cả')} "
                          f"{lang.pct(r.coverage)}" for r in bt.itertuples())
        out.append("<p id='backtest-coverage'>" + _esc(lang.t(
            f"Backtest: share of held-out figures inside P10–P90, per track (about 80% if the intervals are right): {cover}.",
            f"Kiểm định ngược: tỷ lệ số liệu giữ lại nằm trong P10–P90, theo lĩnh vực (khoảng 80% nếu khoảng tin cậy đúng): {cover}.")) + "</p>")
    return "".join(out)


def _json_script(id_: str, obj) -> str:
    text = json.dumps(obj, ensure_ascii=False).replace("</", "<\\/")
    return f'<script type="application/json" id="{id_}">{text}</script>'


def render_html(con, h: dict, language: str = "en") -> str:
    """The whole report as one self-contained HTML page in `language` ('en' or 'vi')."""
    lang = Lang(language)
    last_term = str(h["last_term"])
    terms = [t for (t,) in con.execute("SELECT DISTINCT term FROM marts.enrollment_by_term WHERE term <= ? ORDER BY term",
                                       [last_term]).fetchall()]  # not the terms after the latest term
    year = _latest_academic_year(terms) if terms else parse_term(last_term)[0]
    subs = submissions(con)
    unis = university_table(con, subs, last_term)
    sol = capacity_solution(con)
    figs = {
        "gap": chart_gap(con, lang, h),
        "funnel": chart_funnel(con, lang, terms or [last_term]),
        "capacity": chart_capacity_rounds(con, lang),
        "slot_use": chart_slot_use(con, lang),
        "solution": chart_capacity_solution(con, lang, sol),
        "marginal": chart_marginal(con, lang),
        "scenarios": chart_scenarios(con, lang, h),
        "regions": chart_regions(con, lang, unis, last_term, year),
        "submissions": chart_submissions(lang, subs, last_term),
        "quarantine": chart_quarantine(con, lang),
    }
    hb = h["by_group"].set_index("category")
    total = hb.loc["all"]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cards = [
        (lang.n(total.p50), lang.t("engineers projected by 2030 (P50)", "kỹ sư dự báo đến 2030 (P50)")),
        (f"{lang.n(total.p10)} – {lang.n(total.p90)}", lang.t("P10 – P90 range", "khoảng P10 – P90")),
        (lang.n(total.target), lang.t("national target (Decision 1017/QĐ-TTg)", "chỉ tiêu quốc gia (QĐ 1017/QĐ-TTg)")),
        (lang.n(total.gap), lang.t("gap to the target (P50)", "khoảng thiếu so với chỉ tiêu (P50)")),
        (lang.pct(total.probability_meeting_target), lang.t("probability of meeting the target", "xác suất đạt chỉ tiêu")),
        (lang.pct(total.practice_ready_share), lang.t("with lab-to-fab practice", "có thực hành lab-to-fab")),
    ]
    mt = h.get("measures")
    if mt is not None and len(mt):
        tot = mt[mt["dimension"] == "total"].set_index("measure")
        cards = [
            (lang.n(tot.loc["trained", "p50"]), lang.t("T: persons trained by 2030 (P50)", "T: số người được đào tạo đến 2030 (P50)")),
            (f"{lang.n(tot.loc['trained', 'p10'])} – {lang.n(tot.loc['trained', 'p90'])}", lang.t("T: P10 – P90", "T: P10 – P90")),
            (lang.n(tot.loc["trained", "target"]), lang.t("target (Decision 1017/QĐ-TTg)", "chỉ tiêu (QĐ 1017/QĐ-TTg)")
             + (lang.t(f", scaled to 1/{1 / float(tot.loc['trained', 'scale']):,.0f}", f", thu nhỏ 1/{1 / float(tot.loc['trained', 'scale']):,.0f}")
                if float(tot.loc["trained", "scale"]) < 1 else "")),
            (lang.pct(tot.loc["trained", "probability_meeting_target"]), lang.t("probability T meets the target", "xác suất T đạt chỉ tiêu")),
            (f"{lang.n(tot.loc['practice_ready', 'p50'])} ({lang.n(tot.loc['practice_ready', 'p10'])} – {lang.n(tot.loc['practice_ready', 'p90'])})",
             lang.t("P: practice-ready persons (P50, P10 – P90)", "P: số người đã thực hành (P50, P10 – P90)")),
            (f"{lang.n(tot.loc['employed', 'p50'])} ({lang.n(tot.loc['employed', 'p10'])} – {lang.n(tot.loc['employed', 'p90'])})",
             lang.t("E: employed (assumption-driven)", "E: có việc làm (dựa trên giả định)")),
        ]
    cards_html = "".join(f'<div class="card"><div class="v">{_esc(v)}</div><div class="k">{_esc(k)}</div></div>' for v, k in cards)
    sections = [
        ("measures", lang.t("What is counted: trained, practice-ready, employed", "Đếm gì: được đào tạo, đã thực hành, có việc làm"),
         [], _measures_html(con, h, lang)),
        ("gap", lang.t("The gap", "Khoảng cách"), [figs["gap"]], ""),
        ("funnel", lang.t("The funnel", "Phễu đào tạo"), [figs["funnel"]], ""),
        ("capacity", lang.t("Capacity", "Năng lực thực tập"), [figs["capacity"], figs["slot_use"], figs["solution"], figs["marginal"]],
         _solution_table_html(sol, lang)),
        ("scenarios", lang.t("Scenarios", "Kịch bản"), [figs["scenarios"]], _scenario_table_html(con, lang)),
        ("universities", lang.t("Universities", "Các trường"), [figs["regions"]], ""),
        ("quality", lang.t("Data quality", "Chất lượng dữ liệu"), [figs["submissions"], figs["quarantine"]], ""),
    ]
    nav = "".join(f'<a href="#{sid}">{_esc(title)}</a>' for sid, title, _, _ in sections)
    method = lang.t(
        "Small counts. Figures published per university or per region are rounded to the nearest 5 (HESA rounding, halves "
        "up); counts under 10 students are suppressed and shown as “..”. A percentage is shown only when it is based on at "
        "least 23 people (HESA: 22.5) and the count it describes is at least 10. National figures are not rounded. "
        "A submission is late when it was received after its term's window closed (30 November for semester 1, 30 April "
        "for semester 2, Vietnam time).",
        "Số liệu nhỏ. Số liệu công bố theo từng trường hoặc từng vùng được làm tròn đến bội số gần nhất của 5 (quy tắc "
        "HESA, làm tròn lên ở nửa); số dưới 10 sinh viên được ẩn và hiển thị là “..”. Tỷ lệ phần trăm chỉ hiển thị khi "
        "mẫu số có ít nhất 23 người (HESA: 22,5) và số đếm tương ứng có ít nhất 10. Số liệu toàn quốc không làm tròn. "
        "Báo cáo nộp muộn là báo cáo nhận được sau khi hết hạn nộp của học kỳ (30/11 cho học kỳ 1, 30/4 cho học kỳ 2, "
        "giờ Việt Nam).")
    parts = []
    for sid, title, fs, extra in sections:
        parts.append(f'<section id="{sid}"><h2>{_esc(title)}</h2>')
        if sid == "universities":
            parts.append(f'<p class="method" id="method">{_esc(method)}</p>')
        parts.extend(_figure_html(f, lang) for f in fs)
        parts.append(extra)
        if sid == "universities":
            parts.append(f"<h3>{_esc(lang.t('Every participating university (click a heading to sort)', 'Tất cả các trường tham gia (bấm tiêu đề cột để sắp xếp)'))}</h3>")
            parts.append(_universities_html(unis, lang, last_term))
        if sid == "quality":
            parts.append(f"<h3>{_esc(lang.t('Submissions that need attention: late, rejected, not received or accepted with warnings', 'Báo cáo cần chú ý: nộp muộn, bị từ chối, chưa nộp hoặc kèm cảnh báo'))}</h3>")
            parts.append(_attention_html(subs, lang))
        parts.append("</section>")
    lead = lang.t(
        f"<b>{lang.n(total.p50)}</b> semiconductor engineers are projected by 2030 against the national target of "
        f"<b>{lang.n(total.target)}</b>: a gap of <b>{lang.n(total.gap)}</b>. "
        f"{lang.pct(total.practice_ready_share)} of them would have lab-to-fab practice. Data to term {_esc(last_term)}.",
        f"Dự báo có <b>{lang.n(total.p50)}</b> kỹ sư bán dẫn đến năm 2030 so với chỉ tiêu quốc gia "
        f"<b>{lang.n(total.target)}</b>: còn thiếu <b>{lang.n(total.gap)}</b>. "
        f"{lang.pct(total.practice_ready_share)} trong số đó có thực hành lab-to-fab. Dữ liệu đến học kỳ {_esc(last_term)}.")
    if mt is not None and len(mt):
        t_, p_, e_ = (tot.loc[x] for x in ("trained", "practice_ready", "employed"))
        sc = float(t_["scale"])
        scaled = (lang.t(f" (scaled to 1/{1 / sc:,.0f}: this data is about that share of national size)",
                         f" (thu nhỏ 1/{1 / sc:,.0f}: dữ liệu này bằng khoảng tỷ lệ đó của quy mô quốc gia)") if sc < 1 else "")
        lead = lang.t(
            f"<b>{lang.n(t_.p50)}</b> persons trained by 2030 (T; P10–P90 {lang.n(t_.p10)}–{lang.n(t_.p90)}) against the "
            f"target of <b>{lang.n(t_.target)}</b>{_esc(scaled)}; <b>{lang.n(p_.p50)}</b> of them practice-ready "
            f"(P; {lang.n(p_.p10)}–{lang.n(p_.p90)}); {lang.n(e_.p50)} employed (E, assumption-driven). ",
            f"<b>{lang.n(t_.p50)}</b> người được đào tạo đến 2030 (T; P10–P90 {lang.n(t_.p10)}–{lang.n(t_.p90)}) so với "
            f"chỉ tiêu <b>{lang.n(t_.target)}</b>{_esc(scaled)}; <b>{lang.n(p_.p50)}</b> người đã thực hành (P; "
            f"{lang.n(p_.p10)}–{lang.n(p_.p90)}); {lang.n(e_.p50)} có việc làm (E, dựa trên giả định). ") + lead
    specs = {f.id: f.spec for f in figs.values()}
    title = lang.t("lab2fab: semiconductor engineers to 2030", "lab2fab: kỹ sư bán dẫn đến năm 2030")
    foot = lang.t(f"Generated {stamp} by lab2fab. Slot numbers are scenario inputs, not published figures; see docs/MODEL.md. "
                  "This page works offline: the charting library (Vega-Lite) is included in it.",
                  f"Tạo lúc {stamp} bởi lab2fab. Số chỗ thực tập là đầu vào kịch bản, không phải số liệu công bố; xem docs/MODEL.md. "
                  "Trang này xem được khi không có mạng: thư viện biểu đồ (Vega-Lite) đã được đóng gói sẵn.")
    return f"""<!doctype html>
<html lang="{lang.code}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title><style>{CSS}</style>
<script>{ERROR_SCRIPT}</script>
<script>{_vega_js()}</script>
</head><body>
<header><h1>{_esc(title)}</h1><p class="lead">{lead}</p><div class="cards">{cards_html}</div><nav>{nav}</nav></header>
<pre id="report-errors" hidden></pre>
{''.join(parts)}
<p class="foot">{_esc(foot)}</p>
{_json_script("report-specs", specs)}
{_json_script("report-locale", D3_LOCALES[lang.code])}
<script>{SCRIPT}</script>
</body></html>"""


def write_report(con, target: Path, h: dict, language: str = "en") -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(render_html(con, h, language), encoding="utf-8")
    os.replace(tmp, target)
    return target
