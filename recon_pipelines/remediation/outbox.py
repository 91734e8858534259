"""The notification outbox (``recon_outbox``): written in the tracker run's transaction,
delivered afterwards, once per destination.

Statuses: ``pending`` (to send), ``delivered``, ``logged`` (Slack without a token: written
to the log, clearly marked), ``covered`` (part of an aggregated Slack message, not sent on its
own), ``in_digest`` (waits for the daily digest), ``failed`` (refused by the destination:
retrying cannot help until someone fixes the cause; ``recon notifications retry`` requeues it).

Claims:

- **Order.** Only the oldest unfinished event of a (discrepancy, destination) is claimable: a
  ``resolve`` waits while its ``trigger`` is pending or failed, so it can never overtake it.
- **Leases.** A claim leases rows (``locked_by``/``locked_until``, ``FOR UPDATE SKIP LOCKED``
  on PostgreSQL) and the deliverer renews the lease while it works; a deliverer that dies
  loses it and the rows become claimable again.
- **Fencing.** Each claim increments ``claims``; its new value is the claim's token. Marking
  a row, renewing its lease and the check right before sending all require the token, so a
  deliverer whose lease was taken over can neither send nor overwrite the new holder's result.
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
    token: int = 0  # this claim's fencing token (the row's ``claims`` after it)
    created_at: datetime | None = None
    extra: dict = field(default_factory=dict)

    @property
    def claimed_before(self) -> bool:
        """Another claim came first: it may have sent the message before it died or lost the lease."""
        return self.token > 1

    @classmethod
    def from_row(cls, row: sa.Row) -> "OutboxRow":
        m = row._mapping
        return cls(m["id"], m["reconciliation"], m["destination"], m["destination_type"], m["event"],
                   m["idempotency_key"], m["tier"], m["payload"], m["attempts"], m["discrepancy_id"],
                   m["occurrence"], m["run_id"], m["parent_key"], m["claims"], m["created_at"])


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


UNFINISHED = ("pending", "failed")  # statuses that hold back the later events of the same discrepancy


def claimable(now: datetime, reconciliation: str | None = None, skip_destinations: Iterable[str] = ()) -> list:
    """Due pending rows nobody holds whose earlier events (same discrepancy and destination) are all finished."""
    o, earlier = outbox, outbox.alias("earlier")
    where = [o.c.status == "pending", o.c.next_attempt_at <= now,
             sa.or_(o.c.locked_until.is_(None), o.c.locked_until < now),
             ~sa.exists().where(earlier.c.destination == o.c.destination, earlier.c.discrepancy_id == o.c.discrepancy_id,
                                earlier.c.id < o.c.id, earlier.c.status.in_(UNFINISHED))]
    if reconciliation is not None:
        where.append(o.c.reconciliation == reconciliation)
    skip = list(skip_destinations)
    if skip:
        where.append(o.c.destination.not_in(skip))
    return where


def claim(engine: sa.Engine, owner: str, now: datetime, lease: float, reconciliation: str | None = None,
          limit: int = 1000, skip_destinations: Iterable[str] = ()) -> list[OutboxRow]:
    """Claimable rows, oldest first, leased to ``owner`` for ``lease`` seconds, each with a new fencing token."""
    o = outbox
    with engine.begin() as conn:
        ids = list(conn.scalars(sa.select(o.c.id).where(*claimable(now, reconciliation, skip_destinations))
                                .order_by(o.c.id).limit(limit).with_for_update(skip_locked=True)))
        if not ids:
            return []
        for chunk in chunks(ids):
            conn.execute(sa.update(o).where(o.c.id.in_(chunk)).values(
                locked_by=owner, locked_until=now + timedelta(seconds=lease), claims=o.c.claims + 1))
        rows = [r for chunk in chunks(ids) for r in conn.execute(sa.select(o).where(o.c.id.in_(chunk)))]
    return sorted((OutboxRow.from_row(r) for r in rows), key=lambda r: r.id)


def _held(row_id: int, token: int):
    return sa.and_(outbox.c.id == row_id, outbox.c.claims == token, outbox.c.status == "pending")


def holds(engine: sa.Engine, row_id: int, token: int) -> bool:
    """Whether this claim is still the row's latest (checked right before sending)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(outbox.c.id).where(_held(row_id, token))).first() is not None


def renew(engine: sa.Engine, held: dict[int, int], until: datetime) -> list[int]:
    """Extend the leases of the rows still held (id -> token); returns the ids that were lost."""
    lost = []
    with engine.begin() as conn:
        for row_id, token in held.items():
            if conn.execute(sa.update(outbox).where(_held(row_id, token)).values(locked_until=until)).rowcount == 0:
                lost.append(row_id)
    return lost


def mark_done(engine: sa.Engine, row_id: int, token: int, status: str, now: datetime,
              external_ref: str | None = None, thread_ref: str | None = None) -> bool:
    """False when the claim was taken over (the new holder decides)."""
    return _mark(engine, row_id, token, status=status, external_ref=external_ref, thread_ref=thread_ref,
                 delivered_at=now, last_error=None)


def mark_retry(engine: sa.Engine, row_id: int, token: int, error: str, next_attempt_at: datetime) -> bool:
    return _mark(engine, row_id, token, next_attempt_at=next_attempt_at, last_error=error[:2000])


def mark_failed(engine: sa.Engine, row_id: int, token: int, error: str) -> bool:
    return _mark(engine, row_id, token, status="failed", last_error=error[:2000])


def _mark(engine: sa.Engine, row_id: int, token: int, **values) -> bool:
    with engine.begin() as conn:
        done = conn.execute(sa.update(outbox).where(_held(row_id, token)).values(
            attempts=outbox.c.attempts + 1, locked_by=None, locked_until=None, **values))
    return done.rowcount == 1


def release(engine: sa.Engine, held: dict[int, int]) -> None:
    """Give back rows this pass did not finish (destination down, thread not posted yet, an error)."""
    with engine.begin() as conn:
        for row_id, token in held.items():
            conn.execute(sa.update(outbox).where(_held(row_id, token)).values(locked_by=None, locked_until=None))


def requeue(engine: sa.Engine, now: datetime, destination: str | None = None, since: datetime | None = None,
            reconciliation: str | None = None) -> int:
    """Failed rows back to pending, due now (after the token or channel was fixed); how many."""
    o = outbox
    where = [o.c.status == "failed"]
    if destination is not None:
        where.append(o.c.destination == destination)
    if since is not None:
        where.append(o.c.created_at >= since)
    if reconciliation is not None:
        where.append(o.c.reconciliation == reconciliation)
    with engine.begin() as conn:
        return conn.execute(sa.update(o).where(*where).values(status="pending", next_attempt_at=now, locked_by=None,
                                                              locked_until=None)).rowcount


def listing(engine: sa.Engine, status: str | None = None, destination: str | None = None,
            reconciliation: str | None = None, limit: int | None = None) -> list[dict]:
    """Outbox rows as dicts, oldest first (what ``recon notifications list`` shows)."""
    o = outbox
    query = sa.select(o.c.id, o.c.reconciliation, o.c.destination, o.c.event, o.c.idempotency_key, o.c.status,
                      o.c.attempts, o.c.next_attempt_at, o.c.last_error, o.c.created_at).order_by(o.c.id)
    for column, value in ((o.c.status, status), (o.c.destination, destination), (o.c.reconciliation, reconciliation)):
        if value is not None:
            query = query.where(column == value)
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


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
    """Rows a deliverer could claim now (the sensor's question)."""
    with engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(outbox).where(*claimable(now)))


def chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
