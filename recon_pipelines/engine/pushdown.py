"""Push-down: compare two SQL tables where they live and move only what differs.

The pairing strategies that read the sources themselves (``engine/strategies/``:
``postgres_join``, ``mariadb_same_database``, ``bucket_summaries``, ``canonical_buckets``) are
the ``PairingStrategy`` face of this module: ``pair_in_database`` runs them when both sources
are ``sql`` sources naming a ``table`` (not a ``query``) in PostgreSQL or MariaDB (any
pairing); ``explain`` says which of them a spec's sources call for and why the others do not
(``strategies.choose`` asks each strategy, ``recon validate`` prints the answer).
The field rules are *not* pushed down: they stay in DuckDB (``compare.evaluate``), so a
push-down run reports exactly what the local path reports. What runs in the database is the
pairing and the equality pre-check:

Same database (the two sources resolve to the same URL; PostgreSQL or MariaDB)
    One read-only query joins the two tables on the key and returns only the *candidate
    pairs* (at least one compared column differs, ``IS DISTINCT FROM`` / MariaDB's ``<=>`` per
    column, NULL-safe, text byte-wise: ``portable_sql.exact_text``), the one-sided rows, and the
    key anomalies (NULL or blank keys grouped by key; duplicate keys with their counts, skipped
    when a primary key or unique index already rules them out), plus the row counts. MariaDB
    has no FULL JOIN: a left join, then B's rows without a partner. The rows are loaded into
    DuckDB in the shape of ``__pairs`` and ``evaluate`` judges them.

Different databases
    One read-only query per side computes, per bucket of a hash of the key, the row count,
    the sum of a 64-bit hash of each record and whether the bucket holds a row a hash cannot
    settle (an invalid or duplicate key, a null that ``both_null: differ`` reports).
    Two PostgreSQL servers hash with PostgreSQL's own hash function for each column's type
    (those of hash partitioning, seeded per column): equal under the type's ``=`` means equal
    hashes, the equality the same-database path uses, and it costs a third of hashing a text
    rendering of the record (``ROW(...)::text``: 27 s against 8.5 s for 10 million rows here).
    Any other pair (MariaDB with PostgreSQL, two MariaDB servers) hashes the md5 of each value's
    canonical text (``portable_sql``), the same digits on both DBMSs.
    Buckets whose summaries agree hold identical records and are only counted; the rows of
    the other buckets are fetched from each side (``WHERE bucket IN (...)``) and compared with
    the regular local ``match``/``evaluate``.

DuckDB files (``duckdb:///path`` on both sides)
    Attached read-only to the engine's connection; ``match``/``evaluate`` run on the tables
    in place, nothing is copied.

Soundness: equality in the database must imply equality in DuckDB (after the SQL connector's
type conversion), so push-down only takes fields whose types are understood on both sides (a
``Profile``'s groups): anything else, mapping tables (``key_mapping``), declared ``columns:``
and rules that have to parse text (a numeric or timestamp rule on a text column) fall back to
the local path, with the reason logged; so do the field kinds a database cannot pre-check
(MariaDB: per-side zones and unit scales) and, across two kinds of database, floats (no
canonical text). Equal summaries imply equal records; the converse need not hold: two servers
whose hash functions or renderings differ (another architecture, a DBMS printing a value
another way) only make more buckets differ, a cost, never a wrong answer.

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
from dataclasses import dataclass, field

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from recon_pipelines.engine.compare import (
    MatchStats,
    Side,
    _key_text,
    match,
    side_columns,
)
from recon_pipelines.engine.portable_sql import CANONICAL_GROUPS, MYSQL_FAMILY, exact_text, hex_int, is_blank, record_digest
from recon_pipelines.redact import redact
from recon_pipelines.sources.base import SourceError, require_columns
from recon_pipelines.sources.sql import SqlConnector, arrow_type
from recon_pipelines.spec.models import (
    NumericRule,
    ReconciliationSpec,
    SqlSource,
    TimestampRule,
)
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



@dataclass(frozen=True)
class Profile:
    """What differs between the databases push-down runs on.

    ``groups``: reflected SQLAlchemy types push-down understands, by group. Two columns
    compare in the database only within one group: the SQL connector converts every type of
    a group to the same Arrow type, and equality in the group implies equality after that
    conversion (text compared byte for byte: ``portable_sql.exact_text``). ``kinds``: the
    field kinds (``_field_kind``) the database can pre-check."""

    name: str
    groups: dict[str, str]
    kinds: frozenset[str]
    full_join: bool  # MariaDB has no FULL JOIN: a left join, then the other side's anti join
    min_version: tuple[int, ...]


PROFILES = {
    "postgresql": Profile(
        "postgresql",
        {"SMALLINT": "int", "INTEGER": "int", "BIGINT": "int", "DOUBLE_PRECISION": "float8", "REAL": "float4",
         "NUMERIC": "numeric", "TEXT": "text", "VARCHAR": "text", "BOOLEAN": "bool", "DATE": "date"},
        frozenset({"raw", "instant", "scaled", "scaled_exact"}), True, (11,),  # 11: the hash functions
    ),
    "mariadb": Profile(
        "mariadb",
        {"TINYINT": "int", "SMALLINT": "int", "MEDIUMINT": "int", "INTEGER": "int", "BIGINT": "int",
         "DOUBLE": "float8", "FLOAT": "float4", "DECIMAL": "numeric", "NUMERIC": "numeric",
         "CHAR": "text", "VARCHAR": "text", "TINYTEXT": "text", "TEXT": "text", "MEDIUMTEXT": "text", "LONGTEXT": "text",
         "DATE": "date", "DATETIME": "timestamp"},  # TIMESTAMP: _group (read in the session's zone, as the connector does)
        # Zone conversion needs the server's time zone tables, unit scales its decimal
        # arithmetic: both are applied locally.
        frozenset({"raw"}), False, (10, 3),  # 10.3: CTEs and NO PAD collations
    ),
}
# Compile-only (golden SQL tests): the statements these warehouses would run, not run here.
WAREHOUSE_PROFILES = {name: Profile(name, {}, frozenset({"raw"}), True, ()) for name in ("snowflake", "bigquery", "databricks")}
_NUMBERS = {"int", "float8", "float4", "numeric"}
_INSTANTS = {"date", "timestamp", "timestamptz"}


class NotPushable(Exception):
    """The spec cannot be compared in the database; the message says why (logged, then local)."""


@dataclass
class PushdownStats:
    """What crossed the wire. ``rows_fetched_*`` count table records (a candidate pair carries
    one record of each side); ``summary_rows_*`` count aggregate rows that carry no record
    (bucket summaries; row counts and key-anomaly groups)."""

    mode: str = ""  # "same_database", "buckets" (native hashes), "canonical_buckets" (md5 of canonical text) or "duckdb" (files compared in-process)
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


class Clock:
    def __init__(self, stats: PushdownStats):
        self.stats, self.last = stats, time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.stats.seconds[phase] = round(self.stats.seconds.get(phase, 0.0) + now - self.last, 3)
        self.last = now


# --------------------------------------------------------------------------- entry point


def _backend_of(spec: ReconciliationSpec) -> str:
    """'duckdb' when both sources are DuckDB files; 'sql' when each is a table in PostgreSQL
    or MariaDB (any pair of them); NotPushable otherwise."""
    if spec.key_mapping is not None:
        raise NotPushable("key_mapping translates keys locally")
    if spec.aggregate_rules:
        raise NotPushable("match: group and window rules run locally")
    if spec.suggest is not None:
        raise NotPushable("suggest: scores the unmatched records locally")
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
        backends.add(backend_of_url(url))
    if backends == {"duckdb"}:
        return "duckdb"
    if backends and backends <= set(PROFILES):
        return "sql"
    raise NotPushable(f"sources on {' and '.join(sorted(b or 'unknown' for b in backends))}: "
                      f"push-down runs on {', '.join(sorted(PROFILES))} and DuckDB files")


def pair_in_database(spec: ReconciliationSpec, con, *, want: str | None = None) -> tuple[MatchStats, PushdownStats]:
    """The pairing of two SQL tables where they live (``__pairs`` left on ``con``). ``want``
    (a strategy name of ``STRATEGY_MODES``) refuses any other path with NotPushable."""
    sides = _open_sides(spec)
    try:
        name, situation = _plan(sides["a"], sides["b"])
        if want is not None and want != name:
            raise NotPushable(situation)
        return (same_database_pairs if STRATEGY_MODES[name] == "same_database" else bucket_pairs)(spec, sides["a"], sides["b"], con)
    finally:
        for side in sides.values():
            side.connector.close()


# The SQL push-down strategies, by name: the mode each runs.
STRATEGY_MODES = {
    "postgres_join": "same_database",
    "mariadb_same_database": "same_database",
    "bucket_summaries": "buckets",
    "canonical_buckets": "canonical_buckets",
}
_PRODUCT = {"postgresql": "PostgreSQL", "mariadb": "MariaDB"}


def _plan(a: _DbSide, b: _DbSide) -> tuple[str, str]:
    """The strategy these two opened tables get and the situation in words; NotPushable when
    none can run (the kinds of field were already checked by ``_check_pairs``)."""
    if same_database(a, b):
        return 'mariadb_same_database' if a.profile.name == 'mariadb' else 'postgres_join', \
            f"both tables are in one {_PRODUCT[a.profile.name]} database"
    if a.profile.name == b.profile.name == "postgresql":
        encodings = [_server_setting(side, "server_encoding") for side in (a, b)]
        if encodings[0] != encodings[1]:  # the same bytes could be different text
            raise NotPushable(f"server encodings differ ({encodings[0]}, {encodings[1]})")
        return "bucket_summaries", "the tables are in two PostgreSQL databases"
    _hashing(a, b)
    return "canonical_buckets", f"the tables are in two databases ({_PRODUCT[a.profile.name]}, {_PRODUCT[b.profile.name]})"


def explain(spec: ReconciliationSpec) -> tuple[str, str, dict[str, str]]:
    """The pairing strategy ``recon run`` uses for a spec, why, and for each other push-down
    strategy why it is refused (one line each); ``local`` when none runs. Opens the sources
    (reflection only, no data read)."""
    names = ["duckdb_files", *STRATEGY_MODES]
    if not spec.pushdown:
        return "local", "the spec sets pushdown: false", {n: "the spec sets pushdown: false" for n in names}
    if spec.source_a.expect or spec.source_b.expect or spec.sample is not None:
        why = "expectations and sampling read the sources locally"
        return "local", why, {n: why for n in names}
    try:
        if _backend_of(spec) == "duckdb":
            chosen, situation = "duckdb_files", "both sources are DuckDB files"
        else:
            sides = _open_sides(spec)
            try:
                chosen, situation = _plan(sides["a"], sides["b"])
            finally:
                for side in sides.values():
                    side.connector.close()
    except NotPushable as reason:
        return "local", "no push-down applies", {n: str(reason) for n in names}
    return chosen, situation, {n: situation for n in names if n != chosen} | {"local": f"{chosen} runs"}


def same_database(a: _DbSide, b: _DbSide) -> bool:
    """The two sources resolve to one server and database (one statement can read both)."""
    return _resolved_url(a) == _resolved_url(b)


@dataclass
class _Column:
    name: str  # spec name
    column: sa.ColumnElement  # the table's column
    group: str
    arrow: pa.DataType
    collation: str | None = None  # MariaDB text: the column's collation (information_schema)


@dataclass
class _DbSide:
    side: str
    connector: SqlConnector
    table: sa.Table
    keys: list[_Column]
    fields: list[_Column]
    unique: bool  # the key cannot repeat (primary key or unique index on key columns)
    profile: Profile

    @property
    def label(self) -> str:
        return self.connector.label


def declared_side(spec: ReconciliationSpec, side: str, table: sa.Table, profile: Profile, unique: bool = False) -> _DbSide:
    """A side from a table whose column types are declared, not reflected (no connection):
    for compiling the statements for another dialect (golden SQL tests)."""
    schema = pa.schema([(c.name, arrow_type(c.type)) for c in table.columns])
    columns = side_columns(spec, side)

    def column(name: str) -> _Column:
        col = table.c[columns[name]]
        return _Column(name, col, _group(col.type, PROFILES["postgresql"]), schema.field(columns[name]).type)

    return _DbSide(side, None, table, [column(k.name) for k in spec.key], [column(f.name) for f in spec.fields], unique, profile)


def _resolved_url(side: _DbSide) -> str:
    return side.connector.engine.url.render_as_string(hide_password=False)


def _open_sides(spec: ReconciliationSpec) -> dict[str, _DbSide]:
    sides: dict[str, _DbSide] = {}
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
        name = sa.make_url(normalize_url(url or "")).get_backend_name()
    except (sa.exc.ArgumentError, ValueError):  # not a URL: the connector reports it
        return ""
    return "mariadb" if name in MYSQL_FAMILY else name


def _open_side(spec: ReconciliationSpec, side: str, source: SqlSource) -> _DbSide:
    connector = SqlConnector(source)  # resolves url_env; SourceError when it is unset
    try:
        profile = PROFILES.get(backend_of_url(connector.engine.url.render_as_string()))
        if profile is None:
            raise NotPushable(f"{connector.label} is neither PostgreSQL nor MariaDB")
        columns = side_columns(spec, side)
        declared = set(source.columns or {}) & set(columns.values())
        if declared:
            raise NotPushable(f"{connector.label}: declared column types ({', '.join(sorted(declared))}) are applied locally")
        schema = connector.schema()
        require_columns(schema, list(dict.fromkeys(columns.values())), connector.label)
        table = connector.selectable()
        collations = _collations(connector, table) if profile.name == "mariadb" else {}

        def column(name: str) -> _Column:
            col = table.c[columns[name]]
            group = _group(col.type, profile)
            if group is None:
                raise NotPushable(f"{connector.label}: column {columns[name]!r} has type {col.type}, not compared in the database")
            return _Column(name, col, group, schema.field(columns[name]).type, collations.get(columns[name]))

        keys = [column(k.name) for k in spec.key]
        fields = [column(f.name) for f in spec.fields]
        with connector.engine.connect() as conn:
            version = conn.dialect.server_version_info or (0,)
            if profile.name == "mariadb" and not getattr(conn.dialect, "is_mariadb", False):
                # MySQL's collations and functions differ (utf8mb4_0900_bin, no max_statement_time): not tested here.
                raise NotPushable(f"{connector.label}: MySQL (not MariaDB) is compared locally")
        if version < profile.min_version:
            raise NotPushable(f"{connector.label}: {profile.name} {'.'.join(map(str, version[:2]))} is older than push-down needs "
                              f"({'.'.join(map(str, profile.min_version))})")
        unique = _key_is_unique(connector, table, [c.column.name for c in keys])
        return _DbSide(side, connector, table, keys, fields, unique, profile)
    except BaseException:
        connector.close()
        raise


def _collations(connector: SqlConnector, table: sa.Table) -> dict[str, str]:
    """MariaDB: each text column's collation (NULL for other types)."""
    with connector.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = coalesce(:schema, DATABASE()) AND TABLE_NAME = :name"),
            {"schema": table.schema, "name": table.name}).fetchall()
    return {name: collation for name, collation in rows if collation}


def _group(sa_type, profile: Profile) -> str | None:
    name = type(sa_type).__name__
    if name == "TIMESTAMP":
        return "timestamptz" if getattr(sa_type, "timezone", False) else "timestamp"
    return profile.groups.get(name)


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


def _check_pairs(spec: ReconciliationSpec, a: _DbSide, b: _DbSide) -> None:
    """Every key and field must compare in the database exactly as DuckDB would judge it."""
    for ka, kb in zip(a.keys, b.keys):
        if ka.group != kb.group or ka.arrow != kb.arrow:
            raise NotPushable(f"key {ka.name!r}: types {ka.column.type} and {kb.column.type} are joined as text locally")
    for fa, fb in zip(a.fields, b.fields):
        _field_kind(spec.rule(fa.name), fa, fb, a.profile if a.profile == b.profile else None)


_KIND_NAMES = {"instant": "a time zone per side", "scaled": "a unit scale", "scaled_exact": "a unit scale"}


def _field_kind(rule, fa: _Column, fb: _Column, profile: Profile | None = None) -> str:
    """``_field_kind_of``, refused when ``profile``'s database cannot pre-check that kind
    (``None``: two databases, which compare only raw values, see ``_by_canonical_buckets``)."""
    kind = _field_kind_of(rule, fa, fb)
    if kind != "raw" and (profile is None or kind not in profile.kinds):
        where = f"on {profile.name}" if profile is not None else "across two kinds of database"
        raise NotPushable(f"field {rule.name!r}: {_KIND_NAMES[kind]} {where} is applied locally")
    return kind


def _field_kind_of(rule, fa: _Column, fb: _Column) -> str:
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


# --------------------------------------------------------------------------- SQL pieces (PostgreSQL, MariaDB)


def _invalid_key(cols: list[sa.ColumnElement], keys: list[_Column]) -> sa.ColumnElement | None:
    """True for a key the engine reports as invalid_key (null; blank text); None when the
    table's constraints already rule both out."""
    tests = []
    for col, key in zip(cols, keys):
        if key.column.nullable:
            tests.append(col.is_(None))
        if key.group == "text":
            tests.append(is_blank(col))
    return sa.or_(*tests) if tests else None


def _not(condition: sa.ColumnElement | None) -> sa.ColumnElement:
    return sa.true() if condition is None else sa.not_(condition)


def _eq(x: sa.ColumnElement, y: sa.ColumnElement, group: str, profile: Profile, coarse: bool = False) -> sa.ColumnElement:
    """Keys equal as DuckDB compares them. On MariaDB NULL-safe (``<=>``); text byte-wise
    (``exact_text``), and with ``coarse`` (both columns in one collation) also in that collation
    first: that equality can use an index, and byte-wise equal texts are equal in any collation.
    Two different collations are never compared directly (MariaDB refuses the mix)."""
    if profile.name == "mariadb":
        if group != "text":
            return x.is_not_distinct_from(y)
        exact = exact_text(x).is_not_distinct_from(exact_text(y))
        return sa.and_(x.is_not_distinct_from(y), exact) if coarse else exact
    return exact_text(x) == exact_text(y) if group == "text" else x == y


def _grouping(col: sa.ColumnElement, group: str, profile: Profile) -> sa.ColumnElement:
    """A key column to GROUP BY: text in a byte-wise collation, else a case-insensitive or
    trailing-space-insensitive one (MariaDB's usual, a warehouse column's declared one) would
    group 'a', 'A' and 'a ' as one key, a duplicate DuckDB does not see. PostgreSQL's
    collations are deterministic (byte-wise equality): its text is grouped as it is."""
    return exact_text(col) if group == "text" and profile.name != "postgresql" else col


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


def _typed_null(c: _Column, profile: Profile) -> sa.ColumnElement:
    # MariaDB casts to few types (no VARCHAR(n), no TEXT); its UNION types a NULL by the other rows.
    return sa.null() if profile.name == "mariadb" else sa.cast(sa.null(), c.column.type)


def _begin(conn: sa.Connection, profile: Profile) -> None:
    """Read only, and the session settings (this transaction only). MariaDB: the read-only
    engine also sets the session read-only and its ``max_statement_time``; its time zone is
    left as the connector reads it (naive timestamps are compared as the connector sees them)."""
    if profile.name == "mariadb":
        conn.exec_driver_sql("START TRANSACTION READ ONLY")
        return
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
    are read whole instead. Other databases stream through SQLAlchemy, as the connector does."""
    if conn.dialect.name != "postgresql":
        return _fetch_generic(conn, statement, schema, chunk, stream)
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


def _fetch_generic(conn: sa.Connection, statement, schema: pa.Schema, chunk: int, stream: bool) -> pa.Table:
    result = conn.execution_options(stream_results=stream, yield_per=chunk).execute(statement)
    batches = [pa.RecordBatch.from_arrays([pa.array(v, type=f.type) for v, f in zip(zip(*rows), schema)], schema=schema)
               for rows in result.partitions(chunk) if rows]
    return pa.Table.from_batches(batches, schema=schema)


def run_read_only(side: _DbSide, what: str, fn: Callable[[sa.Connection], pa.Table]) -> pa.Table:
    driver_error = side.connector.engine.dialect.loaded_dbapi.Error
    try:
        with side.connector.engine.connect() as conn, conn.begin():
            _begin(conn, side.profile)
            return fn(conn)
    except (sa.exc.SQLAlchemyError, driver_error) as exc:
        message = redact(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300])
        raise SourceError(f"{side.label}: {what}: {type(exc).__name__}: {message}") from None


# --------------------------------------------------------------------------- same database


def same_database_pairs(spec: ReconciliationSpec, a: _DbSide, b: _DbSide, con) -> tuple[MatchStats, PushdownStats]:
    """One read-only statement pairs the two tables in their database; leaves ``__pairs``."""
    keys = [k.name for k in spec.key]
    names = [f.name for f in spec.fields]
    statement, schema = same_database_statement(spec, a, b)
    pushed = PushdownStats(mode="same_database")
    clock = Clock(pushed)
    rows = run_read_only(a, "comparing in the database", lambda conn: _fetch(conn, statement, schema, spec.source_a.chunk_size))
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
    pushed.result_rows = rows.num_rows
    pushed.rows_fetched_a = stats.candidate_pairs + stats.only_in_a
    pushed.rows_fetched_b = stats.candidate_pairs + stats.only_in_b
    pushed.summary_rows_a = sum(n for s, n in groups.items() if s.endswith("_a") and not s.startswith("only"))
    pushed.summary_rows_b = sum(n for s, n in groups.items() if s.endswith("_b") and not s.startswith("only"))
    return stats, pushed


def same_database_statement(spec: ReconciliationSpec, a: _DbSide, b: _DbSide) -> tuple[sa.CompoundSelect, pa.Schema]:
    """The one statement of the same-database path and the Arrow schema of its rows: the
    candidate pairs and one-sided rows, then key anomalies and counts as aggregate rows."""
    profile = a.profile
    keys = [k.name for k in spec.key]
    names = [f.name for f in spec.fields]
    kinds = {fa.name: _field_kind(spec.rule(fa.name), fa, fb, profile) for fa, fb in zip(a.fields, b.fields)}
    src = {"a": a.table.alias("src_a"), "b": b.table.alias("src_b")}
    sides = {"a": a, "b": b}

    def cols(side: str, columns: list[_Column]) -> list[sa.ColumnElement]:
        return [src[side].c[c.column.name] for c in columns]

    def grouped_keys(side: str, where: sa.ColumnElement) -> sa.Subquery:
        """The side's keys as GROUP BY sees them (``_grouping``), as columns k0, k1, ... of a
        subquery: grouped by plain columns, which every dialect renders alike."""
        kg = [_grouping(c, k.group, profile) for c, k in zip(cols(side, sides[side].keys), sides[side].keys)]
        return sa.select(*[c.label(f"k{i}") for i, c in enumerate(kg)]).where(where).subquery(f"keys_{side}")

    invalid = {s: _invalid_key(cols(s, sides[s].keys), sides[s].keys) for s in "ab"}
    valid = {s: _not(invalid[s]) for s in "ab"}

    # Duplicate keys: grouped only on a side whose constraints allow them.
    dup_ctes = {}
    for s in "ab":
        if not sides[s].unique:
            kg = grouped_keys(s, valid[s])
            dup_ctes[s] = (sa.select(*kg.c, sa.func.count().label("n"))
                           .group_by(*kg.c).having(sa.func.count() > 1).cte(f"dups_{s}"))
    dup_keys = None
    if dup_ctes:
        parts = [sa.select(*[cte.c[f"k{i}"] for i in range(len(keys))]) for cte in dup_ctes.values()]
        dup_keys = (parts[0] if len(parts) == 1 else sa.union(*parts)).cte("dup_keys")

    def in_dups(s: str) -> sa.ColumnElement | None:
        if dup_keys is None:
            return None
        kc = cols(s, sides[s].keys)
        return sa.exists().where(*[_eq(dup_keys.c[f"k{i}"], c, k.group, profile) for i, (c, k) in enumerate(zip(kc, sides[s].keys))])

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
    on = sa.and_(*[_eq(x.c[f"k{i}"], y.c[f"k{i}"], ka.group, profile, coarse=ka.collation is not None and ka.collation == kb.collation)
                   for i, (ka, kb) in enumerate(zip(a.keys, b.keys))])
    columns = [
        sa.case((a_missing, "only_in_b"), (b_missing, "only_in_a"), else_="pair").label("__status"),
        sa.literal(1, sa.BigInteger).label("__count"),
        *[sa.func.coalesce(x.c[f"k{i}"], y.c[f"k{i}"]).label(f"k{i}") for i in range(len(keys))],
        *[c.label(f"a{j}") for j, c in enumerate(fx)], *[c.label(f"b{j}") for j, c in enumerate(fy)]]
    if profile.full_join:
        pairing = [sa.select(*columns).select_from(x.outerjoin(y, on, full=True)).where(sa.or_(a_missing, b_missing, *differs, *strict))]
    else:  # A's rows with their partner if any, then B's rows without one
        pairing = [sa.select(*columns).select_from(x.outerjoin(y, on)).where(sa.or_(b_missing, *differs, *strict)),
                   sa.select(*columns).select_from(y.outerjoin(x, on)).where(a_missing)]

    nulls_a, nulls_b = [_typed_null(c, profile) for c in a.fields], [_typed_null(c, profile) for c in b.fields]

    def aggregate(status, count, key_values=None):
        key_values = key_values or [_typed_null(k, profile) for k in a.keys]
        return sa.select(sa.literal(status, sa.Text), count, *key_values, *nulls_a, *nulls_b)

    parts = pairing
    for s in "ab":
        if s in dup_ctes:
            cte = dup_ctes[s]
            parts.append(aggregate(f"duplicate_key_{s}", cte.c.n, [cte.c[f"k{i}"] for i in range(len(keys))]))
        if invalid[s] is not None:
            kg = grouped_keys(s, invalid[s])
            parts.append(aggregate(f"invalid_key_{s}", sa.func.count(), list(kg.c)).group_by(*kg.c))
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
    return statement, schema


def _eq_distinct(x: sa.ColumnElement, y: sa.ColumnElement, group: str) -> sa.ColumnElement:
    if group == "text":
        return exact_text(x).is_distinct_from(exact_text(y))
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


def _bucket_of(side: _DbSide, src, buckets: int) -> sa.ColumnElement:
    keys = [(src.c[k.column.name], k.group) for k in side.keys]
    hashed = _combined(keys, 1_000) if len(keys) > 1 else _hash(*keys[0], 0)
    return sa.func.coalesce(hashed.op("&")(buckets - 1), 0)  # a null key: bucket 0, marked as differing


class _NativeHashes:
    """PostgreSQL on both sides: its own per-type hash functions, combined by XOR."""

    flag_type = pa.bool_()

    @staticmethod
    def bucket(side: _DbSide, src, buckets: int) -> sa.ColumnElement:
        return _bucket_of(side, src, buckets)

    @staticmethod
    def row_hash(values: list[tuple[sa.ColumnElement, str]]) -> sa.ColumnElement:
        return _combined(values, 1)

    @staticmethod
    def halves(h: sa.ColumnElement) -> tuple[sa.ColumnElement, sa.ColumnElement]:
        return h.op(">>")(32), h.op("&")(0xFFFFFFFF)

    @staticmethod
    def any_of(condition: sa.ColumnElement) -> sa.ColumnElement:
        return sa.func.bool_or(condition)

    flag_true = staticmethod(sa.true)


class _CanonicalHashes:
    """Two kinds of database: md5 of each value's canonical text (``portable_sql``), the
    same digits on both; sums and flags in plain SQL every database has."""

    flag_type = pa.int64()

    @staticmethod
    def bucket(side: _DbSide, src, buckets: int) -> sa.ColumnElement:
        digest = record_digest([(src.c[k.column.name], k.group) for k in side.keys])
        return sa.func.mod(hex_int(digest, 1), buckets)  # a null key has a token too; its row is flagged

    @staticmethod
    def row_hash(values: list[tuple[sa.ColumnElement, str]]) -> sa.ColumnElement:
        return record_digest(values)

    @staticmethod
    def halves(h: sa.ColumnElement) -> tuple[sa.ColumnElement, sa.ColumnElement]:
        return hex_int(h, 1), hex_int(h, 9)

    @staticmethod
    def any_of(condition: sa.ColumnElement) -> sa.ColumnElement:
        return sa.func.max(sa.case((condition, 1), else_=0))

    @staticmethod
    def flag_true() -> sa.ColumnElement:
        return sa.literal(1, sa.BigInteger)


def _hashing(a: _DbSide, b: _DbSide):
    if a.profile.name == b.profile.name == "postgresql":
        return _NativeHashes
    for side in (a, b):
        for c in side.keys + side.fields:
            if c.group not in CANONICAL_GROUPS:
                raise NotPushable(f"{side.label}: column {c.column.name!r} ({c.column.type}) has no text both "
                                  f"{a.profile.name} and {b.profile.name} render alike (floats print differently)")
    if "postgresql" in (a.profile.name, b.profile.name):
        encoding = _server_setting(a if a.profile.name == "postgresql" else b, "server_encoding")
        if encoding != "UTF8":  # md5 hashes the text's bytes: UTF-8 on MariaDB's side (utf8mb4)
            raise NotPushable(f"PostgreSQL's server encoding is {encoding}, not UTF8")
    return _CanonicalHashes


def summary_statement(spec: ReconciliationSpec, side: _DbSide, kinds: dict, buckets: int, hashing) -> sa.Select:
    """Per bucket of the key: rows, the sum of the records' hashes (two halves) and whether
    the bucket holds a row a hash cannot settle (an invalid or duplicate key, a null that
    ``both_null: differ`` reports)."""
    src = side.table.alias("src")
    kc = [src.c[k.column.name] for k in side.keys]
    fc = [src.c[c.column.name] for c in side.fields]
    operands = [_operand(spec.rule(c.name), kinds[c.name], col, c, side.side) for col, c in zip(fc, side.fields)]
    groups = [k.group for k in side.keys] + [_operand_group(kinds[c.name], c) for c in side.fields]
    invalid = _invalid_key(kc, side.keys)
    unsettled = [invalid] if invalid is not None else []
    unsettled += _strict(spec, fc, side.fields)
    bucket = hashing.bucket(side, src, buckets)
    rows = sa.select(bucket.label("b"), hashing.row_hash(list(zip(kc + operands, groups))).label("h"),
                     (sa.or_(*unsettled) if unsettled else sa.false()).label("d")).subquery("r")
    # The hash sum as two 64-bit sums (high and low halves): no numeric to ship or decode.
    high, low = hashing.halves(rows.c.h)
    statement = (sa.select(rows.c.b, sa.func.count().label("n"), sa.cast(sa.func.sum(high), sa.BigInteger).label("hi"),
                           sa.cast(sa.func.sum(low), sa.BigInteger).label("lo"), hashing.any_of(rows.c.d).label("d"))
                 .group_by(rows.c.b))
    if not side.unique:  # a bucket holding a duplicated key is never settled by its sums
        zero = sa.literal(0, sa.BigInteger)
        kg = [_grouping(c, k.group, side.profile).label(f"k{i}") for i, (c, k) in enumerate(zip(kc, side.keys))]
        keyed = sa.select(bucket.label("b"), *kg).where(_not(invalid)).subquery("keyed")
        # grouped by plain columns (every dialect renders them alike); b follows from the key
        dups = (sa.select(keyed.c.b, zero.label("n"), zero.label("hi"), zero.label("lo"), hashing.flag_true().label("d"))
                .group_by(*keyed.c).having(sa.func.count() > 1))
        statement = sa.union_all(statement, dups)
    return statement


def _estimated_rows(side: _DbSide) -> int:
    """The server's row estimate (PostgreSQL ``pg_class.reltuples``, MariaDB's
    ``information_schema.TABLES``): enough to size the buckets."""
    with side.connector.engine.connect() as conn:
        if side.profile.name == "mariadb":
            value = conn.execute(sa.text(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = coalesce(:schema, DATABASE()) "
                "AND TABLE_NAME = :name"), {"schema": side.table.schema, "name": side.table.name}).scalar()
        else:
            name = side.connector.engine.dialect.identifier_preparer.format_table(side.table)
            value = conn.execute(sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"), {"name": name}).scalar()
    return max(0, int(value or 0))


def bucket_pairs(spec: ReconciliationSpec, a: _DbSide, b: _DbSide, con) -> tuple[MatchStats, PushdownStats]:
    """Bucket summaries of each side, then the rows of the differing buckets paired locally;
    leaves ``__pairs``."""
    hashing = _hashing(a, b)
    profile = a.profile if a.profile == b.profile else None
    kinds = {fa.name: _field_kind(spec.rule(fa.name), fa, fb, profile) for fa, fb in zip(a.fields, b.fields)}
    sides = {"a": a, "b": b}
    buckets = bucket_count(max(_estimated_rows(a), _estimated_rows(b)))

    summary_schema = pa.schema([("b", pa.int64()), ("n", pa.int64()), ("hi", pa.int64()), ("lo", pa.int64()), ("d", hashing.flag_type)])
    pushed = PushdownStats(mode="buckets" if hashing is _NativeHashes else "canonical_buckets", buckets=buckets)
    clock = Clock(pushed)
    summaries = _both(sides, "summarising buckets", lambda side: lambda conn: _fetch(
        conn, summary_statement(spec, side, kinds, buckets, hashing), summary_schema, 100_000, stream=False))
    for s, table in summaries.items():
        con.register(f"__pd_summary_{s}", table)
    con.execute("""CREATE OR REPLACE TEMP TABLE __pd_buckets AS
        WITH x AS (SELECT b, sum(n) AS n, sum(hi) AS hi, sum(lo) AS lo, bool_or(CAST(d AS BOOLEAN)) AS d FROM __pd_summary_a GROUP BY b),
             y AS (SELECT b, sum(n) AS n, sum(hi) AS hi, sum(lo) AS lo, bool_or(CAST(d AS BOOLEAN)) AS d FROM __pd_summary_b GROUP BY b)
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

    def fetch_statement(side: _DbSide):
        src = side.table.alias("src")
        columns = [src.c[c.column.name].label(c.name) for c in side.keys + side.fields]
        statement = sa.select(*columns)
        return statement if whole else statement.where(hashing.bucket(side, src, buckets).in_(wanted))

    def fetch(side: _DbSide):
        schema = pa.schema([(c.name, c.arrow) for c in side.keys + side.fields])
        source = spec.source_a if side.side == "a" else spec.source_b
        if not wanted:
            return lambda conn: schema.empty_table()
        return lambda conn: _fetch(conn, fetch_statement(side), schema, source.chunk_size)

    fetched = _both(sides, "fetching the differing buckets", fetch)
    clock.lap("fetch")

    # The regular local pairing, on the differing buckets only.
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
    clock.lap("pair")
    pushed.rows_fetched_a, pushed.rows_fetched_b = fetched["a"].num_rows, fetched["b"].num_rows
    pushed.summary_rows_a, pushed.summary_rows_b = summaries["a"].num_rows, summaries["b"].num_rows
    pushed.differing_buckets, pushed.rows_settled_by_buckets, pushed.fetched_whole = int(differing), clean, whole
    return stats, pushed


def _both(sides: dict[str, _DbSide], what: str, make) -> dict[str, pa.Table]:
    """Run one statement per side, both sides at once (two servers work in parallel)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {s: pool.submit(run_read_only, side, what, make(side)) for s, side in sides.items()}
        return {s: f.result() for s, f in futures.items()}


def _server_setting(side: _DbSide, name: str) -> str:
    with side.connector.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.current_setting(name))).scalar()


def source_url(source: SqlSource) -> str:
    """The source's URL (``url_env`` resolved); the connector's own error when it is unset."""
    url = source.url if source.url is not None else os.environ.get(source.url_env or "")
    if not url:
        SqlConnector(source)  # raises the connector's own error for an unset variable
    return url


# --------------------------------------------------------------------------- key health at the source


def key_health(spec: ReconciliationSpec, side: str) -> tuple[int, int]:
    """Records of one side whose key is invalid (null, blank text) and valid keys held more
    than once, counted in the database (two numbers cross the wire): what the Dagster key
    checks report when the side is paired at its source rather than snapshotted. A primary
    key or unique index rules duplicates out without a scan."""
    source = spec.source_a if side == "a" else spec.source_b
    db_side = _open_side(spec, side, source)
    try:
        src = db_side.table.alias("src")
        kc = [src.c[k.column.name] for k in db_side.keys]
        invalid = _invalid_key(kc, db_side.keys)
        statement = sa.select(sa.func.count().label("n")).select_from(src).where(invalid if invalid is not None else sa.false())
        schema = pa.schema([("n", pa.int64())])
        invalid_rows = run_read_only(db_side, "counting invalid keys",
                            lambda conn: _fetch(conn, statement, schema, 1, stream=False)).column(0)[0].as_py()
        if db_side.unique:
            return int(invalid_rows), 0
        groups = sa.select(*kc).where(_not(invalid)).group_by(*kc).having(sa.func.count() > 1).subquery("d")
        duplicates = sa.select(sa.func.count().label("n")).select_from(groups)
        duplicated = run_read_only(db_side, "counting duplicate keys",
                          lambda conn: _fetch(conn, duplicates, schema, 1, stream=False)).column(0)[0].as_py()
        return int(invalid_rows), int(duplicated)
    finally:
        db_side.connector.close()
