"""The submission portal (issue 18) through its HTTP API: FastAPI's TestClient (httpx) against the real
app on a real data folder — a demo collection, real pipeline runs, real DuckDB snapshot, real GX.

One module-scoped collection: the demo of three universities, run once by the pipeline with the
largest university's last-term file held back (built once per session, shared with
tests/test_portal_browser.py, and copied); that file is then sent through the portal.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "data" / "reference"
PASSWORDS = {"uni": "uni-password-1", "other": "other-password-1", "office": "office-password-1"}


# ------------------------------------------------------------------------------ shared set-up
# (plain functions: tests/test_portal_browser.py imports them)

def make_collection(data_dir: Path) -> dict:
    """The demo of three universities, with the largest university's last-term file held back."""
    from transforms.demo.generate import generate_demo

    generate_demo(data_dir / "landing", REFERENCE, universities=3)
    enrollment = data_dir / "landing" / "enrollment"
    last = max(p.name for p in enrollment.glob("*/*") if p.is_dir())
    held = max(enrollment.glob(f"*/{last}/*"), key=lambda p: p.stat().st_size)
    code = held.parent.parent.name
    kept = data_dir.parent / f"{data_dir.name}-held" / held.name
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(held, kept)
    held.parent.rmdir()
    other = sorted(p.name for p in enrollment.iterdir() if p.name != code)[0]
    return {"data_dir": data_dir, "code": code, "other": other, "term": last, "clean": kept}


def run_pipeline(data_dir: Path) -> dict:
    from flows.pipeline import pipeline

    return pipeline(data_dir=str(data_dir))


def _first_run(folder: Path) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAB2FAB_TASK_RUNNER", "thread")  # the runs here are small: no worker processes
        info = make_collection(folder / "data")
        run_pipeline(info["data_dir"])
    return info


def first_run_copy(once, data_dir: Path) -> dict:
    """make_collection after its first pipeline run, copied to `data_dir` (with the held-back file beside
    it): the collection and its run are built once per session (`once`, tests/conftest.py), and each
    portal module writes to a copy of its own."""
    built = once("portal-first-run", _first_run)
    shutil.copytree(built["data_dir"], data_dir, copy_function=shutil.copy2, symlinks=True)
    clean = data_dir.parent / f"{data_dir.name}-held" / built["clean"].name
    clean.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(built["clean"], clean)
    return {**built, "data_dir": data_dir, "clean": clean}


def add_users(data_dir: Path, code: str, other: str) -> None:
    from portal.accounts import Accounts
    from portal.state import State

    accounts = Accounts(State(data_dir).ensure())
    accounts.add("uni", PASSWORDS["uni"], university_code=code, office=False, display_name=f"Data officer {code}")
    accounts.add("other", PASSWORDS["other"], university_code=other, office=False)
    accounts.add("office", PASSWORDS["office"], university_code=None, office=True,
                 display_name="Nguyễn Thị Lan (programme office)")


def broken_copy(clean: Path, keep_share: float = 0.6, broken_rows: int = 3) -> bytes:
    """The clean file with 40% of its rows gone (a row-count warning) and a few rows with a programme
    code not in the catalogue (row errors: quarantined)."""
    text = clean.read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:int(len(rows) * keep_share)]
    programme = next(i for i, h in enumerate(header) if h.strip().lower() in ("mã ngành", "programme code", "ma_nganh",
                                                                             "major code", "programme_code"))
    for r in body[:broken_rows]:
        r[programme] = "7999999"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *body])
    return out.getvalue().encode("utf-8")


def personal_values(*files: Path) -> set[str]:
    """Names and national ids in the given CSV files (columns 2 and 3 of the demo's layouts)."""
    out = set()
    for f in files:
        rows = list(csv.reader(io.StringIO(f.read_text(encoding="utf-8-sig"))))
        header = [h.lower() for h in rows[0]]
        cols = [i for i, h in enumerate(header) if any(k in h for k in ("tên", "name", "cccd", "national", "cmnd"))]
        for r in rows[1:]:
            out |= {r[i] for i in cols if len(r[i]) >= 6}
    return out


def tree(folder: Path) -> list:
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def portal_data(once, tmp_path_factory, prefect_harness):
    info = first_run_copy(once, tmp_path_factory.mktemp("portal") / "data")
    add_users(info["data_dir"], info["code"], info["other"])
    return info


@pytest.fixture(scope="module")
def app(portal_data):
    from portal.app import create_app

    return create_app(portal_data["data_dir"])


def client(app):
    from fastapi.testclient import TestClient

    return TestClient(app, follow_redirects=True)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def logged_in(app, who: str):
    c = client(app)
    page = c.get("/login")
    r = c.post("/login", data={"csrf": csrf_of(page.text), "name": who, "password": PASSWORDS[who], "next": "/"})
    assert r.status_code == 200, r.text
    c.csrf = csrf_of(r.text)
    return c


def upload(c, code: str, term: str, name: str, data: bytes, csrf: str | None = "session"):
    fields = {"term": term}
    if csrf is not None:
        fields = {"csrf": c.csrf if csrf == "session" else csrf, **fields}
    return c.post(f"/u/{code}/upload", data=fields, files={"file": (name, data, "text/csv")})


def verdict_of(html: str) -> str:
    return re.search(r'data-verdict="([^"]+)"', html).group(1)


# ------------------------------------------------------------------------------ accounts

def test_users_command_hashes_resets_and_disables(tmp_path, monkeypatch, capsys):
    from flows.cli import main
    from portal.accounts import Accounts
    from portal.state import State

    def users(*args, password=None):
        if password is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
        return main(["--data-dir", str(tmp_path), "users", *args])

    assert users("add", "hust.officer", "--university", "HUST", "--password-stdin", password="first-password") == 0
    assert users("add", "lan", "--office", "--display-name", "Lan", "--password-stdin", password="office-password") == 0
    assert users("add", "x", "--university", "NOPE", "--password-stdin", password="some-password") == 2
    assert users("add", "short", "--university", "HUST", "--password-stdin", password="short") == 2
    assert users("add", "hust.officer", "--university", "HUST", "--password-stdin", password="again-password") == 2
    stored = (tmp_path / "portal" / "users.json").read_text()
    assert "first-password" not in stored and re.search(r'"password": "scrypt\$32768\$8\$1\$', stored)
    assert oct((tmp_path / "portal" / "users.json").stat().st_mode & 0o777) == "0o600"
    accounts = Accounts(State(tmp_path))
    before = accounts.get("hust.officer")
    assert accounts.authenticate("hust.officer", "first-password") == before
    assert users("reset", "hust.officer", "--password-stdin", password="second-password") == 0
    assert accounts.authenticate("hust.officer", "first-password") is None
    after = accounts.authenticate("hust.officer", "second-password")
    assert after.generation > before.generation  # open sessions end
    assert users("disable", "hust.officer") == 0
    assert accounts.authenticate("hust.officer", "second-password") is None
    capsys.readouterr()
    assert users("list") == 0
    listing = capsys.readouterr().out
    assert "hust.officer" in listing and "disabled" in listing and "scrypt" not in listing


def test_login_is_rate_limited_and_sessions_end_on_reset(app):
    c = client(app)
    page = c.get("/")
    assert page.url.path == "/login"
    cookie = c.cookies.get("l2f_session")
    assert cookie
    set_cookie = " ".join(r.headers.get("set-cookie", "") for r in (*page.history, page)).lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    for _ in range(5):
        r = c.post("/login", data={"csrf": csrf_of(page.text), "name": "other", "password": "wrong-password"})
        assert r.status_code == 401
    r = c.post("/login", data={"csrf": csrf_of(page.text), "name": "other", "password": PASSWORDS["other"]})
    assert r.status_code == 429  # even the right password, for a while
    app.state.limiter.failures.clear()

    c = logged_in(app, "other")
    assert c.get("/").url.path.startswith("/u/")
    app.state.accounts.reset("other", PASSWORDS["other"])  # same password, new generation: the session ends
    assert c.get("/").url.path == "/login"


# ------------------------------------------------------------------------------ who may see what

def test_a_university_user_reaches_no_other_university_and_writes_nothing(app, portal_data):
    data_dir, code, other, term = (portal_data[k] for k in ("data_dir", "code", "other", "term"))
    c = logged_in(app, "other")  # a user of `other`, trying `code`'s routes
    before = tree(data_dir)
    feedback = sorted((data_dir / "published" / "feedback" / code).glob("*.json"))[0].name
    assert c.get(f"/u/{other}").status_code == 200
    assert c.get(f"/u/{code}").status_code == 403
    assert c.get(f"/u/{code}/feedback/{feedback}").status_code == 403
    assert c.get(f"/u/{other}/feedback/{feedback}").status_code in (200, 404)
    assert upload(c, code, term, "x.csv", portal_data["clean"].read_bytes()).status_code == 403
    r = c.post(f"/u/{code}/explain", data={"csrf": c.csrf, "term": term, "rule_id": "ENR.file.rows_drop",
                                           "text": "A programme closed this term."})
    assert r.status_code == 403
    assert c.get("/office").status_code == 403
    assert c.get("/office/matrix.csv").status_code == 403
    assert c.post("/office/decide", data={"csrf": c.csrf, "id": f"{code}:{term}:ENR.file.rows_drop",
                                          "decision": "accept"}).status_code == 403
    # The office reads every university but submits and explains for none.
    office = logged_in(app, "office")
    assert office.get(f"/u/{code}").status_code == 200
    assert upload(office, code, term, "x.csv", portal_data["clean"].read_bytes()).status_code == 403
    assert office.post(f"/u/{code}/explain", data={"csrf": office.csrf, "term": term, "rule_id": "ENR.file.rows_drop",
                                                   "text": "A programme closed this term."}).status_code == 403
    # Without a session: pages send to the log-in, actions are refused.
    anon = client(app)
    assert anon.get(f"/u/{code}").url.path == "/login"
    assert anon.get(f"/u/{code}/feedback/{feedback}").url.path == "/login"
    assert anon.get("/office/matrix.csv").url.path == "/login"
    assert upload(anon, code, term, "x.csv", b"a,b\n", csrf=None).status_code in (401, 403)
    assert tree(data_dir) == before  # nothing written: no landed file, no log line, no explanation


def test_every_form_needs_its_csrf_token(app, portal_data):
    data_dir, code, term = portal_data["data_dir"], portal_data["code"], portal_data["term"]
    c = logged_in(app, "uni")
    office = logged_in(app, "office")
    before = tree(data_dir)
    for token in (None, "forged-token"):
        assert upload(c, code, term, "x.csv", portal_data["clean"].read_bytes(), csrf=token).status_code == 403
        fields = {} if token is None else {"csrf": token}
        assert c.post(f"/u/{code}/explain", data={**fields, "term": term, "rule_id": "ENR.file.rows_drop",
                                                  "text": "A programme closed this term."}).status_code == 403
        assert office.post("/office/decide", data={**fields, "id": "x", "decision": "accept"}).status_code == 403
        assert c.post("/logout", data=fields).status_code == 403
        fresh = client(app)
        fresh.get("/login")
        assert fresh.post("/login", data={**fields, "name": "uni", "password": PASSWORDS["uni"]}).status_code == 403
    # The token of another session is worth nothing either.
    assert upload(c, code, term, "x.csv", b"a\n", csrf=office.csrf).status_code == 403
    assert tree(data_dir) == before
    assert c.get(f"/u/{code}").status_code == 200  # still logged in


# ------------------------------------------------------------------------------ upload, verdict, next run

@pytest.fixture(scope="module")
def uploads(app, portal_data):
    """Every kind of upload, then the next pipeline run: (entries by kind, responses by kind, run)."""
    from transforms.ingest import readers

    code, term, clean = portal_data["code"], portal_data["term"], portal_data["clean"]
    c = logged_in(app, "uni")
    pages, entries = {}, {}
    sent = {
        "clean": (clean.name, clean.read_bytes()),
        "broken": ("resubmission.csv", broken_copy(clean)),
        "unreadable": ("no_status.csv", b"student_id,gender\n1,M\n"),
        "bad_name": ("-dash.csv", clean.read_bytes() + b"\n"),
        "duplicate": ("copy.csv", clean.read_bytes()),
    }
    for kind, (name, data) in sent.items():
        r = upload(c, code, term, name, data)
        assert r.status_code == 200, (kind, r.text)
        pages[kind] = r.text
        entries[kind] = app.state.state.uploads(code)[0]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAB2FAB_MAX_FILE_BYTES", "1000")
        pages["too_large"] = upload(c, code, term, "big.csv", clean.read_bytes())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAB2FAB_TASK_RUNNER", "thread")
        run = run_pipeline(portal_data["data_dir"])
    return entries, pages, run


def test_upload_verdicts_are_shown_at_once(uploads, portal_data):
    entries, pages, _ = uploads
    data_dir, code, term = portal_data["data_dir"], portal_data["code"], portal_data["term"]
    assert {k: e["verdict"] for k, e in entries.items()} == {
        "clean": "accepted", "broken": "accepted_with_warnings", "unreadable": "rejected", "bad_name": "rejected",
        "duplicate": "duplicate"}
    assert verdict_of(pages["clean"]) == "accepted" and "ACCEPTED" in pages["clean"]
    broken = pages["broken"]
    assert verdict_of(broken) == "accepted_with_warnings"
    # line, field, rule and what to do, for each broken row
    lines = re.findall(r'class="row-issue" data-line="(\d+)" data-rule="ENR.programme_code.catalogue"', broken)
    assert lines == ["2", "3", "4"]
    assert "programme_code" in broken and "Correct this row in your file" in broken
    assert 'data-rule="ENR.file.rows_drop"' in broken and "Explain this warning" in broken
    assert entries["broken"]["rows"]["would_quarantine"] == 3 and "ENR.file.rows_drop" in entries["broken"]["file_warnings"]
    # landed atomically in the university's own folder; refused files kept aside with their reason
    folder = data_dir / "landing" / "enrollment" / code / term
    assert sorted(p.name for p in folder.iterdir()) == sorted([entries["clean"]["landed_as"].rsplit("/", 1)[1],
                                                              entries["broken"]["landed_as"].rsplit("/", 1)[1]])
    assert (folder / portal_data["clean"].name).read_bytes() == portal_data["clean"].read_bytes()
    for kind in ("unreadable", "bad_name"):
        kept = data_dir / "portal" / entries[kind]["kept_as"]
        assert kept.is_file() and entries[kind]["landed_as"] is None
        assert (kept.parent / "REASON.txt").read_text().strip() == entries[kind]["reason"]
    assert "status" in entries["unreadable"]["reason"] and "starts with '-'" in entries["bad_name"]["reason"]
    assert "already received" in entries["duplicate"]["reason"]
    assert pages["too_large"].status_code == 413 and "1,000-byte limit" in pages["too_large"].text
    assert not any((data_dir / "portal" / "tmp").iterdir())  # nothing half-received is left
    # every upload recorded: who, when, sha256, verdict
    for e in entries.values():
        assert e["user"] == "uni" and re.fullmatch(r"[0-9a-f]{64}", e["sha256"]) and e["at"].endswith("Z")


def test_the_next_run_decides_what_the_portal_said(uploads, portal_data):
    entries, _, run = uploads
    data_dir = portal_data["data_dir"]
    assert run["files_new"] == 2  # only the landed files
    con = duckdb.connect(str(data_dir / "published" / "lab2fab.duckdb"), read_only=True)
    try:
        m = con.execute("SELECT path, sha256, verdict, status, rows_read, rows_quarantined FROM ops.manifest").df()
    finally:
        con.close()
    m = m.set_index("path")
    for kind in ("clean", "broken"):
        e = entries[kind]
        row = m.loc[e["landed_as"]]
        assert row["sha256"] == e["sha256"]
        assert row["verdict"] == e["verdict"], kind
        assert (row["rows_read"], row["rows_quarantined"]) == (e["rows"]["read"], e["rows"]["would_quarantine"]), kind
    assert m.loc[entries["clean"]["landed_as"], "status"] == "superseded"  # the newer upload replaced it
    assert not m["sha256"].isin([entries["unreadable"]["sha256"]]).any()


def test_history_shows_each_submission_and_its_feedback(uploads, app, portal_data):
    entries, _, _ = uploads
    code, term = portal_data["code"], portal_data["term"]
    c = logged_in(app, "uni")
    page = c.get(f"/u/{code}").text
    rows = re.findall(r'class="history-row" data-term="([^"]+)" data-status="([^"]+)"', page)
    assert (term, "accepted_with_warnings") in rows and (term, "superseded") in rows
    assert all(t == "None" or re.fullmatch(r"\d{4}-[12]", t) for t, _ in rows)
    assert "ENR.programme_code.catalogue</code> 3" in page
    assert re.search(r'class="late">late<', page)  # sent after the window closed
    for ext, kind in (("json", "application/json"), ("md", "text/markdown"), ("csv", "text/csv")):
        r = c.get(f"/u/{code}/feedback/{term}.{ext}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert f'href="/u/{code}/feedback/{term}.{ext}"' in page
    assert json.loads(c.get(f"/u/{code}/feedback/{term}.json").content)["status"] == "accepted_with_warnings"
    for bad in ("..%2F..%2Fportal%2Fusers.json", "2025-2.txt", "2025-2.json%00", "2025-2"):
        assert c.get(f"/u/{code}/feedback/{bad}").status_code == 404
    vi = c.get(f"/lang/vi?next=/u/{code}").text
    assert "Các lần nộp" in vi and "Nộp tệp dữ liệu" in vi
    r = c.get("/lang/en?next=//evil.example/")
    assert r.history[0].headers["location"] == "/" and r.url.host == "testserver"


def test_explanations_and_the_office_decision_write_the_overrides_file(uploads, app, portal_data):
    from transforms.contract import checks
    from transforms.contract.kit import check_file

    entries, _, _ = uploads
    data_dir, code, term = portal_data["data_dir"], portal_data["code"], portal_data["term"]
    c = logged_in(app, "uni")
    page = c.get(f"/u/{code}").text
    assert f'data-term="{term}" data-rule="ENR.file.rows_drop"' in page
    assert c.post(f"/u/{code}/explain", data={"csrf": c.csrf, "term": term, "rule_id": "ENR.programme_code.catalogue",
                                              "text": "Errors cannot be explained away."}).status_code == 400
    text = "=HYPERLINK(\"x\") The 2025 intake of one programme was moved to the partner campus (letter 12/2026)."
    warnings = entries["broken"]["file_warnings"]  # the fall in rows, and the students it leaves unaccounted
    assert "ENR.file.rows_drop" in warnings
    for rule_id in warnings:
        r = c.post(f"/u/{code}/explain", data={"csrf": c.csrf, "term": term, "rule_id": rule_id, "text": text})
        assert r.status_code == 200 and "Explanation sent" in r.text
    office = logged_in(app, "office")
    listing = office.get("/office").text
    for rule_id in warnings:
        key = f"{code}:{term}:{rule_id}"
        assert f'data-id="{key}" data-status="pending"' in listing
        r = office.post("/office/decide", data={"csrf": office.csrf, "id": key, "decision": "accept", "note": "ok"})
        assert r.status_code == 200 and "written to the overrides file" in r.text
        assert office.post("/office/decide", data={"csrf": office.csrf, "id": key, "decision": "refuse"}).status_code == 404
    path = data_dir / "overrides" / "accepted_warnings.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [(r["university_code"], r["term"], r["rule_id"]) for r in rows] == [(code, term, w) for w in warnings]
    assert rows[0]["accepted_by"] == "Nguyễn Thị Lan (programme office)" and rows[0]["reason"].startswith("'=HYPERLINK")
    assert "explained by Data officer" in rows[0]["reason"]
    overrides = checks.read_overrides(checks.overrides_paths(data_dir))
    assert (overrides["status"] == "valid").all()
    # What the next run will decide: the kit reads the same overrides file.
    landed = data_dir / "landing" / entries["broken"]["landed_as"]
    assert check_file(landed, data_dir=data_dir).verdict == "accepted"
    assert "accepted" in c.get(f"/u/{code}").text


def test_office_matrix_filters_and_formula_safe_export(uploads, app, portal_data):
    code, term = portal_data["code"], portal_data["term"]
    office = logged_in(app, "office")
    page = office.get("/office").text
    assert page.count('data-status="') > 10
    filtered = office.get(f"/office?term={term}&status=late&university={code}").text
    cells = re.findall(r'<td class="[^"]*" data-status="([^"]+)"', filtered)
    assert cells == ["late"]
    r = office.get(f"/office/matrix.csv?term={term}")
    assert r.headers["content-type"].startswith("text/csv") and r.content.startswith("\ufeff".encode())
    table = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    from portal.accounts import participating_universities

    assert {t["term"] for t in table} == {term} and len(table) == len(participating_universities(REFERENCE))
    assert all(not v.startswith(("=", "+", "-", "@")) for t in table for v in t.values())
    assert {t["university_code"]: t["status"] for t in table}[code] == "late"


def test_no_personal_data_in_pages_or_portal_state(uploads, app, portal_data):
    data_dir, code = portal_data["data_dir"], portal_data["code"]
    personal = personal_values(portal_data["clean"])
    assert len(personal) > 50
    _, pages, _ = uploads
    c = logged_in(app, "uni")
    office = logged_in(app, "office")
    seen = [p for p in pages.values() if isinstance(p, str)]
    seen += [c.get(f"/u/{code}").text, office.get("/office").text, office.get("/office/matrix.csv").text]
    seen += [p.read_text(encoding="utf-8") for p in (data_dir / "portal").rglob("*")
             if p.is_file() and "refused" not in p.parts and p.name != "secret.key"]
    seen.append((data_dir / "overrides" / "accepted_warnings.csv").read_text(encoding="utf-8")
                if (data_dir / "overrides" / "accepted_warnings.csv").exists() else "")
    blob = "\n".join(seen)
    assert not [v for v in personal if v in blob]
    # student numbers are not shown either: the line says which row
    assert os.path.isdir(data_dir / "portal" / "refused")
