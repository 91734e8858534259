"""Operator actions, escalation and mute expiry, on SQLite and the real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from recon_pipelines.spec.models import EscalationSpec
from recon_pipelines.tracker import Tracker
from recon_pipelines.tracker.lifecycle import TRANSITIONS, TransitionError
from recon_pipelines_tests.test_tracker import T0, d, found

RECON = "crm_vs_billing"


@pytest.fixture
def tracker(tracker_url):
    t = Tracker(tracker_url)
    t.apply_run(RECON, "r1", found(d("1"), d("2"), d("3", severity="critical")), now=T0)
    yield t
    t.engine.dispose()


def status(tracker, key="1"):
    return tracker.get(f"{key}-amount")["status"]


def put_in(tracker, state: str, key: str = "1") -> None:
    """Drive discrepancy ``key`` into ``state`` through legal actions."""
    i = f"{key}-amount"
    path = {
        "new": [],
        "acknowledged": [("acknowledge", {})],
        "escalated": [("escalate", {})],
        "muted": [("mute", {"until": T0 + timedelta(days=30)})],
        "resolved": [("resolve", {"note": "fixed in billing"})],
    }[state]
    for action, extra in path:
        tracker.act([i], action, "ops@example.com", now=T0, **extra)
    assert status(tracker, key) == state


CASES = [(action, state) for action in TRANSITIONS for state in ("new", "acknowledged", "escalated", "muted", "resolved")]


@pytest.mark.parametrize("action,state", CASES)
def test_every_transition_is_allowed_or_refused_as_declared(tracker, action, state):
    put_in(tracker, state)
    extra = {"note": "why", "until": T0 + timedelta(days=60), "assignee": "ana"}
    rule = TRANSITIONS[action]
    before = tracker.history("1-amount")
    if state in rule.allowed_from:
        (row,) = tracker.act(["1-amount"], action, "ops@example.com", now=T0 + timedelta(hours=1), **extra)
        assert row["status"] == (rule.to or state)
        last = tracker.history("1-amount")[-1]
        assert (last["action"], last["actor"], last["from_status"], last["to_status"]) == (
            action, "ops@example.com", state, rule.to or state)
    else:
        with pytest.raises(TransitionError, match=f"cannot {action} discrepancy 1-amount: it is {state}"):
            tracker.act(["1-amount"], action, "ops@example.com", **extra)
        assert status(tracker) == state and tracker.history("1-amount") == before


def test_resolving_a_muted_one_says_to_unmute_first(tracker):
    put_in(tracker, "muted")
    with pytest.raises(TransitionError, match="must be unmuted first"):
        tracker.act(["1-amount"], "resolve", "ops", note="done")


def test_one_refused_id_changes_none(tracker):
    put_in(tracker, "resolved", key="2")
    with pytest.raises(TransitionError):
        tracker.act(["1-amount", "2-amount"], "acknowledge", "ops")
    assert status(tracker, "1") == "new"


def test_actions_need_their_arguments(tracker):
    with pytest.raises(TransitionError, match="note"):
        tracker.act(["1-amount"], "resolve", "ops")
    with pytest.raises(TransitionError, match="expiry"):
        tracker.act(["1-amount"], "mute", "ops")
    with pytest.raises(LookupError, match="nope"):
        tracker.act(["nope"], "acknowledge", "ops")


def test_manual_resolution_records_why_and_a_later_run_reopens(tracker):
    tracker.act(["1-amount"], "resolve", "ana", note="billing corrected by hand", now=T0)
    row = tracker.get("1-amount")
    assert (row["status"], row["resolution"]) == ("resolved", "manual")
    outcome = tracker.apply_run(RECON, "r2", found(d("1"), d("2"), d("3", severity="critical")), now=T0 + timedelta(days=1))
    assert outcome.reopened_ids == ["1-amount"]
    assert tracker.get("1-amount")["occurrence"] == 2


def test_mute_expires_at_the_next_run_after_its_expiry(tracker):
    tracker.act(["1-amount"], "mute", "ana", until=T0 + timedelta(days=2), note="known", now=T0)
    tracker.apply_run(RECON, "r2", found(d("1"), d("2"), d("3")), now=T0 + timedelta(days=1))
    assert status(tracker) == "muted"
    tracker.apply_run(RECON, "r3", found(d("1"), d("2"), d("3")), now=T0 + timedelta(days=3))
    assert status(tracker) == "new"
    assert tracker.history("1-amount")[-1]["note"] == "mute expired"


def test_escalation_by_severity_age_and_run_count(tracker):
    rules = EscalationSpec(severities=["critical"], after_open=2 * 86400, after_runs=3)
    rows = found(d("1"), d("2"), d("3", severity="critical"))
    tracker.apply_run(RECON, "r2", rows, now=T0 + timedelta(hours=1), escalation=rules)
    assert (status(tracker, "1"), status(tracker, "3")) == ("new", "escalated")
    assert tracker.history("3-amount")[-1]["note"] == "severity is critical"
    tracker.act(["2-amount"], "acknowledge", "ana", now=T0 + timedelta(hours=2))
    tracker.apply_run(RECON, "r3", rows, now=T0 + timedelta(days=3), escalation=rules)  # open > 2 days
    assert status(tracker, "1") == "escalated" and status(tracker, "2") == "escalated"
    assert tracker.history("1-amount")[-1]["note"] == "open longer than 2d"


def test_escalation_by_consecutive_runs(tracker):
    rules = EscalationSpec(after_runs=2)
    rows = found(d("1"))
    tracker.apply_run(RECON, "r2", rows, now=T0, escalation=rules)  # second consecutive sighting
    assert status(tracker) == "new"
    tracker.apply_run(RECON, "r3", rows, now=T0, escalation=rules)  # third: more than 2
    assert status(tracker) == "escalated"
    assert tracker.history("1-amount")[-1]["note"] == "seen in more than 2 consecutive runs"


def test_assign_and_comment_keep_the_status_and_are_audited(tracker):
    tracker.act(["1-amount"], "assign", "lead", assignee="ana", now=T0)
    tracker.act(["1-amount"], "comment", "ana", note="looking at billing export", now=T0)
    assert tracker.get("1-amount")["assignee"] == "ana" and status(tracker) == "new"
    notes = [(e["action"], e["actor"], e["note"]) for e in tracker.history("1-amount")[-2:]]
    assert notes == [("assign", "lead", "assigned to ana"), ("comment", "ana", "looking at billing export")]


def test_filters_by_age(tracker):
    assert {r["id"] for r in tracker.discrepancies(RECON, older_than=timedelta(days=1))} == {"1-amount", "2-amount", "3-amount"}
    tracker.act(["1-amount"], "resolve", "ana", note="x")
    tracker.act(["1-amount"], "reopen", "ana")
    assert "1-amount" not in {r["id"] for r in tracker.discrepancies(RECON, older_than=timedelta(days=1))}
