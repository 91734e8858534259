"""Webhooks against a real local receiver: PagerDuty Events v2 (trigger on open with the
discrepancy id as dedup key, resolve on resolution) and the generic JSON mode, with retries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from recon_pipelines_tests.remediation_support import T0, Sleeps, deliverer, disc, make_spec, pager_env, run
from recon_pipelines_tests.remediation_support import receiver, tracker  # noqa: F401 (fixtures)

PAGER = [{"tier": "critical", "destinations": ["pager"]}]
HOOK = {"destinations": {"hook": {"type": "webhook", "url_env": "TEST_HOOK_URL", "auth_env": "TEST_HOOK_TOKEN"}}}






def test_pagerduty_trigger_then_resolve_with_the_discrepancy_id_as_dedup_key(tracker, receiver):
    spec = make_spec(routing=PAGER, escalation={})  # no escalation: key 7 stays a warning
    run(tracker, spec, "r1", disc("1042", "plan", "critical", value_a="business", value_b="PRO"), disc("7", "mrr"))
    deliverer(tracker.engine, spec, environ=pager_env(receiver)).deliver()
    [trigger] = receiver.bodies
    assert trigger["routing_key"] == "R0UTINGKEY"
    assert (trigger["event_action"], trigger["dedup_key"]) == ("trigger", "1042-plan")
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"] == "crm_vs_billing: field_mismatch key 1042 plan: crm='business' billing='PRO'"
    assert (trigger["payload"]["source"], trigger["payload"]["class"], trigger["payload"]["group"]) == (
        "recon_pipelines/crm_vs_billing", "field_mismatch", "plan")
    assert trigger["payload"]["custom_details"]["first_seen"] == "2025-01-06T08:00:00+00:00"
    assert trigger["links"] == [{"href": "http://127.0.0.1:3000/runs/r1", "text": "Dagster run"}]

    run(tracker, spec, "r2", disc("7", "mrr"), now=T0 + timedelta(hours=1))
    deliverer(tracker.engine, spec, environ=pager_env(receiver)).deliver()
    assert receiver.bodies[1] == {"routing_key": "R0UTINGKEY", "event_action": "resolve", "dedup_key": "1042-plan"}
    # Reruns and restarts send nothing more.
    run(tracker, spec, "r3", disc("7", "mrr"), now=T0 + timedelta(hours=2))
    deliverer(tracker.engine, spec, environ=pager_env(receiver)).deliver()
    assert len(receiver.requests) == 2


def test_webhook_retries_429_and_5xx_then_delivers(tracker, receiver):
    spec = make_spec(routing=PAGER)
    run(tracker, spec, "r1", disc("1", severity="critical"))
    receiver.fail_next(429, {"Retry-After": "3"})
    receiver.fail_next(503)
    sleeps = Sleeps()
    report = deliverer(tracker.engine, spec, sleeps=sleeps, environ=pager_env(receiver)).deliver()
    assert report.count("delivered") == 1
    assert sleeps == [3.0, pytest.approx(0.02)]
    assert len(receiver.requests) == 3 and len(receiver.bodies) == 1


def test_webhook_down_stays_pending_and_a_refusal_fails(tracker, receiver):
    spec = make_spec(routing=PAGER)
    run(tracker, spec, "r1", disc("1", severity="critical"), disc("2", severity="critical"))
    receiver.fail_next(502, times=4)  # every attempt of this pass (1 + 3 retries)
    report = deliverer(tracker.engine, spec, environ=pager_env(receiver)).deliver()
    assert [a.outcome for a in report.attempts] == ["pending"]
    assert "webhook failed after 4 attempts: HTTP 502" in report.attempts[0].detail
    receiver.fail_next(400, {}, {"status": "invalid event", "errors": ["'payload.summary' is missing"]})
    report = deliverer(tracker.engine, spec, environ=pager_env(receiver)).deliver()
    assert [a.outcome for a in report.attempts] == ["failed", "delivered"]
    assert "HTTP 400" in report.attempts[0].detail


def test_generic_webhook_sends_the_notification_with_its_idempotency_key(tracker, receiver):
    spec = make_spec(notifications=HOOK, routing=[{"destinations": ["hook"]}])
    run(tracker, spec, "r1", disc("1", "plan", "warning"))
    env = {"TEST_HOOK_URL": receiver.url, "TEST_HOOK_TOKEN": "s3cret"}
    deliverer(tracker.engine, spec, environ=env).deliver()
    [request] = receiver.requests
    assert request.headers["idempotency-key"] == "open:1-plan:1"
    assert request.headers["authorization"] == "Bearer s3cret"
    body = request.json()
    assert (body["event"], body["idempotency_key"], body["tier"]) == ("opened", "open:1-plan:1", "warning")
    assert (body["data"]["key"], body["data"]["value_a"], body["data"]["value_b"]) == ("1", "pro", "BIZ")


def test_an_unset_url_variable_keeps_the_notification_until_it_is_set(tracker, receiver):
    spec = make_spec(notifications=HOOK, routing=[{"destinations": ["hook"]}])
    run(tracker, spec, "r1", disc("1", "plan", "warning"))
    report = deliverer(tracker.engine, spec).deliver()
    assert [(a.outcome, a.detail) for a in report.attempts] == [("pending", "environment variable TEST_HOOK_URL is not set")]
    deliverer(tracker.engine, spec, environ={"TEST_HOOK_URL": receiver.url}).deliver()
    assert len(receiver.bodies) == 1
