"""The portal's web application (FastAPI, Jinja2 templates, no JavaScript).

Security, in one place:
* sessions are a signed cookie (HMAC-SHA256 with the portal's key; HttpOnly, SameSite=Strict,
  Secure over HTTPS) holding the user name, the account's generation (a reset or disable ends the
  session), a CSRF token and an expiry; nothing else is kept server-side;
* every form carries the session's CSRF token and every POST checks it (the upload checks it
  before the file part is read, so a forged upload writes nothing);
* failed log-ins are limited per user name and per client address;
* a university user reaches only its own university's pages, uploads, explanations and feedback
  files: every `/u/{code}/...` route checks it first and answers 403 with nothing written.
"""
from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import hmac
import io
import json
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from portal import snapshot
from portal.accounts import Accounts, User
from portal.i18n import LANGUAGES, translator
from portal.state import State, explanation_id, now_utc, write_atomic
from portal.upload import UploadRefused, discard, judge_and_land, receive
from transforms.config import get_paths
from transforms.vocabulary import SUBMISSION_STATUSES

HERE = Path(__file__).resolve().parent
CODE_RE = re.compile(r"^[A-Z0-9]{2,12}$")
TERM_RE = re.compile(r"^\d{4}-[12]$")
SESSION_COOKIE, LANG_COOKIE = "l2f_session", "l2f_lang"
SESSION_SECONDS = 8 * 3600
LOGIN_FAILURES, LOGIN_WINDOW = 5, 300  # at most 5 failed log-ins per user name / address in 5 minutes
MATRIX_STATUSES = SUBMISSION_STATUSES  # marts.submission_status.status_with_late
FEEDBACK_TYPES = {"json": "application/json", "md": "text/markdown; charset=utf-8", "csv": "text/csv; charset=utf-8"}


# ------------------------------------------------------------------------------ sessions

class Signer:
    def __init__(self, key: bytes):
        self.key = hashlib.sha256(b"lab2fab-portal-session\0" + key).digest()

    def dump(self, data: dict) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{payload}.{self._sign(payload)}"

    def load(self, cookie: str | None) -> dict | None:
        if not cookie or cookie.count(".") != 1:
            return None
        payload, sig = cookie.split(".")
        if not hmac.compare_digest(sig, self._sign(payload)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        return data if isinstance(data, dict) and data.get("exp", 0) > time.time() else None

    def _sign(self, payload: str) -> str:
        return hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()


class LoginLimiter:
    """Failed log-ins per key (user name, client address) in a sliding window, in memory."""

    def __init__(self, limit: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW):
        self.limit, self.window = limit, window
        self.failures: dict[str, deque] = defaultdict(deque)
        self.lock = threading.Lock()

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self.lock:
            for k in keys:
                q = self.failures[k]
                while q and now - q[0] > self.window:
                    q.popleft()
                if len(q) >= self.limit:
                    return True
        return False

    def fail(self, *keys: str) -> None:
        with self.lock:
            for k in keys:
                self.failures[k].append(time.monotonic())

    def clear(self, key: str) -> None:
        with self.lock:
            self.failures.pop(key, None)


@dataclass
class Ctx:
    request: Request
    session: dict
    user: User | None
    lang: str
    new_cookie: bool

    @property
    def csrf(self) -> str:
        return self.session["c"]

    @property
    def t(self):
        return translator(self.lang)


class Forbidden(Exception):
    pass


class Refused(Exception):
    def __init__(self, status: int, key: str, **values):
        self.status, self.key, self.values = status, key, values


# ------------------------------------------------------------------------------ the application

def create_app(data_dir: str | Path | None = None) -> FastAPI:
    paths = get_paths(data_dir)
    state = State(paths.data_dir).ensure()
    accounts = Accounts(state)
    signer = Signer(state.secret_key())
    limiter = LoginLimiter()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["status_class"] = lambda s: "s-" + str(s or "").replace("_", "-")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        # The first verdict would otherwise pay for importing Great Expectations and building the suites.
        threading.Thread(target=_warm_up, args=(paths,), daemon=True).start()
        yield

    app = FastAPI(title="lab2fab submission portal", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.paths, app.state.state, app.state.accounts, app.state.limiter = paths, state, accounts, limiter
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", "default-src 'self'; form-action 'self'; "
                                    "frame-ancestors 'none'; base-uri 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    # -------------------------------------------------------------- helpers

    def context(request: Request) -> Ctx:
        session = signer.load(request.cookies.get(SESSION_COOKIE))
        user = None
        if session and session.get("u"):
            u = accounts.get(session["u"])
            if u and not u.disabled and u.generation == session.get("g"):
                user = u
            else:
                session = None
        new = session is None
        if new:
            session = {"u": None, "c": secrets.token_urlsafe(24), "exp": int(time.time()) + SESSION_SECONDS}
        lang = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or "en"
        return Ctx(request, session, user, lang if lang in LANGUAGES else "en", new)

    def finish(ctx: Ctx, response: Response) -> Response:
        if ctx.new_cookie:
            response.set_cookie(SESSION_COOKIE, signer.dump(ctx.session), max_age=SESSION_SECONDS, httponly=True,
                                samesite="strict", secure=ctx.request.url.scheme == "https", path="/")
        return response

    def page(ctx: Ctx, template: str, status: int = 200, **values) -> Response:
        # The language links come back to this page; after a POST (a verdict) to the user's home page.
        here = ctx.request.url.path if ctx.request.method == "GET" else "/"
        values.update(ctx=ctx, t=ctx.t, user=ctx.user, lang=ctx.lang, csrf=ctx.csrf, path=here)
        return finish(ctx, templates.TemplateResponse(ctx.request, template, values, status_code=status))

    def problem(ctx: Ctx, status: int, key: str, **values) -> Response:
        return page(ctx, "message.html", status=status, message=ctx.t(key, **values))

    def csrf_ok(ctx: Ctx, token: str | None) -> bool:
        return bool(token) and not ctx.new_cookie and hmac.compare_digest(str(token), ctx.csrf)

    async def form(ctx: Ctx) -> dict:
        data = await ctx.request.form(max_files=0, max_fields=20)
        if not csrf_ok(ctx, data.get("csrf")):
            raise Refused(403, "csrf")
        return data

    def require(ctx: Ctx, university_code: str | None = None, *, write: bool = False, office: bool = False) -> User:
        """The logged-in user, allowed to see (write: to act for) `university_code`; else Forbidden."""
        if ctx.user is None:
            raise Forbidden("login")
        if office and not ctx.user.is_office:
            raise Forbidden()
        if university_code is not None:
            if not CODE_RE.match(university_code) or not ctx.user.may_see(university_code):
                raise Forbidden()
            if write and ctx.user.university_code != university_code:
                raise Forbidden()  # the office reads every university's pages but submits for none
        return ctx.user

    def guarded(handler):
        """Run `handler(ctx, ...)`; answer a missing login, a refusal or a 403 the same way everywhere."""
        import functools
        import inspect

        @functools.wraps(handler)
        async def run(request: Request, **kw):
            ctx = context(request)
            try:
                out = handler(ctx, **kw)
                return await out if inspect.isawaitable(out) else out
            except Forbidden as e:
                if str(e) == "login":
                    if request.method == "GET":
                        return finish(ctx, RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303))
                    return problem(ctx, 401, "need_login")
                return problem(ctx, 403, "forbidden")
            except (Refused, UploadRefused) as e:
                return problem(ctx, e.status, e.key, **e.values)
        sig = inspect.signature(handler)
        params = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
                  *list(sig.parameters.values())[1:]]
        run.__signature__ = sig.replace(parameters=params)
        return run

    # -------------------------------------------------------------- log in and out, language

    @app.get("/", response_class=HTMLResponse)
    @guarded
    def home(ctx: Ctx):
        user = require(ctx)
        return RedirectResponse("/office" if user.is_office else f"/u/{user.university_code}", status_code=303)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz():
        return "ok"

    @app.get("/login", response_class=HTMLResponse)
    @guarded
    def login_form(ctx: Ctx, next: str = "/"):
        return page(ctx, "login.html", next=_local(next), error=None)

    @app.post("/login", response_class=HTMLResponse)
    @guarded
    async def login(ctx: Ctx):
        data = await form(ctx)
        name, password = str(data.get("name", "")).strip().lower()[:40], str(data.get("password", ""))
        client = f"ip:{ctx.request.client.host if ctx.request.client else '-'}"
        if limiter.blocked(f"user:{name}", client):
            return page(ctx, "login.html", status=429, next=_local(data.get("next")), error=ctx.t("too_many"))
        user = accounts.authenticate(name, password)
        if user is None:
            limiter.fail(f"user:{name}", client)
            return page(ctx, "login.html", status=401, next=_local(data.get("next")), error=ctx.t("login_failed"))
        limiter.clear(f"user:{name}")
        # A new session (and CSRF token) at log-in: a token seen before it is worth nothing after.
        ctx.session = {"u": user.name, "g": user.generation, "c": secrets.token_urlsafe(24),
                       "exp": int(time.time()) + SESSION_SECONDS}
        ctx.new_cookie = True
        target = _local(data.get("next"))
        return finish(ctx, RedirectResponse(target if target != "/" else "/", status_code=303))

    @app.post("/logout")
    @guarded
    async def logout(ctx: Ctx):
        await form(ctx)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/lang/{lang}")
    @guarded
    def set_language(ctx: Ctx, lang: str, next: str = "/"):
        response = RedirectResponse(_local(next), status_code=303)
        if lang in LANGUAGES:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict", httponly=True, path="/")
        return finish(ctx, response)

    # -------------------------------------------------------------- a university's pages

    def university_page(ctx: Ctx, code: str, status: int = 200, **extra) -> Response:
        uploads = state.uploads(code)
        files = snapshot.history(paths.snapshot, code)
        known = {f["sha256"] for f in files or []}
        waiting = [u for u in uploads if u.get("landed_as") and u.get("sha256") not in known]
        explanations = {k: v for k, v in state.explanations().items() if v["university_code"] == code}
        pending = snapshot.pending_warnings(paths.snapshot, code)
        seen = {(w["term"], w["rule_id"]) for w in pending}
        # Warnings of files sent since the last run can be explained at once too.
        for u in waiting:
            for rule_id in u.get("file_warnings") or []:
                if (u["term"], rule_id) not in seen:
                    seen.add((u["term"], rule_id))
                    pending.append(_warning(u["term"], rule_id, u["file"]))
        for w in pending:
            w["explanation"] = explanations.get(explanation_id(code, w["term"], w["rule_id"]))
        feedback = _feedback_files(paths, code)
        return page(ctx, "university.html", status=status, code=code, name=_university_name(paths, code),
                    files=files, uploads=uploads[:20], waiting=waiting, warnings=pending, feedback=feedback,
                    term_status=snapshot.term_status(paths.snapshot, code),
                    explanations=sorted(explanations.values(), key=lambda e: e["at"], reverse=True), **extra)

    @app.get("/u/{code}", response_class=HTMLResponse)
    @guarded
    def university(ctx: Ctx, code: str):
        require(ctx, code)
        return university_page(ctx, code)

    @app.post("/u/{code}/upload", response_class=HTMLResponse)
    @guarded
    async def upload(ctx: Ctx, code: str):
        from starlette.concurrency import run_in_threadpool

        user = require(ctx, code, write=True)
        received = await receive(ctx.request, state, lambda token: csrf_ok(ctx, token))
        term = received.fields.get("term", "").strip()
        if not TERM_RE.match(term):
            discard(state, received)
            raise Refused(400, "bad_term")
        if received.path is None:
            discard(state, received)
            raise Refused(400, "no_file")
        entry, result = await run_in_threadpool(judge_and_land, paths, state, user, term, received)
        entry["receive_seconds"] = round(received.seconds, 3)
        return page(ctx, "verdict.html", code=code, entry=entry, result=_displayable(result),
                    warnings=[_warning(term, r, entry["file"]) for r in entry["file_warnings"]],
                    explanations=state.explanations())

    @app.post("/u/{code}/explain", response_class=HTMLResponse)
    @guarded
    async def explain(ctx: Ctx, code: str):
        from transforms.contract.rules import FILE, RULES, WARNING

        user = require(ctx, code, write=True)
        data = await form(ctx)
        term, rule_id = str(data.get("term", "")), str(data.get("rule_id", ""))
        text = " ".join(str(data.get("text", "")).split())[:2000]
        rule = RULES.get(rule_id)
        if not TERM_RE.match(term) or rule is None or rule.severity != WARNING or rule.scope != FILE or len(text) < 10:
            raise Refused(400, "bad_explanation")
        key = explanation_id(code, term, rule_id)

        def change(all_):
            if all_.get(key, {}).get("status") == "accepted":
                return False
            all_[key] = {"university_code": code, "term": term, "rule_id": rule_id, "text": text, "by": user.name,
                         "by_name": user.display_name, "at": now_utc(), "status": "pending"}
            return True
        state.update_explanations(change)
        return university_page(ctx, code, notice=ctx.t("explained"))

    @app.get("/u/{code}/feedback/{name}")
    @guarded
    def feedback(ctx: Ctx, code: str, name: str):
        require(ctx, code)
        term, _, ext = name.rpartition(".")
        if ext not in FEEDBACK_TYPES or not (TERM_RE.match(term) or term == "unknown-term"):
            raise Refused(404, "not_found")
        root = (paths.published_dir / "feedback").resolve()
        path = root / code / f"{term}.{ext}"
        if path.is_symlink() or not path.is_file() or not path.resolve().is_relative_to(root):
            raise Refused(404, "not_found")
        return FileResponse(path, media_type=FEEDBACK_TYPES[ext], filename=f"{code}_{term}.{ext}")

    # -------------------------------------------------------------- the programme office

    def matrix_rows(ctx: Ctx):
        q = ctx.request.query_params
        rows = snapshot.matrix(paths.snapshot)
        filters = {"term": q.get("term", ""), "status": q.get("status", ""), "university": q.get("university", "")}
        if rows is None:
            return None, [], filters
        terms = sorted({r["term"] for r in rows})
        if filters["term"] in terms:
            rows = [r for r in rows if r["term"] == filters["term"]]
        if filters["status"] in MATRIX_STATUSES:
            rows = [r for r in rows if r["status"] == filters["status"] or (filters["status"] == "late" and r["late"])]
        if filters["university"]:
            needle = filters["university"].strip().upper()
            rows = [r for r in rows if needle in r["university_code"]]
        return rows, terms, filters

    @app.get("/office", response_class=HTMLResponse)
    @guarded
    def office(ctx: Ctx):
        require(ctx, office=True)
        rows, terms, filters = matrix_rows(ctx)
        grid: dict[str, dict] = {}
        for r in rows or []:
            grid.setdefault(r["university_code"], {"name": r["university_name"], "terms": {}})["terms"][r["term"]] = r
        shown_terms = [t for t in terms if not filters["term"] or t == filters["term"]]
        counts = defaultdict(int)
        for r in rows or []:
            counts[r["status"]] += 1
        decisions = sorted((dict(v, id=k) for k, v in state.explanations().items()),
                           key=lambda e: (e["status"] != "pending", e["at"]))
        return page(ctx, "office.html", rows=rows, grid=grid, terms=terms, shown_terms=shown_terms, filters=filters,
                    statuses=MATRIX_STATUSES, counts=counts, decisions=decisions,
                    query=str(ctx.request.url.query))

    @app.get("/office/matrix.csv")
    @guarded
    def office_csv(ctx: Ctx):
        require(ctx, office=True)
        rows, _, _ = matrix_rows(ctx)
        neutralise = _neutraliser()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        columns = ["university_code", "university_name", "term", "status", "late", "received_at", "rows_quarantined",
                   "reason", "reason_rule_id", "file_in_use"]
        w.writerow(columns)
        for r in rows or []:
            w.writerow([neutralise(r[c]) for c in columns])
        return Response("\ufeff" + buf.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="lab2fab_submissions.csv"'})

    @app.post("/office/decide", response_class=HTMLResponse)
    @guarded
    async def decide(ctx: Ctx):
        user = require(ctx, office=True)
        data = await form(ctx)
        key, decision = str(data.get("id", "")), str(data.get("decision", ""))
        note = " ".join(str(data.get("note", "")).split())[:500]
        if decision not in ("accept", "refuse"):
            raise Refused(400, "not_found")

        def change(all_):
            e = all_.get(key)
            if e is None or e["status"] != "pending":
                return None
            if decision == "accept":
                _accept_warning(paths, e, user)
            e.update(status="accepted" if decision == "accept" else "refused", decided_by=user.name,
                     decided_by_name=user.display_name, decided_at=now_utc(), note=note or None)
            return e
        if state.update_explanations(change) is None:
            raise Refused(404, "not_found")
        response = RedirectResponse(f"/office?decided={decision}", status_code=303)
        return finish(ctx, response)

    return app


# ------------------------------------------------------------------------------ helpers

def _local(target) -> str:
    """A redirect target inside the portal (never another site)."""
    target = str(target or "/")
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _warm_up(paths) -> None:
    try:
        from transforms.contract import checks
        from transforms.contract import suites as contract
        from transforms.contract import kit  # noqa: F401

        checks.Suites.build("enrollment", contract.ContractReference.from_dir(paths.reference))
    except Exception:  # noqa: BLE001 - only a warm-up: the first upload then pays for it
        pass


def _warning(term: str, rule_id: str, file: str) -> dict:
    from transforms.contract.rules import RULES

    rule = RULES.get(rule_id)
    return {"term": term, "rule_id": rule_id, "file": file, "observed": None,
            "message_en": rule.message_en if rule else rule_id, "message_vi": rule.message_vi if rule else rule_id}


def _displayable(result):
    """The kit's result for the page: student numbers are not shown (the line says which row)."""
    if result is None:
        return None
    for issue in result.row_issues:
        if issue["field"] == "student_id":
            issue["sent"] = None
    return result


def _neutraliser():
    try:
        from transforms.publish.safe_csv import neutralise
    except ImportError:
        from transforms.publish.feedback import neutralise
    return neutralise


def _university_name(paths, code: str) -> str:
    with open(paths.reference / "universities.csv", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["university_code"] == code:
                return r["name_vi"]
    return code


def _feedback_files(paths, code: str) -> dict[str, list[str]]:
    """term -> the feedback file types the last run wrote for the university."""
    folder = paths.published_dir / "feedback" / code
    out: dict[str, list[str]] = {}
    if folder.is_dir() and not folder.is_symlink():
        for p in sorted(folder.iterdir()):
            if p.suffix[1:] in FEEDBACK_TYPES and (TERM_RE.match(p.stem) or p.stem == "unknown-term"):
                out.setdefault(p.stem, []).append(p.suffix[1:])
    return out


def _accept_warning(paths, explanation: dict, office_user: User) -> None:
    """Add the accepted explanation to `<data_dir>/overrides/accepted_warnings.csv`, written whole and
    renamed into place (the caller holds the portal's lock, the only writer of that file here)."""
    from transforms.contract.checks import OVERRIDE_COLUMNS, OVERRIDES_FILE

    path = paths.data_dir / OVERRIDES_FILE
    neutralise = _neutraliser()
    text = path.read_text(encoding="utf-8-sig") if path.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if not text.strip():
        w.writerow(OVERRIDE_COLUMNS)
    reason = (f"{explanation['text']} (explained by {explanation['by_name']} of {explanation['university_code']} "
              f"on {explanation['at'][:10]} through the portal)")
    w.writerow([explanation["university_code"], explanation["term"], explanation["rule_id"], neutralise(reason),
                neutralise(office_user.display_name), datetime.now(timezone.utc).date().isoformat()])
    write_atomic(path, (text + buf.getvalue()).encode("utf-8"))


def serve(data_dir: str | None = None, *, host: str = "127.0.0.1", port: int = 8018) -> int:
    """`lab2fab portal`: serve the portal with uvicorn (one process; the writer lock is never taken)."""
    import uvicorn

    paths = get_paths(data_dir)
    print(f"lab2fab portal on http://{host}:{port}/ for the data folder {paths.data_dir}")
    uvicorn.run(create_app(paths.data_dir), host=host, port=port, log_level="warning", proxy_headers=True)
    return 0
