"""The Dagster layer of remediation, in process with a temporary instance: the notifications
asset in the reconciliation job, the sensor that retries pending deliveries, the daily digest
job and its schedule, all against the local fake Slack."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recon_pipelines.dagster_defs import build_definitions
from recon_pipelines.dagster_defs.remediation import NotifierResource
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.remediation import outbox
from recon_pipelines.spec import parse_spec
from recon_pipelines_tests.remediation_support import TOKEN
from recon_pipelines_tests.slack_fake import FakeSlack

SPEC = {
    "name": "orders",
    "source_a": {"type": "file", "path": "a.parquet", "name": "shop"},
    "source_b": {"type": "file", "path": "b.csv", "name": "ledger"},
    "key": [{"name": "order_id", "b": "ref"}],
    "fields": {"amount": {"compare": "numeric", "abs_tol": 0.01, "b": "total"}, "status": {"compare": "string"}},
    "severity": {"rules": [{"kind": "only_in_a", "tier": "critical"}, {"field": "status", "tier": "info"}]},
    "notifications": {"destinations": {"ops": {"type": "slack", "channel": "#ops"},
                                       "ops_digest": {"type": "slack_digest", "channel": "#ops-digest"}}},
    "routing": [{"tier": "critical", "destinations": ["ops"]}, {"tier": "warning", "destinations": ["ops_digest"]}],
}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    pq.write_table(pa.table({"order_id": [1, 2, 3, 4], "amount": [10.0, 20.0, 30.0, 40.0],
                             "status": ["paid", "paid", "open", "open"]}), tmp_path / "a.parquet")
    (tmp_path / "b.csv").write_text("ref,total,status\n1,10.00,paid\n2,20.50,paid\n3,30.00,OPEN\n")
    return tmp_path


def definitions(folder, slack_url: str, **spec_changes) -> tuple[dg.Definitions, ReconResource]:
    spec = parse_spec({**SPEC, **spec_changes}, folder / "orders.yaml")
    recon = ReconResource(storage_dir=str(folder / "store"), tracker_url=f"sqlite:///{folder / 'tracker.sqlite'}")
    notifier = NotifierResource(slack_base_url=slack_url, backoff_seconds=0.01, retry_delay_seconds=0)
    return build_definitions(specs=[spec], recon=recon, notifier=notifier), recon


def test_the_code_location_shows_notifications_fixes_digest_and_sensor(folder):
    fixes = [{"field": "amount", "action": "http_call", "system_of_record": "a", "target": {"url": "http://erp"}}]
    defs, _ = definitions(folder, "http://127.0.0.1:9/api/", fixes=fixes)
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for step in ("notifications", "fixes"):
        assert graph.get(dg.AssetKey(["orders", step])).parent_keys == {dg.AssetKey(["orders", "tracker_state"])}
    assert {"deliver_notifications", "daily_digest"} <= {job.name for job in defs.resolve_all_job_defs()}
    schedule = defs.resolve_schedule_def("digest_orders")
    assert (schedule.cron_schedule, schedule.default_status) == ("0 8 * * *", dg.DefaultScheduleStatus.STOPPED)
    sensor = defs.resolve_sensor_def("deliver_pending_notifications")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    running, _ = definitions(folder, "x", notifications={**SPEC["notifications"], "digest": {
        "cron": "30 7 * * 1-5", "timezone": "Europe/Paris", "default_status": "running"}})
    schedule = running.resolve_schedule_def("digest_orders")
    assert (schedule.cron_schedule, schedule.execution_timezone, schedule.default_status) == (
        "30 7 * * 1-5", "Europe/Paris", dg.DefaultScheduleStatus.RUNNING)


def test_reconciliation_run_delivers_its_notifications_visibly(folder):
    with FakeSlack() as slack:
        defs, _ = definitions(folder, slack.base_url)
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def("reconcile_orders").execute_in_process(instance=instance)
            logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert result.success
    meta = {e.materialization.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()}["notifications"]
    # Order 4 is only in the shop (critical): a thread in #ops; the amount of order 2 waits for the digest.
    [header] = slack.top_level("#ops")
    assert [m["text"] for m in slack.replies(header["ts"])] == [
        '[CRITICAL] orders: only_in_a key 4: shop={"amount":40.0,"status":"open"}, ledger=∅']
    assert (meta["attempts/delivered"], meta["outbox/ops/delivered"], meta["outbox/ops_digest/in_digest"]) == (2, 2, 1)
    reply_ts = slack.replies(header["ts"])[0]["ts"]
    assert any(line.startswith("ops: opened open:") and f"delivered ({reply_ts})" in line for line in logs)


def test_sensor_retries_what_a_down_slack_left_pending(folder):
    with FakeSlack() as gone:
        dead = gone.base_url
    defs, recon = definitions(folder, dead)
    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("reconcile_orders").execute_in_process(instance=instance).success
        sensor = defs.resolve_sensor_def("deliver_pending_notifications")
        context = dg.build_sensor_context(instance=instance, resources={"recon": recon})
        [request] = sensor.evaluate_tick(context).run_requests
        assert request.tags["recon/notifications_due"] == "2"
        with FakeSlack() as slack:
            live, _ = definitions(folder, slack.base_url)
            assert live.resolve_job_def("deliver_notifications").execute_in_process(instance=instance).success
            assert len(slack.messages) == 2
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources={"recon": recon}))
        assert tick.run_requests == [] and tick.skip_message == "no notification waiting for delivery"
    assert outbox.status_counts(recon.tracker().engine)["ops"] == {"delivered": 2}


def test_daily_digest_groups_what_is_open_by_field_and_sends_once_a_day(folder):
    with FakeSlack() as slack:
        defs, _ = definitions(folder, slack.base_url)
        with dg.instance_for_test() as instance:
            assert defs.resolve_job_def("reconcile_orders").execute_in_process(instance=instance).success
            digest = defs.resolve_job_def("daily_digest")
            assert digest.execute_in_process(instance=instance).success
            assert digest.execute_in_process(instance=instance).success  # fired twice the same day
        [message] = slack.top_level("#ops-digest")
    shown = FakeSlack.rendered_text(message)
    assert "daily digest" in shown and "1 discrepancy opened in the last day or still open" in shown
    assert "*amount*: 1 open, 0 resolved\n• key 2: shop 20.0 / ledger 20.50 (new)" in shown


def test_refused_notifications_are_counted_in_the_delivery_metadata(folder):
    with FakeSlack(channels={"#general"}) as slack:  # #ops does not exist: Slack refuses for good
        defs, recon = definitions(folder, slack.base_url)
        with dg.instance_for_test() as instance:
            run = defs.resolve_job_def("reconcile_orders").execute_in_process(instance=instance)
            meta = {e.materialization.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
                    for e in run.get_asset_materialization_events()}["notifications"]
            assert (meta["outbox/failed"], meta["outbox/ops/failed"]) == (2, 2)
            slack.channels.add("#ops")
            outbox.requeue(recon.tracker().engine, datetime.now(timezone.utc), destination="ops")
            job = defs.resolve_job_def("deliver_notifications").execute_in_process(instance=instance)
    [output] = [e.step_output_data.metadata for e in job.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert (output["outbox/failed"].value, output["attempts/delivered"].value) == (0, 2)
    assert len(slack.messages) == 2
