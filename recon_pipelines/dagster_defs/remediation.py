"""The Dagster face of remediation (the logic is in ``recon_pipelines.remediation``).

Per reconciliation that routes notifications or declares fixes, in its asset group:

    tracker_state ─┬─> notifications   delivers what this run's tracker change queued
                   └─> fixes           allow-listed automatic fixes (dry run by default)

Shared by the code location:

- ``deliver_notifications`` job, launched by the ``deliver_pending_notifications`` sensor
  (running by default, every minute) whenever notifications wait: a destination that was
  down gets them once it is back;
- ``daily_digest`` job and one ``digest_<name>`` schedule per reconciliation with a
  ``slack_digest`` destination (cron from ``notifications.digest``, stopped unless
  ``default_status: running``).

Every delivery attempt is a line in the run's logs; the ``notifications`` asset's metadata
counts the outbox per destination and status, and both it and the ``deliver_notifications``
step show ``failed`` (refused for good until ``recon notifications retry``) as a number the UI
plots over time.
"""

import logging
from collections.abc import Sequence
from datetime import datetime, timezone

import dagster as dg
from pydantic import Field

from recon_pipelines.dagster_defs.assets import asset_key, common_asset_args
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.remediation import Deliverer, DeliveryReport, enqueue_digests, outbox, run_fixes
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.tracker.schema import OUTBOX_STATUSES

DELIVER_JOB = "deliver_notifications"
DIGEST_JOB = "daily_digest"


class NotifierResource(dg.ConfigurableResource):
    """How notifications are sent. The Slack token and webhook URLs come from the environment
    variables the spec names; these are transport settings."""

    slack_base_url: str | None = Field(default=None, description="Slack Web API base URL; default https://slack.com/api/.")
    max_retries: int = Field(default=3, description="Retries within one attempt (429 honours Retry-After; 5xx backs off).")
    backoff_seconds: float = Field(default=1.0, description="First backoff between retries; doubles each time.")
    max_retry_after_seconds: float = Field(default=60.0, description="Longest Retry-After honoured within a run.")
    retry_delay_seconds: float = Field(default=60.0, description="Wait before the next attempt of a destination that is down.")
    lease_seconds: float = Field(default=300.0, description="Lease on claimed notifications, renewed every third of it "
                                 "while a delivery runs; a deliverer that dies loses its rows after this long.")

    def deliverer(self, recon: ReconResource, specs: Sequence[ReconciliationSpec], log: logging.Logger) -> Deliverer:
        return Deliverer(recon.tracker().engine, specs, slack_base_url=self.slack_base_url, max_retries=self.max_retries,
                         backoff=self.backoff_seconds, max_retry_after=self.max_retry_after_seconds,
                         retry_delay=self.retry_delay_seconds, lease=self.lease_seconds, log=log)


def remediation_assets(spec: ReconciliationSpec) -> list[dg.AssetsDefinition]:
    """The spec's own remediation assets: ``notifications`` when it routes, ``fixes`` when it declares any."""
    return ([notifications_asset(spec)] if spec.routing else []) + ([fixes_asset(spec)] if spec.fixes else [])


def shared_remediation_definitions(specs: Sequence[ReconciliationSpec]) -> dict:
    """{jobs, schedules, sensors} that serve every spec of the code location (empty when none routes)."""
    routed = [spec for spec in specs if spec.routing]
    digested = [spec for spec in routed if _digest_destinations(spec)]
    jobs, schedules, sensors = [], [], []
    if routed:
        deliver = deliver_notifications_job(routed)
        jobs.append(deliver)
        sensors.append(pending_notifications_sensor(deliver))
    if digested:
        digest = daily_digest_job(digested)
        jobs.append(digest)
        schedules += [daily_digest_schedule(spec, digest) for spec in digested]
    return {"jobs": jobs, "schedules": schedules, "sensors": sensors}


# --------------------------------------------------------------------------- assets


def notifications_asset(spec: ReconciliationSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(spec, "notifications"),
        deps=[asset_key(spec, "tracker_state")],
        kinds={"slack"} if any(d.type in ("slack", "slack_digest") for d in spec.notifications.destinations.values())
        else None,
        description="Delivers the notifications this run's tracker change queued (Slack, incident queue, webhooks, log) "
        "and any still pending. Metadata: the outbox per destination and status.",
        **common_asset_args(spec),
    )
    def notifications(context: dg.AssetExecutionContext, recon: ReconResource,
                      notifier: NotifierResource) -> dg.MaterializeResult:
        deliverer = notifier.deliverer(recon, [spec], context.log)
        try:
            report = deliverer.deliver(spec.name)
        finally:
            deliverer.close()
        return dg.MaterializeResult(metadata=delivery_metadata(recon, report, spec.name))

    return notifications


def delivery_metadata(recon: ReconResource, report: DeliveryReport, reconciliation: str | None = None) -> dict:
    metadata: dict = {f"attempts/{outcome}": report.count(outcome)
                      for outcome in ("delivered", "logged", "pending", "failed", "waiting", "taken_over")}
    counts_by_destination = sorted(outbox.status_counts(recon.tracker().engine, reconciliation).items())
    # Always present (0 too), so the UI plots it: refused notifications wait for `recon notifications retry`.
    metadata["outbox/failed"] = sum(counts.get("failed", 0) for _, counts in counts_by_destination)
    metadata["outbox/pending"] = sum(counts.get("pending", 0) for _, counts in counts_by_destination)
    for destination, counts in counts_by_destination:
        for status in OUTBOX_STATUSES:
            if counts.get(status):
                metadata[f"outbox/{destination}/{status}"] = counts[status]
    if report.attempts:
        lines = ["| outbox id | destination | event | outcome | detail |", "|---|---|---|---|---|"]
        lines += [f"| {a.outbox_id} | {a.destination} | {a.event} | {a.outcome} | {_md(a.detail)} |"
                  for a in report.attempts[:50]]
        metadata["attempts"] = dg.MetadataValue.md("\n".join(lines))
    return metadata


class FixConfig(dg.Config):
    dry_run: bool | None = Field(default=None, description="Override the spec's dry_run for this run; the fix must "
                                 "still be allowed in the spec. Leave unset to follow the spec.")


def fixes_asset(spec: ReconciliationSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(spec, "fixes"),
        deps=[asset_key(spec, "tracker_state")],
        kinds={"sql"},
        description="Allow-listed automatic fixes: copy the system of record's value into the other system (dry run "
        "by default). A fixed discrepancy is resolved by the next comparison, not here.",
        **common_asset_args(spec),
    )
    def fixes(context: dg.AssetExecutionContext, config: FixConfig, recon: ReconResource) -> dg.MaterializeResult:
        reports = run_fixes(recon.tracker().engine, spec, dry_run=config.dry_run, run_id=context.run.run_id)
        metadata: dict = {}
        for report in reports:
            mode = "dry run" if report.dry_run else "applied"
            context.log.info(f"fix of {report.field} ({report.action}, {mode}): {len(report.planned)} planned, "
                             f"{len(report.applied)} applied, {len(report.skipped)} skipped, {len(report.failed)} failed"
                             + (f"; {report.refused}" if report.refused else ""))
            for change in report.planned:
                context.log.info(f"{'would set' if report.dry_run else 'set'} {report.field} of {change.key}: "
                                 f"{change.before!r} -> {change.after!r} ({report.target})")
            metadata.update({
                f"{report.field}/allowed": report.allowed, f"{report.field}/dry_run": report.dry_run,
                f"{report.field}/planned": len(report.planned), f"{report.field}/applied": len(report.applied),
                f"{report.field}/skipped": len(report.skipped), f"{report.field}/failed": len(report.failed),
                f"{report.field}/changes": dg.MetadataValue.md(report.markdown()),
            })
        return dg.MaterializeResult(metadata=metadata)

    return fixes


# --------------------------------------------------------------------------- delivery job and sensor


class DeliverConfig(dg.Config):
    reconciliation: str | None = Field(default=None, description="Only this reconciliation's notifications; default all.")


def deliver_notifications_job(specs: Sequence[ReconciliationSpec]) -> dg.JobDefinition:
    @dg.op(name="deliver_pending_notifications", out=dg.Out(dict, description="Attempts per outcome."),
           description="Send every due notification of the outbox; a destination still down keeps its rows pending. "
           "Output metadata: attempts per outcome and the outbox's failed and pending counts.")
    def deliver(context: dg.OpExecutionContext, config: DeliverConfig, recon: ReconResource,
                notifier: NotifierResource) -> dg.Output:
        deliverer = notifier.deliverer(recon, specs, context.log)
        try:
            report = deliverer.deliver(config.reconciliation)
        finally:
            deliverer.close()
        counts = {outcome: report.count(outcome) for outcome in ("delivered", "logged", "pending", "failed", "waiting")}
        context.log.info("delivery pass: " + ", ".join(f"{n} {outcome}" for outcome, n in counts.items()))
        return dg.Output(counts, metadata=delivery_metadata(recon, report, config.reconciliation))

    @dg.job(name=DELIVER_JOB, description="Deliver pending notifications (launched by deliver_pending_notifications).")
    def job():
        deliver()

    return job


def pending_notifications_sensor(job: dg.JobDefinition) -> dg.SensorDefinition:
    @dg.sensor(name="deliver_pending_notifications", job=job, minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Launches deliver_notifications when notifications are due (e.g. Slack was down).")
    def sensor(context: dg.SensorEvaluationContext, recon: ReconResource):
        due = outbox.due_count(recon.tracker().engine, datetime.now(timezone.utc))
        if not due:
            return dg.SkipReason("no notification waiting for delivery")
        busy = context.instance.get_runs(filters=dg.RunsFilter(job_name=job.name, statuses=[
            dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.STARTED]), limit=1)
        if busy:
            return dg.SkipReason(f"{due} notifications due; a {job.name} run is already under way")
        return dg.RunRequest(tags={"recon/notifications_due": str(due)})

    return sensor


# --------------------------------------------------------------------------- daily digest


class DigestConfig(dg.Config):
    reconciliations: list[str] = Field(default_factory=list, description="Reconciliations to digest; empty: all.")


def daily_digest_job(specs: Sequence[ReconciliationSpec]) -> dg.JobDefinition:
    @dg.op(name="send_daily_digest", description="Per digest destination: what opened in the last day or is still open.")
    def send(context: dg.OpExecutionContext, config: DigestConfig, recon: ReconResource, notifier: NotifierResource) -> None:
        chosen = [s for s in specs if not config.reconciliations or s.name in config.reconciliations]
        unknown = set(config.reconciliations) - {s.name for s in specs}
        if unknown:
            raise dg.Failure(f"no digest destination in: {', '.join(sorted(unknown))}")
        engine = recon.tracker().engine
        for spec in chosen:
            for note in enqueue_digests(engine, spec):
                context.log.info(f"digest for {note.destination}: {note.payload['total']} discrepancies ({note.key})")
        deliverer = notifier.deliverer(recon, chosen, context.log)
        try:
            for spec in chosen:
                deliverer.deliver(spec.name)
        finally:
            deliverer.close()

    @dg.job(name=DIGEST_JOB, description="Send the daily digests (per slack_digest destination).")
    def job():
        send()

    return job


def daily_digest_schedule(spec: ReconciliationSpec, job: dg.JobDefinition) -> dg.ScheduleDefinition:
    digest = spec.notifications.digest
    return dg.ScheduleDefinition(
        name=f"digest_{spec.name}", job=job, cron_schedule=digest.cron, execution_timezone=digest.timezone,
        run_config={"ops": {"send_daily_digest": {"config": {"reconciliations": [spec.name]}}}},
        default_status=(dg.DefaultScheduleStatus.RUNNING if digest.default_status == "running"
                        else dg.DefaultScheduleStatus.STOPPED),
        description=f"Daily digest of {spec.name} to {', '.join(_digest_destinations(spec))}.",
    )


def _digest_destinations(spec: ReconciliationSpec) -> list[str]:
    return [name for name, d in spec.notifications.destinations.items() if d.type == "slack_digest"]


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")[:120]
