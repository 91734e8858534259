"""Routing rules, run-level tiers, the spec's validation of notifications and fixes, and the
escaping of values from the data in Slack messages (pure functions: no servers, no database)."""

from __future__ import annotations

import pytest

from recon_pipelines.remediation.routing import RunShape, destinations_for, highest, run_tier
from recon_pipelines.remediation.slack import ZWSP, discrepancy_message, escape
from recon_pipelines.spec import SpecError, parse_spec
from recon_pipelines.spec.models import RunSeverityRule
from recon_pipelines_tests.remediation_support import SPEC, make_spec
from recon_pipelines_tests.slack_fake import FakeSlack


def test_first_matching_rule_decides():
    spec = make_spec(routing=[
        {"tier": "warning", "field": "plan", "destinations": ["alerts"]},
        {"tier": ["warning", "info"], "kind": "only_in_b", "destinations": ["incidents"]},
        {"tier": "warning", "destinations": ["digest"]},
        {"destinations": ["trends"]},
    ])
    assert destinations_for(spec.routing, "warning", "field_mismatch", "plan") == ["alerts"]
    assert destinations_for(spec.routing, "info", "only_in_b", None) == ["incidents"]
    assert destinations_for(spec.routing, "warning", "field_mismatch", "mrr") == ["digest"]
    assert destinations_for(spec.routing, "critical", "only_in_a", None) == ["trends"]
    # A run summary has no kind and no field: rules filtering on them never match it.
    assert destinations_for(spec.routing[:2], "warning") == []


def test_no_routing_means_no_destination():
    assert destinations_for([], "critical", "only_in_a", None) == []


def test_highest_tier():
    assert highest(["info", None, "warning"]) == "warning"
    assert highest(["info", "critical"]) == "critical"
    assert highest([None]) is None


@pytest.mark.parametrize("shape, expected", [
    (RunShape(affected=11, records=1000), "critical"),  # 1.1% > 1%
    (RunShape(affected=10, records=1000), None),  # exactly 1% is not more than 1%
    (RunShape(affected=600, records=None), "warning"),  # share unknown: only the count rule can match
])
def test_run_level_rules(shape, expected):
    rules = [RunSeverityRule(tier="critical", share_above=0.01), RunSeverityRule(tier="warning", count_above=500)]
    result = run_tier(rules, shape)
    assert (result[0] if result else None) == expected


def test_run_rule_needs_a_condition():
    with pytest.raises(ValueError, match="give count_above or share_above"):
        RunSeverityRule(tier="critical")


# --------------------------------------------------------------------------- spec validation


def _error(**changes) -> str:
    raw = {**SPEC, **changes}
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    return str(info.value)


def test_routing_to_an_undeclared_destination_is_refused():
    message = _error(routing=[{"tier": "critical", "destinations": ["pagerduty"]}])
    assert message == ("<spec>: routing.0.destinations: unknown destination(s) pagerduty "
                       "(declared under notifications.destinations: alerts, digest, incidents, pager, trends)")


def test_routing_on_an_unknown_field_is_refused():
    assert _error(routing=[{"field": "plann", "destinations": ["alerts"]}]) == \
        "<spec>: routing.0.field: unknown field(s) plann"


def test_pagerduty_mode_needs_a_routing_key_variable():
    notifications = {"destinations": {"pager": {"type": "webhook", "url_env": "PD_URL", "mode": "pagerduty"}}}
    assert _error(notifications=notifications, routing=[]) == (
        "<spec>: notifications.destinations.pager: mode pagerduty needs routing_key_env "
        "(the variable holding the integration's routing key)")


def test_unknown_destination_type_names_the_choices():
    notifications = {"destinations": {"team": {"type": "email", "to": "x@example.com"}}}
    assert _error(notifications=notifications, routing=[]) == (
        "<spec>: notifications.destinations.team: unknown value 'email'; "
        "expected one of 'slack', 'slack_digest', 'queue', 'webhook', 'log'")


def test_bad_digest_cron():
    assert _error(notifications={"digest": {"cron": "every day"}}, routing=[]) == \
        "<spec>: notifications.digest.cron: 'every day' is not a cron expression with 5 fields, such as '0 8 * * *'"


def test_fix_of_a_file_side_needs_a_sql_target():
    fixes = [{"field": "plan", "action": "sql_update", "system_of_record": "b"}]  # would change the CSV side a
    assert _error(fixes=fixes) == "<spec>: fixes.0.target: the side to change is not a SQL table; give url or url_env and table"


def test_fix_of_an_unknown_field():
    fixes = [{"field": "plam", "action": "sql_update", "system_of_record": "b",
              "target": {"url": "sqlite:///x.db", "table": "t"}}]
    assert _error(fixes=fixes) == "<spec>: fixes.0.field: unknown field 'plam'"


def test_fix_option_errors_name_the_option_not_the_union_member():
    fixes = [{"field": "plan", "action": "http_call", "system_of_record": "b", "target": {"url": "http://x", "verb": "PUT"}}]
    assert _error(fixes=fixes) == "<spec>: fixes.0.target.verb: unknown option"


def test_fixes_are_off_and_dry_by_default():
    spec = make_spec(fixes=[{"field": "plan", "action": "sql_update", "system_of_record": "b",
                             "target": {"url": "sqlite:///x.db", "table": "customers"}}])
    assert (spec.fixes[0].allowed, spec.fixes[0].dry_run, spec.fixes[0].max_changes) == (False, True, 100)


def test_notification_defaults():
    spec = parse_spec({k: v for k, v in SPEC.items() if k not in ("notifications", "routing")})
    n = spec.notifications
    assert (n.aggregate_above, n.slack_token_env, n.dagster_url_env) == (20, "SLACK_BOT_TOKEN", "RECON_DAGSTER_URL")
    assert (n.digest.cron, n.digest.default_status, n.digest.lookback) == ("0 8 * * *", "stopped", 86400.0)
    assert spec.routing == [] and spec.fixes == []


# --------------------------------------------------------------------------- escaping


@pytest.mark.parametrize("hostile, shown", [
    ("<!channel> pay now", "&lt;!channel&gt; pay now"),
    ("<https://evil.example/login|Reset your password>",
     f"&lt;https:{ZWSP}//evil.{ZWSP}example/login|Reset your password&gt;"),
    ("@here look", f"@{ZWSP}here look"),
    ("@Everyone", f"@{ZWSP}Everyone"),
    ("<@U024BE7LH>", "&lt;@U024BE7LH&gt;"),
    ("AT&T", "AT&amp;T"),
    ("http://bare.example", f"http:{ZWSP}//bare.{ZWSP}example"),
    ("see evil.com or a@b.io", f"see evil.{ZWSP}com or a@b.{ZWSP}io"),  # Slack links bare domains and addresses
    ("12.50 and v1.2", "12.50 and v1.2"),  # numbers stay as they are
    ("*bold* _it_", f"{ZWSP}*{ZWSP}bold{ZWSP}*{ZWSP} {ZWSP}_{ZWSP}it{ZWSP}_{ZWSP}"),
    ("~x~ `y`", f"{ZWSP}~{ZWSP}x{ZWSP}~{ZWSP} {ZWSP}`{ZWSP}y{ZWSP}`{ZWSP}"),
    ("nul\x00here", "nul\ufffdhere"),
    (None, "∅"),
])
def test_escape_neutralises_mentions_and_links(hostile, shown):
    assert escape(hostile) == shown


def test_escape_truncates_long_values():
    assert escape("x" * 1000) == "x" * 299 + "…"


def test_a_message_built_from_hostile_values_has_only_our_link():
    payload = {"event": "opened", "reconciliation": "crm_vs_billing", "discrepancy_id": "abc", "kind": "field_mismatch",
               "key": "<!here>", "field": "plan", "reason": "value_differs", "detail": "<http://x|y>",
               "value_a": "<!channel>", "value_b": "<https://evil|click>", "severity": "critical", "first_seen":
               "2026-11-20T08:00:00+00:00", "occurrence": 1, "source_a": "crm", "source_b": "billing",
               "run_url": "http://dagster.local/runs/r1"}
    text, blocks = discrepancy_message(payload, "critical")
    # Slack interprets <...> sequences (mentions, links): the only one is the run link we built.
    assert FakeSlack.control_tokens({"text": text, "blocks": blocks}) == ["http://dagster.local/runs/r1|Dagster run"]
    assert "&lt;!channel&gt;" in FakeSlack.rendered_text({"text": text, "blocks": blocks})
