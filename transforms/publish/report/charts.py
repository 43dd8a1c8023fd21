"""The report's charts: each an Altair (Vega-Lite) spec with its one-line reading and the period
of its data, in one language; and the Vega JavaScript bundle the page inlines.

Every chart is drawn in the browser by the Vega, Vega-Lite and Vega-Embed JavaScript taken from the
pinned ``vl-convert-python`` package, so the page works offline and loads nothing from the network.
The chart functions take the frames of ``queries.py``; none reads the warehouse itself.
"""
from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import altair as alt
import pandas as pd

from transforms.publish.report.i18n import SUPPRESSED, Lang, publishable_count
from transforms.vocabulary import SUBMISSION_STATUSES, TRACKS, round_index

STATUS_ORDER = SUBMISSION_STATUSES
STATUS_COLOURS = ("#4c9a5f", "#9cc97f", "#e3c04f", "#f08a3c", "#d1495b", "#9e9e9e")
FONT = "'Noto Sans', 'DejaVu Sans', system-ui, sans-serif"


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


def chart_gap(df: pd.DataFrame, lang: Lang, h: dict) -> Figure:
    """`df`: queries.progress."""
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
    years = f"{df['year'].min()}–{df['year'].max()}" if len(df) else ""
    period = lang.t(f"Model years {years}; data to term {h['last_term']}",
                    f"Các năm mô hình {years}; dữ liệu đến học kỳ {h['last_term']}")
    return Figure("chart-gap", _finish(chart, lang), _gap_reading(hb, lang), period)


def _gap_reading(hb: pd.DataFrame, lang: Lang) -> str:
    """The gap chart's line: the total against its target, then each track group."""
    t = hb.loc["all"]
    parts_en, parts_vi = [], []
    for c in ("design", "fab_pkg_test"):
        if c in hb.index:
            r = hb.loc[c]
            parts_en.append(f"{lang.target(c).lower()} {lang.n(r.p50)} of {lang.n(r.target)} ({lang.pct(r.probability_meeting_target)})")
            parts_vi.append(f"{lang.target(c).lower()} {lang.n(r.p50)} trên {lang.n(r.target)} ({lang.pct(r.probability_meeting_target)})")
    return lang.t(
        f"By 2030 the baseline projects {lang.n(t.p50)} engineers (P10 {lang.n(t.p10)} – P90 {lang.n(t.p90)}), "
        f"{lang.pct(t.p50 / t.target)} of the {lang.n(t.target)} target; probability of meeting it "
        f"{lang.pct(t.probability_meeting_target)}. By track group: {'; '.join(parts_en)}.",
        f"Đến 2030, kịch bản gốc dự báo {lang.n(t.p50)} kỹ sư (P10 {lang.n(t.p10)} – P90 {lang.n(t.p90)}), "
        f"bằng {lang.pct(t.p50 / t.target)} chỉ tiêu {lang.n(t.target)}; xác suất đạt chỉ tiêu "
        f"{lang.pct(t.probability_meeting_target)}. Theo nhóm lĩnh vực: {'; '.join(parts_vi)}.")


def chart_funnel(df: pd.DataFrame, info: dict, lang: Lang) -> Figure:
    """`df, info`: queries.funnel."""
    year = info["year"]
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


def chart_capacity_rounds(df: pd.DataFrame, lang: Lang) -> Figure:
    """`df`: queries.rounds."""
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
    return Figure("chart-capacity", _finish(chart, lang), _capacity_reading(df[df["basis"] == "projected"], lang), period)


def _capacity_reading(proj: pd.DataFrame, lang: Lang) -> str:
    """In how many projected round-and-track cells demand exceeds slots, by how much, and where most."""
    bound = int((proj["unmet_demand"] > 0.5).sum())
    worst = proj.groupby("track")["unmet_demand"].sum().sort_values(ascending=False)
    worst_track = lang.track(worst.index[0]) if len(worst) else "-"
    unmet = lang.n(proj["unmet_demand"].sum())
    return lang.t(f"In {bound} of {len(proj)} projected round-and-track cells applicants outnumber slots; unmet demand "
                  f"adds up to {unmet} applications (P50), most in {worst_track.lower()}.",
                  f"Ở {bound} trên {len(proj)} ô đợt–lĩnh vực dự báo, số người đăng ký vượt số chỗ; tổng nhu cầu chưa "
                  f"đáp ứng là {unmet} lượt (P50), nhiều nhất ở lĩnh vực {worst_track.lower()}.")


def chart_slot_use(df: pd.DataFrame, observed: set[str], lang: Lang) -> Figure:
    """`df`: queries.slots_by_host; `observed`: queries.observed_rounds."""
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



def chart_capacity_solution(sol: pd.DataFrame, lang: Lang) -> Figure:
    """`sol`: queries.capacity_solution."""
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


def chart_marginal(df: pd.DataFrame, lang: Lang) -> Figure:
    """`df`: queries.marginal."""
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
    if not len(df):
        return Figure("chart-marginal", _finish(chart, lang),
                      lang.t("No marginal analysis in this run.", "Lần chạy này không có phân tích cận biên."), period)
    first = df[df["round"] == rounds[0]]
    reading = lang.t(
        f"One extra slot in round {rounds[0]} adds about {lang.n(first['marginal_engineers_p50'].mean(), 2)} engineers "
        f"and {lang.n(first['marginal_practice_ready_p50'].mean(), 2)} practice-ready engineers by 2030 (P50, mean over tracks).",
        f"Thêm một chỗ ở đợt {rounds[0]} tăng khoảng {lang.n(first['marginal_engineers_p50'].mean(), 2)} kỹ sư "
        f"và {lang.n(first['marginal_practice_ready_p50'].mean(), 2)} kỹ sư sẵn sàng thực hành đến 2030 (P50, trung bình các lĩnh vực).")
    return Figure("chart-marginal", _finish(chart, lang), reading, period)


def chart_scenarios(df: pd.DataFrame, lang: Lang, h: dict) -> Figure:
    """`df`: queries.scenario_headline."""
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


def chart_regions(unis: pd.DataFrame, grads: pd.DataFrame, eng: pd.DataFrame, lang: Lang, last_term: str,
                  year: int) -> Figure:
    """`unis`: queries.university_table; `grads`, `eng`: queries.region_graduates and region_engineers."""
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


def chart_quarantine(df: pd.DataFrame, total: int, lang: Lang) -> Figure:
    """`df`: queries.quarantine_by_rule; `total`: queries.rows_quarantined."""
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
    return Figure("chart-quarantine", _finish(chart, lang), _quarantine_reading(df, total, lang), period)


def _quarantine_reading(df: pd.DataFrame, total: int, lang: Lang) -> str:
    """How many rows are quarantined, and the rule that quarantines most (its message in the page's language)."""
    top = df.iloc[0] if len(df) else None
    return lang.t("No rows are quarantined.", "Không có dòng nào bị cách ly.") if top is None else lang.t(
        f"{lang.n(total)} rows of current submissions are quarantined; the most common rule is {top.rule_id} "
        f"({lang.n(top.rows_quarantined)} rows): {top.message_en}",
        f"{lang.n(total)} dòng trong các tệp hiện hành bị cách ly; quy tắc gặp nhiều nhất là {top.rule_id} "
        f"({lang.n(top.rows_quarantined)} dòng): {top.message_vi}")


# --------------------------------------------------------------------------------------------
# The Vega bundle the page inlines

@functools.lru_cache(maxsize=1)
def vega_bundle() -> str:
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

