"""The daily digest: per ``slack_digest`` destination, the discrepancies routed to it that
opened within the look-back window (one day by default) or are still open (muted ones
aside), grouped by field (record-level kinds by kind).

A digest is an outbox row like any other (key ``digest:<reconciliation>:<date>``): it is
retried while Slack is down, and a schedule that fires twice on one day sends it once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from recon_pipelines.remediation import outbox
from recon_pipelines.remediation.outbox import Notification
from recon_pipelines.remediation.routing import TIER_RANK
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.tracker.schema import discrepancies
from recon_pipelines.tracker.schema import outbox as outbox_table

LISTED_STATUSES = ("new", "acknowledged", "escalated")  # open, and not muted by an operator
EXAMPLES_PER_GROUP = 3


def enqueue_digests(engine: sa.Engine, spec: ReconciliationSpec, now: datetime | None = None) -> list[Notification]:
    """Write today's digest of each digest destination of ``spec`` (nothing when nothing is listed)."""
    now = now or datetime.now(timezone.utc)
    options = spec.notifications.digest
    day = now.astimezone(ZoneInfo(options.timezone)).date().isoformat()
    since = now - timedelta(seconds=options.lookback)
    notes = []
    with engine.begin() as conn:
        for name, destination in spec.notifications.destinations.items():
            if destination.type != "slack_digest":
                continue
            rows = _listed(conn, spec.name, name, since)
            if rows:
                payload = {"event": "digest", "reconciliation": spec.name, "date": day, "total": len(rows),
                           "source_a": spec.source_names[0], "source_b": spec.source_names[1], "groups": _groups(rows)}
                notes.append(Notification(name, destination.type, "digest", f"digest:{spec.name}:{day}", payload,
                                          tier="warning"))
        outbox.enqueue(conn, spec.name, notes, now)
    return notes


def _listed(conn: sa.Connection, reconciliation: str, destination: str, since: datetime) -> list[sa.Row]:
    d, o = discrepancies, outbox_table
    routed_here = sa.exists().where(o.c.discrepancy_id == d.c.id, o.c.occurrence == d.c.occurrence,
                                    o.c.destination == destination, o.c.event.in_(("opened", "escalated")))
    query = sa.select(d).where(
        d.c.reconciliation == reconciliation, routed_here,
        sa.or_(d.c.status.in_(LISTED_STATUSES), sa.and_(d.c.status == "resolved", d.c.opened_at >= since)),
    )
    return conn.execute(query).all()


def _groups(rows: list[sa.Row]) -> list[dict]:
    grouped: dict[tuple, list[sa.Row]] = defaultdict(list)
    for row in rows:
        grouped[(row.field, None if row.field else row.kind)].append(row)
    groups = []
    for (field, kind), members in grouped.items():
        members.sort(key=lambda r: (r.status == "resolved", TIER_RANK.get(r.severity, 9), r.key))
        groups.append({
            "field": field, "kind": kind, "count": len(members),
            "open": sum(r.status != "resolved" for r in members), "resolved": sum(r.status == "resolved" for r in members),
            "examples": [{"key": r.key, "value_a": r.value_a, "value_b": r.value_b, "status": r.status,
                          "severity": r.severity} for r in members[:EXAMPLES_PER_GROUP]],
        })
    return sorted(groups, key=lambda g: (-g["count"], g["field"] or g["kind"]))
