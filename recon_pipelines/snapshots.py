"""Snapshots: one side of a reconciliation, read once, stored as Parquet under the spec's names.

A snapshot holds the key and compared fields renamed to the spec's names (plus the
update timestamp as ``__updated_at`` when the source declares one), so everything
downstream reads one normalised table whatever the source was. Writing streams
batches; no side is ever held whole in memory.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from recon_pipelines.engine import Side, side_columns
from recon_pipelines.redact import redact
from recon_pipelines.sources import connector_for  # noqa: F401  (also imported from here by the pipeline)
from recon_pipelines.sources.base import Connector, RecordFilter, SourceError, require_columns
from recon_pipelines.sources.files import FileConnector, duck_types, filter_sql
from recon_pipelines.spec.models import FileSource, ReconciliationSpec
from recon_pipelines.sqlutil import duckdb_connect, quote_ident, sql_literal

UPDATED_AT = "__updated_at"
# 128K-row groups let DuckDB read a snapshot on every core (one group is one thread's work).
ROW_GROUP_ROWS = 128 * 1024


@dataclass(frozen=True)
class SnapshotInfo:
    path: Path
    rows: int
    label: str
    missing: tuple[str, ...] = ()  # spec names whose source column does not exist


def partial_path(path: Path) -> Path:
    """A temporary name beside ``path``, unique to this writer: two runs of the same scope at
    once each write their own file, and the atomic rename makes the last complete one win."""
    return path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.partial")


def snapshot_columns(spec: ReconciliationSpec, side: str) -> dict[str, str]:
    """Spec name -> source column, plus the update timestamp when the source names one."""
    columns = side_columns(spec, side)
    source = spec.source_a if side == "a" else spec.source_b
    if source.updated_at:
        columns[UPDATED_AT] = source.updated_at
    return columns


def write_snapshot(
    source, columns: Mapping[str, str], path: Path, record_filter: RecordFilter | None = None,
    skip_missing: bool = False,
) -> SnapshotInfo:
    """Read ``source`` into a Parquet file at ``path`` (written to a temporary name first, so a
    killed run never leaves a half-written snapshot behind).

    With ``skip_missing`` a column the source lacks is left out and listed in ``missing``
    (the Dagster asset check then flags the side); otherwise it is an error naming it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    try:
        with connector_for(source) as connector:
            available = set(connector.schema().names)
            missing = tuple(name for name, src in columns.items() if src not in available)
            if skip_missing:
                columns = {name: src for name, src in columns.items() if name not in missing}
            if isinstance(connector, FileConnector):
                rows = _copy_file(connector, columns, partial, record_filter)
            else:
                rows = _stream(connector, columns, partial, record_filter)
            partial.replace(path)
            return SnapshotInfo(path, rows, connector.label, missing)
    finally:
        partial.unlink(missing_ok=True)  # after a failure; renamed away after success


def _copy_file(connector: FileConnector, columns: Mapping[str, str], out: Path, record_filter) -> int:
    require_columns(connector.schema(), list(dict.fromkeys(columns.values())), connector.label)
    select = ", ".join(f"{quote_ident(src)} AS {quote_ident(name)}" for name, src in columns.items())
    with duckdb_connect() as con:
        try:
            con.execute(
                f"COPY (SELECT {select} FROM {connector.scan_sql()} {filter_sql(record_filter, duck_types(connector.schema()))}) "
                f"TO {sql_literal(str(out))} (FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_ROWS})"
            )
            return con.execute(f"SELECT count(*) FROM read_parquet({sql_literal(str(out))})").fetchone()[0]
        except duckdb.Error as exc:
            raise SourceError(f"{connector.label}: cannot read: {redact(str(exc).splitlines()[0])}") from None


def _stream(connector: Connector, columns: Mapping[str, str], out: Path, record_filter) -> int:
    wanted = list(dict.fromkeys(columns.values()))
    schema = connector.schema()
    require_columns(schema, wanted, connector.label)
    out_schema = pa.schema([pa.field(name, schema.field(src).type) for name, src in columns.items()])
    rows = 0
    with pq.ParquetWriter(out, out_schema) as writer:
        for batch in connector.batches(wanted, record_filter):
            arrays = [batch.column(batch.schema.get_field_index(src)) for src in columns.values()]
            renamed = pa.RecordBatch.from_arrays(arrays, schema=out_schema)
            writer.write_batch(renamed, row_group_size=ROW_GROUP_ROWS)
            rows += renamed.num_rows
    return rows


def snapshot_side(path: Path, names: list[str], label: str) -> Side:
    """The engine's view of a snapshot file (already under the spec's names)."""
    return Side(f"read_parquet({sql_literal(str(path))})", {n: n for n in names}, label,
                FileSource(type="file", path=str(path), format="parquet"))


def direct_side(spec: ReconciliationSpec, side: str) -> Side | None:
    """Files need no snapshot outside Dagster: the engine scans them in place."""
    source = spec.source_a if side == "a" else spec.source_b
    if not isinstance(source, FileSource):
        return None
    connector = FileConnector(source)
    columns = side_columns(spec, side)
    # Fails early, naming the file and column, before the engine starts.
    require_columns(connector.schema(), list(dict.fromkeys(columns.values())), connector.label)
    return Side(connector.scan_sql(), columns, connector.label, source)
