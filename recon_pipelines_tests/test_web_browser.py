"""The triage page in a real browser (headless Chromium through Playwright) against a real
tracker: sign in, filter, open a discrepancy, acknowledge it, see the history; hostile values
render as text; a viewer cannot act. Skipped without Chromium or Playwright, except under CI=true."""

from __future__ import annotations

import os
import shutil

import pytest

from recon_pipelines.tracker import Tracker
from recon_pipelines_tests.web_server import HOSTILE_A, PASSWORD, running, seed

CHROMIUM = os.environ.get("RECON_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def _missing() -> str | None:
    if not shutil.which(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    return None


@pytest.fixture(scope="module")
def browser():
    problem = _missing()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the browser tests cannot run: {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'tracker.sqlite'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    tracker = Tracker(url)
    seed(tracker)
    with running(tracker) as base:
        yield base, tracker
    tracker.engine.dispose()


def _sign_in(browser, base, name):
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{base}/")
    assert "/login" in page.url  # sent to sign in first
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base}/")
    return page, dialogs


def test_operator_filters_opens_acknowledges_and_sees_history(browser, served):
    base, tracker = served
    page, dialogs = _sign_in(browser, base, "alice")
    page.select_option("select[name=severity]", "critical")
    page.click("button:has-text('Filter')")
    page.wait_for_url("**severity=critical**")
    keys = page.locator("table.queue a.key").all_inner_texts()
    assert sorted(keys) == ["1001", "hostile"]

    page.click("table.queue a.key:text-is('1001')")
    assert page.inner_text("#status") == "new"
    page.click("#act-acknowledge button")
    page.wait_for_selector("#status:text-is('acknowledged')")
    last = page.locator("#history tbody tr").last
    assert last.locator(".action").inner_text() == "acknowledge"
    assert last.locator(".actor").inner_text() == "alice"
    assert tracker.get("1001-amount")["status"] == "acknowledged"
    assert dialogs == []


def test_hostile_values_render_as_text(browser, served):
    base, tracker = served
    page, dialogs = _sign_in(browser, base, "victor")
    page.goto(f"{base}/d/hostile-amount")
    assert page.inner_text("#value_a") == HOSTILE_A
    shown_b = page.inner_text("#value_b")
    assert shown_b == "line one\\u000aline two \\u202eevil\\u202c end"  # newline and RTL marks shown, not obeyed
    assert page.locator("script").count() == 0
    assert dialogs == []


def test_a_viewer_sees_no_actions_and_is_refused(browser, served):
    base, tracker = served
    page, _ = _sign_in(browser, base, "victor")
    page.goto(f"{base}/d/1002-amount")
    assert page.locator("form[action='/actions']").count() == 0
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    status = page.evaluate(
        """async (token) => (await fetch('/actions', {method: 'POST', redirect: 'manual',
             body: new URLSearchParams({csrf: token, ids: '1002-amount', action: 'acknowledge'})})).status""", token)
    assert status == 403
    assert tracker.get("1002-amount")["status"] == "new"
