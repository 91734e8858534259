"""Remediation: what happens to a discrepancy after the tracker records it.

Pure core, no Dagster imports (the Dagster layer is ``dagster_defs/remediation.py``):

- ``routing``: severity tier + kind/field -> destinations (the spec's ``routing`` rules),
  and the run-level tier of a run summary (``severity.run``);
- ``notifications``: the tracker hook that writes notifications to the outbox inside the
  run's transaction (opened, escalated, resolved, run summaries);
- ``outbox``: the outbox table: enqueue, claim with a lease, mark delivered;
- ``delivery``: sends claimed outbox rows to Slack, webhooks, the incident queue or the log;
- ``slack``, ``webhook``, ``queue``: the sinks; ``digest``: the daily digest;
- ``fixes``: allow-listed automatic fixes with dry runs and an audit trail.
"""

from recon_pipelines.remediation.delivery import DeliveryReport, Deliverer
from recon_pipelines.remediation.digest import enqueue_digests
from recon_pipelines.remediation.fixes import FixReport, run_fixes
from recon_pipelines.remediation.notifications import notification_writer
from recon_pipelines.remediation.queue import Incident, IncidentQueue

__all__ = [
    "Deliverer",
    "DeliveryReport",
    "FixReport",
    "Incident",
    "IncidentQueue",
    "enqueue_digests",
    "notification_writer",
    "run_fixes",
]
