"""Notifications through the outbox to a real local Slack Web API (``FakeSlack``), on both tracker
backends: the right message per tier, one thread per run, aggregation, hostile values, 429 and
5xx retries, a Slack that is down during the run, no duplicates across reruns and restarts,
and resolutions replied in the original thread."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from recon_pipelines.remediation import notification_writer, outbox
from recon_pipelines.remediation.queue import IncidentQueue
from recon_pipelines.remediation.slack import ZWSP
from recon_pipelines.tracker import Tracker
from recon_pipelines.tracker.schema import outbox as outbox_table
from recon_pipelines_tests.remediation_support import RECON, T0, Sleeps, deliverer, disc, found, make_spec
from recon_pipelines_tests.remediation_support import run as run_found
from recon_pipelines_tests.remediation_support import slack, tracker  # noqa: F401 (fixtures)
from recon_pipelines_tests.slack_fake import FakeSlack

SUMMARY = {"rows_a": 1000, "rows_b": 1000, "matched": 1000}
POST = "/api/chat.postMessage"


def run(tracker: Tracker, spec, run_id: str, *rows: dict, now: datetime = T0, summary: dict = SUMMARY):
    return run_found(tracker, spec, run_id, *rows, now=now, summary=summary)


def statuses(tracker: Tracker, destination: str) -> dict[str, str]:
    with tracker.engine.connect() as conn:
        rows = conn.execute(sa.select(outbox_table.c.idempotency_key, outbox_table.c.status)
                            .where(outbox_table.c.destination == destination))
        return dict(rows.all())


def test_each_tier_goes_where_the_routing_says(tracker, slack, caplog, monkeypatch):
    monkeypatch.setenv("RECON_DAGSTER_URL", "http://dagster.example:3000/")
    spec = make_spec()
    run(tracker, spec, "r1", disc("1042", "plan", "critical", value_a="business", value_b="PRO"),
        disc("7", "mrr", "warning"), disc("8", "email", "info", value_a="a@x.com", value_b="b@y.com"))
    with caplog.at_level(logging.INFO, logger="recon_pipelines.tests.notifications"):
        report = deliverer(tracker.engine, spec, slack).deliver()
    assert report.count("failed") == 0

    # critical: Slack now, one thread for the run: the summary, then the discrepancy as a reply.
    [header] = slack.top_level("#revenue-alerts")
    assert header["text"].startswith("CRITICAL crm_vs_billing: 3 new discrepancies")
    [reply] = slack.replies(header["ts"])
    shown = FakeSlack.rendered_text(reply)
    assert reply["text"] == "[CRITICAL] crm_vs_billing: field_mismatch key 1042 field plan: crm=business, billing=PRO"
    for fact in ("*Key*\n1042", "*Field*\nplan", "*crm*\nbusiness", "*billing*\nPRO", "*Severity*\ncritical",
                 "*First seen*\n2025-01-06 08:00:00 UTC", ":rotating_light: *CRITICAL* New discrepancy"):
        assert fact in shown
    assert FakeSlack.control_tokens(reply) == ["http://dagster.example:3000/runs/r1|Dagster run"]
    assert reply["unfurl_links"] is False and reply["link_names"] is False
    # ... and an incident (the critical queue destination).
    [incident] = IncidentQueue(engine=tracker.engine, migrate_schema=False).claim(10, "test")
    assert (incident.discrepancy_id, incident.severity) == ("1042-plan", "critical")
    # warning: waits for the digest, nothing posted now; info: only logged.
    assert statuses(tracker, "digest") == {"open:7-mrr:1": "in_digest"}
    assert len(slack.messages) == 2
    assert "[recon notification -> trends] [INFO] crm_vs_billing: new field_mismatch key 8 field email" in caplog.text


def test_one_thread_per_run_and_resolutions_reply_in_it(tracker, slack):
    spec = make_spec()
    send = deliverer(tracker.engine, spec, slack)
    run(tracker, spec, "r1", disc("1", severity="critical"), disc("2", severity="critical"))
    send.deliver()
    run(tracker, spec, "r2", disc("1", severity="critical"), disc("2", severity="critical"),
        disc("3", severity="critical"), now=T0 + timedelta(hours=1))
    send.deliver()
    first, second = slack.top_level("#revenue-alerts")
    assert [m["text"].split(":")[1] for m in slack.replies(first["ts"])] == [" field_mismatch key 1 field plan",
                                                                             " field_mismatch key 2 field plan"]
    assert [m["text"] for m in slack.replies(second["ts"])] == [
        "[CRITICAL] crm_vs_billing: field_mismatch key 3 field plan: crm=pro, billing=BIZ"]

    # Key 1 is fixed: its resolution is a reply in the thread where it was announced.
    run(tracker, spec, "r3", disc("2", severity="critical"), disc("3", severity="critical"), now=T0 + timedelta(hours=2))
    send.deliver()
    resolved = slack.replies(first["ts"])[-1]
    assert resolved["text"].startswith("[RESOLVED] crm_vs_billing: field_mismatch key 1 field plan")
    assert ":white_check_mark: *RESOLVED* No longer seen" in FakeSlack.rendered_text(resolved)
    assert len(slack.top_level()) == 2  # a run that only resolves opens no thread


def test_more_new_discrepancies_than_the_threshold_make_one_message(tracker, slack):
    spec = make_spec()  # aggregate_above: 3, top_examples: 2
    rows = [disc(str(k), "plan", "critical") for k in range(1, 5)] + [disc("9", None, "critical", kind="only_in_a")]
    run(tracker, spec, "r1", *rows)
    deliverer(tracker.engine, spec, slack).deliver()
    [message] = slack.messages
    shown = FakeSlack.rendered_text(message)
    assert "5 for this channel, more than 3: one summary instead of one message each." in shown
    assert "• `field_mismatch` / plan: 4\n• `only_in_a`: 1" in shown
    assert "Top examples:\n• field_mismatch key 1 plan: pro / BIZ\n• field_mismatch key 2 plan: pro / BIZ" in shown
    assert sorted(statuses(tracker, "alerts").values()) == ["covered"] * 5 + ["delivered"]
    # The incident queue is not aggregated: one incident per discrepancy.
    assert IncidentQueue(engine=tracker.engine, migrate_schema=False).counts() == {"pending": 5}

    # Resolving them all is one message too.
    run(tracker, spec, "r2", now=T0 + timedelta(hours=1))
    deliverer(tracker.engine, spec, slack).deliver()
    assert len(slack.messages) == 2
    assert "5 discrepancies no longer seen in this run" in FakeSlack.rendered_text(slack.messages[1])


def test_hostile_values_cannot_ping_or_forge_links(tracker, slack):
    spec = make_spec()
    run(tracker, spec, "r1", disc("<!channel>", "plan", "critical", value_a="<!here> @everyone",
                                  value_b="<https://evil.example/pay|Click to confirm>"))
    deliverer(tracker.engine, spec, slack).deliver()
    for message in slack.messages:
        # The only <...> Slack would interpret is the run link we built from the configured URL.
        assert FakeSlack.control_tokens(message) == ["http://127.0.0.1:3000/runs/r1|Dagster run"]
    shown = FakeSlack.rendered_text(slack.messages[1])
    assert "&lt;!channel&gt;" in shown and "&lt;https:\u200b//evil.\u200bexample/pay|Click to confirm&gt;" in shown
    assert "@\u200beveryone" in shown


def _unformatted(text: str) -> bool:
    """No formatting character Slack could pair: each has an invisible space on both sides."""
    return all(text[i - 1:i] == ZWSP and text[i + 1:i + 2] == ZWSP for i, c in enumerate(text) if c in "*_~`")


def test_formatting_characters_and_bare_links_in_values_stay_literal(tracker, slack):
    spec = make_spec()
    value_a = "*bold* _it_ ~gone~ `code` ```block```"
    value_b = "pay at evil.example or www.evil.example/x, mail ceo@evil.example, 12.50 EUR"
    run(tracker, spec, "r1", disc("k*1*", "plan", "critical", value_a=value_a, value_b=value_b))
    deliverer(tracker.engine, spec, slack).deliver()
    reply = slack.messages[1]
    fields = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in reply["blocks"][1]["fields"]}
    for label in ("*Key*", "*crm*", "*billing*"):  # the labels are ours; the values are data
        assert _unformatted(fields[label]), fields[label]
        assert fields[label].replace(ZWSP, "") in ("k*1*", value_a, value_b)  # nothing lost but the invisible marks
    assert re.search(r"\b(?:www\.)?evil\.example\b", fields["*billing*"]) is None  # no domain Slack would link
    assert "ceo@evil.\u200bexample" in fields["*billing*"] and "12.50 EUR" in fields["*billing*"]
    assert _unformatted(reply["text"].replace("[CRITICAL] crm_vs_billing: field_mismatch", ""))


def test_rate_limit_honours_retry_after_and_5xx_backs_off(tracker, slack):
    spec = make_spec()
    run(tracker, spec, "r1", disc("1", severity="critical"))
    slack.fail_next(429, {"Retry-After": "7"}, {"ok": False, "error": "ratelimited"})
    slack.fail_next(500, {}, "upstream hiccup")
    sleeps = Sleeps()
    report = deliverer(tracker.engine, spec, slack, sleeps=sleeps).deliver()
    assert report.count("delivered") == 2 + 1  # thread parent and reply, and the incident
    assert len(slack.requests_to(POST)) == 4  # 429, 500, then the parent; then the reply
    assert sleeps[0] == 7  # Retry-After, as asked
    assert sleeps[1] == pytest.approx(0.01)  # backoff 0.01 * 2 ** attempt
    # A 500 may come after Slack posted: it was looked up (not there) before posting again.
    assert [r.path for r in slack.requests][:5] == [POST, POST, "/api/conversations.list",
                                                    "/api/conversations.history", POST]
    assert len(slack.messages) == 2


def test_a_slack_that_stays_down_leaves_everything_pending_then_all_arrives_once(tracker, slack):
    spec = make_spec()
    with FakeSlack() as gone:
        dead_url = gone.base_url  # a port nothing listens on once this block ends
    run(tracker, spec, "r1", disc("1", severity="critical"), disc("2", severity="critical"))

    report = deliverer(tracker.engine, spec, SimpleNamespace(base_url=dead_url)).deliver()
    assert [a.outcome for a in report.attempts if a.destination == "alerts"] == ["pending"]  # then it stopped trying
    assert set(statuses(tracker, "alerts").values()) == {"pending"}
    assert report.count("delivered") == 2  # the incident queue was up: its deliveries did not wait

    # It comes back: the next attempt (the sensor, or the next run) delivers everything, in order, once.
    report = deliverer(tracker.engine, spec, slack).deliver()
    assert report.count("delivered") == 3
    [header] = slack.top_level()
    assert [m["text"][:43] for m in slack.replies(header["ts"])] == [
        "[CRITICAL] crm_vs_billing: field_mismatch k"] * 2
    assert deliverer(tracker.engine, spec, slack).deliver().attempts == []
    assert len(slack.messages) == 3


def test_nothing_is_sent_twice_across_reruns_and_process_restarts(tracker, tracker_url, slack):
    spec = make_spec()
    rows = [disc("1", severity="critical"), disc("2", severity="critical")]
    run(tracker, spec, "r1", *rows)
    deliverer(tracker.engine, spec, slack).deliver()
    assert len(slack.messages) == 3

    # The same Dagster step retried (same run id): the tracker ignores it, so no notification.
    assert run(tracker, spec, "r1", *rows).already_applied
    # A later run seeing the same discrepancies: seen again, never re-announced.
    run(tracker, spec, "r2", *rows, now=T0 + timedelta(hours=1))
    # A restarted process: fresh engine, fresh objects, same database.
    fresh = Tracker(tracker_url)
    assert deliverer(fresh.engine, spec, slack).deliver().attempts == []
    fresh.engine.dispose()
    # And a real separate process, delivering from the same database.
    script = textwrap.dedent(f"""
        import sys
        from recon_pipelines.tracker import Tracker
        from recon_pipelines_tests.remediation_support import deliverer, make_spec
        from types import SimpleNamespace
        live = SimpleNamespace(base_url={slack.base_url!r})  # the running fake, in the parent process
        report = deliverer(Tracker(sys.argv[1]).engine, make_spec(), live).deliver()
        print(len(report.attempts))
    """)
    done = subprocess.run([sys.executable, "-c", script, tracker_url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    assert len(slack.messages) == 3


def test_a_claimed_row_is_not_sent_by_another_deliverer_until_its_lease_expires(tracker, slack):
    spec = make_spec()
    run(tracker, spec, "r1", disc("1", severity="critical"))
    # A deliverer claims the rows and dies before sending anything.
    claimed = outbox.claim(tracker.engine, "crashed-worker", T0, lease=300)
    assert len(claimed) == 3
    assert deliverer(tracker.engine, spec, slack).deliver(now=T0 + timedelta(seconds=10)).attempts == []
    # Once the lease has run out, another deliverer takes over.
    report = deliverer(tracker.engine, spec, slack).deliver(now=T0 + timedelta(seconds=301))
    assert report.count("delivered") == 3 and len(slack.messages) == 2


def test_escalation_routes_again_as_critical_but_never_twice(tracker, slack):
    spec = make_spec()  # escalation: after_runs 2
    run(tracker, spec, "r1", disc("1", "mrr", "warning"), disc("2", "plan", "critical"))
    send = deliverer(tracker.engine, spec, slack)
    send.deliver()
    run(tracker, spec, "r2", disc("1", "mrr", "warning"), disc("2", "plan", "critical"), now=T0 + timedelta(hours=1))
    send.deliver()
    assert len(slack.messages) == 2  # seen again: nothing new
    outcome = run(tracker, spec, "r3", disc("1", "mrr", "warning"), disc("2", "plan", "critical"),
                  now=T0 + timedelta(hours=2))
    assert sorted(outcome.escalated_ids) == ["1-mrr", "2-plan"]
    send.deliver()
    # The warning, escalated, now reaches the critical destinations; the critical one was told already.
    header = slack.top_level()[-1]
    assert [m["text"] for m in slack.replies(header["ts"])] == [
        "[CRITICAL] crm_vs_billing: field_mismatch key 1 field mrr: crm=pro, billing=BIZ"]
    assert ":rotating_light: *CRITICAL* Escalated" in FakeSlack.rendered_text(slack.replies(header["ts"])[0])
    assert statuses(tracker, "incidents") == {"open:1-mrr:1": "delivered", "open:2-plan:1": "delivered"}


def test_a_run_where_many_records_disagree_escalates_its_summary(tracker, slack):
    spec = make_spec(severity={"run": [{"tier": "critical", "share_above": 0.01}]})
    rows = [disc(str(k), "mrr", "warning") for k in range(12)]  # 12 of 1000 records: 1.2%
    run(tracker, spec, "r1", *rows)
    deliverer(tracker.engine, spec, slack).deliver()
    [summary] = slack.messages  # warnings go to the digest; the run summary itself is critical
    shown = FakeSlack.rendered_text(summary)
    assert "Run escalated to *critical*: 1.2% of 1000 records disagree (more than 1.0%)" in shown
    [incident] = IncidentQueue(engine=tracker.engine, migrate_schema=False).claim(5, "test")
    assert (incident.discrepancy_id, incident.dedup_key) == (None, "run:crm_vs_billing:r1:full")
    # A run with 1% or less: warnings only, nothing sent now.
    run(tracker, spec, "r2", *rows[:10], now=T0 + timedelta(hours=1))
    deliverer(tracker.engine, spec, slack).deliver()
    assert len(slack.messages) == 1


def test_without_a_token_messages_are_logged_and_clearly_marked(tracker, caplog):
    spec = make_spec()
    run(tracker, spec, "r1", disc("1042", "plan", "critical"))
    with caplog.at_level(logging.INFO, logger="recon_pipelines.tests.notifications"):
        deliverer(tracker.engine, spec, None).deliver()
    assert "[slack dry-run: no SLACK_BOT_TOKEN] #revenue-alerts: [CRITICAL] crm_vs_billing: 1 new" in caplog.text
    assert ("[slack dry-run: no SLACK_BOT_TOKEN] #revenue-alerts (reply in thread dry-run-1): "
            "[CRITICAL] crm_vs_billing: new field_mismatch key 1042 field plan") in caplog.text
    assert set(statuses(tracker, "alerts").values()) == {"logged"}
    # A token is set later: the resolution cannot reply in a thread that was only logged; it stands alone.
    run(tracker, spec, "r2", now=T0 + timedelta(hours=1))
    with FakeSlack() as slack:
        assert deliverer(tracker.engine, spec, slack).deliver().count("failed") == 0
        [resolved] = slack.messages
    assert resolved["thread_ts"] is None and resolved["text"].startswith("[RESOLVED]")


def test_a_refused_message_is_failed_with_the_reason_and_not_retried(tracker):
    spec = make_spec()
    run(tracker, spec, "r1", disc("1", severity="critical"))
    with FakeSlack(channels={"#general"}) as slack:
        report = deliverer(tracker.engine, spec, slack).deliver()
        assert [a.outcome for a in report.attempts if a.destination == "alerts"] == ["failed", "failed"]
        assert "channel_not_found" in report.attempts[0].detail
        assert deliverer(tracker.engine, spec, slack).deliver().attempts == []
        assert len(slack.requests) == 2


def test_an_operator_resolve_is_announced_too(tracker, slack):
    spec = make_spec()
    run(tracker, spec, "r1", disc("1", severity="critical"))
    deliverer(tracker.engine, spec, slack).deliver()
    tracker.act(["1-plan"], "resolve", actor="ana", note="billing corrected by hand")
    deliverer(tracker.engine, spec, slack).deliver()
    header = slack.top_level()[0]
    assert slack.replies(header["ts"])[-1]["text"].startswith("[RESOLVED] crm_vs_billing: field_mismatch key 1")
    incident = IncidentQueue(engine=tracker.engine, migrate_schema=False).get(1)
    assert incident.status == "resolved" and incident.resolved_at is not None


def test_outbox_rows_exist_only_if_the_tracker_change_committed(tracker):
    spec = make_spec()

    def explode(conn, outcome, now):
        notification_writer(spec)(conn, outcome, now)
        raise RuntimeError("killed before commit")

    with pytest.raises(RuntimeError):
        tracker.apply_run(RECON, "r1:full", found(disc("1", severity="critical")), on_outcome=explode)
    with tracker.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(outbox_table)) == 0
    assert tracker.discrepancies(RECON) == []
    run(tracker, spec, "r1", disc("1", severity="critical"))
    assert json.loads(json.dumps(statuses(tracker, "alerts"))) == {"run:crm_vs_billing:r1:full": "pending",
                                                                  "open:1-plan:1": "pending"}


def test_run_failure_message_escapes_the_error_text():
    from recon_pipelines.remediation.slack import message_for

    payload = {"event": "run_failed", "reconciliation": "crm_vs_billing", "run_id": "r1", "run_url": "http://x/runs/r1",
               "job_name": "recheck_crm_vs_billing", "message": "boom <!channel> <http://evil|click>",
               "source_a": "crm", "source_b": "billing"}
    text, blocks = message_for("run_failed", payload, "critical")
    rendered = str(blocks)
    assert "recheck_crm_vs_billing" in text and "<!channel>" not in rendered and "<http://evil" not in rendered
