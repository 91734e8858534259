"""Change feeds: the writes an event-triggered reconciliation watches.

A feed hands out changes strictly after a cursor, in cursor order. The SQL feed polls a
table of writes (or outbox rows); a Kafka or CDC feed only has to implement
``ChangeFeed.changes_after`` with the same contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from recon_pipelines.instants import instant_sql
from recon_pipelines.sources.files import FileConnector, duck_types
from recon_pipelines.spec.models import ChangeFeedSpec, FileSource, SqlSource
from recon_pipelines.sqlutil import duckdb_connect, quote_ident, sql_literal


@dataclass(frozen=True)
class Change:
    cursor: Any  # JSON-serialisable; compared by the feed, never by the caller
    key: str
    written_at: datetime


class ChangeFeed(ABC):
    @abstractmethod
    def changes_after(self, cursor: Any | None, limit: int) -> list[Change]:
        """Up to ``limit`` changes after ``cursor`` (all when None), in cursor order."""


class SqlChangeFeed(ChangeFeed):
    def __init__(self, spec: ChangeFeedSpec):
        from recon_pipelines.sources.sql import SqlConnector

        self.spec = spec
        self._connector = SqlConnector(spec.source)

    def changes_after(self, cursor: Any | None, limit: int) -> list[Change]:
        connector, spec = self._connector, self.spec
        connector.schema()  # reflects the table, so columns are typed
        cursor_col, key_col, at_col = connector.columns_of([spec.cursor_column, spec.key_column, spec.written_at_column])
        query = sa.select(cursor_col, key_col, at_col).select_from(connector.selectable())
        if cursor is not None:
            query = query.where(cursor_col > cursor)
        query = query.order_by(cursor_col).limit(limit)
        with connector.engine.connect() as conn:
            rows = conn.execute(query).all()
        zone = spec.source.timezone
        return [Change(_plain(c), str(k), _instant(at, zone)) for c, k, at in rows if k is not None]


class FileChangeFeed(ChangeFeed):
    def __init__(self, spec: ChangeFeedSpec):
        self.spec = spec
        self._connector = FileConnector(spec.source)

    def changes_after(self, cursor: Any | None, limit: int) -> list[Change]:
        spec, connector = self.spec, self._connector
        types = duck_types(connector.schema())
        at = instant_sql(quote_ident(spec.written_at_column), types.get(spec.written_at_column, "VARCHAR"), spec.source.timezone)
        where = f"WHERE {quote_ident(spec.cursor_column)} > {sql_literal(cursor)}" if cursor is not None else ""
        with duckdb_connect() as con:
            rows = con.execute(
                f"SELECT {quote_ident(spec.cursor_column)}, CAST({quote_ident(spec.key_column)} AS VARCHAR), {at} "
                f"FROM {connector.scan_sql()} {where} ORDER BY 1 LIMIT {int(limit)}"
            ).fetchall()
        return [Change(_plain(c), k, _instant(a, "UTC")) for c, k, a in rows if k is not None and a is not None]


def change_feed_for(spec: ChangeFeedSpec) -> ChangeFeed:
    if isinstance(spec.source, SqlSource):
        return SqlChangeFeed(spec)
    if isinstance(spec.source, FileSource):
        return FileChangeFeed(spec)
    raise ValueError(f"change_feed.source: no change feed for {spec.source.type} sources (sql or file)")


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str)) else str(value)


def _instant(value: Any, zone: str) -> datetime:
    from zoneinfo import ZoneInfo

    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    return value.astimezone(timezone.utc)
