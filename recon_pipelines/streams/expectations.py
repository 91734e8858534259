"""Open expectations per key, kept in the tracker so they survive restarts.

A change on one side opens an expectation: the other side must repeat it (same op, same
compared values) before ``due_at`` (the change's commit time plus the window). A matching
counterpart closes it; a counterpart with other values is noted and the key stays open; a
later change on the same side moves the deadline. Keys past their deadline are claimed in
batches for a key-scoped re-check (settle.py), which closes them.

Each source's last handled position is stored in the same transaction as the expectations it
changed: a change delivered again after a restart (an unacknowledged slot position, a stream
message redelivered) is skipped, so nothing is counted twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from recon_pipelines.streams.events import ChangeEvent
from recon_pipelines.tracker.schema import stream_expectations as expectations_table
from recon_pipelines.tracker.schema import stream_positions as positions_table

_CHUNK = 500  # keys per IN (...) list


@dataclass
class Expectation:
    key: str
    waiting_for: str
    op: str
    values_digest: str
    event_at: datetime
    due_at: datetime
    counterpart_at: datetime | None = None
    claim: str | None = None

    @property
    def written_on(self) -> str:
        return "b" if self.waiting_for == "a" else "a"


@dataclass(frozen=True)
class Applied:
    handled: int = 0
    skipped: int = 0  # already handled before (a redelivery)
    opened: int = 0
    closed: int = 0


@dataclass(frozen=True)
class Lag:
    open: int
    overdue: int
    oldest_event_at: datetime | None


class ExpectationStore:
    def __init__(self, engine: sa.Engine, reconciliation: str, window: float):
        self.engine, self.reconciliation, self.window = engine, reconciliation, timedelta(seconds=window)

    # ------------------------------------------------------------------ changes in

    def apply(self, source: str, events: Sequence[ChangeEvent]) -> Applied:
        """Fold ``events`` (in ``source`` order) in one transaction, with ``source``'s position."""
        with self.engine.begin() as conn:
            last = self._position(conn, source)
            fresh = [e for e in events if last is None or e.position > last]
            if not fresh:
                return Applied(skipped=len(events))
            keys = list(dict.fromkeys(e.key for e in fresh))
            before = self._load(conn, keys)
            state = dict(before)
            opened = closed = 0
            for event in fresh:
                current = state.get(event.key)
                if current is None:
                    state[event.key] = self._open(event)
                    opened += 1
                elif current.waiting_for == event.side:  # the counterpart
                    if event.digest() == current.values_digest:
                        state[event.key] = None
                        closed += 1
                    else:
                        current.counterpart_at = event.at
                else:  # a newer change on the side that wrote first: its own window
                    state[event.key] = self._open(event, claim=current.claim)
            self._save(conn, before, state)
            self._set_position(conn, source, max(e.position for e in fresh))
        return Applied(len(fresh), len(events) - len(fresh), opened, closed)

    def position(self, source: str) -> str | None:
        with self.engine.connect() as conn:
            return self._position(conn, source)

    # ------------------------------------------------------------------ deadlines

    def claim_due(self, now: datetime, batch_size: int, max_batches: int) -> dict[str, list[str]]:
        """Claim up to ``max_batches`` batches of keys past their deadline; claim id -> keys."""
        t = expectations_table
        with self.engine.begin() as conn:
            keys = conn.execute(
                sa.select(t.c.key).where(t.c.reconciliation == self.reconciliation, t.c.claim.is_(None),
                                         t.c.due_at <= now).order_by(t.c.due_at, t.c.key).limit(batch_size * max_batches)
            ).scalars().all()
            batches = {}
            for start in range(0, len(keys), batch_size):
                claim = f"{uuid.uuid4().hex}"
                batch = keys[start:start + batch_size]
                conn.execute(t.update().where(t.c.reconciliation == self.reconciliation, t.c.key.in_(batch),
                                              t.c.claim.is_(None)).values(claim=claim))
                batches[claim] = batch
        return batches

    def claimed(self) -> dict[str, list[str]]:
        """Batches claimed and not settled yet (their runs are pending, running, or failed)."""
        t = expectations_table
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.claim, t.c.key).where(t.c.reconciliation == self.reconciliation,
                                                                     t.c.claim.is_not(None)).order_by(t.c.key)).all()
        batches: dict[str, list[str]] = {}
        for claim, key in rows:
            batches.setdefault(claim, []).append(key)
        return batches

    def expectations(self, keys: Iterable[str]) -> dict[str, Expectation]:
        with self.engine.connect() as conn:
            return self._load(conn, list(keys))

    def settle(self, keys: Iterable[str], as_of: datetime) -> int:
        """Close the keys' expectations due by ``as_of`` (re-checked); a key changed again since
        keeps its newer expectation, unclaimed, for its own deadline."""
        t, keys = expectations_table, list(keys)
        closed = 0
        with self.engine.begin() as conn:
            for start in range(0, len(keys), _CHUNK):
                mine = (t.c.reconciliation == self.reconciliation) & t.c.key.in_(keys[start:start + _CHUNK])
                closed += conn.execute(t.delete().where(mine, t.c.due_at <= as_of)).rowcount
                conn.execute(t.update().where(mine).values(claim=None))
        return closed

    def lag(self, now: datetime) -> Lag:
        t = expectations_table
        with self.engine.connect() as conn:
            mine = t.c.reconciliation == self.reconciliation
            count, oldest = conn.execute(sa.select(sa.func.count(), sa.func.min(t.c.event_at)).where(mine)).one()
            overdue = conn.execute(sa.select(sa.func.count()).where(mine, t.c.due_at <= now)).scalar_one()
        return Lag(count, overdue, _utc(oldest) if oldest else None)

    # ------------------------------------------------------------------ rows

    def _open(self, event: ChangeEvent, claim: str | None = None) -> Expectation:
        other = "b" if event.side == "a" else "a"
        return Expectation(event.key, other, event.op, event.digest(), event.at, event.at + self.window, claim=claim)

    def _load(self, conn: sa.Connection, keys: list[str]) -> dict[str, Expectation]:
        t, found = expectations_table, {}
        for start in range(0, len(keys), _CHUNK):
            rows = conn.execute(sa.select(t).where(t.c.reconciliation == self.reconciliation,
                                                   t.c.key.in_(keys[start:start + _CHUNK]))).mappings()
            for row in rows:
                found[row["key"]] = Expectation(
                    row["key"], row["waiting_for"], row["op"], row["values_digest"], _utc(row["event_at"]),
                    _utc(row["due_at"]), _utc(row["counterpart_at"]) if row["counterpart_at"] else None, row["claim"])
        return found

    def _save(self, conn: sa.Connection, before: dict[str, Expectation], state: dict[str, Expectation | None]) -> None:
        t = expectations_table
        stale = list(before)
        for start in range(0, len(stale), _CHUNK):
            conn.execute(t.delete().where(t.c.reconciliation == self.reconciliation, t.c.key.in_(stale[start:start + _CHUNK])))
        rows = [{"reconciliation": self.reconciliation, **vars(e)} for e in state.values() if e is not None]
        if rows:
            conn.execute(t.insert(), rows)

    def _position(self, conn: sa.Connection, source: str) -> str | None:
        p = positions_table
        return conn.execute(sa.select(p.c.position).where(p.c.reconciliation == self.reconciliation,
                                                          p.c.source == source)).scalar_one_or_none()

    def _set_position(self, conn: sa.Connection, source: str, position: str) -> None:
        p = positions_table
        values = {"position": position, "updated_at": datetime.now(timezone.utc)}
        mine = (p.c.reconciliation == self.reconciliation) & (p.c.source == source)
        if conn.execute(p.update().where(mine).values(**values)).rowcount == 0:
            conn.execute(p.insert().values(reconciliation=self.reconciliation, source=source, **values))


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
