"""The triage queue: discrepancies filtered, sorted and paged by keyset (never OFFSET).

A page ends with a cursor (the sort value and the id of its last row); the next page asks for
rows strictly after it, so page 10,000 costs what page 1 costs and a row inserted meanwhile
never shifts the pages. Migration 0006 adds the indexes these orders walk.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import get_args

import sqlalchemy as sa

from recon_pipelines.spec.base import Tier
from recon_pipelines.tracker.schema import OPEN_STATUSES, STATUSES, discrepancies, runs

# name -> (column, descending): every order ends with the id, so it is total. Both walk the same
# (…, opened_at, id) indexes, forwards or backwards.
SORTS = {
    "newest": ("opened_at", True),
    "oldest": ("opened_at", False),
}
PAGE_SIZES = (25, 50, 100, 200)


class QueueError(ValueError):
    """A filter or cursor the queue cannot use (the page says which)."""


@dataclass(frozen=True)
class QueueFilter:
    reconciliation: str | None = None
    status: str = "open"  # a status, "open" (every open state) or "all"
    severity: str | None = None
    kind: str | None = None
    field: str | None = None
    assignee: str | None = None  # "-" means unassigned
    key: str | None = None  # substring of the key
    older_than: timedelta | None = None  # current occurrence opened at least this long ago

    def conditions(self, now: datetime) -> list:
        d = discrepancies
        where = []
        if self.status == "open":
            where.append(d.c.status.in_(OPEN_STATUSES))
        elif self.status != "all":
            if self.status not in STATUSES:
                raise QueueError(f"unknown status {self.status!r}; expected open, all or one of {', '.join(STATUSES)}")
            where.append(d.c.status == self.status)
        for name in ("reconciliation", "severity", "kind", "field"):
            if getattr(self, name):
                where.append(d.c[name] == getattr(self, name))
        if self.assignee == "-":
            where.append(d.c.assignee.is_(None))
        elif self.assignee:
            where.append(d.c.assignee == self.assignee)
        if self.key:
            escaped = self.key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append(d.c.key.like(f"%{escaped}%", escape="\\"))
        if self.older_than is not None:
            where.append(d.c.opened_at <= now - self.older_than)
        return where


@dataclass
class Page:
    rows: list[dict]
    next_cursor: str | None
    sort: str
    size: int
    filters: QueueFilter = field(default_factory=QueueFilter)


def page(engine: sa.Engine, filters: QueueFilter, sort: str = "newest", after: str | None = None,
         size: int = 50, now: datetime | None = None) -> Page:
    """One page of the queue, and the cursor of the next one (None on the last page)."""
    if sort not in SORTS:
        raise QueueError(f"unknown sort {sort!r}; expected one of {', '.join(SORTS)}")
    if size not in PAGE_SIZES:
        raise QueueError(f"page size must be one of {', '.join(map(str, PAGE_SIZES))}")
    d = discrepancies
    column, descending = SORTS[sort]
    order_col = d.c[column]
    query = sa.select(d).where(*filters.conditions(now or datetime.now(timezone.utc)))
    if after:
        value, last_id = decode_cursor(after)
        position = sa.tuple_(order_col, d.c.id)
        bound = sa.tuple_(sa.literal(value, d.c[column].type), sa.literal(last_id))
        query = query.where(position < bound if descending else position > bound)
    if descending:
        query = query.order_by(order_col.desc(), d.c.id.desc())
    else:
        query = query.order_by(order_col.asc(), d.c.id.asc())
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query.limit(size + 1))]
    for row in rows:
        for name, value in row.items():
            if isinstance(value, datetime) and value.tzinfo is None:
                row[name] = value.replace(tzinfo=timezone.utc)
    more = len(rows) > size
    rows = rows[:size]
    cursor = encode_cursor(rows[-1][column], rows[-1]["id"]) if more else None
    return Page(rows, cursor, sort, size, filters)


def choices(engine: sa.Engine) -> dict[str, list[str]]:
    """The values the filter menus offer. Read from the small runs table and the spec's tiers,
    never by scanning the discrepancies (a page load must not cost a pass over a million rows)."""
    with engine.connect() as conn:
        reconciliations = list(conn.scalars(sa.select(runs.c.reconciliation).distinct().order_by(runs.c.reconciliation)))
    return {"reconciliation": reconciliations, "severity": list(get_args(Tier))}


def latest_system_counts(engine: sa.Engine, reconciliation: str | None = None) -> dict[str, dict]:
    """N-way reconciliations: the summary of each one's latest applied run (per-system counts
    and why they differ), by name. Read from the small runs table."""
    from recon_pipelines.tracker.schema import APPLIED_OUTCOMES

    latest = (sa.select(runs.c.reconciliation, sa.func.max(runs.c.finished_at).label("at"))
              .where(runs.c.outcome.in_(APPLIED_OUTCOMES)).group_by(runs.c.reconciliation))
    if reconciliation:
        latest = latest.where(runs.c.reconciliation == reconciliation)
    latest = latest.subquery()
    query = (sa.select(runs.c.reconciliation, runs.c.summary)
             .join(latest, sa.and_(runs.c.reconciliation == latest.c.reconciliation, runs.c.finished_at == latest.c.at))
             .order_by(runs.c.reconciliation))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return {row.reconciliation: row.summary for row in rows if isinstance(row.summary, dict) and row.summary.get("nway")}


def encode_cursor(value: datetime, last_id: str) -> str:
    raw = json.dumps([value.astimezone(timezone.utc).isoformat(), last_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, last_id = json.loads(raw)
        instant = datetime.fromisoformat(value)
        if not isinstance(last_id, str):
            raise TypeError
    except (ValueError, TypeError) as exc:
        raise QueueError("the page cursor is not valid; start from the first page") from exc
    return instant, last_id
