"""How reconciliations get run: schedules, the deep scan, event-triggered and on-demand re-checks.

- ``recheck_<name>``: one job for every run outside the daily partitions. Its config picks
  the scope: ``full: true`` (the deep scan), ``keys: [...]`` (re-check records) or
  ``date_from``/``date_to`` (records modified in a date range, with their counterparts).
- ``daily_<name>``: runs the previous day's partition (specs with ``incremental:``).
- ``deep_scan_<name>``: runs ``recheck_<name>`` with ``full: true`` (weekly by default).
- ``change_feed_<name>``: one re-check per write in the spec's change feed, once the write's
  window has passed. Its cursor is Dagster's sensor cursor; run keys make each write launch
  at most one run, even if a cursor is lost.
- ``change_stream_<name>``: consumes the spec's change stream (dagster_defs/streams.py) and
  launches one re-check per batch of keys whose window passed without their counterpart.
- ``recon_run_failures``: reports failed reconciliation runs, including UI and backfill runs.

Dagster starts schedules and sensors stopped unless told otherwise; the spec says which
start running (``incremental.schedule_running``, ``deep_scan.running``, ``change_feed.running``).
"""

import json
from dataclasses import asdict
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field

from recon_pipelines import pipeline
from recon_pipelines.dagster_defs.assets import (
    RECON_TAG,
    discrepancy_metadata,
    pairing_metadata_for_ui,
    partitions_def,
    reconciliation_job,
    run_tags,
    tracker_metadata,
)
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.engine import ComparisonError
from recon_pipelines.feeds import change_feed_for
from recon_pipelines.remediation import outbox
from recon_pipelines.remediation.notifications import run_failure_notifications
from recon_pipelines.remediation.notifications import notification_writer
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.streams import wiring as streams
from recon_pipelines.streams.settle import expired, relabel_not_propagated
from recon_pipelines.names import recheck_op_name


class RecheckConfig(dg.Config):
    """Exactly one of: full, keys, or a date range."""

    full: bool = Field(default=False, description="Compare everything (the deep scan).")
    keys: list[str] = Field(default_factory=list, description="Re-check these record keys only.")
    date_from: str | None = Field(default=None, description="First day (YYYY-MM-DD) of records modified in a range.")
    date_to: str | None = Field(default=None, description="Last day (YYYY-MM-DD, inclusive) of the range.")
    stream_claim: str | None = Field(
        default=None, description="Set by change_stream_<name>: the keys' windows passed; report them as not_propagated.")


def recheck_config(spec: ReconciliationSpec, **config) -> dict:
    """Run config for ``recheck_<name>``, e.g. ``recheck_config(spec, keys=["1042"])``."""
    return {"ops": {recheck_op_name(spec.name): {"config": config}}}


def scope_from_config(spec: ReconciliationSpec, config: RecheckConfig) -> pipeline.RunScope:
    chosen = [bool(config.full), bool(config.keys), bool(config.date_from or config.date_to)]
    if sum(chosen) != 1:
        raise dg.Failure("recheck: give exactly one of full: true, keys: [...], or date_from and date_to")
    if config.full:
        return pipeline.RunScope.full()
    if config.keys:
        return pipeline.RunScope.of_keys(config.keys)
    if not (config.date_from and config.date_to):
        raise dg.Failure("recheck: a date range needs both date_from and date_to")
    zone = ZoneInfo(spec.incremental.timezone if spec.incremental else "UTC")
    try:
        first, last = date.fromisoformat(config.date_from), date.fromisoformat(config.date_to)
    except ValueError as exc:
        raise dg.Failure(f"recheck: {exc}") from None
    if last < first:
        raise dg.Failure("recheck: date_to is before date_from")
    start = datetime.combine(first, time(), zone)
    end = datetime.combine(last + timedelta(days=1), time(), zone)
    return pipeline.RunScope.of_window(start, end, f"{first}..{last}")


def recheck_job(spec: ReconciliationSpec) -> dg.JobDefinition:
    @dg.op(name=recheck_op_name(spec.name), description=f"Compare {spec.name} within the configured scope and update the tracker.",
           pool=f"recon_{spec.name}")
    def recheck(context: dg.OpExecutionContext, config: RecheckConfig, recon: ReconResource) -> None:
        scope = scope_from_config(spec, config)
        folder = recon.folder(spec, scope)
        started = datetime.now(timezone.utc)
        stream = streams.expectation_store(spec, recon.tracker().engine) if config.stream_claim else None

        def relabel(run_folder: pipeline.RunFolder) -> None:  # from change_stream_<name>: still wrong = not propagated
            relabel_not_propagated(spec, run_folder, expired(stream, scope.keys, started))

        try:
            result = pipeline.run(spec, scope, folder, recon.tracker(), run_id=f"{context.run.run_id}:{scope.label}",
                                  memory_limit=recon.duckdb_memory_limit, spill_dir=recon.spill_dir(),
                                  on_outcome=notification_writer(spec),  # delivered by the notifications sensor
                                  before_tracker=relabel if stream is not None else None)
        except ComparisonError as exc:
            raise dg.Failure(str(exc)) from None
        outcome = result.outcome
        found = pipeline.Found(result.discrepancies, result.fields, result.in_flight, result.sample)
        stats = asdict(result.match)
        metadata = {"scope": scope.label, **{k: stats[k] for k in ("rows_a", "rows_b", "matched", "only_in_a", "only_in_b")},
                    **pairing_metadata_for_ui(result.pairing),
                    **discrepancy_metadata(found, folder), **tracker_metadata(recon, spec, outcome)}
        if stream is not None:
            metadata["expectations_closed"] = stream.settle(scope.keys, started)
        context.add_output_metadata(metadata)
        if outcome.held:  # the alert is already in the outbox, keyed so the failure sensor adds none
            raise dg.Failure(outcome.held, metadata={"held": outcome.held})

    @dg.job(name=f"recheck_{spec.name}", tags=run_tags(spec),
            description="Re-check keys, a date range, or everything (the deep scan), outside the daily partitions.")
    def job():
        recheck()

    return job


def daily_schedule(spec: ReconciliationSpec, asset_job) -> dg.ScheduleDefinition:
    incremental = spec.incremental
    partitions = partitions_def(spec)

    @dg.schedule(name=f"daily_{spec.name}", cron_schedule=incremental.cron, job=asset_job,
                 execution_timezone=incremental.timezone,
                 default_status=dg.DefaultScheduleStatus.RUNNING if incremental.schedule_running else dg.DefaultScheduleStatus.STOPPED,
                 description="Reconcile the previous day's partition.")
    def daily(context: dg.ScheduleEvaluationContext):
        day = previous_day(context.scheduled_execution_time, incremental.timezone)
        if day < incremental.start or day.isoformat() not in partitions.get_partition_keys(context.scheduled_execution_time):
            return dg.SkipReason(f"no partition for {day}")
        return dg.RunRequest(run_key=f"{spec.name}:{day}", partition_key=day.isoformat())

    return daily


def previous_day(moment: datetime, zone: str) -> date:
    return (moment.astimezone(ZoneInfo(zone)) - timedelta(days=1)).date()


def deep_scan_schedule(spec: ReconciliationSpec, job: dg.JobDefinition) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=f"deep_scan_{spec.name}",
        job=job,
        cron_schedule=spec.deep_scan.cron,
        execution_timezone=spec.deep_scan.timezone,
        run_config=recheck_config(spec, full=True),
        default_status=dg.DefaultScheduleStatus.RUNNING if spec.deep_scan.running else dg.DefaultScheduleStatus.STOPPED,
        description="Compare everything: finds drift in records no daily window touched.",
    )


def change_feed_sensor(spec: ReconciliationSpec, job: dg.JobDefinition) -> dg.SensorDefinition:
    feed_spec = spec.change_feed

    @dg.sensor(name=f"change_feed_{spec.name}", job=job, minimum_interval_seconds=30,
               default_status=dg.DefaultSensorStatus.RUNNING if feed_spec.running else dg.DefaultSensorStatus.STOPPED,
               description=f"One re-check per write in the change feed, {feed_spec.window:g} s after the write.")
    def change_feed(context: dg.SensorEvaluationContext):
        cursor = json.loads(context.cursor)["after"] if context.cursor else None
        now = datetime.now(timezone.utc)
        changes = change_feed_for(feed_spec).changes_after(cursor, feed_spec.max_runs_per_tick)
        due = []
        for change in changes:
            if change.written_at + timedelta(seconds=feed_spec.window) > now:
                break  # not yet due; later ones are not either in cursor order, or will be re-read next tick
            due.append(change)
        for change in due:
            yield dg.RunRequest(
                run_key=f"{spec.name}:write:{change.cursor}",
                run_config=recheck_config(spec, keys=[change.key]),
                tags={"recon/trigger": "change_feed", "recon/write": str(change.cursor)},
            )
        if due:
            context.update_cursor(json.dumps({"after": due[-1].cursor}))
        elif not changes:
            yield dg.SkipReason("no new writes")
        else:
            yield dg.SkipReason(f"{len(changes)} write(s) still within their {feed_spec.window:g} s window")

    return change_feed


def failure_sensor(specs: list[ReconciliationSpec]) -> dg.SensorDefinition:
    """Reports failed reconciliation runs through each spec's routing (as critical), and to the log."""
    by_name = {spec.name: spec for spec in specs}

    @dg.run_failure_sensor(name="recon_run_failures", default_status=dg.DefaultSensorStatus.RUNNING,
                           description="Reports failed reconciliation runs (jobs, UI materializations and backfills) "
                           "through the remediation routing.")
    def recon_run_failures(context: dg.RunFailureSensorContext, recon: ReconResource) -> None:
        run = context.dagster_run
        message = context.failure_event.message if context.failure_event else "run failed"
        report = failure_report(run, message)
        if report is None:
            return
        context.log.error(report)
        spec = by_name.get(run.tags.get(RECON_TAG) or _reconciliation_of(run))
        if spec is not None and spec.routing:
            notifications = run_failure_notifications(spec, run.run_id, run.job_name, message)
            with recon.tracker().engine.begin() as conn:  # delivered by deliver_pending_notifications
                outbox.enqueue(conn, spec.name, notifications, datetime.now(timezone.utc))

    return recon_run_failures


def failure_report(run, message: str) -> str | None:
    """One line for a failed reconciliation run; None for runs of other jobs."""
    reconciliation = run.tags.get(RECON_TAG) or _reconciliation_of(run)
    if reconciliation is None:
        return None
    return f"reconciliation {reconciliation}: run {run.run_id} ({run.job_name}) failed: {message}"


def _reconciliation_of(run) -> str | None:
    """UI and backfill runs are named __ASSET_JOB and carry no tag: read their assets instead."""
    names = {key.path[0] for key in (run.asset_selection or ()) if len(key.path) == 2}
    return names.pop() if len(names) == 1 else None


def build_run_definitions(spec: ReconciliationSpec) -> dict:
    asset_job = reconciliation_job(spec)
    recheck = recheck_job(spec)
    definitions = {"jobs": [asset_job, recheck], "schedules": [deep_scan_schedule(spec, recheck)], "sensors": []}
    if spec.incremental is not None:
        definitions["schedules"].append(daily_schedule(spec, asset_job))
    if spec.change_feed is not None:
        definitions["sensors"].append(change_feed_sensor(spec, recheck))
    if spec.change_stream is not None:
        from recon_pipelines.dagster_defs.streams import change_stream_sensor

        definitions["sensors"].append(change_stream_sensor(spec, recheck))
    return definitions
