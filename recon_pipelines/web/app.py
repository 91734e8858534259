"""The triage web application (Starlette): the queue, a discrepancy page, actions, run reports.

Every route is registered through ``_route`` with the least role it needs; only ``/healthz``,
the sign-in page and static files are public. Every POST carries the session's CSRF token.
Actions go through ``Tracker.act``, the same service the CLI uses, with the signed-in user as
the actor, so the audit trail says who did what whichever door they came through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from recon_pipelines.spec.base import parse_duration, parse_moment
from recon_pipelines.tracker import Tracker
from recon_pipelines.tracker import queue as q
from recon_pipelines.tracker.lifecycle import TRANSITIONS, TransitionError
from recon_pipelines.tracker import matches
from recon_pipelines.web import report
from recon_pipelines.tracker.schema import WEB_ROLES
from recon_pipelines.web.auth import User, UserError, Users, csrf_matches, new_csrf_token, session_secret
from recon_pipelines.web.render import environment

STATIC = Path(__file__).parent / "static"
DAGSTER_URL_ENV = "RECON_DAGSTER_URL"
SESSION_HOURS = 12
# The actions a page offers, in the order it offers them.
ACTIONS = ("acknowledge", "assign", "comment", "escalate", "resolve", "mute", "unmute", "reopen")
PUBLIC_PATHS = ("/healthz", "/login", "/static/")


@dataclass(frozen=True)
class Settings:
    trust_proxy_header: str | None = None  # e.g. X-Forwarded-User, set by the reverse proxy
    proxy_role: str = "viewer"  # the role of a proxy-authenticated user with no row in recon_web_users
    dagster_url: str = "http://127.0.0.1:3000"
    secure_cookies: bool = False  # set behind HTTPS


def create_app(tracker: Tracker, settings: Settings | None = None) -> Starlette:
    settings = settings or Settings(dagster_url=os.environ.get(DAGSTER_URL_ENV, "http://127.0.0.1:3000"))
    users = Users(tracker.engine)
    templates = environment()

    def current_user(request: Request) -> User | None:
        if settings.trust_proxy_header:
            name = request.headers.get(settings.trust_proxy_header)
            if name:
                return users.get(name) or User(name, settings.proxy_role)
        name = request.session.get("user")
        user = users.get(name) if name else None  # a removed user is signed out at once,
        if user is None or not csrf_matches(user.stamp, request.session.get("stamp")):  # and one whose password changed
            return None
        return user

    def render(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        csrf = request.session.setdefault("csrf", new_csrf_token())
        flash = request.session.pop("flash", None)
        html = templates.get_template(name).render(
            request_path=request.url.path, csrf=csrf, flash=flash, user=context.pop("user", None), **context)
        return HTMLResponse(html, status_code=status)

    def _route(path: str, handler, role: str | None, methods=("GET",)) -> Route:
        """``role`` None: public. Otherwise sign-in, role and (POST) CSRF are checked before the handler."""

        async def endpoint(request: Request) -> Response:
            user = await run_in_threadpool(current_user, request)
            if role is not None:
                if user is None:
                    if request.method == "GET":
                        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                        return RedirectResponse(f"/login?next={quote(target, safe='')}", 303)
                    return PlainTextResponse("sign in first", 401)
                if not user.can(role):
                    return render(request, "error.html", 403, user=user,
                                  message=f"your role ({user.role}) cannot do this; it needs {role}")
            form = await request.form() if request.method == "POST" else None
            if form is not None and not csrf_matches(request.session.get("csrf"), form.get("csrf")):
                return PlainTextResponse("missing or wrong CSRF token: reload the page and try again", 403)
            return await run_in_threadpool(handler, request, user, form)

        return Route(path, endpoint, methods=list(methods))

    # ------------------------------------------------------------------ public

    def healthz(request, user, form):
        return PlainTextResponse("ok")

    def login_page(request, user, form):
        return render(request, "login.html", user=None, next=_safe_next(request.query_params.get("next")), error=None)

    def login(request, user, form):
        target = _safe_next(form.get("next"))
        found = users.authenticate(str(form.get("name", "")), str(form.get("password", "")))
        if found is None:
            return render(request, "login.html", 401, user=None, next=target, error="wrong name or password")
        request.session.clear()  # a new session at sign-in: nothing carried over from before
        request.session.update(user=found.name, stamp=found.stamp, csrf=new_csrf_token())
        return RedirectResponse(target, 303)

    # ------------------------------------------------------------------ signed in

    def logout(request, user, form):
        request.session.clear()
        return RedirectResponse("/login", 303)

    def queue_page(request, user, form):
        params = request.query_params
        context = dict(user=user, params=params, sorts=list(q.SORTS), sizes=q.PAGE_SIZES, actions=ACTIONS,
                       statuses=("open", "all", *TRANSITION_STATUSES), choices=q.choices(tracker.engine),
                       systems=_system_counts(tracker, params.get("reconciliation") or None))
        try:
            filters = _filters(params)
            found = q.page(tracker.engine, filters, sort=params.get("sort") or "newest", after=params.get("after") or None,
                           size=int(params.get("size") or 50))
        except (q.QueueError, ValueError) as exc:
            return render(request, "queue.html", 400, page=None, error=str(exc), next_url=None, first_url=None,
                          back=_here(request), **context)
        kept = [(k, v) for k, v in params.multi_items() if k != "after"]
        next_url = "/?" + urlencode([*kept, ("after", found.next_cursor)]) if found.next_cursor else None
        first_url = "/?" + urlencode(kept) if params.get("after") else None
        return render(request, "queue.html", page=found, error=None, next_url=next_url, first_url=first_url,
                      back=_here(request), **context)

    def discrepancy_page(request, user, form):
        row = tracker.get(request.path_params["id"])
        if row is None:
            return render(request, "error.html", 404, user=user, message="no such discrepancy")
        history = tracker.history(row["id"])
        allowed = [a for a in ACTIONS if row["status"] in TRANSITIONS[a].allowed_from] if user.can("operator") else []
        return render(request, "discrepancy.html", user=user, d=row, history=history, allowed=allowed,
                      comments=[e for e in history if e["action"] == "comment"],
                      run_url=lambda run_id: f"{settings.dagster_url.rstrip('/')}/runs/{quote(run_id, safe='')}",
                      back=_here(request))

    def act(request, user, form):
        ids = [i for i in form.getlist("ids") if isinstance(i, str)]
        action, note, assignee = (_field(form, name) for name in ("action", "note", "assignee"))
        back = _safe_next(form.get("back"))
        try:
            if action not in ACTIONS:
                raise TransitionError(f"unknown action {action!r}")
            until = _until(form.get("until")) if action == "mute" else None
            # The signed-in user is the actor; what they typed is the note (never the identity).
            rows = tracker.act(ids, action, user.name, note=note, until=until, assignee=assignee)
            request.session["flash"] = ["ok", f"{action}: {len(rows)} discrepanc{'y' if len(rows) == 1 else 'ies'}"]
        except (TransitionError, LookupError, ValueError) as exc:
            request.session["flash"] = ["error", str(exc)]
        return RedirectResponse(back, 303)

    def decide_match(request, user, form):
        """A suggested match confirmed or rejected (tracker/matches.py): the signed-in user decides."""
        discrepancy_id, decision, note = (_field(form, name) for name in ("id", "decision", "note"))
        back = _safe_next(form.get("back"))
        try:
            row = matches.decide(tracker, discrepancy_id or "", decision or "", user.name, note=note)
            request.session["flash"] = ["ok", f"{decision}: {row['value_a']} ↔ {row['value_b']}"]
        except (TransitionError, LookupError, ValueError) as exc:
            request.session["flash"] = ["error", str(exc)]
        return RedirectResponse(back, 303)

    def users_page(request, user, form):
        return render(request, "users.html", user=user, users=users.all(), roles=WEB_ROLES)

    def manage_users(request, user, form):
        name, operation = _field(form, "name") or "", _field(form, "operation")
        try:
            if operation == "add":
                users.add(name, _field(form, "role") or "", str(form.get("password") or ""))
            elif operation == "remove":
                users.remove(name)
            else:
                raise UserError(f"unknown operation {operation!r}")
            request.session["flash"] = ["ok", f"user {name}: {operation} done"]
        except (UserError, LookupError) as exc:
            request.session["flash"] = ["error", str(exc)]
        return RedirectResponse("/users", 303)

    def run_report(request, user, form):
        run_id = request.path_params["run_id"]
        data = report.run_report(tracker, run_id)
        if data is None:
            return render(request, "error.html", 404, user=user, message="no such run in the tracker")
        return HTMLResponse(report.render(data))

    routes = [
        _route("/healthz", healthz, None),
        _route("/login", login_page, None),
        _route("/login", login, None, methods=("POST",)),
        _route("/logout", logout, "viewer", methods=("POST",)),
        _route("/", queue_page, "viewer"),
        _route("/d/{id}", discrepancy_page, "viewer"),
        _route("/actions", act, "operator", methods=("POST",)),
        _route("/suggestions", decide_match, "operator", methods=("POST",)),
        _route("/runs/{run_id}/report", run_report, "viewer"),
        _route("/users", users_page, "admin"),
        _route("/users", manage_users, "admin", methods=("POST",)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=session_secret(tracker.engine), session_cookie="recon_session",
                   max_age=SESSION_HOURS * 3600, same_site="lax", https_only=settings.secure_cookies),
    ]
    return Starlette(routes=routes, middleware=middleware)


TRANSITION_STATUSES = ("new", "acknowledged", "escalated", "muted", "resolved")


class SecurityHeaders:
    """No framing, no sniffing, no inline or third-party script: the pages need none."""

    HEADERS = [
        (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                     b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    ]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)


def _system_counts(tracker: Tracker, reconciliation: str | None) -> list[dict]:
    """N-way reconciliations' latest counts per system, first line and why they differ."""
    from recon_pipelines.engine.nway import NWayStats
    from recon_pipelines.nway_pipeline import breakdown_lines, counts_line

    out = []
    for name, summary in q.latest_system_counts(tracker.engine, reconciliation).items():
        stats = NWayStats.from_json(summary)
        out.append({"reconciliation": name, "line": counts_line(stats), "why": breakdown_lines(stats),
                    "systems": stats.systems})
    return out


def _filters(params) -> q.QueueFilter:
    age = params.get("age")
    return q.QueueFilter(
        reconciliation=params.get("reconciliation") or None, status=params.get("status") or "open",
        severity=params.get("severity") or None, kind=params.get("kind") or None, field=params.get("field") or None,
        assignee=params.get("assignee") or None, key=params.get("key") or None,
        older_than=timedelta(seconds=parse_duration(age)) if age else None,
    )


def _field(form, name: str) -> str | None:
    """A text field of a form, stripped; None when absent, empty or not text (an upload)."""
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


def _until(text) -> datetime:
    """mute: a duration from now (7d, 12h) or an ISO date/time (UTC when no zone is given)."""
    text = str(text or "").strip()
    if not text:
        raise ValueError("muting needs an expiry: a duration (7d) or a date/time")
    return parse_moment(text, now=datetime.now(timezone.utc), ahead=True, what="until")


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _safe_next(target) -> str:
    """Only a path on this site: never another host (``//evil``, ``https://…``, ``/\\evil``)."""
    target = str(target or "")
    if not target.startswith("/") or target.startswith("//") or "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target
