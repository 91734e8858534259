"""Delivery guarantees against real local servers, on both tracker backends: order per discrepancy
and destination, no blind Slack re-post after a timeout or a garbled answer, leases renewed and
fenced, one broken destination isolated, refusals retried from the CLI, and the one duplicate
window left (a crash after the provider accepted, before the row is marked) measured."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from recon_pipelines.cli import main as cli
from recon_pipelines.remediation import outbox
from recon_pipelines.tracker.schema import outbox as outbox_table
from recon_pipelines_tests.remediation_support import T0, deliverer, disc, make_spec, pager_env, run
from recon_pipelines_tests.remediation_support import receiver, slack, tracker  # noqa: F401 (fixtures)
from recon_pipelines_tests.slack_fake import FakeSlack

PAGER = [{"tier": "critical", "destinations": ["pager"]}]
POST = "/api/chat.postMessage"







def rows(tracker) -> list[dict]:
    with tracker.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(outbox_table).order_by(outbox_table.c.id))]


def now_plus(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def slack_keys(slack: FakeSlack) -> Counter:
    return Counter(m["metadata"]["event_payload"]["idempotency_key"] for m in slack.messages)


# --------------------------------------------------------------------------- order


def test_a_resolve_waits_for_its_trigger_and_never_overtakes_it(tracker, receiver):
    spec = make_spec(routing=PAGER, escalation={})
    run(tracker, spec, "r1", disc("1", severity="critical"))
    receiver.fail_next(502, times=4)  # the trigger's whole attempt fails: it retries in an hour
    deliverer(tracker.engine, spec, environ=pager_env(receiver), retry_delay=3600).deliver()
    run(tracker, spec, "r2", now=T0 + timedelta(minutes=5))  # resolved meanwhile: a resolve is queued

    # The trigger is not due yet; the resolve is due but must not go first.
    assert deliverer(tracker.engine, spec, environ=pager_env(receiver)).deliver().attempts == []
    assert receiver.bodies == []
    assert outbox.due_count(tracker.engine, datetime.now(timezone.utc)) == 0  # the sensor does not spin on it

    # Once the trigger is due, one pass sends both, trigger first.
    deliverer(tracker.engine, spec, environ=pager_env(receiver)).deliver(now=now_plus(7200))
    assert [b["event_action"] for b in receiver.bodies] == ["trigger", "resolve"]
    assert {b["dedup_key"] for b in receiver.bodies} == {"1-plan"}


def test_a_failed_trigger_holds_its_resolve_until_it_is_retried(tracker, receiver):
    spec = make_spec(routing=PAGER, escalation={})
    run(tracker, spec, "r1", disc("1", severity="critical"))
    receiver.fail_next(400, {}, {"status": "invalid event"})
    deliverer(tracker.engine, spec, environ=pager_env(receiver)).deliver()
    run(tracker, spec, "r2", now=T0 + timedelta(minutes=5))
    deliverer(tracker.engine, spec, environ=pager_env(receiver)).deliver()
    assert receiver.bodies == []  # a resolve alone would leave the trigger, sent later, open for good
    assert [(r["event"], r["status"]) for r in rows(tracker)] == [("opened", "failed"), ("resolved", "pending")]
    outbox.requeue(tracker.engine, datetime.now(timezone.utc), destination="pager")
    deliverer(tracker.engine, spec, environ=pager_env(receiver)).deliver()
    assert [b["event_action"] for b in receiver.bodies] == ["trigger", "resolve"]


# --------------------------------------------------------------------------- Slack: at most once


def test_a_slack_answer_slower_than_the_timeout_is_not_posted_again(tracker, slack):
    spec = make_spec()
    run(tracker, spec, "r1", disc("1", severity="critical"))
    slack.after_accept(delay=1.5)  # Slack posts the thread parent, then answers after the client gave up
    report = deliverer(tracker.engine, spec, slack, slack_timeout=0.5).deliver()
    assert report.count("delivered") == 3 and report.count("pending") == 0
    assert len(slack.requests_to(POST)) == 2  # the parent once, the reply once: no blind re-post
    assert "/api/conversations.history" in [r.path for r in slack.requests]
    [header] = slack.top_level()
    assert [m["thread_ts"] for m in slack.messages] == [None, header["ts"]]  # the reply found its thread
    by_key = {r["idempotency_key"]: r for r in rows(tracker)}
    assert by_key["run:crm_vs_billing:r1:full"]["external_ref"] == header["ts"]


def test_a_garbled_answer_is_looked_up_not_reposted_and_a_lost_post_is_posted_once(tracker, slack):
    spec = make_spec()
    run(tracker, spec, "r1", disc("1", severity="critical"), disc("2", severity="critical"))
    slack.after_accept(body=b'{"ok": true, "ts": ')  # posted, then an unreadable answer
    slack.fail_next(200, {"content-type": "application/json"}, b"{not json")  # never reached Slack
    report = deliverer(tracker.engine, spec, slack).deliver()
    assert report.count("delivered") == 3 + 2  # three Slack messages, two incidents
    assert sorted(slack_keys(slack).values()) == [1, 1, 1]


def test_slack_rate_limit_is_retried_in_the_call_and_never_duplicates(tracker, slack):
    spec = make_spec()
    run(tracker, spec, "r1", disc("1", severity="critical"))
    slack.fail_next(429, {"Retry-After": "3"}, {"ok": False, "error": "ratelimited"}, times=2)
    report = deliverer(tracker.engine, spec, slack).deliver()
    assert report.count("delivered") == 3 and sorted(slack_keys(slack).values()) == [1, 1]


# --------------------------------------------------------------------------- leases and fencing


def test_a_taken_over_claim_can_neither_send_nor_mark(tracker):
    spec = make_spec()
    run(tracker, spec, "r1", disc("1", severity="critical"))
    first = outbox.claim(tracker.engine, "a", T0, lease=1)
    second = outbox.claim(tracker.engine, "b", T0 + timedelta(seconds=2), lease=300)  # a's lease ran out
    assert [r.id for r in first] == [r.id for r in second]
    assert {r.token for r in first} == {1} and {r.token for r in second} == {2}
    row = first[0]
    assert not outbox.holds(tracker.engine, row.id, row.token)  # what a checks right before sending
    assert not outbox.mark_done(tracker.engine, row.id, row.token, "delivered", T0)
    assert outbox.renew(tracker.engine, {row.id: row.token}, T0) == [row.id]
    assert outbox.mark_done(tracker.engine, row.id, second[0].token, "delivered", T0)
    assert rows(tracker)[0]["status"] == "delivered"


@pytest.mark.parametrize("heartbeat", [True, False], ids=["heartbeat", "stalled-deliverer"])
def test_two_deliverers_with_a_tiny_lease_and_a_slow_slack_send_each_message_once(tracker, slack, heartbeat):
    spec = make_spec(notifications={"aggregate_above": 50})
    run(tracker, spec, "r1", *[disc(str(k), severity="critical") for k in range(8)])
    slack.after_accept(delay=0.25, times=9)  # every post outlasts a third of the lease; the pass, the lease
    # The first deliverer renews its lease, or (stalled: no heartbeat) lets it run out mid-pass.
    first = deliverer(tracker.engine, spec, slack, lease=0.6, heartbeat=heartbeat)
    second = deliverer(tracker.engine, spec, slack, lease=0.6)
    first_report = {}
    worker = threading.Thread(target=lambda: first_report.update(report=first.deliver()))
    worker.start()
    while outbox.due_count(tracker.engine, datetime.now(timezone.utc)) and worker.is_alive():
        time.sleep(0.01)  # until the first has claimed everything
    second_attempts = []
    while worker.is_alive():  # the second polls meanwhile, as a second sensor-launched run would
        second_attempts += second.deliver().attempts
        time.sleep(0.05)
    worker.join()
    second_attempts += second.deliver().attempts
    assert sorted(slack_keys(slack).values()) == [1] * 9  # 1 summary + 8 replies, none twice
    assert {r["status"] for r in rows(tracker)} == {"delivered"}
    assert all(r["locked_by"] is None for r in rows(tracker))
    taken_over = [a for a in first_report["report"].attempts if a.outcome == "taken_over"]
    if heartbeat:  # the lease held: the second deliverer never got a row
        assert [a for a in second_attempts if a.outcome == "delivered"] == [] and taken_over == []
    else:  # it took over mid-pass; the fencing token stopped the first from sending what it lost
        assert [a for a in second_attempts if a.outcome == "delivered" and a.destination == "alerts"]
        assert taken_over


# --------------------------------------------------------------------------- isolation and retry


def test_a_broken_destination_never_blocks_the_others_or_leaves_rows_locked(tracker, slack, caplog):
    spec = make_spec(notifications={"destinations": {
        "alerts": {"type": "slack", "channel": "#revenue-alerts"},
        "incidents": {"type": "queue", "url_env": "TEST_QUEUE_URL"},
    }}, routing=[{"tier": "critical", "destinations": ["incidents", "alerts"]}], escalation={})
    run(tracker, spec, "r1", disc("1", severity="critical"), disc("2", severity="critical"))
    dead_queue = "postgresql+psycopg2://recon:hunter2secret@127.0.0.1:1/recon"  # nothing listens on port 1
    report = deliverer(tracker.engine, spec, slack, environ={"TEST_QUEUE_URL": dead_queue}).deliver()
    assert report.by_destination()["alerts"] == Counter(delivered=3)
    assert report.by_destination()["incidents"] == Counter(pending=1)  # then that destination waited
    stored = rows(tracker)
    assert all(r["locked_by"] is None and r["locked_until"] is None for r in stored)
    [error] = [r["last_error"] for r in stored if r["last_error"]]
    assert "OperationalError" in error
    assert "hunter2secret" not in error and "hunter2secret" not in caplog.text


def test_refused_for_a_bad_token_or_channel_then_retried_from_the_cli(tracker, tracker_url, slack):
    spec = make_spec()
    run(tracker, spec, "r1", disc("1", severity="critical"))
    slack.token = "xoxb-rotated"  # our token is no longer valid
    report = deliverer(tracker.engine, spec, slack).deliver()
    assert [a.outcome for a in report.attempts if a.destination == "alerts"] == ["failed", "failed"]
    assert "invalid_auth" in report.attempts[0].detail
    assert deliverer(tracker.engine, spec, slack).deliver().attempts == []  # failed stays failed...

    listed = CliRunner().invoke(cli, ["notifications", "--tracker-url", tracker_url, "list", "--status", "failed",
                                      "--format", "json"])
    assert listed.exit_code == 0, listed.output
    failed = [json.loads(line) for line in listed.output.splitlines()]
    assert {(f["destination"], f["status"]) for f in failed} == {("alerts", "failed")} and len(failed) == 2
    assert "invalid_auth" in failed[0]["last_error"]

    slack.token, slack.channels = "xoxb-test-token", {"#general"}  # token fixed; now the channel is missing
    retried = CliRunner().invoke(cli, ["notifications", "--tracker-url", tracker_url, "retry", "-d", "alerts",
                                       "--since", "2025-01-01"])
    assert retried.output.strip() == "2 failed notification(s) requeued"
    report = deliverer(tracker.engine, spec, slack).deliver()
    assert "channel_not_found" in report.attempts[0].detail and report.count("failed") == 2

    slack.channels.add("#revenue-alerts")
    assert CliRunner().invoke(cli, ["notifications", "--tracker-url", tracker_url, "retry"]).exit_code == 0
    assert deliverer(tracker.engine, spec, slack).deliver().count("delivered") == 2
    [header] = slack.top_level("#revenue-alerts")
    assert len(slack.replies(header["ts"])) == 1


def test_retry_since_a_later_time_leaves_older_failures_alone(tracker, tracker_url):
    spec = make_spec()
    run(tracker, spec, "r1", disc("1", severity="critical"))
    with tracker.engine.begin() as conn:
        conn.execute(sa.update(outbox_table).values(status="failed", last_error="HTTP 400"))
    result = CliRunner().invoke(cli, ["notifications", "--tracker-url", tracker_url, "retry", "--since", "1h"])
    assert result.output.strip() == "0 failed notification(s) requeued"  # written at T0, long ago
    bad = CliRunner().invoke(cli, ["notifications", "--tracker-url", tracker_url, "retry", "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since 'yesterday' is neither a duration" in bad.output


# --------------------------------------------------------------------------- the window left: crash after accept


CRASH_AFTER_ACCEPT = textwrap.dedent("""
    import json, os, sys
    from types import SimpleNamespace
    from recon_pipelines.tracker import Tracker
    from recon_pipelines_tests.remediation_support import deliverer, make_spec

    url, slack_url, changes, environ = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])

    def crash(row):  # the provider accepted this row; the process dies before marking it
        os._exit(17)

    live = SimpleNamespace(base_url=slack_url) if slack_url else None
    deliverer(Tracker(url).engine, make_spec(**changes), live, environ=environ, lease=1, on_sent=crash).deliver()
""")


def crash_after_accept(tracker_url: str, slack_url: str, changes: dict, environ: dict) -> None:
    done = subprocess.run([sys.executable, "-c", CRASH_AFTER_ACCEPT, tracker_url, slack_url, json.dumps(changes),
                           json.dumps(environ)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 17, done.stderr


def test_crash_after_slack_accepted_is_found_by_its_key_on_restart(tracker, tracker_url, slack):
    spec = make_spec()
    run(tracker, spec, "r1", disc("1", severity="critical"))
    crash_after_accept(tracker_url, slack.base_url, {}, {})
    assert len(slack.messages) == 1 and rows(tracker)[0]["status"] == "pending"  # posted, never marked
    report = deliverer(tracker.engine, spec, slack).deliver(now=now_plus(2))  # once the 1 s lease ran out
    assert report.count("delivered") == 3
    assert sorted(slack_keys(slack).values()) == [1, 1]  # the parent was found, not posted again
    assert rows(tracker)[0]["external_ref"] == slack.messages[0]["ts"]
    assert slack.messages[1]["thread_ts"] == slack.messages[0]["ts"]
    assert slack.messages[0]["metadata"]["event_payload"]["idempotency_key"] == "crm_vs_billing/alerts/run:crm_vs_billing:r1:full"


def test_crash_after_pagerduty_accepted_sends_the_same_dedup_key_again(tracker, tracker_url, receiver):
    """The measured duplicate: PagerDuty gets the trigger twice with one dedup_key, which folds them into
    one alert; a generic webhook gets the same Idempotency-Key twice and must drop the second itself."""
    changes = {"routing": PAGER, "escalation": {}}
    spec = make_spec(**changes)
    run(tracker, spec, "r1", disc("1", severity="critical"))
    crash_after_accept(tracker_url, "", changes, pager_env(receiver))
    deliverer(tracker.engine, spec, environ=pager_env(receiver)).deliver(now=now_plus(2))
    assert [(b["event_action"], b["dedup_key"]) for b in receiver.bodies] == [("trigger", "1-plan")] * 2
    assert [r.headers["idempotency-key"] for r in receiver.requests] == ["open:1-plan:1"] * 2
    assert rows(tracker)[0]["status"] == "delivered"
