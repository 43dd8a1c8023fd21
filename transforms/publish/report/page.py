"""The report page: the figures and tables of one language, rendered by the Jinja2 templates of
``templates/`` (autoescaped: university names, reasons and scenario descriptions come from files).

Python decides what the page says (which rows, which numbers, rounded and suppressed as
published); the templates only lay it out. Styles and scripts are in ``static/`` and inlined, so
the page stays one offline file.
"""
from __future__ import annotations

import functools
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from transforms.publish.report import charts, queries
from transforms.publish.report.charts import STATUS_ORDER, Figure
from transforms.publish.report.i18n import D3_LOCALES, SUPPRESSED, Lang, missing
from transforms.vocabulary import parse_term

HERE = Path(__file__).parent
ICT = timedelta(hours=7)  # received_at is stored in UTC; windows close at midnight Vietnam time
ATTENTION_LIMIT = 200     # rows of the attention table (the rest are counted under it)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # autoescape on for every template (".html.j2" is not an extension select_autoescape knows)
    return jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=False)


@functools.lru_cache(maxsize=1)
def _static() -> dict[str, Markup]:
    """The page's own CSS and scripts, inlined as they are (our code, not data)."""
    read = lambda name: Markup((HERE / "static" / name).read_text(encoding="utf-8"))  # noqa: E731
    return {"css": read("report.css"), "errors_js": read("errors.js"), "report_js": read("report.js")}


def _json_script(obj) -> Markup:
    """JSON for a <script type="application/json">: not HTML-escaped (the browser does not unescape
    it there), but no "</" can close the script early."""
    return Markup(json.dumps(obj, ensure_ascii=False).replace("</", "<\\/"))


# --------------------------------------------------------------------------------------------
# The figures

def figures(con, lang: Lang, h: dict, last_term: str, year: int, subs: pd.DataFrame, unis: pd.DataFrame,
            sol: pd.DataFrame) -> dict[str, Figure]:
    """Every chart of the page, by section, in page order."""
    funnel, info = queries.funnel(con, year)
    return {
        "gap": charts.chart_gap(queries.progress(con), lang, h),
        "funnel": charts.chart_funnel(funnel, info, lang),
        "capacity": charts.chart_capacity_rounds(queries.rounds(con), lang),
        "slot_use": charts.chart_slot_use(queries.slots_by_host(con), queries.observed_rounds(con), lang),
        "solution": charts.chart_capacity_solution(sol, lang),
        "marginal": charts.chart_marginal(queries.marginal(con), lang),
        "scenarios": charts.chart_scenarios(queries.scenario_headline(con), lang, h),
        "regions": charts.chart_regions(unis, queries.region_graduates(con, year), queries.region_engineers(con),
                                        lang, last_term, year),
        "submissions": charts.chart_submissions(lang, subs, last_term),
        "quarantine": charts.chart_quarantine(queries.quarantine_by_rule(con), queries.rows_quarantined(con), lang),
    }


def sections(lang: Lang, figs: dict[str, Figure]) -> list[dict]:
    """The page's sections in order: id, title, figures, and the template of what follows them."""
    t = lang.t
    return [
        {"id": "measures", "title": t("What is counted: trained, practice-ready, employed",
                                      "Đếm gì: được đào tạo, đã thực hành, có việc làm"),
         "figures": [], "template": "measures.html.j2"},
        {"id": "gap", "title": t("The gap", "Khoảng cách"), "figures": [figs["gap"]], "template": None},
        {"id": "funnel", "title": t("The funnel", "Phễu đào tạo"), "figures": [figs["funnel"]], "template": None},
        {"id": "capacity", "title": t("Capacity", "Năng lực thực tập"),
         "figures": [figs["capacity"], figs["slot_use"], figs["solution"], figs["marginal"]],
         "template": "capacity.html.j2"},
        {"id": "scenarios", "title": t("Scenarios", "Kịch bản"), "figures": [figs["scenarios"]],
         "template": "scenarios.html.j2"},
        {"id": "universities", "title": t("Universities", "Các trường"), "figures": [figs["regions"]],
         "template": "universities.html.j2"},
        {"id": "quality", "title": t("Data quality", "Chất lượng dữ liệu"),
         "figures": [figs["submissions"], figs["quarantine"]], "template": "quality.html.j2"},
    ]


METHOD = (
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


# --------------------------------------------------------------------------------------------
# The headline at the top

def _scale_words(lang: Lang, scale: float, en: str, vi: str) -> str:
    """`en`/`vi` with {n} the demo's scale (1/n of national size), or "" at national size."""
    return lang.t(en, vi).format(n=f"{1 / scale:,.0f}") if scale < 1 else ""


def cards(lang: Lang, total: pd.Series, by_measure: pd.DataFrame | None) -> list[dict]:
    """The headline cards: T, P and E when the model wrote them, else the earlier engineers measure."""
    n, t = lang.n, lang.t
    if by_measure is None:
        return [{"value": value, "label": label} for value, label in (
            (n(total.p50), t("engineers projected by 2030 (P50)", "kỹ sư dự báo đến 2030 (P50)")),
            (f"{n(total.p10)} – {n(total.p90)}", t("P10 – P90 range", "khoảng P10 – P90")),
            (n(total.target), t("national target (Decision 1017/QĐ-TTg)", "chỉ tiêu quốc gia (QĐ 1017/QĐ-TTg)")),
            (n(total.gap), t("gap to the target (P50)", "khoảng thiếu so với chỉ tiêu (P50)")),
            (lang.pct(total.probability_meeting_target), t("probability of meeting the target", "xác suất đạt chỉ tiêu")),
            (lang.pct(total.practice_ready_share), t("with lab-to-fab practice", "có thực hành lab-to-fab")))]
    tr, pr, em = (by_measure.loc[m] for m in ("trained", "practice_ready", "employed"))
    scaled = _scale_words(lang, float(tr["scale"]), ", scaled to 1/{n}", ", thu nhỏ 1/{n}")
    return [{"value": value, "label": label} for value, label in (
        (n(tr.p50), t("T: persons trained by 2030 (P50)", "T: số người được đào tạo đến 2030 (P50)")),
        (f"{n(tr.p10)} – {n(tr.p90)}", t("T: P10 – P90", "T: P10 – P90")),
        (n(tr.target), t("target (Decision 1017/QĐ-TTg)", "chỉ tiêu (QĐ 1017/QĐ-TTg)") + scaled),
        (lang.pct(tr.probability_meeting_target), t("probability T meets the target", "xác suất T đạt chỉ tiêu")),
        (f"{n(pr.p50)} ({n(pr.p10)} – {n(pr.p90)})",
         t("P: practice-ready persons (P50, P10 – P90)", "P: số người đã thực hành (P50, P10 – P90)")),
        (f"{n(em.p50)} ({n(em.p10)} – {n(em.p90)})", t("E: employed (assumption-driven)", "E: có việc làm (dựa trên giả định)")))]


def lead(lang: Lang, total: pd.Series, by_measure: pd.DataFrame | None, last_term: str) -> dict:
    """What lead.html.j2 needs: the headline rows by name, and the scale in words."""
    measures = None if by_measure is None else {m: by_measure.loc[m].to_dict()
                                                 for m in ("trained", "practice_ready", "employed")}
    scaled = "" if measures is None else _scale_words(
        lang, float(measures["trained"]["scale"]),
        " (scaled to 1/{n}: this data is about that share of national size)",
        " (thu nhỏ 1/{n}: dữ liệu này bằng khoảng tỷ lệ đó của quy mô quốc gia)")
    return {"total": total.to_dict(), "measures": measures, "scaled": scaled, "last_term": last_term}


# --------------------------------------------------------------------------------------------
# The tables

def num_cell(v, lang: Lang, pct: bool = False) -> dict:
    """A published number: shown, its sort key, and whether it is suppressed ('..', sorts first)."""
    if missing(v):
        return {"shown": SUPPRESSED, "sort": -1, "suppressed": True}
    return {"shown": lang.pct(v) if pct else lang.n(v), "sort": round(v, 3) if pct else int(v), "suppressed": False}


def measures_context(h: dict, tables: dict[str, pd.DataFrame], lang: Lang) -> dict | None:
    """The measures section (measures.html.j2), or None when the model has not written the measures."""
    m = h.get("measures")
    if m is None or not len(m):
        return None
    n, pct, t = lang.n, lang.pct, lang.t
    rows = [{"measure": lang.measure_name(r.measure), "group": lang.target(r.category), "p50": n(r.p50),
             "range": f"{n(r.p10)} – {n(r.p90)}", "target": "" if missing(r.target) else n(r.target),
             "probability": "" if missing(r.probability_meeting_target) else pct(r.probability_meeting_target)}
            for r in m.query("dimension in ('total', 'track_group', 'degree_level')").itertuples()
            if r.measure == "trained" or r.dimension != "degree_level"]
    return {
        "defs": t(MEASURE_DEFINITIONS[0], MEASURE_DEFINITIONS[1]),
        "note": _scale_words(lang, float(m["scale"].iloc[0]), *SCALE_NOTE),
        "rows": rows,
        "scope": [{"description": r.description, "p50": n(r.p50), "range": f"{n(r.p10)} – {n(r.p90)}"}
                  for r in tables["scope"].itertuples()],
        "capacity": [{"group": lang.target(r.target_group), "track": lang.track(r.track), "goal": n(r.goal_p50),
                      "probability": pct(r.probability),
                      "slots": n(r.extra_slots_per_round) if r.feasible else t("not reachable", "không đạt được"),
                      "host_type": r.host_type, "cost": n(r.cost_total_national) if r.feasible else "",
                      "per_slot": "" if missing(r.marginal_p_per_slot) else n(r.marginal_p_per_slot, 2)}
                     for r in tables["capacity"].itertuples()],
        **budget_context(tables, lang),
        "milestones": [{"year": r.year, "measure": lang.measure_name(r.measure), "group": lang.target(r.category),
                        "milestone": n(r.milestone), "p50": n(r.p50), "range": f"{n(r.p10)} – {n(r.p90)}",
                        "probability": pct(r.probability_meeting), "source": r.source}
                       for r in tables["milestones"].itertuples()],
        "backtest": ", ".join(f"{lang.track(r.track) if r.track != 'all' else t('all', 'tất cả')} {pct(r.coverage)}"
                              for r in tables["backtest"].itertuples()),
    }


BUDGET_ANSWERS = {"cheapest_mix_for_goal": ("cheapest mix that meets the P goal", "phương án rẻ nhất đạt mục tiêu P"),
                  "best_within_budget": ("most P within the budget", "P nhiều nhất trong ngân sách")}


def budget_context(tables: dict[str, pd.DataFrame], lang: Lang) -> dict:
    """The budget answer (marts.model_budget, model_budget_mix): what the cheapest mix of rounds, tracks
    and host types costs, whether the budget covers it, and the most P the budget buys if not."""
    n, pct, t = lang.n, lang.pct, lang.t
    budget, mix = tables.get("budget"), tables.get("budget_mix")
    if budget is None or not len(budget):
        return {"budget": [], "budget_mix": []}
    yes_no = {True: t("yes", "có"), False: t("no", "không")}
    rows = [{"answer": t(*BUDGET_ANSWERS.get(r.answer, (r.answer, r.answer))),
             "group": t("both groups", "cả hai nhóm") if r.target_group == "all" else lang.target(r.target_group),
             "goal": "" if missing(r.goal_p50) else n(r.goal_p50),
             "slots": n(r.slots_national) if r.feasible else t("not reachable", "không đạt được"),
             "cost": n(r.cost_national) if r.feasible else "",
             "budget": "" if missing(r.budget) else n(r.budget),
             "within": "" if missing(r.within_budget) else yes_no[bool(r.within_budget)],
             "p50": n(r.p_p50), "range": f"{n(r.p_p10)} – {n(r.p_p90)}",
             "probability": "" if missing(r.probability_meeting) else pct(r.probability_meeting),
             "per_million": "" if missing(r.p_per_million_average) else
             f"{n(r.p_per_million_average)} / {n(r.p_per_million_marginal)}"}
            for r in budget.itertuples()]
    mix_rows = [{"answer": t(*BUDGET_ANSWERS.get(r.answer, (r.answer, r.answer))),
                 "group": lang.target(r.target_group), "track": lang.track(r.track), "host_type": r.host_type,
                 "rounds": r.first_round if r.first_round == r.last_round else f"{r.first_round} – {r.last_round}",
                 "slots": n(r.slots_national), "cost": n(r.cost_national)}
                for r in (mix if mix is not None else pd.DataFrame()).itertuples()]
    return {"budget": rows, "budget_mix": mix_rows}


MEASURE_DEFINITIONS = (
    "T counts distinct persons (pseudonymised national id) graduating at bachelor level or above from a counting "
    "programme from September 2024 to 2030, once each at the highest level reached: the Decision's measure. P counts "
    "those of them who completed lab-to-fab practice by 2030: the programme's measure, limited by slots. E counts those "
    "in a semiconductor job by 2030; it rests on assumptions (conversion without practice has no data) and is not the "
    "headline.",
    "T đếm số người (mã định danh đã giả danh hóa) tốt nghiệp đại học trở lên từ ngành được tính, từ 9/2024 đến 2030, "
    "mỗi người một lần ở bậc cao nhất: thước đo của Quyết định. P đếm những người trong số đó đã hoàn thành thực hành "
    "lab-to-fab đến 2030: thước đo của chương trình, bị giới hạn bởi số chỗ. E đếm người có việc làm bán dẫn đến 2030; "
    "dựa trên giả định, không phải con số chính.")
SCALE_NOTE = (
    "This data folder is about 1/{n} of national size (the demo): the national targets, the "
    "P goals in persons and the host slots are scaled by the same factor, so like is compared with like.",
    "Thư mục dữ liệu này bằng khoảng 1/{n} quy mô quốc gia (dữ liệu mẫu): chỉ tiêu quốc gia, "
    "mục tiêu P và số chỗ thực tập được thu nhỏ cùng tỷ lệ.")


def university_rows(unis: pd.DataFrame, lang: Lang, last_term: str) -> dict:
    """The universities table (universities.html.j2): its headings and one row per university."""
    t = lang.t
    heads = [{"label": label, "type": type_} for label, type_ in (
        (t("University", "Trường"), "text"), (t("Region", "Vùng"), "text"),
        (t("Province (2025)", "Tỉnh/thành (2025)"), "text"),
        (t(f"Students in the programmes, term {last_term}", f"Sinh viên các ngành, học kỳ {last_term}"), "num"),
        (t("Graduates, all terms", "Tốt nghiệp, mọi học kỳ"), "num"),
        (t("Placed in internships", "Đã được xếp thực tập"), "num"),
        (t("Placement rate", "Tỷ lệ được xếp thực tập"), "num"),
        (t("Projected share placed by 2030 (model)", "Tỷ lệ dự báo được xếp đến 2030 (mô hình)"), "num"),
        (t(f"Data quality, term {last_term}", f"Chất lượng dữ liệu, học kỳ {last_term}"), "text"),
        (t("Terms missing / rejected", "Số học kỳ thiếu / bị từ chối"), "num"),
        (t("Rows quarantined", "Số dòng bị cách ly"), "num"))]
    order = unis.assign(_s=unis["students"].fillna(-1)).sort_values(["_s", "university_code"], ascending=[False, True])
    rows = [{"code": r.university_code, "name": r.name_vi, "region": lang.region(r.region), "province": r.province_2025,
             "students": num_cell(r.students, lang), "graduates": num_cell(r.graduates, lang),
             "placed": num_cell(r.placed_pub, lang), "placement_rate": num_cell(r.placement_rate, lang, pct=True),
             "projected_rate": num_cell(r.projected_rate, lang, pct=True),
             "status": r.status_latest, "status_label": lang.status(r.status_latest),
             "status_rank": STATUS_ORDER.index(r.status_latest) if r.status_latest in STATUS_ORDER else 9,
             "problems": {"shown": f"{int(r.terms_missing)} / {int(r.terms_rejected)}", "suppressed": False,
                          "sort": int(r.terms_missing) * 100 + int(r.terms_rejected)},
             "quarantined": num_cell(r.quarantined, lang)}
            for r in order.itertuples()]
    return {"heads": heads, "rows": rows}


def attention_rows(subs: pd.DataFrame, lang: Lang, limit: int = ATTENTION_LIMIT) -> dict:
    """The submissions that need attention (quality.html.j2), newest term first, at most `limit`."""
    bad = subs[subs["status"].isin(["late", "rejected", "accepted_with_warnings", "missing"])]
    bad = bad.sort_values(["term", "status", "university_code"], ascending=[False, True, True])
    rows = [{"term": r.term, "code": r.university_code, "name": r.name_vi, "status": r.status,
             "status_label": lang.status(r.status),
             "received": "" if pd.isna(r.received_at) else (pd.Timestamp(r.received_at) + ICT).strftime("%Y-%m-%d"),
             "reason": "" if pd.isna(r.reason) else r.reason}
            for r in bad.head(limit).itertuples()]
    return {"rows": rows, "more": max(0, len(bad) - limit)}


def solution_rows(sol: pd.DataFrame, lang: Lang) -> list[dict]:
    """The capacity solution per track (capacity.html.j2)."""
    return [{"target": f"{lang.target(r.target_group)} ({lang.n(r.target)})", "measure": lang.measure(r.measure),
             "probability": lang.pct(r.probability), "track": lang.track(r.track),
             "extra": lang.n(r.extra_slots_per_round) if bool(r.feasible) and pd.notna(r.extra_slots_per_round)
             else lang.t("not reachable with slots alone", "không đạt được chỉ bằng thêm chỗ"),
             "rounds": f"{r.from_round}–{r.to_round}", "achieved": lang.pct(r.achieved_probability),
             "unlimited": lang.n(r.unlimited_slots_p50)}
            for r in sol.itertuples()]


# --------------------------------------------------------------------------------------------
# The page

def render_html(con, h: dict, language: str = "en") -> str:
    """The whole report as one self-contained HTML page in `language` ('en' or 'vi')."""
    lang = Lang(language)
    last_term = str(h["last_term"])
    terms = queries.terms_to(con, last_term)
    year = queries.latest_academic_year(terms) if terms else parse_term(last_term)[0]
    subs = queries.submissions(con)
    unis = queries.university_table(con, subs, last_term)
    sol = queries.capacity_solution(con)
    figs = figures(con, lang, h, last_term, year, subs, unis, sol)
    total = h["by_group"].set_index("category").loc["all"]
    mt = h.get("measures")
    by_measure = mt[mt["dimension"] == "total"].set_index("measure") if mt is not None and len(mt) else None
    context = {
        "lang": lang, "t": lang.t, "n": lang.n, "pct": lang.pct,
        "title": lang.t("lab2fab: semiconductor engineers to 2030", "lab2fab: kỹ sư bán dẫn đến năm 2030"),
        "stamp": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "static": _static(), "vega_js": Markup(charts.vega_bundle()),
        "lead": lead(lang, total, by_measure, last_term), "cards": cards(lang, total, by_measure),
        "sections": sections(lang, figs), "method": lang.t(*METHOD),
        "measures": measures_context(h, queries.measure_tables(con), lang),
        "solution": solution_rows(sol, lang),
        "scenarios": [{"label": lang.scenario(r.scenario), "scenario": r.scenario, "description": r.description,
                       "reviewed_by": r.reviewed_by} for r in queries.scenarios(con).itertuples()],
        "universities": university_rows(unis, lang, last_term), "attention": attention_rows(subs, lang),
        "specs_json": _json_script({f.id: f.spec for f in figs.values()}),
        "locale_json": _json_script(D3_LOCALES[lang.code]),
    }
    return _environment().get_template("report.html.j2").render(context)


def write_report(con, target: Path, h: dict, language: str = "en") -> Path:
    """The page at `target`, written beside it and renamed over it (a reader never sees half a page)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(render_html(con, h, language), encoding="utf-8")
    os.replace(tmp, target)
    return target
