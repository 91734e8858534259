"""The one small interface every source connector implements.

A connector reads one side of a reconciliation and yields Arrow record batches
whose schema it declares up front. It never holds the whole source in memory:
callers stream the batches into a Parquet snapshot (see ``snapshot.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from recon_pipelines.errors import SourceError  # noqa: F401  (connectors and their callers import it from here)
from recon_pipelines.instants import window_mask, window_sql
from recon_pipelines.sqlutil import duckdb_connect


@dataclass(frozen=True)
class RecordFilter:
    """Restricts a read to records modified in a window [modified_from, modified_to) and/or to
    given keys.

    The window has one definition, ``instants.window_sql``: files apply it in DuckDB
    (``window_clauses``), HTTP pages and SQL batches through ``window_mask``, so a record
    is in or out of a window whichever connector read it. The SQL connector may also push
    the bounds down, to use an index, where the column's type makes that exact.
    """

    updated_column: str | None = None
    updated_timezone: str = "UTC"  # zone of naive values in updated_column
    modified_from: datetime | None = None
    modified_to: datetime | None = None
    key_column: str | None = None
    keys: tuple | None = None

    @property
    def has_window(self) -> bool:
        return bool(self.updated_column) and (self.modified_from is not None or self.modified_to is not None)

    def window_clauses(self, duck_type: str) -> list[str]:
        """DuckDB conditions for the window, the update column being of ``duck_type``."""
        if not self.has_window:
            return []
        return window_sql(self.updated_column, duck_type, self.updated_timezone, self.modified_from, self.modified_to)

    def window_mask(self, batch: pa.RecordBatch) -> pa.Array | None:
        """Which rows of ``batch`` (holding the update column) lie in the window; None without one."""
        if not self.has_window:
            return None
        return window_mask(batch, self.updated_column, self.updated_timezone, self.modified_from, self.modified_to)


class Connector(ABC):
    """Reads one source. ``label`` is safe to log: it carries no credentials."""

    label: str

    @abstractmethod
    def schema(self) -> pa.Schema:
        """The columns the source offers, read cheaply (file footer, LIMIT 0, first page)."""

    @abstractmethod
    def batches(
        self, columns: Sequence[str] | None = None, record_filter: RecordFilter | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream the records, restricted to ``columns`` when given, in the order of ``columns``."""

    def source_types(self) -> dict[str, str]:
        """Each column's type as the source declares it, for people to read (schema drift): a
        database's own type where there is one (``NUMERIC(12, 2)``), else DuckDB's name for the
        Arrow type (``DECIMAL(12,2)``, ``TIMESTAMP WITH TIME ZONE``)."""
        schema = self.schema()
        with duckdb_connect() as con:
            types = con.from_arrow(schema.empty_table()).dtypes
        return {field.name: str(kind) for field, kind in zip(schema, types)}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; safe to call twice."""

    def __enter__(self) -> "Connector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def require_columns(schema: pa.Schema, columns: Sequence[str], label: str) -> None:
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise SourceError(
            f"{label}: column(s) {', '.join(map(repr, missing))} not found; "
            f"the source has {', '.join(schema.names) or 'no columns'}"
        )
