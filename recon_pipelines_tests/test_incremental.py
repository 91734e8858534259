"""Partitioned incremental runs, grace, summary-first, deep scan, schedules, backfills,
the change-feed sensor and on-demand re-checks, with a real (temporary) Dagster instance."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from recon_pipelines import pipeline
from recon_pipelines.dagster_defs import build_definitions
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.dagster_defs.runs import recheck_config
from recon_pipelines.spec import parse_spec
from recon_pipelines.tracker import Tracker

UTC = timezone.utc
DAY1, DAY2 = datetime(2026, 10, 1, 12, tzinfo=UTC), datetime(2026, 10, 2, 12, tzinfo=UTC)


class Systems:
    """Two SQLite databases standing for the two systems, and a feed of writes."""

    def __init__(self, folder):
        self.urls = {side: f"sqlite:///{folder / f'{side}.sqlite'}" for side in ("a", "b", "feed")}
        self.engines = {side: sa.create_engine(url) for side, url in self.urls.items()}
        self.meta = sa.MetaData()
        self.tables = {
            side: sa.Table(f"accounts_{side}", self.meta, sa.Column("id", sa.Integer, primary_key=True),
                           sa.Column("amount", sa.Float), sa.Column("updated_at", sa.DateTime))
            for side in ("a", "b")
        }
        self.writes = sa.Table("writes", self.meta, sa.Column("seq", sa.Integer, primary_key=True),
                               sa.Column("account_id", sa.Integer), sa.Column("written_at", sa.DateTime))
        for side, table in self.tables.items():
            table.create(self.engines[side])
        self.writes.create(self.engines["feed"])

    def put(self, side: str, id: int, amount: float, at: datetime) -> None:
        table = self.tables[side]
        with self.engines[side].begin() as conn:
            conn.execute(sa.delete(table).where(table.c.id == id))
            conn.execute(sa.insert(table).values(id=id, amount=amount, updated_at=at.astimezone(UTC).replace(tzinfo=None)))

    def write(self, seq: int, id: int, at: datetime) -> None:
        with self.engines["feed"].begin() as conn:
            conn.execute(sa.insert(self.writes).values(seq=seq, account_id=id, written_at=at.astimezone(UTC).replace(tzinfo=None)))

    def spec(self, **extra):
        raw = {
            "name": "accounts",
            "source_a": {"type": "sql", "name": "ledger", "url": self.urls["a"], "table": "accounts_a", "updated_at": "updated_at"},
            "source_b": {"type": "sql", "name": "bank", "url": self.urls["b"], "table": "accounts_b", "updated_at": "updated_at"},
            "key": "id",
            "fields": {"amount": {"compare": "numeric", "abs_tol": 0.01}},
            "incremental": {"start": "2026-09-01", "summary_fields": ["amount"]},
            **extra,
        }
        return parse_spec(raw, "accounts.yaml")


@pytest.fixture
def systems(tmp_path):
    return Systems(tmp_path)


@pytest.fixture
def env(tmp_path):
    recon = ReconResource(storage_dir=str(tmp_path / "storage"), tracker_url=f"sqlite:///{tmp_path / 'tracker.sqlite'}")
    with dg.instance_for_test() as instance:
        yield recon, instance


def materialize_partition(defs, instance, partition: str):
    return defs.resolve_job_def("reconcile_accounts").execute_in_process(instance=instance, partition_key=partition)


def found(recon) -> set[tuple]:
    return {(r["kind"], r["key"], r["status"]) for r in Tracker(recon.tracker_url).discrepancies("accounts")}


def meta(result, step: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.materialization.asset_key.path[-1] == step:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise KeyError(step)


def test_partition_reads_its_window_and_the_counterparts(systems, env):
    recon, instance = env
    systems.put("a", 1, 10.0, DAY1)  # agrees, modified on day 1 only
    systems.put("b", 1, 10.0, DAY1)
    systems.put("a", 5, 99.0, DAY2)  # modified in A on day 2 ...
    systems.put("b", 5, 50.0, DAY1)  # ... B's copy was last modified on day 1
    systems.put("b", 7, 70.0, DAY2)  # only in B, modified on day 2
    defs = build_definitions(specs=[systems.spec()], recon=recon)
    result = materialize_partition(defs, instance, "2026-10-02")
    assert result.success
    snapshot_a = meta(result, "snapshot_a")
    assert (snapshot_a["rows"], snapshot_a["modified_in_window"], snapshot_a["scope_keys"]) == (1, 1, 2)
    assert meta(result, "snapshot_b")["rows"] == 2  # its own day-2 record 7 and the counterpart of 5
    # Record 5 is compared with B's current version (a mismatch), not reported missing from B.
    assert found(recon) == {("field_mismatch", "5", "new"), ("only_in_b", "7", "new")}


def test_a_partition_run_does_not_resolve_keys_it_did_not_read(systems, env):
    recon, instance = env
    systems.put("a", 1, 10.0, DAY1)
    systems.put("b", 1, 11.0, DAY1)  # a mismatch from day 1
    systems.put("a", 2, 20.0, DAY2)
    systems.put("b", 2, 20.0, DAY2)
    defs = build_definitions(specs=[systems.spec()], recon=recon)
    materialize_partition(defs, instance, "2026-10-01")
    materialize_partition(defs, instance, "2026-10-02")  # did not read key 1
    assert found(recon) == {("field_mismatch", "1", "new")}


def test_records_in_flight_are_not_judged_yet(systems, env):
    recon, instance = env
    now = datetime.now(UTC)
    systems.put("a", 1, 10.0, now - timedelta(minutes=2))  # written 2 minutes ago, not yet in B
    systems.put("a", 2, 20.0, now - timedelta(hours=3))   # written 3 hours ago, never reached B
    # B is empty on this first full run: legitimate here, so the export guard must not hold it.
    defs = build_definitions(specs=[systems.spec(propagation_lag="15m", guard={"allow_empty": True})], recon=recon)
    job = defs.resolve_job_def("recheck_accounts")
    result = job.execute_in_process(instance=instance, run_config=recheck_config(systems.spec(), full=True))
    assert result.success
    assert found(recon) == {("only_in_a", "2", "new")}
    # Later, the same record is judged (checked again by a later run); as_of stands for "later".
    spec = systems.spec(propagation_lag="15m")
    folder = recon.folder(spec, pipeline.RunScope.full())
    later = pipeline.find_discrepancies(spec, folder, as_of=now + timedelta(hours=1))
    assert sorted(later.table.column("key").to_pylist()) == ["1", "2"] and later.in_flight == []


def test_summary_first_skips_a_partition_whose_sides_agree(systems, env):
    recon, instance = env
    for i in range(1, 6):
        systems.put("a", i, i * 10.0, DAY1)
        systems.put("b", i, i * 10.0, DAY1)
    systems.put("a", 9, 1.0, DAY2)
    systems.put("b", 9, 2.0, DAY2)
    spec = systems.spec(incremental={"start": "2026-09-01", "summary_fields": ["amount"], "skip_when_summaries_match": True})
    defs = build_definitions(specs=[spec], recon=recon)
    agreeing = materialize_partition(defs, instance, "2026-10-01")
    pairs = meta(agreeing, "matched_pairs")
    assert pairs["summary_skip"] is True and pairs["candidate_pairs"] == 0 and pairs["sum_amount_a"] == 150.0
    checks = {e.check_name: e.passed for e in agreeing.get_asset_check_evaluations()}
    assert checks["summaries_match"] is True
    differing = materialize_partition(defs, instance, "2026-10-02")
    assert meta(differing, "matched_pairs")["summary_skip"] is False
    assert {e.check_name: e.passed for e in differing.get_asset_check_evaluations()}["summaries_match"] is False
    assert found(recon) == {("field_mismatch", "9", "new")}


def test_deep_scan_finds_drift_no_window_touched(systems, env):
    recon, instance = env
    old = datetime(2026, 8, 1, tzinfo=UTC)  # before the first partition: no daily run reads it
    systems.put("a", 3, 30.0, old)
    systems.put("b", 3, 31.0, old)
    systems.put("a", 4, 40.0, DAY1)
    systems.put("b", 4, 40.0, DAY1)
    defs = build_definitions(specs=[systems.spec()], recon=recon)
    materialize_partition(defs, instance, "2026-10-01")
    assert found(recon) == set()
    schedule = defs.resolve_schedule_def("deep_scan_accounts")
    assert schedule.cron_schedule == "0 3 * * 0"
    (request,) = schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests
    result = defs.resolve_job_def("recheck_accounts").execute_in_process(instance=instance, run_config=request.run_config)
    assert result.success
    assert found(recon) == {("field_mismatch", "3", "new")}


def test_daily_schedule_requests_the_previous_day(systems, env):
    recon, instance = env
    defs = build_definitions(specs=[systems.spec()], recon=recon)
    schedule = defs.resolve_schedule_def("daily_accounts")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime(2026, 10, 3, 1, 30, tzinfo=UTC),
                                        repository_def=defs.get_repository_def())
    (request,) = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-10-02"


def test_thirty_day_backfill_runs_as_one_window(systems, env):
    recon, instance = env
    for day in range(30):
        at = datetime(2026, 9, 1, 12, tzinfo=UTC) + timedelta(days=day)
        systems.put("a", 100 + day, float(day), at)
        systems.put("b", 100 + day, float(day) + (5 if day % 10 == 0 else 0), at)  # days 0, 10, 20 disagree
    systems.put("a", 999, 1.0, datetime(2026, 10, 5, tzinfo=UTC))  # outside the range
    defs = build_definitions(specs=[systems.spec()], recon=recon)
    job = defs.resolve_job_def("reconcile_accounts")
    # What a single-run backfill of 2026-09-01..2026-09-30 launches: one run over the range.
    result = job.execute_in_process(instance=instance, tags={
        "dagster/asset_partition_range_start": "2026-09-01", "dagster/asset_partition_range_end": "2026-09-30"})
    assert result.success
    # Each of the 30 partitions gets its own day's figures, not the range's totals.
    days = {e.materialization.partition: {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events() if e.materialization.asset_key.path[-1] == "snapshot_a"}
    assert len(days) == 30 and {d["rows"] for d in days.values()} == {1}
    assert days["2026-09-11"]["scope"] == "2026-09-11" and days["2026-09-11"]["backfill_range"] == "2026-09-01..2026-09-30"
    mismatches = {e.materialization.partition: e.materialization.metadata["discrepancies"].value
                  for e in result.get_asset_materialization_events() if e.materialization.asset_key.path[-1] == "discrepancies"}
    assert {day for day, n in mismatches.items() if n} == {"2026-09-01", "2026-09-11", "2026-09-21"}
    assert found(recon) == {("field_mismatch", str(k), "new") for k in (100, 110, 120)}
    (run,) = Tracker(recon.tracker_url).runs("accounts")
    assert run["scope"] == "2026-09-01..2026-09-30"


def test_change_feed_launches_one_run_per_write_after_its_window(systems, env):
    recon, instance = env
    now = datetime.now(UTC)
    feed = {"source": {"type": "sql", "url": systems.urls["feed"], "table": "writes"}, "cursor_column": "seq",
            "key_column": "account_id", "written_at_column": "written_at", "window": "10m"}
    spec = systems.spec(change_feed=feed)
    defs = build_definitions(specs=[spec], recon=recon)
    sensor = defs.resolve_sensor_def("change_feed_accounts")
    systems.write(1, 11, now - timedelta(minutes=30))
    systems.write(2, 12, now - timedelta(minutes=20))
    systems.write(3, 13, now - timedelta(minutes=1))  # its window has not passed yet

    first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert [r.run_config for r in first.run_requests] == [recheck_config(spec, keys=["11"]), recheck_config(spec, keys=["12"])]
    assert len({r.run_key for r in first.run_requests}) == 2

    # Restart: a new evaluation from the stored cursor sees nothing new yet.
    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, cursor=first.cursor))
    assert again.run_requests == []
    # A lost cursor re-reads the same writes, but their run keys are the same: Dagster launches each once.
    lost = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert {r.run_key for r in lost.run_requests} == {r.run_key for r in first.run_requests}

    with systems.engines["feed"].begin() as conn:  # the third write's window has now passed
        conn.execute(sa.update(systems.writes).where(systems.writes.c.seq == 3)
                     .values(written_at=(now - timedelta(minutes=11)).replace(tzinfo=None)))
    later = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, cursor=first.cursor))
    assert [r.run_config for r in later.run_requests] == [recheck_config(spec, keys=["13"])]


def test_key_scoped_recheck_touches_only_those_keys(systems, env):
    recon, instance = env
    for i in (1, 2):
        systems.put("a", i, 10.0, DAY1)
        systems.put("b", i, 11.0, DAY1)
    spec = systems.spec()
    defs = build_definitions(specs=[spec], recon=recon)
    job = defs.resolve_job_def("recheck_accounts")
    job.execute_in_process(instance=instance, run_config=recheck_config(spec, full=True))
    systems.put("b", 1, 10.0, DAY2)  # both fixed in B
    systems.put("b", 2, 10.0, DAY2)
    result = job.execute_in_process(instance=instance, run_config=recheck_config(spec, keys=["1"]))
    assert result.success
    assert found(recon) == {("field_mismatch", "1", "resolved"), ("field_mismatch", "2", "new")}


def test_recheck_refuses_an_ambiguous_scope(systems, env):
    recon, instance = env
    spec = systems.spec()
    defs = build_definitions(specs=[spec], recon=recon)
    result = defs.resolve_job_def("recheck_accounts").execute_in_process(
        instance=instance, raise_on_error=False, run_config=recheck_config(spec, full=True, keys=["1"]))
    assert not result.success
    assert "exactly one of" in str(result.failure_data_for_node(f"{spec.name}__recheck").error.message)


def test_date_range_recheck_reads_that_range(systems, env):
    recon, instance = env
    systems.put("a", 1, 1.0, DAY1)
    systems.put("b", 1, 2.0, DAY1)
    systems.put("a", 2, 1.0, DAY2 + timedelta(days=5))
    systems.put("b", 2, 2.0, DAY2 + timedelta(days=5))
    spec = systems.spec()
    defs = build_definitions(specs=[spec], recon=recon)
    result = defs.resolve_job_def("recheck_accounts").execute_in_process(
        instance=instance, run_config=recheck_config(spec, date_from="2026-10-01", date_to="2026-10-02"))
    assert result.success
    assert found(recon) == {("field_mismatch", "1", "new")}


def test_failed_runs_are_reported_even_when_launched_from_the_ui(systems, env, tmp_path):
    from recon_pipelines.dagster_defs.runs import failure_report
    from recon_pipelines.remediation import outbox

    recon, instance = env
    spec = systems.spec(
        source_b={"type": "file", "name": "bank", "path": str(tmp_path / "missing.csv"), "updated_at": "updated_at"},
        notifications={"destinations": {"oncall": {"type": "log"}}},
        routing=[{"tier": "critical", "destinations": ["oncall"]}],
    )
    defs = build_definitions(specs=[spec], recon=recon)
    # A UI "Materialize" runs the implicit __ASSET_JOB on the selected assets, without the job's tags.
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, partition_key="2026-10-01", raise_on_error=False,
                                    asset_selection=[dg.AssetKey(["accounts", "snapshot_b"])])
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    assert run.job_name == "__ASSET_JOB"
    assert failure_report(run, "boom") == f"reconciliation accounts: run {run.run_id} (__ASSET_JOB) failed: boom"

    # The sensor routes it like a critical discrepancy: an outbox row for the on-call destination.
    sensor = defs.resolve_sensor_def("recon_run_failures")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    failure = next(e for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(sensor_name="recon_run_failures", dagster_event=failure.dagster_event,
                                                 dagster_instance=instance, dagster_run=run,
                                                 resources={"recon": recon}).for_run_failure()
    sensor(context)
    row = outbox.find(recon.tracker().engine, "oncall", f"run_failed:accounts:{run.run_id}")
    assert row is not None and row.event == "run_failed" and row.tier == "critical"

    @dg.asset
    def unrelated():
        raise RuntimeError("not a reconciliation")

    other = dg.materialize([unrelated], instance=instance, raise_on_error=False)
    assert failure_report(instance.get_run_by_id(other.run_id), "x") is None
