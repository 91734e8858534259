"""CSV and Parquet files (a path, a glob, or a folder of Parquet files), read through DuckDB.

CSV columns are read as text unless declared in ``columns:``: a reconciliation
compares what the file says (``00123``, ``42.500``), not what a type sniffer
guessed from the first rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from recon_pipelines.redact import redact
from recon_pipelines.sources.base import Connector, RecordFilter, SourceError, require_columns
from recon_pipelines.sources.readonly import filter_sql as filter_sql_of
from recon_pipelines.spec.models import FileSource
from recon_pipelines.spec.types import declared_schema
from recon_pipelines.sqlutil import duckdb_connect, quote_ident, sql_literal

BATCH_ROWS = 128 * 1024


class FileConnector(Connector):
    def __init__(self, spec: FileSource):
        self.spec = spec
        self.label = f"{spec.name or 'file'} ({spec.path})"
        self._schema: pa.Schema | None = None

    def scan_sql(self) -> str:
        """A DuckDB table expression that reads the file, restricted by the spec's ``filter:``;
        the engine scans it directly."""
        if self.spec.filter is None:
            return self._read_sql()
        where = filter_sql_of(self.spec.filter, "duckdb", self.schema().names, self.label)
        return f"(SELECT * FROM {self._read_sql()} WHERE {where})"

    def _read_sql(self) -> str:
        path = self.spec.path
        if self.spec.resolved_format == "parquet":
            if Path(path).is_dir():
                path = str(Path(path) / "*.parquet")
            return f"read_parquet({sql_literal(path)})"
        declared = declared_schema(self.spec.columns, "columns")
        # Undeclared columns stay text; declared ones get their type.
        # The RFC 4180 quote and escape, given rather than sniffed: with them a malformed row deep
        # in a file is reported by its line number instead of "could not sniff the dialect".
        options = [f"delim={sql_literal(self.spec.delimiter)}", "quote='\"'", "escape='\"'", "header=true", "all_varchar=true"]
        if declared is not None:
            types = ", ".join(f"{sql_literal(n)}: {sql_literal(_duck_type(t))}" for n, t in zip(declared.names, declared.types))
            options.append(f"types={{{types}}}")
        return f"read_csv({sql_literal(path)}, {', '.join(options)})"

    def _check_exists(self) -> None:
        path = Path(self.spec.path)
        if not any(ch in self.spec.path for ch in "*?[") and not path.exists():
            raise SourceError(f"{self.label}: file not found")

    def schema(self) -> pa.Schema:
        if self._schema is None:
            self._check_exists()
            try:
                with duckdb_connect() as con:
                    self._schema = con.sql(f"SELECT * FROM {self._read_sql()} LIMIT 0").to_arrow_table().schema
            except duckdb.Error as exc:
                raise SourceError(f"{self.label}: cannot read: {redact(exc)}") from None
        return self._schema

    def batches(
        self, columns: Sequence[str] | None = None, record_filter: RecordFilter | None = None
    ) -> Iterator[pa.RecordBatch]:
        schema = self.schema()
        columns = list(columns or schema.names)
        require_columns(schema, columns, self.label)
        select = ", ".join(quote_ident(c) for c in columns)
        where = filter_sql(record_filter, duck_types(schema))
        with duckdb_connect() as con:
            try:
                reader = con.sql(f"SELECT {select} FROM {self.scan_sql()} {where}").to_arrow_reader(BATCH_ROWS)
            except duckdb.Error as exc:
                raise SourceError(f"{self.label}: cannot read: {redact(exc)}") from None
            yield from reader


def filter_sql(record_filter: RecordFilter | None, types: dict[str, str]) -> str:
    """A WHERE clause for DuckDB-readable sources (files and snapshots); ``types`` maps each
    column to its DuckDB type, so update times are read as instants in the source's zone."""
    if record_filter is None:
        return ""
    f = record_filter
    clauses = f.window_clauses(types.get(f.updated_column, "VARCHAR")) if f.updated_column else []
    if f.key_column and f.keys is not None:
        values = ", ".join(sql_literal(str(k)) for k in f.keys) or "NULL"
        clauses.append(f"CAST({quote_ident(f.key_column)} AS VARCHAR) IN ({values})")
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""


def duck_types(schema: pa.Schema) -> dict[str, str]:
    return {field.name: _duck_type(field.type) for field in schema}


def _duck_type(arrow: pa.DataType) -> str:
    if pa.types.is_string(arrow):
        return "VARCHAR"
    if pa.types.is_integer(arrow):
        return "BIGINT"
    if pa.types.is_floating(arrow):
        return "DOUBLE"
    if pa.types.is_decimal(arrow):
        return "DECIMAL(38,10)"
    if pa.types.is_boolean(arrow):
        return "BOOLEAN"
    if pa.types.is_date(arrow):
        return "DATE"
    if pa.types.is_timestamp(arrow):
        return "TIMESTAMPTZ" if arrow.tz else "TIMESTAMP"
    return "VARCHAR"
