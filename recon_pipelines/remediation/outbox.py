"""The notification outbox (``recon_outbox``): written in the tracker run's transaction,
delivered afterwards, once per destination.

Statuses: ``pending`` (to send), ``delivered``, ``logged`` (Slack without a token: written
to the log, clearly marked), ``covered`` (part of an aggregated Slack message, not sent on its
own), ``in_digest`` (waits for the daily digest), ``failed`` (refused by the destination:
retrying cannot help; the error says why).

Delivery claims rows with a lease (``locked_by``/``locked_until``, ``FOR UPDATE SKIP LOCKED``
on PostgreSQL), so two deliverers never send the same row; a deliverer that dies mid-way
loses its lease and the rows become claimable again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from recon_pipelines.tracker.schema import outbox

CHUNK = 500  # ids per IN list: far below the bind-parameter limits of SQLite and PostgreSQL


@dataclass(frozen=True)
class Notification:
    """One message for one destination, as the routing decided it."""

    destination: str
    destination_type: str
    event: str  # opened, escalated, resolved, run_summary, resolved_summary, digest
    key: str  # idempotency key, unique per destination
    payload: dict
    tier: str | None = None
    discrepancy_id: str | None = None
    occurrence: int | None = None
    run_id: str | None = None
    parent_key: str | None = None  # the message this one replies to (a Slack thread)
    status: str = "pending"


@dataclass
class OutboxRow:
    id: int
    reconciliation: str
    destination: str
    destination_type: str
    event: str
    idempotency_key: str
    tier: str | None
    payload: dict
    attempts: int
    discrepancy_id: str | None = None
    occurrence: int | None = None
    run_id: str | None = None
    parent_key: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: sa.Row) -> "OutboxRow":
        m = row._mapping
        return cls(m["id"], m["reconciliation"], m["destination"], m["destination_type"], m["event"],
                   m["idempotency_key"], m["tier"], m["payload"], m["attempts"], m["discrepancy_id"],
                   m["occurrence"], m["run_id"], m["parent_key"])


def enqueue(conn: sa.Connection, reconciliation: str, notifications: Sequence[Notification], now: datetime) -> None:
    """Insert, skipping any (destination, key) already there: enqueueing twice sends once."""
    if not notifications:
        return
    rows = [
        {"reconciliation": reconciliation, "destination": n.destination, "destination_type": n.destination_type,
         "event": n.event, "idempotency_key": n.key, "discrepancy_id": n.discrepancy_id, "occurrence": n.occurrence,
         "run_id": n.run_id, "tier": n.tier, "parent_key": n.parent_key, "payload": n.payload, "status": n.status,
         "attempts": 0, "next_attempt_at": now, "created_at": now}
        for n in notifications
    ]
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(outbox).on_conflict_do_nothing(index_elements=["destination", "idempotency_key"]), rows)


def existing_keys(conn: sa.Connection, discrepancy_ids: Iterable[str]) -> set[tuple[str, str]]:
    """(destination, idempotency key) of every notification already written for these discrepancies."""
    found: set[tuple[str, str]] = set()
    for chunk in chunks(list(dict.fromkeys(discrepancy_ids))):
        query = sa.select(outbox.c.destination, outbox.c.idempotency_key).where(outbox.c.discrepancy_id.in_(chunk))
        found.update((d, k) for d, k in conn.execute(query))
    return found


def openings(conn: sa.Connection, discrepancy_ids: Iterable[str]) -> list[sa.Row]:
    """The opening notifications (opened or escalated) of these discrepancies, oldest first."""
    rows: list[sa.Row] = []
    for chunk in chunks(list(dict.fromkeys(discrepancy_ids))):
        rows += conn.execute(
            sa.select(outbox).where(outbox.c.discrepancy_id.in_(chunk), outbox.c.event.in_(("opened", "escalated")))
            .order_by(outbox.c.id)
        ).all()
    return rows


def claim(engine: sa.Engine, owner: str, now: datetime, lease: float, reconciliation: str | None = None,
          limit: int = 1000) -> list[OutboxRow]:
    """Due pending rows, oldest first, leased to ``owner`` for ``lease`` seconds."""
    o = outbox
    due = [o.c.status == "pending", o.c.next_attempt_at <= now, sa.or_(o.c.locked_until.is_(None), o.c.locked_until < now)]
    if reconciliation is not None:
        due.append(o.c.reconciliation == reconciliation)
    with engine.begin() as conn:
        ids = list(conn.scalars(sa.select(o.c.id).where(*due).order_by(o.c.id).limit(limit)
                                .with_for_update(skip_locked=True)))
        if not ids:
            return []
        for chunk in chunks(ids):
            conn.execute(sa.update(o).where(o.c.id.in_(chunk)).values(locked_by=owner,
                                                                      locked_until=now + timedelta(seconds=lease)))
        rows = [r for chunk in chunks(ids) for r in conn.execute(sa.select(o).where(o.c.id.in_(chunk)))]
    return sorted((OutboxRow.from_row(r) for r in rows), key=lambda r: r.id)


def _mine(row_id: int, owner: str):
    return sa.and_(outbox.c.id == row_id, outbox.c.locked_by == owner)


def mark_done(engine: sa.Engine, row_id: int, owner: str, status: str, now: datetime,
              external_ref: str | None = None, thread_ref: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(outbox).where(_mine(row_id, owner)).values(
            status=status, external_ref=external_ref, thread_ref=thread_ref, delivered_at=now,
            attempts=outbox.c.attempts + 1, locked_by=None, locked_until=None, last_error=None))


def mark_retry(engine: sa.Engine, row_id: int, owner: str, error: str, next_attempt_at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(outbox).where(_mine(row_id, owner)).values(
            attempts=outbox.c.attempts + 1, next_attempt_at=next_attempt_at, last_error=error[:2000],
            locked_by=None, locked_until=None))


def mark_failed(engine: sa.Engine, row_id: int, owner: str, error: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(outbox).where(_mine(row_id, owner)).values(
            status="failed", attempts=outbox.c.attempts + 1, last_error=error[:2000], locked_by=None, locked_until=None))


def release(engine: sa.Engine, row_ids: Sequence[int], owner: str) -> None:
    """Give back rows this pass did not try (their destination is down, or their thread is not posted yet)."""
    with engine.begin() as conn:
        for chunk in chunks(list(row_ids)):
            conn.execute(sa.update(outbox).where(outbox.c.id.in_(chunk), outbox.c.locked_by == owner)
                         .values(locked_by=None, locked_until=None))


def find(engine: sa.Engine, destination: str, key: str) -> sa.Row | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(outbox).where(outbox.c.destination == destination,
                                                    outbox.c.idempotency_key == key)).first()


def status_counts(engine: sa.Engine, reconciliation: str | None = None) -> dict[str, dict[str, int]]:
    """{destination: {status: count}}."""
    query = sa.select(outbox.c.destination, outbox.c.status, sa.func.count()).group_by(outbox.c.destination,
                                                                                       outbox.c.status)
    if reconciliation is not None:
        query = query.where(outbox.c.reconciliation == reconciliation)
    counts: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for destination, status, count in conn.execute(query):
            counts.setdefault(destination, {})[status] = count
    return counts


def due_count(engine: sa.Engine, now: datetime) -> int:
    """Pending rows whose next attempt is due and that no live deliverer holds (the sensor's question)."""
    o = outbox
    with engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(o).where(
            o.c.status == "pending", o.c.next_attempt_at <= now,
            sa.or_(o.c.locked_until.is_(None), o.c.locked_until < now)))


def chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
