"""The incident queue: a table (``recon_incidents``) that incident consumers claim from.

Routed notifications for a ``queue`` destination become incidents (once each: the queue and
the dedup key are unique). A consumer works through them like this::

    from recon_pipelines.remediation import IncidentQueue

    queue = IncidentQueue("postgresql://…/recon", queue="incidents")
    for incident in queue.claim(10, consumer="pager-bot-1"):
        try:
            handle(incident)              # incident.title, .severity, .payload (the discrepancy)
        except Exception:
            queue.release(incident.id)    # back to pending, for this or another consumer
        else:
            queue.complete(incident.id)

``claim`` uses ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of consumers
can claim at once: each incident goes to exactly one of them and none waits for another.
(SQLite serialises writers, so it gives the same guarantee with one claimer at a time.)
When the tracker resolves a discrepancy, its incident is marked: ``resolved`` if nobody had
claimed it yet (it is no longer claimable), else ``resolved_at`` is set for the consumer to see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from recon_pipelines.tracker.db import create_tracker_engine, migrate
from recon_pipelines.tracker.schema import incidents

DEFAULT_QUEUE = "incidents"


@dataclass(frozen=True)
class Incident:
    id: int
    queue: str
    dedup_key: str
    reconciliation: str
    discrepancy_id: str | None
    severity: str
    title: str
    payload: dict
    status: str
    attempts: int
    claimed_by: str | None
    resolved_at: datetime | None


class IncidentQueue:
    def __init__(self, url: str | None = None, engine: sa.Engine | None = None, queue: str = DEFAULT_QUEUE,
                 migrate_schema: bool = True):
        """``url``: the tracker's database (or the queue destination's ``url_env``); default as the tracker's."""
        self.engine = engine or create_tracker_engine(url)
        if migrate_schema:
            migrate(self.engine)
        self.queue = queue

    def claim(self, n: int, consumer: str, now: datetime | None = None) -> list[Incident]:
        """Up to ``n`` pending incidents, oldest first, now ``claimed`` by ``consumer``."""
        i = incidents
        now = now or datetime.now(timezone.utc)
        pending = (sa.select(i.c.id).where(i.c.queue == self.queue, i.c.status == "pending").order_by(i.c.id).limit(n)
                   .with_for_update(skip_locked=True).scalar_subquery())
        claim = (sa.update(i).where(i.c.id.in_(pending))
                 .values(status="claimed", claimed_by=consumer, claimed_at=now, attempts=i.c.attempts + 1)
                 .returning(*i.c))
        with self.engine.begin() as conn:
            rows = conn.execute(claim).all()
        return sorted((_incident(r) for r in rows), key=lambda x: x.id)

    def complete(self, incident_id: int, now: datetime | None = None) -> None:
        """Done with a claimed incident."""
        self._move(incident_id, ("claimed",), status="done", completed_at=now or datetime.now(timezone.utc))

    def release(self, incident_id: int) -> None:
        """Give a claimed incident back to the queue."""
        self._move(incident_id, ("claimed",), status="pending", claimed_by=None, claimed_at=None)

    def get(self, incident_id: int) -> Incident | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(incidents).where(incidents.c.id == incident_id)).first()
        return _incident(row) if row else None

    def counts(self) -> dict[str, int]:
        i = incidents
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(i.c.status, sa.func.count()).where(i.c.queue == self.queue).group_by(i.c.status))
            return {status: count for status, count in rows}

    def _move(self, incident_id: int, allowed_from: tuple[str, ...], **values) -> None:
        i = incidents
        with self.engine.begin() as conn:
            status = conn.scalar(sa.select(i.c.status).where(i.c.id == incident_id, i.c.queue == self.queue))
            if status is None:
                raise LookupError(f"no incident {incident_id} in queue {self.queue!r}")
            if status not in allowed_from:
                raise ValueError(f"incident {incident_id} is {status}, not {' or '.join(allowed_from)}")
            conn.execute(sa.update(i).where(i.c.id == incident_id).values(**values))


# --------------------------------------------------------------------------- the producer side (delivery)


def open_incident(conn: sa.Connection, queue: str, dedup_key: str, reconciliation: str, discrepancy_id: str | None,
                  severity: str, title: str, payload: dict, now: datetime) -> int:
    """Insert once per (queue, dedup_key); returns the incident's id either way."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(incidents).values(
        queue=queue, dedup_key=dedup_key, reconciliation=reconciliation, discrepancy_id=discrepancy_id,
        severity=severity, title=title, payload=payload, status="pending", attempts=0, created_at=now,
    ).on_conflict_do_nothing(index_elements=["queue", "dedup_key"]))
    return conn.scalar(sa.select(incidents.c.id).where(incidents.c.queue == queue, incidents.c.dedup_key == dedup_key))


def resolve_incident(conn: sa.Connection, queue: str, dedup_key: str, now: datetime) -> int | None:
    """The discrepancy was resolved: an unclaimed incident leaves the queue, a claimed one learns it."""
    i = incidents
    mine = sa.and_(i.c.queue == queue, i.c.dedup_key == dedup_key)
    conn.execute(sa.update(i).where(mine, i.c.status == "pending").values(status="resolved", resolved_at=now))
    conn.execute(sa.update(i).where(mine, i.c.resolved_at.is_(None)).values(resolved_at=now))
    return conn.scalar(sa.select(i.c.id).where(mine))


def _incident(row: sa.Row) -> Incident:
    m = row._mapping
    resolved = m["resolved_at"]
    if resolved is not None and resolved.tzinfo is None:
        resolved = resolved.replace(tzinfo=timezone.utc)
    return Incident(m["id"], m["queue"], m["dedup_key"], m["reconciliation"], m["discrepancy_id"], m["severity"],
                    m["title"], m["payload"], m["status"], m["attempts"], m["claimed_by"], resolved)
