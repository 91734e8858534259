"""SQL tables and queries through SQLAlchemy, streamed in chunks (server-side cursors
where the driver has them), never ``fetchall``. Read-only: a ``query:`` is checked before
it runs and every connection is read-only (``sources/readonly.py``)."""

from __future__ import annotations

import datetime as dt
import decimal
import os
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from collections.abc import Iterator, Sequence

import pyarrow as pa
import sqlalchemy as sa

from recon_pipelines.readonly_sql import check_query
from recon_pipelines.redact import redact
from recon_pipelines.sources.base import Connector, RecordFilter, SourceError, require_columns
from recon_pipelines.sources.readonly import filter_sql, read_only_engine
from recon_pipelines.spec.models import SqlSource
from recon_pipelines.spec.types import declared_schema
from recon_pipelines.urls import normalize_url

# Keys filtered per statement: well under the bind-parameter limits of SQLite and PostgreSQL.
KEYS_PER_STATEMENT = 5_000


class SqlConnector(Connector):
    def __init__(self, spec: SqlSource):
        self.spec = spec
        url = spec.url
        if spec.url_env:
            url = os.environ.get(spec.url_env)
            if not url:
                raise SourceError(f"{spec.name or 'sql'}: environment variable {spec.url_env} is not set")
        self._url = normalize_url(url)
        what = spec.table or "query"
        self.label = f"{spec.name or 'sql'} ({redact(self._url)} {what})"
        self._engine: sa.Engine | None = None  # always read_only_engine(): no way around it
        self._schema: pa.Schema | None = None
        self._table: sa.Table | None = None
        self._checked_query: str | None = None

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            try:
                self._engine = read_only_engine(self._url, self.spec.statement_timeout)
            except Exception as exc:
                raise SourceError(f"{self.label}: {type(exc).__name__}: {redact(exc)}") from None
        return self._engine

    @property
    def query(self) -> str:
        """The spec's query once it passed the read-only check in this database's dialect:
        every use goes through here, so a refused query never reaches the server."""
        if self._checked_query is None:
            try:
                check_query(self.spec.query, self.engine.dialect.name)
            except SourceError as exc:
                raise type(exc)(f"{self.label}: {exc}") from None
            self._checked_query = self.spec.query
        return self._checked_query

    def columns_of(self, names: Sequence[str]) -> list:
        """Typed columns of the reflected table, so the driver's values are converted by
        SQLAlchemy (SQLite hands back DATETIME as text otherwise); plain ones for a query."""
        if self._table is not None:
            return [self._table.c[name] for name in names]
        return [sa.column(name) for name in names]

    def _window_clauses(self, f: RecordFilter | None) -> list:
        """The window pushed down, so an index on the column is used. It only narrows the read:
        the batches are then filtered by ``RecordFilter.window_mask`` like every connector's,
        so the bounds here are widened to keep every record the mask could keep.

        - timestamp with zone: the bounds themselves;
        - naive timestamp: the bounds in the source's wall clock, a day wider (DST folds);
        - text: ISO-8601 text sorts as its time, give or take its offset (under a day), so the
          day before the window's first local day up to two days after its last (a text that
          is not ISO-8601, e.g. with leading blanks, can be missed here);
        - anything else (epoch numbers): not pushed down."""
        if f is None or not f.has_window:
            return []
        (column,) = self.columns_of([f.updated_column])
        column_type = getattr(column, "type", None)
        zone = ZoneInfo(f.updated_timezone)

        def local(value: datetime) -> datetime:
            return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(zone)

        if isinstance(column_type, sa.DateTime) and column_type.timezone:
            low, high = f.modified_from, f.modified_to
        elif isinstance(column_type, sa.DateTime):
            low = f.modified_from and (local(f.modified_from) - timedelta(days=1)).replace(tzinfo=None)
            high = f.modified_to and (local(f.modified_to) + timedelta(days=1)).replace(tzinfo=None)
        elif isinstance(column_type, sa.String):
            low = f.modified_from and (local(f.modified_from).date() - timedelta(days=1)).isoformat()
            high = f.modified_to and (local(f.modified_to).date() + timedelta(days=2)).isoformat()
        else:
            return []
        clauses = []
        if low is not None:
            clauses.append(column >= low)
        if high is not None:
            clauses.append(column < high)
        return clauses

    def _key_chunks(self, base: sa.Select, f: RecordFilter | None) -> Iterator[sa.Select]:
        """Keys compared in the column's own type where it is an integer (so its index is used)."""
        if f is None or f.keys is None or not f.key_column:
            yield base
            return
        (column,) = self.columns_of([f.key_column])
        keys: list = [str(k) for k in f.keys]
        if isinstance(getattr(column, "type", None), sa.Integer):
            try:
                keys = [int(k) for k in keys]
            except ValueError:
                column = sa.cast(column, sa.String)
        else:
            column = sa.cast(column, sa.String)
        for start in range(0, len(keys), KEYS_PER_STATEMENT):
            yield base.where(column.in_(keys[start : start + KEYS_PER_STATEMENT]))

    def filter_clause(self) -> list:
        """The spec's ``filter:`` as a WHERE condition, checked in this database's dialect."""
        where = filter_sql(self.spec.filter, self.engine.dialect.name, self.schema().names, self.label)
        return [] if where is None else [sa.text(where)]

    def selectable(self) -> sa.FromClause:
        if self._table is not None:
            return self._table
        return sa.text(self.query).columns().subquery("q")

    def schema(self) -> pa.Schema:
        if self._schema is not None:
            return self._schema
        declared = declared_schema(self.spec.columns)
        try:
            if self.spec.table:
                table = sa.Table(self.spec.table, sa.MetaData(), schema=self.spec.db_schema, autoload_with=self.engine)
                self._table = table
                fields = [pa.field(c.name, arrow_type(c.type)) for c in table.columns]
            else:
                query = self.query
                with self.engine.connect() as conn:
                    result = conn.execute(sa.text(f"SELECT * FROM ({query}) q LIMIT 1000"))
                    names = list(result.keys())
                    sample = pa.Table.from_pylist([dict(zip(names, row)) for row in result], schema=None)
                fields = [sample.schema.field(n) if n in sample.schema.names else pa.field(n, pa.string()) for n in names]
                fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in fields]
        except sa.exc.NoSuchTableError:
            raise SourceError(f"{self.label}: table {self.spec.table!r} not found") from None
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(f"{self.label}: {type(exc).__name__}: {_first_line(exc)}") from None
        schema = pa.schema(fields)
        if declared is not None:
            schema = pa.schema([declared.field(f.name) if f.name in declared.names else f for f in schema])
        self._schema = schema
        return schema

    def source_types(self) -> dict[str, str]:
        """The database's own types of a table (``NUMERIC(12, 2)``, not the Arrow type it is read as)."""
        schema = self.schema()
        if self._table is None:
            return super().source_types()
        native = {c.name: _type_text(c.type, self.engine.dialect) for c in self._table.columns}
        return {name: native.get(name) or str(schema.field(name).type) for name in schema.names}

    def batches(
        self, columns: Sequence[str] | None = None, record_filter: RecordFilter | None = None
    ) -> Iterator[pa.RecordBatch]:
        schema = self.schema()
        wanted = list(columns or schema.names)
        window = record_filter is not None and record_filter.has_window
        read = wanted + ([record_filter.updated_column] if window and record_filter.updated_column not in wanted else [])
        require_columns(schema, read, self.label)
        out_schema = pa.schema([schema.field(c) for c in read])
        source = self.selectable()
        base = sa.select(*self.columns_of(read)).select_from(source)
        base = base.where(*self._window_clauses(record_filter), *self.filter_clause())
        for statement in self._key_chunks(base, record_filter):
            for batch in self._stream(statement, out_schema):
                if window:
                    batch = batch.filter(record_filter.window_mask(batch))
                yield batch.select(wanted) if len(read) > len(wanted) else batch

    def _stream(self, statement: sa.Select, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=self.spec.chunk_size).execute(statement)
                for rows in result.partitions(self.spec.chunk_size):
                    columns = list(zip(*rows)) if rows else [[] for _ in schema]
                    yield pa.RecordBatch.from_arrays(
                        [_to_arrow(values, field) for values, field in zip(columns, schema)], schema=schema
                    )
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(f"{self.label}: {type(exc).__name__}: {_first_line(exc)}") from None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _to_arrow(values: Sequence, field: pa.Field) -> pa.Array:
    try:
        return pa.array(values, type=field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        # Loosely typed databases (SQLite) can hold text in a numeric column: say which column,
        # and how to read it as text so the engine reports the bad values as type mismatches.
        raise SourceError(
            f"column {field.name!r}: a value does not fit the type {field.type} ({exc}); "
            f"declare it as text with `columns: {{{field.name}: varchar}}`"
        ) from None


def arrow_type(sa_type: sa.types.TypeEngine) -> pa.DataType:
    """The Arrow type the connector reads a column of this SQLAlchemy type as."""
    try:
        python_type = sa_type.python_type
    except NotImplementedError:
        return pa.string()
    return {
        int: pa.int64(),
        float: pa.float64(),
        decimal.Decimal: pa.decimal128(38, 10),
        bool: pa.bool_(),
        str: pa.string(),
        dt.datetime: pa.timestamp("us", tz="UTC") if getattr(sa_type, "timezone", False) else pa.timestamp("us"),
        dt.date: pa.date32(),
    }.get(python_type, pa.string())


def _type_text(sa_type: sa.types.TypeEngine, dialect) -> str | None:
    """The column's type as the database writes it; None for a type SQLAlchemy cannot render."""
    try:
        return str(sa_type.compile(dialect=dialect))
    except sa.exc.SQLAlchemyError:
        return None


def _first_line(exc: Exception) -> str:
    return redact(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300])
