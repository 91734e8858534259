"""Push-down's shared pieces: compare SQL tables where they live and move only what differs.

The strategies that pair in the database (``engine/strategies/postgres_join.py``,
``bucket_summaries.py``, ``duckdb_files.py``) share what is here: when a spec may be
pushed down at all (``refusal``), the reflected PostgreSQL sides (``PgSide``), the SQL pieces
that mirror the local engine's pairing (the invalid-key predicate, the rules' operands,
NULL-safe equality), and the read-only, redacting way every statement runs.

The field rules are *not* pushed down: they stay in DuckDB (``compare.evaluate``), so a
push-down run reports exactly what the local path reports. What runs in the database is the
pairing and the equality pre-check.

Equality in the database must imply equality in DuckDB (after the SQL connector's type
conversion), so push-down only takes fields whose types are understood on both sides (see
``_GROUPS``): anything else, mapping tables (``key_mapping``), declared ``columns:`` and
rules that have to parse text (a numeric or timestamp rule on a text column) refuse, with the
reason logged, and the run pairs locally.

Every statement is a ``SELECT`` in a ``READ ONLY`` transaction, built with SQLAlchemy
constructs (identifiers quoted, values bound), on the SQL connector's read-only engine
(``sources/readonly.py``: read-only sessions, the source's statement timeout), so push-down
also runs on read replicas and with read-only roles. URLs are only ever logged through the
connectors' redacted labels.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg2
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from recon_pipelines.engine.rules import WHITESPACE
from recon_pipelines.engine.strategies.base import Pairing, remote_refusal, side_columns
from recon_pipelines.redact import redact
from recon_pipelines.sources.base import SourceError, require_columns
from recon_pipelines.sources.sql import SqlConnector, normalize_url
from recon_pipelines.spec.models import (
    NumericRule,
    ReconciliationSpec,
    SqlSource,
    TimestampRule,
)

log = logging.getLogger(__name__)

# Session settings of every push-down transaction (SET LOCAL: this transaction only).
SESSION_SETTINGS = {
    "DateStyle": "ISO, YMD",  # dates are hashed as text: the same text on both servers
    "TimeZone": "UTC",
    "work_mem": "64MB",  # joins and aggregates spill less (the default is 4MB)
}

# Reflected PostgreSQL types push-down understands, by group. Two columns compare in the
# database only within one group: the SQL connector converts every type of a group to the
# same Arrow type, and equality in the group implies equality after that conversion.
_GROUPS = {
    "SMALLINT": "int",
    "INTEGER": "int",
    "BIGINT": "int",
    "DOUBLE_PRECISION": "float8",
    "REAL": "float4",
    "NUMERIC": "numeric",
    "TEXT": "text",
    "VARCHAR": "text",
    "BOOLEAN": "bool",
    "DATE": "date",
}
_NUMBERS = {"int", "float8", "float4", "numeric"}
_INSTANTS = {"date", "timestamp", "timestamptz"}


class NotPushable(Exception):
    """The spec cannot be compared in the database; the message says why (logged, then local)."""


@dataclass
class PushdownStats:
    """What crossed the wire. ``rows_fetched_*`` count table records (a candidate pair carries
    one record of each side); ``summary_rows_*`` count aggregate rows that carry no record
    (bucket summaries; row counts and key-anomaly groups)."""

    mode: str = ""  # "same_database", "buckets" or "duckdb" (DuckDB files, attached and compared in-process)
    rows_fetched_a: int = 0
    rows_fetched_b: int = 0
    summary_rows_a: int = 0
    summary_rows_b: int = 0
    result_rows: int = 0  # same database: rows of its one result set (records and aggregates)
    buckets: int = 0
    differing_buckets: int = 0
    rows_settled_by_buckets: int = 0  # per side: rows of identical buckets, counted, never fetched
    fetched_whole: bool = False  # buckets: so many differed that both sides were read whole
    seconds: dict[str, float] = field(default_factory=dict)  # per phase

    @property
    def rows_fetched(self) -> int:
        return self.rows_fetched_a + self.rows_fetched_b


@dataclass(frozen=True)
class PushdownPairing(Pairing):
    """A pairing done where the data lives, with the figures of what crossed the wire."""

    pushdown: PushdownStats = field(default_factory=PushdownStats)


class Clock:
    def __init__(self, stats: PushdownStats):
        self.stats, self.last = stats, time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.stats.seconds[phase] = round(self.stats.seconds.get(phase, 0.0) + now - self.last, 3)
        self.last = now



# --------------------------------------------------------------------------- eligibility


def refusal(spec: ReconciliationSpec, backend: str) -> str | None:
    """Why the spec cannot be paired in ``backend`` ("postgresql", "duckdb"), or None when
    both sources are tables there. Reads no data; resolves ``url_env``."""
    reason = remote_refusal(spec)
    if reason:
        return reason
    backends = set()
    for source in (spec.source_a, spec.source_b):
        if not isinstance(source, SqlSource) or source.table is None:
            return "both sources must be sql sources naming a table"
        if source.filter is not None:
            # The strategies read whole tables (and skip duplicate checks a primary key rules
            # out); a filtered side is compared locally, the filter pushed down into its read.
            return "a source has a filter"
        backends.add(backend_of_url(source_url(source)))
    if backends != {backend}:
        return f"sources on {' and '.join(sorted(b or 'unknown' for b in backends))}, not both on {backend}"
    return None


def source_url(source: SqlSource) -> str:
    url = source.url if source.url is not None else os.environ.get(source.url_env or "")
    if not url:
        SqlConnector(source)  # raises the connector's own error for an unset variable
    return url


def same_server_refusal(spec: ReconciliationSpec, same: bool) -> str | None:
    """For the two PostgreSQL strategies: None when both tables are in one database (``same``)
    or in two (not ``same``) and every column compares there; else why not. Connects and
    reflects the tables (no rows are read)."""
    reason = refusal(spec, "postgresql")
    if reason:
        return reason
    try:
        sides = open_pg_sides(spec)
    except NotPushable as exc:
        return str(exc)
    try:
        one = resolved_url(sides["a"]) == resolved_url(sides["b"])
        if one != same:
            return "the tables are in two databases" if same else "the tables are in one database"
        if not same:
            encodings = [server_setting(side, "server_encoding") for side in sides.values()]
            if encodings[0] != encodings[1]:  # the same bytes could be different text
                return f"server encodings differ ({encodings[0]}, {encodings[1]})"
        return None
    finally:
        close(sides)


def close(sides: dict) -> None:
    for side in sides.values():
        side.connector.close()


@dataclass
class PgColumn:
    name: str  # spec name
    column: sa.ColumnElement  # the table's column
    group: str
    arrow: pa.DataType


@dataclass
class PgSide:
    side: str
    connector: SqlConnector
    table: sa.Table
    keys: list[PgColumn]
    fields: list[PgColumn]
    unique: bool  # the key cannot repeat (primary key or unique index on key columns)

    @property
    def label(self) -> str:
        return self.connector.label


def resolved_url(side: PgSide) -> str:
    return side.connector.engine.url.render_as_string(hide_password=False)


def open_pg_sides(spec: ReconciliationSpec) -> dict[str, PgSide]:
    sides: dict[str, PgSide] = {}
    try:
        for side, source in (("a", spec.source_a), ("b", spec.source_b)):
            sides[side] = _open_side(spec, side, source)
        _check_pairs(spec, sides["a"], sides["b"])
    except BaseException:
        for opened in sides.values():
            opened.connector.close()
        raise
    return sides


def backend_of_url(url: str | None) -> str:
    try:
        return sa.make_url(normalize_url(url or "")).get_backend_name()
    except (sa.exc.ArgumentError, ValueError):  # not a URL: the connector reports it
        return ""


def _open_side(spec: ReconciliationSpec, side: str, source: SqlSource) -> PgSide:
    connector = SqlConnector(source)  # resolves url_env; SourceError when it is unset
    try:
        if connector.engine.dialect.name != "postgresql":
            raise NotPushable(f"{connector.label} is not PostgreSQL")
        columns = side_columns(spec, side)
        declared = set(source.columns or {}) & set(columns.values())
        if declared:
            raise NotPushable(f"{connector.label}: declared column types ({', '.join(sorted(declared))}) are applied locally")
        schema = connector.schema()
        require_columns(schema, list(dict.fromkeys(columns.values())), connector.label)
        table = connector.selectable()

        def column(name: str) -> PgColumn:
            col = table.c[columns[name]]
            group = _group(col.type)
            if group is None:
                raise NotPushable(f"{connector.label}: column {columns[name]!r} has type {col.type}, not compared in the database")
            return PgColumn(name, col, group, schema.field(columns[name]).type)

        keys = [column(k.name) for k in spec.key]
        fields = [column(f.name) for f in spec.fields]
        with connector.engine.connect() as conn:
            version = conn.dialect.server_version_info or (0,)
        if version < (11,):
            raise NotPushable(f"{connector.label}: PostgreSQL {version[0]} lacks the hash functions push-down uses (11+)")
        return PgSide(side, connector, table, keys, fields, _key_is_unique(connector, table, [c.column.name for c in keys]))
    except BaseException:
        connector.close()
        raise


def _group(sa_type) -> str | None:
    name = type(sa_type).__name__
    if name == "TIMESTAMP":
        return "timestamptz" if getattr(sa_type, "timezone", False) else "timestamp"
    return _GROUPS.get(name)


def _key_is_unique(connector: SqlConnector, table: sa.Table, key_columns: list[str]) -> bool:
    """A primary key, unique constraint or full unique index on (a subset of) the key
    columns rules out duplicate keys: the database then never groups them."""
    inspector = sa.inspect(connector.engine)
    name, schema = table.name, table.schema
    sets = [inspector.get_pk_constraint(name, schema).get("constrained_columns") or []]
    sets += [u["column_names"] for u in inspector.get_unique_constraints(name, schema)]
    sets += [
        i["column_names"] for i in inspector.get_indexes(name, schema)
        if i.get("unique") and not (i.get("dialect_options") or {}).get("postgresql_where")
    ]
    return any(s and None not in s and set(s) <= set(key_columns) for s in sets)


def _check_pairs(spec: ReconciliationSpec, a: PgSide, b: PgSide) -> None:
    """Every key and field must compare in the database exactly as DuckDB would judge it."""
    for ka, kb in zip(a.keys, b.keys):
        if ka.group != kb.group or ka.arrow != kb.arrow:
            raise NotPushable(f"key {ka.name!r}: types {ka.column.type} and {kb.column.type} are joined as text locally")
    for fa, fb in zip(a.fields, b.fields):
        field_kind(spec.rule(fa.name), fa, fb)


def field_kind(rule, fa: PgColumn, fb: PgColumn) -> str:
    """How the database tells whether a field's two values can differ: 'raw' (the values),
    'instant' (naive timestamps read in different zones), 'scaled' / 'scaled_exact' (numbers in
    different units, multiplied in doubles / in numeric)."""
    if isinstance(rule, TimestampRule):
        if fa.group not in _INSTANTS or fb.group not in _INSTANTS:
            raise NotPushable(f"field {rule.name!r}: a timestamp rule on {fa.column.type}/{fb.column.type} parses values locally")
        if rule.timezone_a != rule.timezone_b:
            return "instant"
    if isinstance(rule, NumericRule):
        if fa.group not in _NUMBERS or fb.group not in _NUMBERS:
            raise NotPushable(f"field {rule.name!r}: a numeric rule on {fa.column.type}/{fb.column.type} parses values locally")
        if rule.scale_a != rule.scale_b:
            if "float4" in (fa.group, fb.group):  # the driver reads a real as its shortest text, not its double
                raise NotPushable(f"field {rule.name!r}: a real scaled against another type is compared locally")
            # Integers and numerics are scaled exactly (numeric arithmetic), as the engine does;
            # with a double on a side, in doubles, the very product the engine computes.
            return "scaled_exact" if {fa.group, fb.group} <= {"int", "numeric"} else "scaled"
    if fa.group != fb.group or fa.arrow != fb.arrow:
        raise NotPushable(f"field {rule.name!r}: types {fa.column.type} and {fb.column.type} are compared as text locally")
    return "raw"


# --------------------------------------------------------------------------- SQL pieces (PostgreSQL)


def invalid_key(cols: list[sa.ColumnElement], keys: list[PgColumn]) -> sa.ColumnElement | None:
    """True for a key the engine reports as invalid_key (null; blank text); None when the
    table's constraints already rule both out."""
    tests = []
    for col, key in zip(cols, keys):
        if key.column.nullable:
            tests.append(col.is_(None))
        if key.group == "text":
            tests.append(sa.func.btrim(col, sa.literal(WHITESPACE, sa.Text)) == "")
    return sa.or_(*tests) if tests else None


def not_(condition: sa.ColumnElement | None) -> sa.ColumnElement:
    return sa.true() if condition is None else sa.not_(condition)


def eq(x: sa.ColumnElement, y: sa.ColumnElement, group: str) -> sa.ColumnElement:
    return x.collate("C") == y.collate("C") if group == "text" else x == y


def _instant(col: sa.ColumnElement, group: str, zone: str) -> sa.ColumnElement:
    if group == "timestamptz":
        return col
    naive = col if group == "timestamp" else sa.cast(col, pg.TIMESTAMP())
    return sa.func.timezone(sa.literal(zone, sa.Text), naive)


def _scaled(col: sa.ColumnElement, factor: float, exact: bool) -> sa.ColumnElement:
    if exact:  # 0.01 as the decimal the spec wrote, not its double
        value = sa.cast(col, sa.Numeric())
        return value if factor == 1.0 else value * sa.cast(sa.literal(repr(float(factor))), sa.Numeric())
    value = sa.cast(col, pg.DOUBLE_PRECISION())
    return value if factor == 1.0 else value * sa.cast(sa.literal(factor), pg.DOUBLE_PRECISION())


def operand(rule, kind: str, col: sa.ColumnElement, c: PgColumn, side: str) -> sa.ColumnElement:
    """The database's twin of ``rules.hash_operand``: what is compared (or hashed) for a field."""
    if kind == "instant":
        return _instant(col, c.group, rule.timezone_a if side == "a" else rule.timezone_b)
    if kind in ("scaled", "scaled_exact"):
        return _scaled(col, rule.scale_a if side == "a" else rule.scale_b, exact=kind == "scaled_exact")
    return col


def operand_group(kind: str, c: PgColumn) -> str:
    return {"instant": "timestamptz", "scaled": "float8", "scaled_exact": "numeric"}.get(kind, c.group)


def strict_nulls(spec: ReconciliationSpec, cols: list[sa.ColumnElement], fields: list[PgColumn]) -> list:
    """Records equal values cannot settle (``compare._row_hash``): a null where null-vs-null is
    itself a discrepancy. (Values a rule cannot read do not occur: such types are not pushed.)"""
    return [col.is_(None) for col, c in zip(cols, fields) if spec.rule(c.name).nulls.both_null == "differ"]


def typed_null(c: PgColumn) -> sa.ColumnElement:
    return sa.cast(sa.null(), c.column.type)


def _begin(conn: sa.Connection) -> None:
    """Read only, and the session settings (this transaction only)."""
    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    for name, value in SESSION_SETTINGS.items():
        conn.execute(sa.select(sa.func.set_config(name, value, True)))


def fetch_arrow(conn: sa.Connection, statement, schema: pa.Schema, chunk: int, stream: bool = True) -> pa.Table:
    """Run a statement in this transaction and convert its rows to Arrow as the SQL connector
    does (``pa.array`` of the driver's values with the types the connector declares).

    SQLAlchemy's row objects are skipped: for the types push-down accepts, its result
    processors pass the driver's values through unchanged, and skipping them halves the time
    per row. ``stream`` reads through a server-side cursor (memory bounded by ``chunk``);
    PostgreSQL plans no parallel workers for a cursor, so aggregates, whose results are small,
    are read whole instead."""
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    dbapi = conn.connection.dbapi_connection
    cursor = dbapi.cursor(name=f"recon_pushdown_{id(statement):x}") if stream else dbapi.cursor()
    batches = []
    try:
        if stream:
            cursor.itersize = chunk
        cursor.execute(str(compiled), compiled.params)
        while rows := cursor.fetchmany(chunk):
            columns = list(zip(*rows))
            batches.append(pa.RecordBatch.from_arrays([pa.array(v, type=f.type) for v, f in zip(columns, schema)], schema=schema))
    finally:
        cursor.close()
    return pa.Table.from_batches(batches, schema=schema)


def run_read_only(side: PgSide, what: str, fn: Callable[[sa.Connection], pa.Table]) -> pa.Table:
    try:
        with side.connector.engine.connect() as conn, conn.begin():
            _begin(conn)
            return fn(conn)
    except (sa.exc.SQLAlchemyError, psycopg2.Error) as exc:
        message = redact(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300])
        raise SourceError(f"{side.label}: {what}: {type(exc).__name__}: {message}") from None


def server_setting(side: PgSide, name: str) -> str:
    with side.connector.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.current_setting(name))).scalar()


# --------------------------------------------------------------------------- key health at the source


def key_health(spec: ReconciliationSpec, side: str) -> tuple[int, int]:
    """Records of one side whose key is invalid (``invalid_key``: null, blank text) and valid
    keys held more than once, counted in the database (two numbers cross the wire): what the
    Dagster key checks report when the side is paired at its source rather than snapshotted.
    A primary key or unique index rules duplicates out without a scan."""
    source = spec.source_a if side == "a" else spec.source_b
    pg_side = _open_side(spec, side, source)
    try:
        src = pg_side.table.alias("src")
        kc = [src.c[k.column.name] for k in pg_side.keys]
        invalid = invalid_key(kc, pg_side.keys)
        statement = sa.select(sa.func.count().label("n")).select_from(src).where(invalid if invalid is not None else sa.false())
        schema = pa.schema([("n", pa.int64())])
        invalid_rows = run_read_only(pg_side, "counting invalid keys",
                                     lambda conn: fetch_arrow(conn, statement, schema, 1, stream=False)).column(0)[0].as_py()
        if pg_side.unique:
            return int(invalid_rows), 0
        groups = sa.select(*kc).where(not_(invalid)).group_by(*kc).having(sa.func.count() > 1).subquery("d")
        duplicates = sa.select(sa.func.count().label("n")).select_from(groups)
        duplicated = run_read_only(pg_side, "counting duplicate keys",
                                   lambda conn: fetch_arrow(conn, duplicates, schema, 1, stream=False)).column(0)[0].as_py()
        return int(invalid_rows), int(duplicated)
    finally:
        pg_side.connector.close()
