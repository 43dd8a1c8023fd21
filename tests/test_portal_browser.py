"""The submission portal in a real browser: Debian's chromium driven by the playwright package (its
wheel carries the driver; no browser is downloaded), against `lab2fab portal` started here on a free
port of 127.0.0.1, on a real data folder with real pipeline runs.

Flows: log in; upload a clean file and one with row errors and warnings and read the verdicts (in
English and in Vietnamese); explain a warning, the office accepts it, the next run applies it; a
university user opening another university's page or download gets 403; a form posted without its
CSRF token is refused.  LAB2FAB_PORTAL_SCREENSHOTS=docs writes the screenshots of docs/portal-*.png.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from test_portal_api import PASSWORDS, add_users, broken_copy, first_run_copy, run_pipeline

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (`make browser` installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(once, tmp_path_factory, prefect_harness):
    """A collection after its first run (a copy of the one tests/test_portal_api.py starts from), and
    `lab2fab portal` serving it."""
    info = first_run_copy(once, tmp_path_factory.mktemp("portal-browser") / "data")
    add_users(info["data_dir"], info["code"], info["other"])
    port = free_port()
    log = open(info["data_dir"].parent / "portal.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "flows.cli", "--data-dir", str(info["data_dir"]), "portal",
                               "--host", "127.0.0.1", "--port", str(port)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=2).read()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the portal did not start: {(info['data_dir'].parent / 'portal.log').read_text()}")
            time.sleep(0.3)
    try:
        yield {**info, "base": base}
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def screenshot(page, name: str, tmp_path: Path) -> None:
    folder = REPO / "docs" if os.environ.get("LAB2FAB_PORTAL_SCREENSHOTS") == "docs" else tmp_path
    page.screenshot(path=str(folder / f"portal-{name}.png"), full_page=False)


def log_in(browser, site, who: str, shots: Path | None = None):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{site['base']}/")
    assert page.url.endswith("/login?next=/")
    if shots is not None:
        screenshot(page, "login", shots)
    page.fill("#name", who)
    page.fill("#password", PASSWORDS[who])
    page.click("#login")
    return page


def send(page, term: str, path: Path) -> float:
    """Upload `path` for `term` from the university page; seconds from the click to the verdict shown."""
    page.fill("#term", term)
    page.set_input_files("#file", str(path))
    started = time.perf_counter()
    page.click("#send")
    page.wait_for_selector("#verdict")
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def sent(site, browser, tmp_path_factory):
    """The university officer logs in and sends a clean file, then one with errors and warnings (in Vietnamese)."""
    shots = tmp_path_factory.mktemp("shots")
    code, term = site["code"], site["term"]
    page = log_in(browser, site, "uni", shots)
    assert page.url.endswith(f"/u/{code}")
    screenshot(page, "university", shots)
    seconds = {"clean": send(page, term, site["clean"])}
    clean_text = page.inner_text("#verdict")
    clean_landed = page.inner_text("#landed")
    broken = site["data_dir"].parent / "resubmission.csv"
    broken.write_bytes(broken_copy(site["clean"]))
    page.click("#back")
    page.click("#lang-vi")
    seconds["broken"] = send(page, term, broken)
    screenshot(page, "verdict", shots)
    issues = page.eval_on_selector_all(
        "tr.row-issue", "rows => rows.map(r => [...r.cells].map(c => c.innerText))")
    return {"page": page, "clean_text": clean_text, "clean_landed": clean_landed, "seconds": seconds,
            "broken_text": page.inner_text("#verdict"), "issues": issues, "broken": broken,
            "file_rules": page.eval_on_selector_all("tr.file-rule", "rows => rows.map(r => r.dataset.rule)"),
            "shots": shots}


def test_log_in_and_read_the_verdicts_in_both_languages(sent, site):
    assert sent["clean_text"].startswith("ACCEPTED: the file will be loaded")
    assert "next run" in sent["clean_landed"]
    assert sent["broken_text"].startswith("CHẤP NHẬN KÈM CẢNH BÁO")
    # line, field, rule, severity, value, problem, what to do — in Vietnamese
    by_line = {row[0]: row for row in sent["issues"] if row[2] == "ENR.programme_code.catalogue"}
    assert sorted(by_line, key=int) == ["2", "3", "4"]
    line2 = by_line["2"]
    assert line2[1] == "programme_code" and line2[3] == "error" and line2[4] == "7999999"
    assert line2[5] == "Mã ngành không có trong danh mục ngành của Bộ GD&ĐT."
    assert line2[6] == "Sửa dòng này trong tệp rồi gửi lại toàn bộ tệp."
    assert "ENR.file.rows_drop" in sent["file_rules"]
    folder = site["data_dir"] / "landing" / "enrollment" / site["code"] / site["term"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([site["clean"].name, "resubmission.csv"])
    print(f"\nupload to verdict in the browser: clean {sent['seconds']['clean']:.2f} s, "
          f"with errors {sent['seconds']['broken']:.2f} s ({site['clean'].stat().st_size:,} bytes)")


def test_explain_a_warning_the_office_accepts_and_the_next_run_applies_it(sent, site, browser):
    code, term = site["code"], site["term"]
    page = sent["page"]
    page.click("#lang-en")
    page.goto(f"{site['base']}/u/{code}")
    rules = page.locator(f'tr.warning-row[data-term="{term}"]').evaluate_all("rows => rows.map(r => r.dataset.rule)")
    assert "ENR.file.rows_drop" in rules  # and the students the fall leaves unaccounted
    for rule_id in rules:
        row = page.locator(f'tr.warning-row[data-term="{term}"][data-rule="{rule_id}"]')
        row.locator("textarea").fill("One programme's 2025 intake moved to the partner campus (letter 12/2026).")
        row.locator("button").click()
        assert "Explanation sent" in page.inner_text("#notice")
        assert "waiting for the office" in page.locator(
            f'tr.warning-row[data-term="{term}"][data-rule="{rule_id}"]').inner_text()
    page.click("#logout")
    assert page.url.endswith("/login")

    office = log_in(browser, site, "office")
    assert office.url.endswith("/office")
    office.goto(f"{site['base']}/office?university={code}")
    for i, rule_id in enumerate(rules):
        decision = office.locator(f'tr.decision[data-id="{code}:{term}:{rule_id}"]')
        assert "partner campus" in decision.inner_text()
        decision.locator("input[name=note]").fill("Letter checked")
        if i == 0:
            screenshot(office, "office", sent["shots"])
        decision.locator("button.accept").click()
        assert "overrides file" in office.inner_text("#notice")
    office.select_option("#filter-term", term)
    office.click("#filter")
    assert office.locator(f'td[data-status]').count() > 0
    with office.expect_download() as download:
        office.click("#export")
    assert download.value.suggested_filename == "lab2fab_submissions.csv"

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAB2FAB_TASK_RUNNER", "thread")
        run_pipeline(site["data_dir"])
    con = duckdb.connect(str(site["data_dir"] / "published" / "lab2fab.duckdb"), read_only=True)
    try:
        rows = dict(con.execute("SELECT path, verdict || ' / ' || coalesce(verdict_note, '') FROM ops.manifest "
                                "WHERE university_code = ? AND term = ?", [code, term]).fetchall())
    finally:
        con.close()
    resubmission = rows[f"enrollment/{code}/{term}/resubmission.csv"]
    assert resubmission.startswith("accepted / ") and "accepted ENR.file.rows_drop" in resubmission
    assert rows[f"enrollment/{code}/{term}/{site['clean'].name}"].startswith("accepted")

    page = log_in(browser, site, "uni")  # the officer logged out above
    history = page.locator(f'tr.history-row[data-term="{term}"]')
    assert sorted(history.evaluate_all("rows => rows.map(r => r.dataset.status)")) == ["loaded", "superseded"]
    assert page.locator(f'tr.warning-row[data-term="{term}"][data-rule="ENR.file.rows_drop"]').count() == 0
    with page.expect_download() as download:
        page.click(f'a.feedback[href="/u/{code}/feedback/{term}.csv"]')
    assert download.value.suggested_filename == f"{code}_{term}.csv"


def test_another_universitys_page_or_download_is_403(site, browser):
    page = log_in(browser, site, "other")
    code = site["code"]
    feedback = sorted((site["data_dir"] / "published" / "feedback" / code).glob("*.csv"))[0].name
    for url in (f"/u/{code}", f"/u/{code}/feedback/{feedback}", "/office"):
        response = page.goto(f"{site['base']}{url}")
        assert response.status == 403, url
        assert "You cannot see this university's data." in page.inner_text("#message")


def test_a_form_without_its_csrf_token_is_refused(site, browser, tmp_path):
    page = log_in(browser, site, "uni")
    before = sorted(p.name for p in (site["data_dir"] / "landing" / "enrollment" / site["code"]).rglob("*"))
    page.fill("#term", site["term"])
    extra = tmp_path / "another.csv"
    extra.write_bytes(broken_copy(site["clean"], keep_share=0.9))
    page.set_input_files("#file", str(extra))
    page.eval_on_selector("#upload-form input[name=csrf]", "e => e.remove()")
    page.click("#send")
    assert "The form has expired or was not sent from this portal" in page.inner_text("#message")
    assert sorted(p.name for p in (site["data_dir"] / "landing" / "enrollment" / site["code"]).rglob("*")) == before
