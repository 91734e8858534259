"""Push-down: compare two SQL tables where they live and move only what differs.

``run_reconciliation`` tries this first when both sources are ``sql`` sources naming a
``table`` (not a ``query``) in PostgreSQL, or both in DuckDB files (and the spec does not
set ``pushdown: false``).
The field rules are *not* pushed down: they stay in DuckDB (``compare.evaluate``), so a
push-down run reports exactly what the local path reports. What runs in the database is the
pairing and the equality pre-check:

Same database (the two sources resolve to the same URL)
    One read-only query full-joins the two tables on the key and returns only the
    *candidate pairs* (at least one compared column differs, ``IS DISTINCT FROM`` per
    column, NULL-safe), the one-sided rows, and the key anomalies (NULL or blank keys grouped
    by key; duplicate keys with their counts, skipped when a primary key or unique index
    already rules them out), plus the row counts. The rows are loaded into DuckDB in the
    shape of ``__pairs`` and ``evaluate`` judges them.

Different databases
    One read-only query per side computes, per bucket of a hash of the key, the row count,
    the sum of a 64-bit hash of each record and whether the bucket holds a row a hash cannot
    settle (an invalid or duplicate key, a null that ``both_null: differ`` reports). The
    record's hash combines PostgreSQL's own hash function for each column's type (those of
    hash partitioning, seeded per column): equal under the type's ``=`` means equal hashes,
    the equality the same-database path uses, and it costs a third of hashing a text
    rendering of the record (``ROW(...)::text``: 27 s against 8.5 s for 10 million rows here).
    Buckets whose summaries agree hold identical records and are only counted; the rows of
    the other buckets are fetched from each side (``WHERE bucket IN (...)``, a constant list
    PostgreSQL hashes) and compared with the regular local ``match``/``evaluate``.

DuckDB files (``duckdb:///path`` on both sides)
    Attached read-only to the engine's connection; ``match``/``evaluate`` run on the tables
    in place, nothing is copied.

Equality in the database must imply equality in DuckDB (after the SQL connector's type
conversion), so push-down only takes fields whose types are understood on both sides (see
``_GROUPS``): anything else, mapping tables (``key_mapping``), declared ``columns:`` and
rules that have to parse text (a numeric or timestamp rule on a text column) fall back to the
local path, with the reason logged. Equal summaries imply equal records; the converse need
not hold: two servers whose hash functions differ (another architecture, say) only make more
buckets differ, a cost, never a wrong answer.

Every statement is a ``SELECT`` in a ``READ ONLY`` transaction, built with SQLAlchemy
constructs (identifiers quoted, values bound), on the SQL connector's read-only engine
(``sources/readonly.py``: read-only sessions, the source's statement timeout), so push-down
also runs on read replicas and with read-only roles. URLs are only ever logged through the connectors' redacted labels.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import duckdb
import psycopg2
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from recon_pipelines.engine.compare import (
    ComparisonResult,
    MatchStats,
    Side,
    _key_text,
    evaluate,
    match,
    side_columns,
)
from recon_pipelines.engine.rules import WHITESPACE
from recon_pipelines.redact import redact
from recon_pipelines.sources.base import SourceError, require_columns
from recon_pipelines.sources.sql import SqlConnector
from recon_pipelines.spec.models import (
    NumericRule,
    ReconciliationSpec,
    SqlSource,
    TimestampRule,
)
from recon_pipelines.sqlutil import duckdb_connect, sql_literal
from recon_pipelines.sqlutil import quote_ident as q
from recon_pipelines.urls import normalize_url

log = logging.getLogger(__name__)

# Bucket path: about this many rows per bucket, within these bounds (powers of two; 65,536
# for a million rows). Fewer rows per bucket fetch fewer rows around each difference but ship
# a longer summary: one row per bucket.
ROWS_PER_BUCKET = 16
MIN_BUCKETS = 1 << 10
MAX_BUCKETS = 1 << 20
# Above this share of differing buckets the filter saves nothing: fetch the sides whole.
FETCH_ALL_SHARE = 0.5
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


@dataclass
class PushdownResult(ComparisonResult):
    pushdown: PushdownStats = field(default_factory=PushdownStats)

    def summary(self) -> dict:
        return {**super().summary(), "pushdown": asdict(self.pushdown)}


class _Clock:
    def __init__(self, stats: PushdownStats):
        self.stats, self.last = stats, time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.stats.seconds[phase] = round(self.stats.seconds.get(phase, 0.0) + now - self.last, 3)
        self.last = now


# --------------------------------------------------------------------------- entry point


def compare_in_database(spec: ReconciliationSpec, con: duckdb.DuckDBPyConnection | None = None) -> PushdownResult | None:
    """Compare where the data lives; None (reason logged) when the spec is not eligible."""
    try:
        backend = _backend_of(spec)
        if backend == "duckdb":
            result = _in_duckdb(spec, con or duckdb_connect())
        else:
            result = _in_postgres(spec, con)
    except NotPushable as reason:
        log.info("%s: compared locally, not in the database: %s", spec.name, reason)
        return None
    p = result.pushdown
    log.info("%s: compared in the database (%s): %s records of A and %s of B fetched, %s summary rows, %.1f s",
             spec.name, p.mode, f"{p.rows_fetched_a:,}", f"{p.rows_fetched_b:,}", f"{p.summary_rows_a + p.summary_rows_b:,}",
             sum(p.seconds.values()))
    return result


def _backend_of(spec: ReconciliationSpec) -> str:
    """'postgresql' or 'duckdb' when both sources are tables there; NotPushable otherwise."""
    if spec.key_mapping is not None:
        raise NotPushable("key_mapping translates keys locally")
    backends = set()
    for source in (spec.source_a, spec.source_b):
        if not isinstance(source, SqlSource) or source.table is None:
            raise NotPushable("both sources must be sql sources naming a table")
        if source.filter is not None:
            # The paths here read whole tables (and skip duplicate checks a primary key rules
            # out); a filtered side is compared locally, the filter pushed down into its read.
            raise NotPushable("a source has a filter")
        url = source.url if source.url is not None else os.environ.get(source.url_env or "")
        if not url:
            SqlConnector(source)  # raises the connector's own error for an unset variable
        backends.add(_backend(url))
    if backends == {"postgresql"} or backends == {"duckdb"}:
        return backends.pop()
    raise NotPushable(f"sources on {' and '.join(sorted(b or 'unknown' for b in backends))}: no database holds both, nor hashes like both")


def _in_postgres(spec: ReconciliationSpec, con) -> PushdownResult:
    sides = _open_sides(spec)
    try:
        same = _resolved_url(sides["a"]) == _resolved_url(sides["b"])
        if not same:
            encodings = [_server_setting(side, "server_encoding") for side in sides.values()]
            if encodings[0] != encodings[1]:  # the same bytes could be different text
                raise NotPushable(f"server encodings differ ({encodings[0]}, {encodings[1]})")
        con = con or duckdb_connect()
        return (_same_database if same else _by_buckets)(spec, sides["a"], sides["b"], con)
    finally:
        for side in sides.values():
            side.connector.close()


def _in_duckdb(spec: ReconciliationSpec, con) -> PushdownResult:
    """DuckDB files are attached read-only and the engine runs on their tables directly:
    nothing is copied out, the same ``match``/``evaluate`` as always."""
    stats = PushdownStats(mode="duckdb")
    clock = _Clock(stats)
    aliases: dict[str, str] = {}
    sides = {}
    for side, source in (("a", spec.source_a), ("b", spec.source_b)):
        url = source.url if source.url is not None else os.environ[source.url_env]
        path = sa.make_url(url).database
        if not path or path == ":memory:":
            raise NotPushable("an in-memory DuckDB database cannot be shared")
        declared = set(source.columns or {}) & set(side_columns(spec, side).values())
        if declared:
            raise NotPushable(f"declared column types ({', '.join(sorted(declared))}) are applied locally")
        if path not in aliases:
            aliases[path] = f"__pd_db_{len(aliases)}"
            try:
                con.execute(f"ATTACH {sql_literal(path)} AS {q(aliases[path])} (READ_ONLY)")
            except duckdb.Error as exc:
                raise SourceError(f"{source.name or 'sql'} (duckdb {path}): {redact(str(exc).strip().splitlines()[0])}") from None
        scan = ".".join(q(part) for part in (aliases[path], source.db_schema or "main", source.table))
        sides[side] = Side(scan, side_columns(spec, side), f"{source.name or 'sql'} (duckdb {path} {source.table})")
    try:
        stats_match = match(con, spec, sides["a"], sides["b"])
        table, fields = evaluate(con, spec, "__pairs")
    finally:
        for alias in aliases.values():
            con.execute(f"DETACH {q(alias)}")
    clock.lap("compare")
    return PushdownResult(table, stats_match, fields, stats)


@dataclass
class _Column:
    name: str  # spec name
    column: sa.ColumnElement  # the table's column
    group: str
    arrow: pa.DataType


@dataclass
class _PgSide:
    side: str
    connector: SqlConnector
    table: sa.Table
    keys: list[_Column]
    fields: list[_Column]
    unique: bool  # the key cannot repeat (primary key or unique index on key columns)

    @property
    def label(self) -> str:
        return self.connector.label


def _resolved_url(side: _PgSide) -> str:
    return side.connector.engine.url.render_as_string(hide_password=False)


def _open_sides(spec: ReconciliationSpec) -> dict[str, _PgSide]:
    sides: dict[str, _PgSide] = {}
    try:
        for side, source in (("a", spec.source_a), ("b", spec.source_b)):
            sides[side] = _open_side(spec, side, source)
        _check_pairs(spec, sides["a"], sides["b"])
    except BaseException:
        for opened in sides.values():
            opened.connector.close()
        raise
    return sides


def _backend(url: str | None) -> str:
    try:
        return sa.make_url(normalize_url(url or "")).get_backend_name()
    except (sa.exc.ArgumentError, ValueError):  # not a URL: the connector reports it
        return ""


def _open_side(spec: ReconciliationSpec, side: str, source: SqlSource) -> _PgSide:
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

        def column(name: str) -> _Column:
            col = table.c[columns[name]]
            group = _group(col.type)
            if group is None:
                raise NotPushable(f"{connector.label}: column {columns[name]!r} has type {col.type}, not compared in the database")
            return _Column(name, col, group, schema.field(columns[name]).type)

        keys = [column(k.name) for k in spec.key]
        fields = [column(f.name) for f in spec.fields]
        with connector.engine.connect() as conn:
            version = conn.dialect.server_version_info or (0,)
        if version < (11,):
            raise NotPushable(f"{connector.label}: PostgreSQL {version[0]} lacks the hash functions push-down uses (11+)")
        return _PgSide(side, connector, table, keys, fields, _key_is_unique(connector, table, [c.column.name for c in keys]))
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


def _check_pairs(spec: ReconciliationSpec, a: _PgSide, b: _PgSide) -> None:
    """Every key and field must compare in the database exactly as DuckDB would judge it."""
    for ka, kb in zip(a.keys, b.keys):
        if ka.group != kb.group or ka.arrow != kb.arrow:
            raise NotPushable(f"key {ka.name!r}: types {ka.column.type} and {kb.column.type} are joined as text locally")
    for fa, fb in zip(a.fields, b.fields):
        _field_kind(spec.rule(fa.name), fa, fb)


def _field_kind(rule, fa: _Column, fb: _Column) -> str:
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


def _invalid_key(cols: list[sa.ColumnElement], keys: list[_Column]) -> sa.ColumnElement | None:
    """True for a key the engine reports as invalid_key (null; blank text); None when the
    table's constraints already rule both out."""
    tests = []
    for col, key in zip(cols, keys):
        if key.column.nullable:
            tests.append(col.is_(None))
        if key.group == "text":
            tests.append(sa.func.btrim(col, sa.literal(WHITESPACE, sa.Text)) == "")
    return sa.or_(*tests) if tests else None


def _not(condition: sa.ColumnElement | None) -> sa.ColumnElement:
    return sa.true() if condition is None else sa.not_(condition)


def _eq(x: sa.ColumnElement, y: sa.ColumnElement, group: str) -> sa.ColumnElement:
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


def _operand(rule, kind: str, col: sa.ColumnElement, c: _Column, side: str) -> sa.ColumnElement:
    """The database's twin of ``rules.hash_operand``: what is compared (or hashed) for a field."""
    if kind == "instant":
        return _instant(col, c.group, rule.timezone_a if side == "a" else rule.timezone_b)
    if kind in ("scaled", "scaled_exact"):
        return _scaled(col, rule.scale_a if side == "a" else rule.scale_b, exact=kind == "scaled_exact")
    return col


def _operand_group(kind: str, c: _Column) -> str:
    return {"instant": "timestamptz", "scaled": "float8", "scaled_exact": "numeric"}.get(kind, c.group)


def _strict(spec: ReconciliationSpec, cols: list[sa.ColumnElement], fields: list[_Column]) -> list:
    """Records equal values cannot settle (``compare._row_hash``): a null where null-vs-null is
    itself a discrepancy. (Values a rule cannot read do not occur: such types are not pushed.)"""
    return [col.is_(None) for col, c in zip(cols, fields) if spec.rule(c.name).nulls.both_null == "differ"]


def _typed_null(c: _Column) -> sa.ColumnElement:
    return sa.cast(sa.null(), c.column.type)


def _begin(conn: sa.Connection) -> None:
    """Read only, and the session settings (this transaction only)."""
    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    for name, value in SESSION_SETTINGS.items():
        conn.execute(sa.select(sa.func.set_config(name, value, True)))


def _fetch(conn: sa.Connection, statement, schema: pa.Schema, chunk: int, stream: bool = True) -> pa.Table:
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


def _run(side: _PgSide, what: str, fn: Callable[[sa.Connection], pa.Table]) -> pa.Table:
    try:
        with side.connector.engine.connect() as conn, conn.begin():
            _begin(conn)
            return fn(conn)
    except (sa.exc.SQLAlchemyError, psycopg2.Error) as exc:
        message = redact(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300])
        raise SourceError(f"{side.label}: {what}: {type(exc).__name__}: {message}") from None


# --------------------------------------------------------------------------- same database


def _same_database(spec: ReconciliationSpec, a: _PgSide, b: _PgSide, con) -> PushdownResult:
    keys = [k.name for k in spec.key]
    names = [f.name for f in spec.fields]
    kinds = {fa.name: _field_kind(spec.rule(fa.name), fa, fb) for fa, fb in zip(a.fields, b.fields)}
    src = {"a": a.table.alias("src_a"), "b": b.table.alias("src_b")}
    sides = {"a": a, "b": b}

    def cols(side: str, columns: list[_Column]) -> list[sa.ColumnElement]:
        return [src[side].c[c.column.name] for c in columns]

    invalid = {s: _invalid_key(cols(s, sides[s].keys), sides[s].keys) for s in "ab"}
    valid = {s: _not(invalid[s]) for s in "ab"}

    # Duplicate keys: grouped only on a side whose constraints allow them.
    dup_ctes = {}
    for s in "ab":
        if not sides[s].unique:
            kc = cols(s, sides[s].keys)
            dup_ctes[s] = (sa.select(*[c.label(f"k{i}") for i, c in enumerate(kc)], sa.func.count().label("n"))
                           .where(valid[s]).group_by(*kc).having(sa.func.count() > 1).cte(f"dups_{s}"))
    dup_keys = None
    if dup_ctes:
        parts = [sa.select(*[cte.c[f"k{i}"] for i in range(len(keys))]) for cte in dup_ctes.values()]
        dup_keys = (parts[0] if len(parts) == 1 else sa.union(*parts)).cte("dup_keys")

    def in_dups(s: str) -> sa.ColumnElement | None:
        if dup_keys is None:
            return None
        kc = cols(s, sides[s].keys)
        return sa.exists().where(*[_eq(dup_keys.c[f"k{i}"], c, k.group) for i, (c, k) in enumerate(zip(kc, sides[s].keys))])

    # The pairing: only rows that differ, or lack a counterpart, leave the database.
    subs = {}
    for s in "ab":
        side = sides[s]
        kc, fc = cols(s, side.keys), cols(s, side.fields)
        subs[s] = (sa.select(*[c.label(f"k{i}") for i, c in enumerate(kc)], *[c.label(f"f{j}") for j, c in enumerate(fc)])
                   .where(valid[s], _not(in_dups(s))).subquery(s))
    x, y = subs["a"], subs["b"]
    fx = [x.c[f"f{j}"] for j in range(len(names))]
    fy = [y.c[f"f{j}"] for j in range(len(names))]
    differs = []
    for j, (ca, cb) in enumerate(zip(a.fields, b.fields)):
        rule, kind = spec.rule(ca.name), kinds[ca.name]
        left, right = _operand(rule, kind, fx[j], ca, "a"), _operand(rule, kind, fy[j], cb, "b")
        differs.append(_eq_distinct(left, right, ca.group if kind == "raw" else ""))
    strict = _strict(spec, fx, a.fields) + _strict(spec, fy, b.fields)
    a_missing, b_missing = x.c.k0.is_(None), y.c.k0.is_(None)
    on = sa.and_(*[_eq(x.c[f"k{i}"], y.c[f"k{i}"], k.group) for i, k in enumerate(a.keys)])
    pairs = (sa.select(
        sa.case((a_missing, "only_in_b"), (b_missing, "only_in_a"), else_="pair").label("__status"),
        sa.literal(1, sa.BigInteger).label("__count"),
        *[sa.func.coalesce(x.c[f"k{i}"], y.c[f"k{i}"]).label(f"k{i}") for i in range(len(keys))],
        *[c.label(f"a{j}") for j, c in enumerate(fx)], *[c.label(f"b{j}") for j, c in enumerate(fy)])
        .select_from(x.outerjoin(y, on, full=True))
        .where(sa.or_(a_missing, b_missing, *differs, *strict)))

    nulls_a, nulls_b = [_typed_null(c) for c in a.fields], [_typed_null(c) for c in b.fields]

    def aggregate(status, count, key_values=None):
        key_values = key_values or [_typed_null(k) for k in a.keys]
        return sa.select(sa.literal(status, sa.Text), count, *key_values, *nulls_a, *nulls_b)

    parts = [pairs]
    for s in "ab":
        kc = cols(s, sides[s].keys)
        if s in dup_ctes:
            cte = dup_ctes[s]
            parts.append(aggregate(f"duplicate_key_{s}", cte.c.n, [cte.c[f"k{i}"] for i in range(len(keys))]))
        if invalid[s] is not None:
            parts.append(aggregate(f"invalid_key_{s}", sa.func.count(), kc).where(invalid[s]).group_by(*kc))
        parts.append(aggregate(f"__rows_{s}", sa.func.count()).select_from(src[s]))
        if dup_keys is not None:
            parts.append(aggregate(f"__dup_excluded_{s}", sa.func.count()).select_from(src[s]).where(valid[s], in_dups(s)))
    statement = sa.union_all(*parts)

    schema = pa.schema(
        [("__status", pa.string()), ("__count", pa.int64())]
        + [(f"k{i}", k.arrow) for i, k in enumerate(a.keys)]
        + [(f"a{j}", c.arrow) for j, c in enumerate(a.fields)]
        + [(f"b{j}", c.arrow) for j, c in enumerate(b.fields)]
    )
    pushed = PushdownStats(mode="same_database")
    clock = _Clock(pushed)
    rows = _run(a, "comparing in the database", lambda conn: _fetch(conn, statement, schema, spec.source_a.chunk_size))
    clock.lap("database")

    con.register("__pd_result", rows)
    key_text = _key_text([q(f"k{i}") for i in range(len(keys))])
    values = [f"{q(f'a{j}')} AS {q('a__' + n)}" for j, n in enumerate(names)] + [f"{q(f'b{j}')} AS {q('b__' + n)}" for j, n in enumerate(names)]
    con.execute(f"""CREATE OR REPLACE TEMP TABLE __pairs AS
        SELECT __status, {key_text} AS __key, __count{''.join(', ' + v for v in values)}
        FROM __pd_result WHERE NOT starts_with(__status, '__')""")
    counts = dict(con.execute("SELECT __status, sum(__count) FROM __pd_result GROUP BY ALL").fetchall())
    groups = dict(con.execute("SELECT __status, count(*) FROM __pd_result GROUP BY ALL").fetchall())
    con.unregister("__pd_result")

    stats = _pair_stats(counts, groups)
    table, fields = evaluate(con, spec, "__pairs")
    clock.lap("evaluate")
    pushed.result_rows = rows.num_rows
    pushed.rows_fetched_a = stats.candidate_pairs + stats.only_in_a
    pushed.rows_fetched_b = stats.candidate_pairs + stats.only_in_b
    pushed.summary_rows_a = sum(n for s, n in groups.items() if s.endswith("_a") and not s.startswith("only"))
    pushed.summary_rows_b = sum(n for s, n in groups.items() if s.endswith("_b") and not s.startswith("only"))
    return PushdownResult(table, stats, fields, pushed)


def _eq_distinct(x: sa.ColumnElement, y: sa.ColumnElement, group: str) -> sa.ColumnElement:
    if group == "text":
        return x.collate("C").is_distinct_from(y.collate("C"))
    return x.is_distinct_from(y)


def _pair_stats(counts: dict, groups: dict) -> MatchStats:
    """``compare._match_stats`` from the database's counts."""

    def n(status: str) -> int:
        return int(counts.get(status) or 0)

    def g(status: str) -> int:
        return int(groups.get(status) or 0)

    stats = MatchStats(
        rows_a=n("__rows_a"), rows_b=n("__rows_b"),
        invalid_key_rows_a=n("invalid_key_a"), invalid_key_rows_b=n("invalid_key_b"),
        duplicate_keys_a=g("duplicate_key_a"), duplicate_keys_b=g("duplicate_key_b"),
        duplicate_rows_a=n("duplicate_key_a"), duplicate_rows_b=n("duplicate_key_b"),
        only_in_a=g("only_in_a"), only_in_b=g("only_in_b"), candidate_pairs=g("pair"),
    )
    stats.matched = stats.rows_a - stats.invalid_key_rows_a - n("__dup_excluded_a") - stats.only_in_a
    stats.identical = stats.matched - stats.candidate_pairs
    return stats


# --------------------------------------------------------------------------- different databases


def bucket_count(rows: int) -> int:
    """Buckets for a side of ``rows`` rows: a power of two near rows / ROWS_PER_BUCKET."""
    wanted = max(1, rows // ROWS_PER_BUCKET)
    return min(MAX_BUCKETS, max(MIN_BUCKETS, 1 << (wanted - 1).bit_length()))


def _hash(col: sa.ColumnElement, group: str, seed: int) -> sa.ColumnElement:
    """A 64-bit hash of a value with PostgreSQL's own hash function for its type (those of
    hash partitioning): equal values under the type's ``=`` hash alike (42.5 and 42.50, -0.0
    and 0.0), the same equality the same-database path uses. Text is hashed byte-wise."""
    if group == "int":
        return sa.func.hashint8extended(sa.cast(col, sa.BigInteger), seed)
    if group == "float8":
        return sa.func.hashfloat8extended(col, seed)
    if group == "float4":
        return sa.func.hashfloat4extended(col, seed)
    if group == "numeric":
        return sa.func.hash_numeric_extended(col, seed)
    if group == "text":
        return sa.func.hashtextextended(sa.cast(col, sa.Text).collate("C"), seed)
    if group == "bool":
        return sa.func.hashint4extended(sa.cast(col, sa.Integer), seed)
    if group == "timestamp":
        return sa.func.timestamp_hash_extended(col, seed)
    if group == "timestamptz":
        return sa.func.timestamp_hash_extended(sa.func.timezone("UTC", col), seed)
    return sa.func.hashtextextended(sa.cast(col, sa.Text), seed)  # date: ISO text (DateStyle is set)


def _combined(values: list[tuple[sa.ColumnElement, str]], first_seed: int) -> sa.ColumnElement:
    """XOR of the values' hashes, each with its own seed (so moving a value to another column
    changes the result) and its own constant for NULL."""
    hashed = [sa.func.coalesce(_hash(col, group, first_seed + i), -(first_seed + i)) for i, (col, group) in enumerate(values)]
    out = hashed[0]
    for h in hashed[1:]:
        out = out.op("#")(h)
    return out


def _bucket_of(side: _PgSide, src, buckets: int) -> sa.ColumnElement:
    keys = [(src.c[k.column.name], k.group) for k in side.keys]
    hashed = _combined(keys, 1_000) if len(keys) > 1 else _hash(*keys[0], 0)
    return sa.func.coalesce(hashed.op("&")(buckets - 1), 0)  # a null key: bucket 0, marked as differing


def _estimated_rows(side: _PgSide) -> int:
    """The planner's row estimate (``pg_class.reltuples``): enough to size the buckets."""
    name = side.connector.engine.dialect.identifier_preparer.format_table(side.table)
    with side.connector.engine.connect() as conn:
        value = conn.execute(sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"), {"name": name}).scalar()
    return max(0, int(value or 0))


def _by_buckets(spec: ReconciliationSpec, a: _PgSide, b: _PgSide, con) -> PushdownResult:
    kinds = {fa.name: _field_kind(spec.rule(fa.name), fa, fb) for fa, fb in zip(a.fields, b.fields)}
    sides = {"a": a, "b": b}
    buckets = bucket_count(max(_estimated_rows(a), _estimated_rows(b)))

    def summary_statement(side: _PgSide):
        src = side.table.alias("src")
        kc = [src.c[k.column.name] for k in side.keys]
        fc = [src.c[c.column.name] for c in side.fields]
        operands = [_operand(spec.rule(c.name), kinds[c.name], col, c, side.side) for col, c in zip(fc, side.fields)]
        groups = [k.group for k in side.keys] + [_operand_group(kinds[c.name], c) for c in side.fields]
        row_hash = _combined(list(zip(kc + operands, groups)), 1)
        invalid = _invalid_key(kc, side.keys)
        unsettled = [invalid] if invalid is not None else []
        unsettled += _strict(spec, fc, side.fields)
        bucket = _bucket_of(side, src, buckets)
        rows = sa.select(bucket.label("b"), row_hash.label("h"), (sa.or_(*unsettled) if unsettled else sa.false()).label("d")).subquery("r")
        # The hash sum as two 64-bit sums (high and low halves): no numeric to ship or decode.
        high = sa.cast(sa.func.sum(rows.c.h.op(">>")(32)), sa.BigInteger)
        low = sa.cast(sa.func.sum(rows.c.h.op("&")(0xFFFFFFFF)), sa.BigInteger)
        statement = (sa.select(rows.c.b, sa.func.count().label("n"), high.label("hi"), low.label("lo"), sa.func.bool_or(rows.c.d).label("d"))
                     .group_by(rows.c.b))
        if not side.unique:  # a bucket holding a duplicated key is never settled by its sums
            zero = sa.literal(0, sa.BigInteger)
            dups = (sa.select(bucket.label("b"), zero.label("n"), zero.label("hi"), zero.label("lo"), sa.true().label("d"))
                    .where(_not(invalid)).group_by(*kc).having(sa.func.count() > 1))
            statement = sa.union_all(statement, dups)
        return statement

    summary_schema = pa.schema([("b", pa.int64()), ("n", pa.int64()), ("hi", pa.int64()), ("lo", pa.int64()), ("d", pa.bool_())])
    pushed = PushdownStats(mode="buckets", buckets=buckets)
    clock = _Clock(pushed)
    summaries = _both(sides, "summarising buckets",
                      lambda side: lambda conn: _fetch(conn, summary_statement(side), summary_schema, 100_000, stream=False))
    for s, table in summaries.items():
        con.register(f"__pd_summary_{s}", table)
    con.execute("""CREATE OR REPLACE TEMP TABLE __pd_buckets AS
        WITH x AS (SELECT b, sum(n) AS n, sum(hi) AS hi, sum(lo) AS lo, bool_or(d) AS d FROM __pd_summary_a GROUP BY b),
             y AS (SELECT b, sum(n) AS n, sum(hi) AS hi, sum(lo) AS lo, bool_or(d) AS d FROM __pd_summary_b GROUP BY b)
        SELECT coalesce(x.b, y.b) AS b, coalesce(x.n, 0) AS n,
               (x.n IS DISTINCT FROM y.n OR x.hi IS DISTINCT FROM y.hi OR x.lo IS DISTINCT FROM y.lo
                OR coalesce(x.d OR y.d, TRUE)) AS differs
        FROM x FULL JOIN y ON x.b = y.b""")
    for s in "ab":
        con.unregister(f"__pd_summary_{s}")
    differing, clean_rows = con.execute(
        "SELECT count(*) FILTER (differs), coalesce(sum(n) FILTER (NOT differs), 0) FROM __pd_buckets").fetchone()
    wanted = [r[0] for r in con.execute("SELECT b FROM __pd_buckets WHERE differs ORDER BY b").fetchall()]
    whole = differing > FETCH_ALL_SHARE * buckets
    clock.lap("summaries")

    def fetch_statement(side: _PgSide):
        src = side.table.alias("src")
        columns = [src.c[c.column.name].label(c.name) for c in side.keys + side.fields]
        statement = sa.select(*columns)
        return statement if whole else statement.where(_bucket_of(side, src, buckets).in_(wanted))

    def fetch(side: _PgSide):
        schema = pa.schema([(c.name, c.arrow) for c in side.keys + side.fields])
        source = spec.source_a if side.side == "a" else spec.source_b
        if not wanted:
            return lambda conn: schema.empty_table()
        return lambda conn: _fetch(conn, fetch_statement(side), schema, source.chunk_size)

    fetched = _both(sides, "fetching the differing buckets", fetch)
    clock.lap("fetch")

    # The regular local comparison, on the differing buckets only.
    for s, table in fetched.items():
        con.register(f"__pd_rows_{s}", table)
        con.execute(f"CREATE OR REPLACE TEMP TABLE __pd_{s} AS SELECT * FROM __pd_rows_{s}")
        con.unregister(f"__pd_rows_{s}")
    names = [k.name for k in spec.key] + [f.name for f in spec.fields]
    side_a = Side("__pd_a", {n: n for n in names}, a.label)
    side_b = Side("__pd_b", {n: n for n in names}, b.label)
    stats = match(con, spec, side_a, side_b)
    clean = 0 if whole else int(clean_rows)
    stats.rows_a += clean
    stats.rows_b += clean
    stats.matched += clean
    stats.identical += clean
    table, fields = evaluate(con, spec, "__pairs")
    clock.lap("compare")
    pushed.rows_fetched_a, pushed.rows_fetched_b = fetched["a"].num_rows, fetched["b"].num_rows
    pushed.summary_rows_a, pushed.summary_rows_b = summaries["a"].num_rows, summaries["b"].num_rows
    pushed.differing_buckets, pushed.rows_settled_by_buckets, pushed.fetched_whole = int(differing), clean, whole
    return PushdownResult(table, stats, fields, pushed)


def _both(sides: dict[str, _PgSide], what: str, make) -> dict[str, pa.Table]:
    """Run one statement per side, both sides at once (two servers work in parallel)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {s: pool.submit(_run, side, what, make(side)) for s, side in sides.items()}
        return {s: f.result() for s, f in futures.items()}


def _server_setting(side: _PgSide, name: str) -> str:
    with side.connector.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.current_setting(name))).scalar()
