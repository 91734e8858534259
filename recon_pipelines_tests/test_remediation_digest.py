"""The daily digest on both tracker backends: what it lists (opened in the last day or still
open, muted aside, grouped by field), and that it is sent once per day even if asked twice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from recon_pipelines.remediation import enqueue_digests, notification_writer
from recon_pipelines.tracker import Tracker
from recon_pipelines_tests.remediation_support import RECON, deliverer, disc, found, make_spec
from recon_pipelines_tests.slack_fake import FakeSlack

T0 = datetime(2026, 11, 18, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def tracker(tracker_url):
    t = Tracker(tracker_url)
    yield t
    t.engine.dispose()


def test_digest_lists_the_last_day_and_what_is_still_open(tracker):
    spec = make_spec(escalation={})
    hook = notification_writer(spec)
    rows = [disc("1", "plan"), disc("2", "plan"), disc("3", "mrr"), disc("4", "mrr"), disc("5", None, kind="only_in_b"),
            disc("6", "email", "info")]
    tracker.apply_run(RECON, "r1", found(*rows), now=T0, on_outcome=hook)  # two days before the digest
    tracker.act(["4-mrr"], "mute", actor="ana", until=T0 + timedelta(days=30), now=T0)
    # The next day key 2 is gone (resolved, opened two days ago: not listed), key 7 appears.
    tracker.apply_run(RECON, "r2", found(*rows[:1], *rows[2:], disc("7", "plan")), now=T0 + timedelta(days=1),
                      on_outcome=hook)
    # The day of the digest, key 7 is fixed: resolved, but opened within the last day, so listed.
    tracker.apply_run(RECON, "r3", found(*rows[:1], *rows[2:]), now=T0 + timedelta(days=1, hours=20), on_outcome=hook)

    [digest] = enqueue_digests(tracker.engine, spec, now=T0 + timedelta(days=2))
    assert (digest.destination, digest.key) == ("digest", "digest:crm_vs_billing:2026-11-20")
    groups = {(g["field"], g["kind"]): g for g in digest.payload["groups"]}
    assert set(groups) == {("plan", None), ("mrr", None), (None, "only_in_b")}  # info (email) is not routed here
    assert (groups[("plan", None)]["open"], groups[("plan", None)]["resolved"]) == (1, 1)
    assert [e["key"] for e in groups[("plan", None)]["examples"]] == ["1", "7"]  # open ones first
    assert groups[("mrr", None)]["count"] == 1  # the muted one is left out
    assert digest.payload["total"] == 4


def test_a_digest_is_sent_once_a_day_and_nothing_when_nothing_is_listed(tracker):
    spec = make_spec(escalation={})
    assert enqueue_digests(tracker.engine, spec, now=T0) == []
    tracker.apply_run(RECON, "r1", found(disc("1", "plan")), now=T0, on_outcome=notification_writer(spec))
    with FakeSlack() as slack:
        send = deliverer(tracker.engine, spec, slack)
        for hours in (0, 1):  # the schedule fired twice on the 18th
            enqueue_digests(tracker.engine, spec, now=T0 + timedelta(hours=hours))
            send.deliver(now=T0 + timedelta(hours=hours))
        enqueue_digests(tracker.engine, spec, now=T0 + timedelta(days=1))
        send.deliver(now=T0 + timedelta(days=1))
        assert [m["channel"] for m in slack.messages] == ["#revenue-digest", "#revenue-digest"]
        assert "2026-11-19" in slack.messages[1]["text"]
