"""Automatic fixes: end to end on the demo (dry run, then real, then the comparison that confirms
it), and the guards: allow-list, max_changes, a target changed meanwhile, HTTP targets."""

from __future__ import annotations

import csv
import sqlite3
import dagster as dg
import pytest
import sqlalchemy as sa

from recon_pipelines.dagster_defs import build_definitions
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.demo import DEMO_DATA_ENV, DEMO_SPECS_DIR, generate_demo
from recon_pipelines.remediation import run_fixes
from recon_pipelines.remediation.fixes import _SqlTarget
from recon_pipelines.spec import parse_spec
from recon_pipelines.tracker import Tracker
from recon_pipelines.tracker.schema import fixes as fixes_table
from recon_pipelines_tests.http_fakes import FakeServer
from recon_pipelines_tests.remediation_support import RECON, disc, found

WEEK = {"dagster/asset_partition_range_start": "2026-11-13", "dagster/asset_partition_range_end": "2026-11-19"}
APPLY = {"ops": {"crm_vs_billing__fixes": {"config": {"dry_run": False}}}}
CODES = {"STR": "starter", "PRO": "pro", "BIZ": "business", "ENT": "enterprise"}
RECON_DEMO = "crm_vs_billing"


def crm_plans(data) -> dict[str, str]:
    with sqlite3.connect(data / "crm.sqlite") as con:
        return {str(k): v for k, v in con.execute("SELECT customer_id, plan FROM customers")}


def test_demo_fix_dry_run_then_real_then_confirmed_by_the_next_comparison(tmp_path, monkeypatch):
    data = tmp_path / "data"
    truth = generate_demo(data)
    monkeypatch.setenv(DEMO_DATA_ENV, str(data))
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    recon = ReconResource(storage_dir=str(tmp_path / "store"), tracker_url=f"sqlite:///{tmp_path / 'tracker.sqlite'}")
    defs = build_definitions(DEMO_SPECS_DIR, recon=recon)
    job = defs.resolve_job_def("reconcile_crm_vs_billing")
    tracker = Tracker(recon.tracker_url)
    plan_keys = sorted(d["key"] for d in truth["reconciliations"]["crm_vs_billing"]["discrepancies"]
                       if d.get("field") == "plan")
    with open(data / "billing.csv", newline="") as f:
        billed = {row["crm_customer_id"]: CODES[row["plan_code"]] for row in csv.DictReader(f)}
    before = crm_plans(data)

    def fixes_metadata(result) -> dict:
        [event] = {e.materialization.asset_key.path[-1]: e for e in result.get_asset_materialization_events()
                   if e.materialization.asset_key.path[-1] == "fixes"}.values()
        return {k: v.value for k, v in event.materialization.metadata.items()}

    with dg.instance_for_test() as instance:
        # 1. The spec's default: a dry run. It shows every change and makes none.
        dry = job.execute_in_process(instance=instance, tags=WEEK)
        # (The demo's routing, without a Slack token: the messages are in the run's log, clearly marked.)
        logs = "\n".join(e.user_message for e in instance.all_logs(dry.run_id))
        assert "[slack dry-run: no SLACK_BOT_TOKEN] #revenue-alerts: [CRITICAL] crm_vs_billing: 50 new" in logs
        assert "[slack dry-run: no SLACK_BOT_TOKEN] #revenue-alerts (reply in thread dry-run-" in logs
        meta = fixes_metadata(dry)
        assert (meta["plan/dry_run"], meta["plan/planned"], meta["plan/applied"]) == (True, len(plan_keys), 0)
        for key in plan_keys:
            assert f"| {key} | {before[key]} | {billed[key]} | would change (dry run) |" in meta["plan/changes"]
        assert crm_plans(data) == before
        with tracker.engine.connect() as conn:
            assert conn.scalar(sa.select(sa.func.count()).select_from(fixes_table)) == 0

        # 2. For real: the CRM rows change, and the audit trail says from what to what.
        real = job.execute_in_process(instance=instance, tags=WEEK, run_config=APPLY)
        assert fixes_metadata(real)["plan/applied"] == len(plan_keys)
        after = crm_plans(data)
        assert {k: after[k] for k in plan_keys} == {k: billed[k] for k in plan_keys}
        assert {k: v for k, v in after.items() if k not in plan_keys} == {k: v for k, v in before.items()
                                                                         if k not in plan_keys}
        with tracker.engine.connect() as conn:
            audit = conn.execute(sa.select(fixes_table).order_by(fixes_table.c.key)).mappings().all()
        assert [(a["key"], a["value_before"], a["value_after"], a["outcome"], a["actor"]) for a in audit] == [
            (k, before[k], billed[k], "applied", "recon-fix") for k in plan_keys]
        assert all(a["run_id"] == real.run_id and "customers.plan" in a["target"] for a in audit)
        fixed = [r for r in tracker.discrepancies(RECON_DEMO) if r["field"] == "plan"]
        assert {r["status"] for r in fixed} == {"new"}  # still open: nothing has confirmed it yet
        history = tracker.history(fixed[0]["id"])
        assert history[-1]["action"] == "fix_applied"
        assert f"plan: '{before[fixed[0]['key']]}' -> '{billed[fixed[0]['key']]}'" in history[-1]["note"]

        # 3. The next comparison no longer sees them: resolved automatically; nothing is fixed twice.
        confirm = job.execute_in_process(instance=instance, tags=WEEK, run_config=APPLY)
        assert fixes_metadata(confirm)["plan/planned"] == 0
    plans = {r["key"]: r for r in tracker.discrepancies(RECON_DEMO) if r["field"] == "plan"}
    assert {(r["status"], r["resolution"]) for r in plans.values()} == {("resolved", "auto")}
    assert [e["action"] for e in tracker.history(plans[plan_keys[0]]["id"])] == ["detected", "fix_applied", "resolved"]
    # The other discrepancies of those customers (their amounts) are untouched and still open.
    assert {r["status"] for r in tracker.discrepancies(RECON_DEMO) if r["key"] in plan_keys and r["field"] == "mrr"} \
        == {"new"}
    tracker.engine.dispose()


# --------------------------------------------------------------------------- the guards


@pytest.fixture
def crm(tmp_path):
    path = tmp_path / "crm.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, plan TEXT)")
        con.executemany("INSERT INTO customers VALUES (?, ?)", [(1, "pro"), (2, "pro"), (3, "starter")])
    return path


def sql_spec(crm, **fix):
    return parse_spec({
        "name": RECON, "key": "customer_id", "fields": {"plan": "exact"},
        "source_a": {"type": "sql", "name": "crm", "url": f"sqlite:///{crm}", "table": "customers"},
        "source_b": {"type": "file", "name": "billing", "path": "billing.csv"},
        "fixes": [{"field": "plan", "action": "sql_update", "system_of_record": "b", "values": CODES, **fix}],
    })


@pytest.fixture
def tracker(tracker_url):
    t = Tracker(tracker_url)
    t.apply_run(RECON, "r1", found(disc("1", value_a="pro", value_b="BIZ"), disc("2", value_a="pro", value_b="ENT"),
                                   disc("3", value_a="starter", value_b=None, reason="null_in_b")))
    yield t
    t.engine.dispose()


def audit_rows(tracker) -> list[tuple]:
    with tracker.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(fixes_table.c.key, fixes_table.c.value_before,
                                                         fixes_table.c.value_after, fixes_table.c.outcome)
                                               .order_by(fixes_table.c.key))]


def test_a_fix_that_is_not_allowed_does_nothing(tracker, crm):
    [report] = run_fixes(tracker.engine, sql_spec(crm), dry_run=False)
    assert report.refused.startswith("the fix of plan is not allowed")
    assert report.planned == [] and audit_rows(tracker) == []
    assert sqlite3.connect(crm).execute("SELECT plan FROM customers ORDER BY customer_id").fetchall() == [
        ("pro",), ("pro",), ("starter",)]


def test_more_changes_than_max_changes_and_none_is_made(tracker, crm):
    [report] = run_fixes(tracker.engine, sql_spec(crm, allowed=True, dry_run=False, max_changes=1))
    assert report.refused == "2 changes planned, more than max_changes (1): none made; check the comparison, or raise the limit"
    assert report.applied == [] and audit_rows(tracker) == []


def test_applied_once_and_a_null_system_of_record_is_never_copied(tracker, crm):
    spec = sql_spec(crm, allowed=True, dry_run=False)
    [report] = run_fixes(tracker.engine, spec)
    assert [(c.key, c.before, c.after) for c in report.applied] == [("1", "pro", "business"), ("2", "pro", "enterprise")]
    assert audit_rows(tracker) == [("1", "pro", "business", "applied"), ("2", "pro", "enterprise", "applied")]
    [again] = run_fixes(tracker.engine, spec)  # before the next comparison: nothing to do twice
    assert again.planned == [] and len(audit_rows(tracker)) == 2


def test_a_row_changed_since_it_was_read_is_not_overwritten(crm):
    target = _SqlTarget(sql_spec(crm), sql_spec(crm).fixes[0], {})
    assert target.write("1", before="starter", after="business") is False  # it holds "pro", not "starter"
    assert target.write("1", before="pro", after="business") is True
    assert sqlite3.connect(crm).execute("SELECT plan FROM customers WHERE customer_id = 1").fetchone() == ("business",)


def test_http_call_fix_with_dry_run_then_real(tracker, crm):
    received = []

    def api(method, path, query, headers, body):
        received.append((method, path, headers.get("authorization"), body))
        return 204, {}, None

    spec = parse_spec({
        "name": RECON, "key": "customer_id", "fields": {"plan": "exact"},
        "source_a": {"type": "file", "name": "crm", "path": "crm.csv"},
        "source_b": {"type": "file", "name": "billing", "path": "billing.csv"},
        "fixes": [{"field": "plan", "action": "http_call", "system_of_record": "b", "allowed": True, "values": CODES,
                   "target": {"url_env": "TEST_CRM_API", "path": "/customers/{key}", "body_field": "plan_name",
                              "auth": {"env": "TEST_CRM_TOKEN"}}}],
    })
    with FakeServer(api) as server:
        env = {"TEST_CRM_API": server.url + "/v1", "TEST_CRM_TOKEN": "t0k"}
        [dry] = run_fixes(tracker.engine, spec, environ=env)
        assert [(c.key, c.before, c.after) for c in dry.planned] == [("1", "pro", "business"), ("2", "pro", "enterprise")]
        assert received == []
        [real] = run_fixes(tracker.engine, spec, dry_run=False, environ=env)
    assert len(real.applied) == 2
    assert received == [("PATCH", "/v1/customers/1", "Bearer t0k", b'{"plan_name":"business"}'),
                        ("PATCH", "/v1/customers/2", "Bearer t0k", b'{"plan_name":"enterprise"}')]
    assert audit_rows(tracker) == [("1", "pro", "business", "applied"), ("2", "pro", "enterprise", "applied")]


def test_a_target_error_is_audited_as_failed(tracker, crm):
    spec = sql_spec(crm, allowed=True, dry_run=False)
    with sqlite3.connect(crm) as con:
        con.execute("CREATE TRIGGER no_enterprise BEFORE UPDATE ON customers WHEN NEW.plan = 'enterprise' "
                    "BEGIN SELECT RAISE(ABORT, 'enterprise needs a contract'); END")
    [report] = run_fixes(tracker.engine, spec)
    assert [c.key for c in report.applied] == ["1"]
    assert [(c.key, why.split(":")[0]) for c, why in report.failed] == [("2", "IntegrityError")]
    assert audit_rows(tracker) == [("1", "pro", "business", "applied"), ("2", "pro", "enterprise", "failed")]
    assert tracker.history("2-plan")[-1]["action"] == "fix_failed"
