"""The run's report: the pipeline, the gap and the quality of the data, as pictures.

One self-contained HTML page (``data/published/report.html``): every chart is an Altair
(Vega-Lite) chart, rendered in the browser by the Vega, Vega-Lite and Vega-Embed JavaScript
inlined once in the page (taken from the pinned ``vl-convert-python`` package), so the file
works offline and loads nothing from the network. The page records its own script errors in
``<pre id="report-errors">`` and marks each chart container ``data-rendered="ok"`` once drawn,
so a headless browser (tests/test_report.py) can tell whether every chart rendered.

Every label, title and one-line reading exists in English and Vietnamese (``language="en"`` or
``"vi"``), with numbers formatted for each (50,000 / 50.000). Figures published per university
(and per region) follow HESA's rounding (``i18n.py``; the page states the method).

Where each part lives:
    queries.py    the SQL the report reads (DataFrames by column name, the headline dict)
    charts.py     the Altair charts, each with its reading and period; the cached Vega bundle
    i18n.py       Lang (en/vi text and numbers), the labels of data codes (labels.yaml), HESA rounding
    page.py       the page's sections, cards and table rows, rendered by templates/*.html.j2
    artifacts.py  the headline as markdown and as a table (Prefect artifacts, CLI)
    templates/    Jinja2, autoescaped;  static/  the page's CSS and scripts, inlined

``headline(con)`` and ``markdown(h)`` feed the CLI and the Prefect artifacts.
"""
from transforms.publish.report.artifacts import headline_table, markdown
from transforms.publish.report.charts import STATUS_ORDER, Figure
from transforms.publish.report.i18n import LANGUAGES, SUPPRESSED, Lang, publishable_count, publishable_share
from transforms.publish.report.page import render_html, write_report
from transforms.publish.report.queries import capacity_solution, headline, submissions, university_table

__all__ = ["LANGUAGES", "STATUS_ORDER", "SUPPRESSED", "Figure", "Lang", "capacity_solution", "headline",
           "headline_table", "markdown", "publishable_count", "publishable_share", "render_html", "submissions",
           "university_table", "write_report"]
