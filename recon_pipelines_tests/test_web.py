"""The triage web application over HTTP (a real server, a real tracker): sign-in, roles, CSRF,
actions recorded with the signed-in user, keyset paging, and the shareable run report."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from starlette.routing import Route

from recon_pipelines.engine import DISCREPANCY_SCHEMA
from recon_pipelines.tracker import Tracker
from recon_pipelines.tracker import queue as q
from recon_pipelines.web import report
from recon_pipelines.web.app import Settings, create_app
from recon_pipelines.web.auth import Users, session_secret
from recon_pipelines_tests.web_server import HOSTILE_A, PASSWORD, RECON, csrf_of, row, running, seed, signed_in

import httpx


@pytest.fixture
def tracker(request, tmp_path):
    """SQLite for the HTTP tests; the tests that also take ``tracker_url`` run on PostgreSQL too."""
    url = request.getfixturevalue("tracker_url") if "tracker_url" in request.fixturenames else \
        f"sqlite:///{tmp_path / 'tracker.sqlite'}"
    t = Tracker(url)
    seed(t)
    yield t
    t.engine.dispose()


@pytest.fixture
def base(tracker):
    with running(tracker) as url:
        yield url


def test_only_health_sign_in_and_static_are_public(tracker, base):
    app = create_app(tracker)
    anonymous = httpx.Client(base_url=base, follow_redirects=False, timeout=30)
    checked = 0
    for route in app.routes:
        if not isinstance(route, Route) or route.path in ("/healthz", "/login"):
            continue
        path = re.sub(r"\{[^}]+\}", "1001-amount", route.path)
        for method in route.methods - {"HEAD"}:
            response = anonymous.request(method, path, data={"ids": "1001-amount", "action": "acknowledge"})
            if method == "GET":
                assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), path
            else:
                assert response.status_code == 401, (method, path)
            assert "1001" not in response.text
            checked += 1
    assert checked >= 5
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/login").status_code == 200
    assert anonymous.get("/static/style.css").status_code == 200
    assert tracker.get("1001-amount")["status"] == "new"


def test_session_cookie_is_signed_httponly_and_lax(base):
    client = signed_in(base, "alice")
    cookie = next(h for h in client.cookies.jar if h.name == "recon_session")
    assert cookie.has_nonstandard_attr("httponly") and cookie.get_nonstandard_attr("samesite") == "lax"
    forged = cookie.value.split(".")[0] + ".AAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAA"
    stranger = httpx.Client(base_url=base, cookies={"recon_session": forged}, follow_redirects=False)
    assert stranger.get("/").status_code == 303  # a cookie that was not signed by the server is ignored
    response = httpx.Client(base_url=base).post("/login", data={})
    assert response.status_code == 403
    login = httpx.get(f"{base}/login")
    assert "samesite=lax" in login.headers["set-cookie"].lower() and "httponly" in login.headers["set-cookie"].lower()


def test_an_action_without_the_csrf_token_is_refused(tracker_url, tracker, base):
    client = signed_in(base, "alice")
    form = {"ids": "1001-amount", "action": "acknowledge", "back": "/"}
    assert client.post("/actions", data=form).status_code == 403
    assert client.post("/actions", data={**form, "csrf": "not-the-token"}).status_code == 403
    assert tracker.get("1001-amount")["status"] == "new"
    token = csrf_of(client.get("/").text)
    assert client.post("/actions", data={**form, "csrf": token}).status_code == 303
    assert tracker.get("1001-amount")["status"] == "acknowledged"
    last = tracker.history("1001-amount")[-1]
    assert (last["action"], last["actor"]) == ("acknowledge", "alice")


def test_a_viewer_reads_but_cannot_act(tracker, base):
    client = signed_in(base, "victor")
    page = client.get("/d/1001-amount")
    assert page.status_code == 200 and 'action="/actions"' not in page.text
    token = csrf_of(page.text)
    response = client.post("/actions", data={"csrf": token, "ids": "1001-amount", "action": "acknowledge"})
    assert response.status_code == 403
    assert tracker.get("1001-amount")["status"] == "new"


def test_bulk_action_is_all_or_nothing_and_says_why(tracker, base):
    client = signed_in(base, "alice")
    token = csrf_of(client.get("/").text)
    form = {"csrf": token, "action": "resolve", "note": "booked by hand", "back": "/", "ids": ["1001-amount", "1002-amount"]}
    assert client.post("/actions", data=form).status_code == 303
    assert {tracker.get(i)["status"] for i in ("1001-amount", "1002-amount")} == {"resolved"}
    # One of these cannot be acknowledged (resolved): nothing changes and the page says which.
    form = {"csrf": token, "action": "acknowledge", "back": "/", "ids": ["1003-amount", "1001-amount"]}
    client.post("/actions", data=form)
    assert tracker.get("1003-amount")["status"] == "new"
    assert "cannot acknowledge discrepancy 1001-amount" in client.get("/").text


def test_wrong_password_and_foreign_redirects(base):
    client = httpx.Client(base_url=base, follow_redirects=False)
    token = csrf_of(client.get("/login").text)
    wrong = client.post("/login", data={"csrf": token, "name": "alice", "password": "nope nope nope"})
    assert wrong.status_code == 401 and client.get("/").status_code == 303
    unknown = client.post("/login", data={"csrf": token, "name": "mallory", "password": PASSWORD})
    assert unknown.status_code == 401 and unknown.text.count("wrong name or password") == 1
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        ok = client.post("/login", data={"csrf": token, "name": "alice", "password": PASSWORD, "next": target})
        assert ok.headers["location"] == "/", target
        token = csrf_of(client.get("/").text)


def test_a_removed_user_or_a_changed_password_signs_out_at_once(tracker, base):
    client, other = signed_in(base, "alice"), signed_in(base, "victor")
    assert client.get("/").status_code == 200 and other.get("/").status_code == 200
    Users(tracker.engine).remove("alice")
    assert client.get("/").status_code == 303
    Users(tracker.engine).set_password("victor", "a new password")
    assert other.get("/").status_code == 303


def test_identity_from_a_trusted_proxy_header(tracker):
    with running(tracker, Settings(trust_proxy_header="X-Forwarded-User")) as url:
        as_alice = httpx.Client(base_url=url, headers={"X-Forwarded-User": "alice"}, follow_redirects=False)
        page = as_alice.get("/d/1002-amount")
        assert page.status_code == 200 and "alice" in page.text
        token = csrf_of(page.text)
        assert as_alice.post("/actions", data={"csrf": token, "ids": "1002-amount", "action": "acknowledge"}).status_code == 303
        assert tracker.history("1002-amount")[-1]["actor"] == "alice"
        stranger = httpx.Client(base_url=url, headers={"X-Forwarded-User": "someone"}, follow_redirects=False)
        token = csrf_of(stranger.get("/").text)
        assert stranger.post("/actions", data={"csrf": token, "ids": "1003-amount", "action": "acknowledge"}).status_code == 403
        assert httpx.get(f"{url}/", follow_redirects=False).status_code == 303


def test_session_secret_is_stored_once_and_shared(tracker, monkeypatch):
    monkeypatch.delenv("RECON_WEB_SECRET", raising=False)
    first = session_secret(tracker.engine)
    assert session_secret(Tracker(tracker.engine.url.render_as_string(hide_password=False)).engine) == first
    monkeypatch.setenv("RECON_WEB_SECRET", "from-the-environment")
    assert session_secret(tracker.engine) == "from-the-environment"


def _many(tracker: Tracker, n: int) -> None:
    rows = [row(f"k{i:04d}", severity=("critical", "warning", "info")[i % 3]) for i in range(n)]
    rows.append(row("50%_off"))
    rows.append(row("50x-off"))
    tracker.apply_run(RECON, "run-many", pa.Table.from_pylist(rows, schema=DISCREPANCY_SCHEMA))


@pytest.mark.parametrize("sort", list(q.SORTS))
def test_keyset_pages_cover_every_row_once_in_order(tracker_url, tracker, sort):
    _many(tracker, 130)
    filters = q.QueueFilter(severity="warning")
    seen, after = [], None
    while True:
        page = q.page(tracker.engine, filters, sort=sort, after=after, size=25)
        seen += page.rows
        after = page.next_cursor
        if after is None:
            break
    expected = [r for r in tracker.discrepancies(status="open") if r["severity"] == "warning"]
    column, descending = q.SORTS[sort]
    expected.sort(key=lambda r: (r[column], r["id"]), reverse=descending)
    assert [r["id"] for r in seen] == [r["id"] for r in expected]


def test_key_search_takes_wildcards_literally(tracker_url, tracker):
    _many(tracker, 3)
    found = q.page(tracker.engine, q.QueueFilter(key="50%_"), size=25).rows
    assert [r["key"] for r in found] == ["50%_off"]
    with pytest.raises(q.QueueError):
        q.page(tracker.engine, q.QueueFilter(), after="not-a-cursor")


def test_queue_filters_over_http(tracker, base):
    client = signed_in(base, "victor")
    critical = client.get("/", params={"severity": "critical"}).text
    assert "1001" in critical and "1002-amount" not in critical
    assert client.get("/", params={"age": "soon"}).status_code == 400
    old = client.get("/", params={"age": "1d"}).text
    assert "Nothing matches" in old


def test_report_is_self_contained_and_escapes_values(tracker_url, tracker):
    tracker.apply_run(RECON, "run-2", pa.Table.from_pylist(
        [row("hostile", value_a=HOSTILE_A, severity="critical"), row("hostile2", value_a=HOSTILE_A), row("1004")],
        schema=DISCREPANCY_SCHEMA),
        summary={"rows_a": 100, "rows_b": 100, "matched": 100})
    html = report.render(report.run_report(tracker, "run-2"))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.I)
    assert "<script" not in html.lower().replace("&lt;script", "")
    assert "&lt;script&gt;" in html
    assert re.search(r'id="new">\s*2<', html) and re.search(r'id="resolved">\s*3<', html)  # 1001-1003 gone
    assert ">1001<" in html and report.run_report(tracker, "no-such-run") is None


def test_cli_users_and_report(tmp_path):
    from click.testing import CliRunner

    from recon_pipelines.cli import main

    url = f"sqlite:///{tmp_path / 't.sqlite'}"

    def call(*args, stdin=""):
        return CliRunner().invoke(main, [*args, "--tracker-url", url], input=stdin)

    assert call("users", "add", "olga", "--role", "operator", "--password-stdin", stdin=PASSWORD + "\n").exit_code == 0
    assert Users(Tracker(url).engine).authenticate("olga", PASSWORD).role == "operator"
    again = call("users", "add", "olga", "--role", "viewer", "--password-stdin", stdin=PASSWORD + "\n")
    assert again.exit_code == 2 and "already exists" in again.stderr
    short = call("users", "add", "pete", "--role", "viewer", "--password-stdin", stdin="tiny\n")
    assert short.exit_code == 2 and "at least 8" in short.stderr and "tiny" not in short.stderr
    assert call("users", "passwd", "olga", "--password-stdin", stdin="another password\n").exit_code == 0
    assert Users(Tracker(url).engine).authenticate("olga", PASSWORD) is None
    assert call("users", "remove", "olga").exit_code == 0
    assert call("users", "remove", "olga").exit_code == 2
    missing = call("report", "nope", "--output", str(tmp_path / "r.html"))
    assert missing.exit_code == 2 and "no run 'nope'" in missing.stderr


def test_values_are_escaped_and_invisible_characters_shown():
    from recon_pipelines.web.render import shown

    assert str(shown('<b>&"x"</b>')) == "&lt;b&gt;&amp;&#34;x&#34;&lt;/b&gt;"
    text = str(shown("a\u2066b\u200bc\x00d\re\u202eé"))
    assert [m for m in re.findall(r"\\u([0-9a-f]{4})", text)] == ["2066", "200b", "0000", "000d", "202e"]
    assert text.endswith("é") and "\u202e" not in text and "\x00" not in text
    assert "null" in str(shown(None)) and "empty" in str(shown(""))


def test_recon_run_writes_an_html_report(tmp_path):
    from click.testing import CliRunner

    from recon_pipelines.cli import main
    from recon_pipelines.demo import DEMO_DATA_ENV, DEMO_SPECS_DIR, generate_demo

    generate_demo(tmp_path / "data")
    spec = str(DEMO_SPECS_DIR / "crm_vs_billing.yaml")
    out, jsonl = tmp_path / "report.html", tmp_path / "found.jsonl"
    env = {DEMO_DATA_ENV: str(tmp_path / "data")}
    assert CliRunner().invoke(main, ["run", spec, "--format", "json", "-o", str(jsonl)], env=env).exit_code == 1
    result = CliRunner().invoke(main, ["run", spec, "--format", "html", "-o", str(out)], env=env)
    assert result.exit_code == 1, result.output
    html = out.read_text()
    found = len(jsonl.read_text().splitlines())
    assert re.search(rf'id="found">\s*{found}<', html) and html.count('<tr><td>') == found
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.I) and "<script" not in html
    no_output = CliRunner().invoke(main, ["run", spec, "--format", "html"], env=env)
    assert no_output.exit_code == 2 and "--output" in no_output.stderr


def test_only_an_admin_manages_users(tracker, base):
    admin, operator = signed_in(base, "ada"), signed_in(base, "alice")
    assert operator.get("/users").status_code == 403
    token = csrf_of(operator.get("/").text)
    refused = operator.post("/users", data={"csrf": token, "operation": "add", "name": "eve", "role": "admin",
                                            "password": PASSWORD})
    assert refused.status_code == 403 and Users(tracker.engine).get("eve") is None
    token = csrf_of(admin.get("/users").text)
    assert admin.post("/users", data={"operation": "add", "name": "eve", "role": "viewer", "password": PASSWORD}).status_code == 403
    added = admin.post("/users", data={"csrf": token, "operation": "add", "name": "eve", "role": "viewer", "password": PASSWORD})
    assert added.status_code == 303 and Users(tracker.engine).get("eve").role == "viewer"
    admin.post("/users", data={"csrf": token, "operation": "add", "name": "<b>x", "role": "viewer", "password": PASSWORD})
    assert "must be 1-128 letters" in admin.get("/users").text and Users(tracker.engine).get("<b>x") is None
    admin.post("/users", data={"csrf": token, "operation": "remove", "name": "eve"})
    assert Users(tracker.engine).get("eve") is None
