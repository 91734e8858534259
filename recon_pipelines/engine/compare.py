"""The comparison engine: two sides in, discrepancies out, all set-based in DuckDB.

It runs in two steps, which the Dagster graph shows as two assets:

``match``
    Reads each side once into a narrow in-memory table: the key, one 64-bit hash
    of the record's compared fields, and why the row cannot be paired. From those:
    the key audit (null/empty keys, ids without a mapping, duplicate keys: each is
    its own discrepancy and never paired), per-bucket summaries that narrow sparse
    drift to the few differing buckets, and a full join on the key. Pairs whose
    hashes are equal are identical and are only counted; the *candidate pairs*
    (hashes differ, or one side missing) are fetched whole into ``__pairs`` by a
    second read of each side. Where the time goes is in benchmarks/README.md.

``evaluate``
    Applies each field's rule to the candidate pairs only and unpivots the
    disagreements into one row per (record, field) with both raw values, the
    reason, the size of the difference, a severity and a stable id.

Hash equality stands for raw equality; a 64-bit collision between a record's
two versions would hide a difference with probability about 2^-64 per record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from recon_pipelines.engine.combined import check_cardinality, create_combined_views
from recon_pipelines.engine.discrepancies import (  # noqa: F401 - re-exported: the engine's public names
    DISCREPANCY_SCHEMA,
    discrepancy_id,
    render_key,
)
from recon_pipelines.engine.discrepancies import key_text as _key_text
from recon_pipelines.engine.discrepancies import relation_types as _types
from recon_pipelines.engine.keys import invalid_key_sql
from recon_pipelines.engine.rules import compile_rule, hash_args, hash_operand, stages, unsettled
from recon_pipelines.engine.severity import severity_sql
from recon_pipelines.spec.matching import match_columns
from recon_pipelines.spec.models import FileSource, ReconciliationSpec
from recon_pipelines.sqlutil import duckdb_connect as connect
from recon_pipelines.sqlutil import quote_ident as q
from recon_pipelines.sqlutil import sql_literal

RECORD_REASONS = {
    "only_in_a": "missing_in_b",
    "only_in_b": "missing_in_a",
    "duplicate_key_a": "duplicate_key",
    "duplicate_key_b": "duplicate_key",
    "invalid_key_a": "invalid_key",
    "invalid_key_b": "invalid_key",
    "unmapped_a": "no_mapping",
    "unmapped_b": "no_mapping",
}



class ComparisonError(RuntimeError):
    """The comparison cannot run (an unreadable side, an ambiguous mapping); names the cause."""


@dataclass(frozen=True)
class Side:
    """One side as the engine reads it: a DuckDB table expression and the source column
    behind each key and field name of the spec."""

    scan: str
    columns: Mapping[str, str]
    label: str = ""
    # The file the scan reads whole, when it is one: another engine (Spark) can then read it too.
    file: FileSource | None = None


@dataclass
class MatchStats:
    rows_a: int = 0
    rows_b: int = 0
    invalid_key_rows_a: int = 0
    invalid_key_rows_b: int = 0
    unmapped_rows_a: int = 0
    unmapped_rows_b: int = 0
    duplicate_keys_a: int = 0
    duplicate_keys_b: int = 0
    duplicate_rows_a: int = 0
    duplicate_rows_b: int = 0
    only_in_a: int = 0
    only_in_b: int = 0
    matched: int = 0
    identical: int = 0
    candidate_pairs: int = 0


@dataclass
class FieldStats:
    """Per field, over the candidate pairs: ``mismatches`` disagree; of the pairs whose raw values
    differ but agree under the rule, ``mapped`` agree through the rule's value mapping (an alias,
    not drift) and ``within_tolerance`` through its tolerance, lag or string normalisation."""

    mismatches: int = 0
    within_tolerance: int = 0
    max_within_tolerance: float | None = None
    mapped: int = 0


@dataclass
class ComparisonResult:
    discrepancies: pa.Table
    match: MatchStats
    fields: dict[str, FieldStats] = field(default_factory=dict)
    # A sampled run's figures (recon_pipelines.sampling.sample_summary); keyword-only, so the
    # subclasses' positional fields keep their places.
    sample: dict | None = field(default=None, kw_only=True)
    suggestions: dict | None = field(default=None, kw_only=True)  # engine/suggest.py's summary
    groups: object | None = field(default=None, kw_only=True)  # engine.groups.GroupStats with match: rules

    @property
    def counts_by_kind(self) -> dict[str, int]:
        return value_counts(self.discrepancies, "kind")

    def summary(self) -> dict:
        return {
            **asdict(self.match),
            "discrepancies": self.discrepancies.num_rows,
            "by_kind": self.counts_by_kind,
            "fields": {name: asdict(stats) for name, stats in self.fields.items()},
            **({"sample": self.sample} if self.sample is not None else {}),
            **({"suggestions": self.suggestions} if self.suggestions is not None else {}),
            **({"groups": asdict(self.groups)} if self.groups is not None else {}),
        }


def value_counts(table: pa.Table, column: str) -> dict[str, int]:
    """How many rows hold each value of ``column``, sorted by value (counted in Arrow)."""
    counts = pc.value_counts(table.column(column)).to_pylist()
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}


def side_columns(spec: ReconciliationSpec, side: str) -> dict[str, str]:
    """Spec name -> source column for one side ("a" or "b"): keys first, then fields."""
    columns = {k.name: getattr(k, side) for k in spec.key}
    columns.update({f.name: getattr(f, side) for f in spec.fields})
    columns.update(match_columns(spec.match, side))  # group references and fees (engine/groups.py)
    return columns


def compare(
    spec: ReconciliationSpec, side_a: Side, side_b: Side, mapping: Side | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> ComparisonResult:
    """Match and evaluate in one go (``recon run``, tests, the benchmark)."""
    con = con or connect()
    stats = match(con, spec, side_a, side_b, mapping)
    groups = None
    if spec.aggregate_rules:  # the records left on one side: group and window rules (engine/groups.py)
        from recon_pipelines.engine.groups import match_groups

        grouped, groups = match_groups(con, spec)
    table, fields = evaluate(con, spec, "__pairs")
    if groups is not None:
        table = combine_discrepancies(table, grouped)
    return ComparisonResult(table, stats, fields, groups=groups)


def combine_discrepancies(*tables: pa.Table) -> pa.Table:
    """Several discrepancy tables as one, in evaluate()'s order (kind, key, field)."""
    table = pa.concat_tables([t.cast(DISCREPANCY_SCHEMA) for t in tables])
    return table.sort_by([("kind", "ascending"), ("key", "ascending"), ("field", "ascending")])


# --------------------------------------------------------------------------- match


# Sparse drift: per-bucket counts and hash sums first, then only the rows of buckets that differ.
BUCKETS = 1 << 16
SPARSE_SHARE = 0.25  # above this share of differing buckets, narrowing costs more than it saves
SAMPLED_SHARE = 64  # 1/64 of the buckets are compared first, to tell dense drift cheaply
# Integer keys spanning at most this many values are checked for duplicates with one bitmap.
BITMAP_MAX_RANGE = 1 << 31
# Above this many rows on a side, the pairing join runs in passes (at 10^8 rows per side one
# pass built a 4 GB hash table next to the 3.4 GB side tables).
JOIN_PASS_ROWS = 1 << 25
# Why a row of a side's hash table cannot be paired (``__bad``); the names are the statuses.
_BAD = {1: "invalid_key", 2: "unmapped"}


def match(
    con: duckdb.DuckDBPyConnection, spec: ReconciliationSpec, side_a: Side, side_b: Side,
    mapping: Side | None = None,
) -> MatchStats:
    """Pair the sides by key; leaves the candidate pairs and key anomalies in ``__pairs``.

    Each side is read twice at most: once whole into a narrow in-memory table (``__ha``/``__hb``:
    the key, the hash of the compared fields, and why the row cannot be paired), from which the
    key audit, the bucket summaries and the pairing are all worked out; then once more for the
    candidate records only (a semi-join on their keys)."""
    keys = [k.name for k in spec.key]
    fields = [f.name for f in spec.fields]
    reserved = [name for name in keys + fields if name.startswith("__")]
    if reserved:
        raise ComparisonError(f"{', '.join(reserved)}: names starting with '__' are reserved for the engine")
    _create_side_views(con, spec, side_a, side_b, mapping)
    types = {"a": _types(con, "__a"), "b": _types(con, "__b")}
    hashes = {side: _row_hash(spec, types[side], types[other], side) for side, other in (("a", "b"), ("b", "a"))}
    key_list = ", ".join(map(q, keys))
    bad = "CASE " + " ".join(f"WHEN __flag LIKE '{name}%' THEN {code}" for code, name in _BAD.items()) + " END::UTINYINT"
    for side in "ab":
        row_hash, strict = hashes[side]
        strict_column = f", {strict} AS __strict" if strict != "FALSE" else ""
        con.execute(f"CREATE OR REPLACE TEMP TABLE __h{side} AS "
                    f"SELECT {key_list}, {row_hash} AS __h{strict_column}, {bad} AS __bad FROM __{side} s")
    strict = {side: "s.__strict" if hashes[side][1] != "FALSE" else "FALSE" for side in "ab"}

    # Key audit: rows that cannot be matched are reported, never paired.
    has_dups = _audit_duplicates(con, keys, types["a"])
    not_dup = f"AND NOT EXISTS (SELECT 1 FROM __dups d WHERE {_join_on('d', 's', keys)})" if has_dups else ""
    hashed_views = {"a": "__ha", "b": "__hb"}
    if not has_dups and _narrow_to_differing_buckets(con, keys, strict):
        hashed_views = {"a": "__ha_sub", "b": "__hb_sub"}

    # Large sides are paired in passes over hash partitions of the key, so the join's own hash
    # table stays about JOIN_PASS_ROWS rows next to the two side tables (memory, not time).
    passes = _join_passes(con, hashed_views)

    def hashed(side: str, part: int) -> str:
        in_part = f"AND (hash({key_list}) & {passes - 1}) = {part}" if passes > 1 else ""
        return (f"SELECT {key_list}, __h, {strict[side]} AS __strict FROM {hashed_views[side]} s "
                f"WHERE __bad IS NULL {not_dup} {in_part}")

    key_pick = ", ".join(f"coalesce(x.{q(k)}, y.{q(k)}) AS {q(k)}" for k in keys)
    first_key = q(keys[0])
    for part in range(passes):
        into = "CREATE OR REPLACE TEMP TABLE __cand AS" if part == 0 else "INSERT INTO __cand"
        con.execute(f"""{into}
            SELECT {key_pick}, x.{first_key} IS NOT NULL AS __in_a, y.{first_key} IS NOT NULL AS __in_b
            FROM ({hashed('a', part)}) x FULL JOIN ({hashed('b', part)}) y ON {_join_on('x', 'y', keys)}
            WHERE x.{first_key} IS NULL OR y.{first_key} IS NULL OR x.__h <> y.__h OR x.__strict OR y.__strict""")

    # Fetch the candidate records whole; identical pairs never leave the scan.
    key_text = _key_text([f"c.{q(k)}" for k in keys])
    values_a = ", ".join(f"ca.{q(f)} AS {q('a__' + f)}" for f in fields)
    values_b = ", ".join(f"cb.{q(f)} AS {q('b__' + f)}" for f in fields)
    nulls_a = ", ".join(f"CAST(NULL AS {types['a'][f]}) AS {q('a__' + f)}" for f in fields)
    nulls_b = ", ".join(f"CAST(NULL AS {types['b'][f]}) AS {q('b__' + f)}" for f in fields)
    sep = ", " if fields else ""
    anomaly_key = _key_text([f"s.{q(k)}" for k in keys])
    flag = "CASE s.__bad " + " ".join(f"WHEN {code} THEN '{name}_' " for code, name in _BAD.items()) + "END"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE __pairs AS
        WITH ca AS (SELECT * FROM __a s SEMI JOIN (SELECT {key_list} FROM __cand WHERE __in_a) c USING ({key_list}) WHERE __flag IS NULL {not_dup}),
             cb AS (SELECT * FROM __b s SEMI JOIN (SELECT {key_list} FROM __cand WHERE __in_b) c USING ({key_list}) WHERE __flag IS NULL {not_dup})
        SELECT CASE WHEN c.__in_a AND c.__in_b THEN 'pair' WHEN c.__in_a THEN 'only_in_a' ELSE 'only_in_b' END AS __status,
               {key_text} AS __key, 1::BIGINT AS __count{sep}{values_a}{sep}{values_b}
        FROM __cand c LEFT JOIN ca ON {_join_on('c', 'ca', keys)} LEFT JOIN cb ON {_join_on('c', 'cb', keys)}
        UNION ALL
        SELECT 'duplicate_key_' || s.__side, {anomaly_key}, s.__n{sep}{nulls_a}{sep}{nulls_b} FROM __dups s
        UNION ALL
        SELECT {flag} || 'a', {anomaly_key}, count(*){sep}{nulls_a}{sep}{nulls_b} FROM __ha s WHERE __bad IS NOT NULL GROUP BY ALL
        UNION ALL
        SELECT {flag} || 'b', {anomaly_key}, count(*){sep}{nulls_a}{sep}{nulls_b} FROM __hb s WHERE __bad IS NOT NULL GROUP BY ALL""")
    return _match_stats(con)


def _join_passes(con, tables: dict) -> int:
    """How many hash partitions of the key the pairing join runs in: a power of two, 1 up to
    JOIN_PASS_ROWS rows on the larger side."""
    rows = max(con.execute(f"SELECT count(*) FROM {tables[side]}").fetchone()[0] for side in "ab")
    return 1 << max(0, math.ceil(math.log2(max(rows, 1) / JOIN_PASS_ROWS)))


def _row_hash(spec: ReconciliationSpec, own: dict, other: dict, side: str) -> tuple[str, str]:
    """The hash of a record's compared fields, and when that hash cannot settle the record:
    a null-vs-null that is itself a discrepancy, or a value the rule cannot read."""
    fields = [f.name for f in spec.fields]
    operands = [hash_operand(spec.rule(f), q(f), own[f], other[f], side) for f in fields] or ["0"]
    strict = [f"{q(f)} IS NULL" for f in fields if spec.rule(f).nulls.both_null == "differ"]
    strict += [c for f in fields if (c := unsettled(spec.rule(f), q(f), own[f], other[f], side))]
    return f"hash({', '.join(operands)})", f"({' OR '.join(strict)})" if strict else "FALSE"


def _audit_duplicates(con, keys: list[str], types: dict) -> bool:
    """Fill ``__dups`` with the keys that appear more than once on a side; True if any do.

    A single integer key is first checked with a bitmap over its range (one pass over the
    side's in-memory hash table, no hash table of its own): when every row sets a distinct
    bit there is nothing to group."""
    key_list = ", ".join(map(q, keys))
    parts = []
    for side in "ab":
        if not _unique_by_bitmap(con, keys, types, f"__h{side}"):
            parts.append(f"SELECT '{side}' AS __side, {key_list}, count(*) AS __n FROM __h{side} "
                         "WHERE __bad IS NULL GROUP BY ALL HAVING count(*) > 1")
    parts.append(f"SELECT 'a' AS __side, {key_list}, 0::BIGINT AS __n FROM __ha WHERE FALSE")
    con.execute(f"CREATE OR REPLACE TEMP TABLE __dups AS {' UNION ALL '.join(parts)}")
    return con.execute("SELECT count(*) FROM __dups").fetchone()[0] > 0


def _unique_by_bitmap(con, keys: list[str], types: dict, table: str) -> bool:
    return len(keys) == 1 and unique_by_bitmap(con, q(keys[0]), types[keys[0]], table, "__bad IS NULL")


def unique_by_bitmap(con, key: str, key_type: str, relation: str, where: str = "TRUE") -> bool:
    """True when an integer key provably has no duplicates: one bit per value of its range,
    one pass, no hash table. False means "not proven" (not an integer, range too wide, or duplicates)."""
    if key_type not in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"):
        return False
    low, high, count = con.execute(f"SELECT min({key}), max({key}), count({key}) FROM {relation} WHERE {where}").fetchone()
    if count == 0:
        return True
    if high - low >= BITMAP_MAX_RANGE:
        return False
    distinct = con.execute(f"SELECT bit_count(bitstring_agg({key}, {low}, {high})) FROM {relation} WHERE {where}").fetchone()[0]
    return distinct == count


def _narrow_to_differing_buckets(con, keys: list[str], strict: dict) -> bool:
    """Compare per-bucket counts and hash sums of the two sides' hash tables. When few buckets
    differ, copy only their rows to ``__ha_sub``/``__hb_sub`` and return True; when many differ,
    return False and pair everything. A sample of the buckets is compared first, so dense drift
    (nearly every bucket differs) costs one cheap look rather than the full summaries."""
    key_list = ", ".join(map(q, keys))
    bucket = f"(hash({key_list}) & {BUCKETS - 1})"
    types = _types(con, "__ha")
    key_args = ", ".join(hash_args(q(k), types[k]) for k in keys)  # 0 and -1 apart, also as HUGEINT

    def differing(where: str) -> str:
        def summary(side: str) -> str:
            # XOR of the (key, record) hashes: order-independent, and no duplicate key (checked
            # before) can cancel itself out; cheaper than a 128-bit sum.
            return (f"SELECT {bucket} AS b, count(*) AS n, bit_xor(hash({key_args}, __h)) AS h, "
                    f"bool_or({strict[side]} OR __bad IS NOT NULL) AS d FROM __h{side} s WHERE {where} GROUP BY 1")

        return f"""SELECT coalesce(x.b, y.b) AS b FROM ({summary('a')}) x FULL JOIN ({summary('b')}) y ON x.b = y.b
            WHERE x.n IS DISTINCT FROM y.n OR x.h IS DISTINCT FROM y.h OR coalesce(x.d OR y.d, TRUE)"""

    sampled = BUCKETS // SAMPLED_SHARE
    if con.execute(f"SELECT count(*) FROM ({differing(f'{bucket} < {sampled}')})").fetchone()[0] > SPARSE_SHARE * sampled:
        return False
    con.execute(f"CREATE OR REPLACE TEMP TABLE __buckets AS {differing('TRUE')}")
    if con.execute("SELECT count(*) FROM __buckets").fetchone()[0] > SPARSE_SHARE * BUCKETS:
        return False
    for side in "ab":
        con.execute(f"CREATE OR REPLACE TEMP TABLE __h{side}_sub AS SELECT * FROM __h{side} "
                    f"WHERE {bucket} IN (SELECT b FROM __buckets)")
    return True


def _create_side_views(con, spec: ReconciliationSpec, side_a: Side, side_b: Side, mapping: Side | None) -> None:
    keys = [k.name for k in spec.key]
    for name, side in (("__a_raw", side_a), ("__b_raw", side_b)):
        select = ", ".join(f"{q(col)} AS {q(canonical)}" for canonical, col in side.columns.items())
        try:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {select} FROM {side.scan}")
            con.execute(f"SELECT * FROM {name} LIMIT 0")
        except duckdb.Error as exc:
            raise ComparisonError(f"{side.label or name}: {_first_line(exc)}") from None
    raw_a, raw_b = _types(con, "__a_raw"), _types(con, "__b_raw")

    # Keys typed differently on each side (an int id against a text id) are joined as text.
    def key_expr(k: str, view_types: dict, other: dict) -> str:
        return q(k) if view_types[k] == other[k] else f"CAST({q(k)} AS VARCHAR)"

    if mapping is None:
        for view, own, other in (("__a", raw_a, raw_b), ("__b", raw_b, raw_a)):
            key_select = ", ".join(f"{key_expr(k, own, other)} AS {q(k)}" for k in keys)
            flag = f"CASE WHEN {invalid_key_sql(keys, own)} THEN 'invalid_key_{view[-1]}' END"
            others = ", ".join(q(f.name) for f in spec.fields)
            con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {key_select}{', ' if others else ''}{others}, {flag} AS __flag FROM {view}_raw")
        return
    _create_mapped_views(con, spec, mapping, raw_a, raw_b)


def _create_mapped_views(con, spec, mapping: Side, raw_a: dict, raw_b: dict) -> None:
    """B's ids are translated to A's through the mapping table; ids absent from it are 'unmapped'."""
    key = spec.key[0].name
    a_col, b_col = mapping.columns["a"], mapping.columns["b"]
    try:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE __map AS SELECT DISTINCT CAST({q(a_col)} AS VARCHAR) AS a_id,
            CAST({q(b_col)} AS VARCHAR) AS b_id FROM {mapping.scan} WHERE {q(a_col)} IS NOT NULL AND {q(b_col)} IS NOT NULL""")
    except duckdb.Error as exc:
        raise ComparisonError(f"{mapping.label or 'key_mapping'}: {_first_line(exc)}") from None
    cardinality = spec.key_mapping.cardinality if spec.key_mapping is not None else "one_to_one"
    try:
        check_cardinality(con, cardinality, mapping.label or "key_mapping")
    except ValueError as exc:
        raise ComparisonError(str(exc)) from None
    if cardinality != "one_to_one":  # several records of one side stand for one of the other
        create_combined_views(con, spec, {"a": raw_a, "b": raw_b})
        return
    others = ", ".join(f"s.{q(f.name)}" for f in spec.fields)
    others = f", {others}" if others else ""
    con.execute(f"""CREATE OR REPLACE TEMP VIEW __a AS SELECT CAST(s.{q(key)} AS VARCHAR) AS {q(key)}{others},
        CASE WHEN {invalid_key_sql([key], raw_a, "s")} THEN 'invalid_key_a'
             WHEN m.a_id IS NULL THEN 'unmapped_a' END AS __flag
        FROM __a_raw s LEFT JOIN __map m ON m.a_id = CAST(s.{q(key)} AS VARCHAR)""")
    # An unmapped B record keeps its own id, so the operator can find it in B.
    con.execute(f"""CREATE OR REPLACE TEMP VIEW __b AS SELECT coalesce(m.a_id, CAST(s.{q(key)} AS VARCHAR)) AS {q(key)}{others},
        CASE WHEN {invalid_key_sql([key], raw_b, "s")} THEN 'invalid_key_b'
             WHEN m.b_id IS NULL THEN 'unmapped_b' END AS __flag
        FROM __b_raw s LEFT JOIN __map m ON m.b_id = CAST(s.{q(key)} AS VARCHAR)""")


def _match_stats(con) -> MatchStats:
    """Counts of the pairing: rows from the sides' hash tables, the rest from ``__pairs``."""
    row = con.execute("""SELECT
        (SELECT count(*) FROM __ha), (SELECT count(*) FROM __hb),
        sum(__count) FILTER (__status = 'invalid_key_a'), sum(__count) FILTER (__status = 'invalid_key_b'),
        sum(__count) FILTER (__status = 'unmapped_a'), sum(__count) FILTER (__status = 'unmapped_b'),
        count(*) FILTER (__status = 'duplicate_key_a'), count(*) FILTER (__status = 'duplicate_key_b'),
        sum(__count) FILTER (__status = 'duplicate_key_a'), sum(__count) FILTER (__status = 'duplicate_key_b'),
        count(*) FILTER (__status = 'only_in_a'), count(*) FILTER (__status = 'only_in_b'),
        count(*) FILTER (__status = 'pair')
        FROM __pairs""").fetchone()
    values = [int(v or 0) for v in row]
    stats = MatchStats(*values[:12])
    stats.candidate_pairs = values[12]
    stats.matched = (
        stats.rows_a - stats.invalid_key_rows_a - stats.unmapped_rows_a - _dup_excluded_rows(con, "__ha") - stats.only_in_a
    )
    stats.identical = stats.matched - stats.candidate_pairs
    return stats


def _dup_excluded_rows(con, table: str) -> int:
    """Rows of ``table`` left out of matching because their key is duplicated on either side."""
    if con.execute("SELECT count(*) FROM __dups").fetchone()[0] == 0:
        return 0
    on = " AND ".join(f"d.{c} = s.{c}" for c in _key_columns(con))
    return con.execute(
        f"SELECT count(*) FROM {table} s WHERE __bad IS NULL AND EXISTS (SELECT 1 FROM __dups d WHERE {on})"
    ).fetchone()[0]


def _key_columns(con) -> list[str]:
    return [q(name) for name in _types(con, "__dups") if name not in ("__side", "__n")]


# --------------------------------------------------------------------------- evaluate


def evaluate(con: duckdb.DuckDBPyConnection, spec: ReconciliationSpec, pairs: str) -> tuple[pa.Table, dict[str, FieldStats]]:
    """Apply the field rules to the candidate pairs in ``pairs`` (a table or table expression)."""
    types = _types(con, pairs)
    fields = []
    for rule in spec.fields:
        a, b = q("a__" + rule.name), q("b__" + rule.name)
        fields.append(compile_rule(rule, a, b, types["a__" + rule.name], types["b__" + rule.name]))

    # Helper columns of the rules (a number's class, mantissa, ...), computed once per pair.
    relation = f"(SELECT * FROM {pairs} WHERE __status = 'pair')"
    for level in stages([column for f in fields for column in f.prepared]):
        relation = f"(SELECT *{''.join(f', {expr} AS {q(name)}' for name, expr in level)} FROM {relation})"
    computed = "".join(
        f", {f.reason} AS {q('r__' + f.name)}, {f.difference} AS {q('d__' + f.name)}, "
        f"{f.relative} AS {q('p__' + f.name)}, {f.raw_differs} AS {q('x__' + f.name)}, {f.detail} AS {q('t__' + f.name)}, "
        f"{_differs_unmapped(rule, types)} AS {q('u__' + f.name)}"
        for f, rule in zip(fields, spec.fields)
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE __eval AS SELECT *{computed} FROM {relation}")

    parts = [
        f"""SELECT 'field_mismatch' AS kind, __key AS key, {sql_literal(f.name)} AS field, {q('r__' + f.name)} AS reason,
            CAST({q('a__' + f.name)} AS VARCHAR) AS value_a, CAST({q('b__' + f.name)} AS VARCHAR) AS value_b,
            {q('d__' + f.name)} AS difference, {q('p__' + f.name)} AS relative_difference, {q('t__' + f.name)} AS detail
            FROM __eval WHERE {q('r__' + f.name)} IS NOT NULL"""
        for f in fields
    ]
    record_a = _record_json([f.name for f in spec.fields], "a__")
    record_b = _record_json([f.name for f in spec.fields], "b__")
    reasons = " ".join(f"WHEN {sql_literal(k)} THEN {sql_literal(v)}" for k, v in RECORD_REASONS.items())
    # Named columns: with no fields (a presence-only spec) this part alone names the union's columns.
    parts.append(f"""SELECT __status AS kind, __key AS key, NULL::VARCHAR AS field, CASE __status {reasons} END AS reason,
        CASE WHEN __status = 'only_in_a' THEN {record_a} WHEN __status LIKE '%\\_a' ESCAPE '\\' THEN CAST(__count AS VARCHAR) || ' record(s)' END AS value_a,
        CASE WHEN __status = 'only_in_b' THEN {record_b} WHEN __status LIKE '%\\_b' ESCAPE '\\' THEN CAST(__count AS VARCHAR) || ' record(s)' END AS value_b,
        NULL::DOUBLE AS difference, NULL::DOUBLE AS relative_difference,
        CASE WHEN __status LIKE 'only_in_%' THEN NULL ELSE CAST(__count AS VARCHAR) || ' record(s) with this key' END AS detail
        FROM {pairs} WHERE __status <> 'pair'""")
    union = "\nUNION ALL\n".join(parts)
    name = sql_literal(spec.name)
    severity = severity_sql(spec.severity, "kind", "field", "difference", "relative_difference")
    table = con.sql(f"""SELECT
            substr(md5({name} || chr(31) || kind || chr(31) || key || chr(31) || coalesce(field, '')), 1, 24) AS id,
            {name} AS reconciliation, kind, key, field, reason, value_a, value_b, difference, relative_difference,
            {severity} AS severity, detail
        FROM ({union}) ORDER BY kind, key, field""").to_arrow_table()
    table = table.cast(DISCREPANCY_SCHEMA)
    return table, _field_stats(con, [f.name for f in fields])


def _differs_unmapped(rule, types: dict) -> str:
    """SQL true when the pair would disagree without the rule's value mapping (FALSE for rules without one)."""
    if not getattr(rule, "values", None):
        return "FALSE"
    a, b = q("a__" + rule.name), q("b__" + rule.name)
    plain = compile_rule(rule.model_copy(update={"values": {}}), a, b, types["a__" + rule.name], types["b__" + rule.name])
    return f"({plain.reason}) IS NOT NULL"


def _field_stats(con, names: list[str]) -> dict[str, FieldStats]:
    if not names:
        return {}
    stats = 4
    selects = ", ".join(
        f"count({q('r__' + n)}), count(*) FILTER ({q('x__' + n)} AND {q('r__' + n)} IS NULL AND NOT {q('u__' + n)}), "
        f"max({q('d__' + n)}) FILTER ({q('x__' + n)} AND {q('r__' + n)} IS NULL AND NOT {q('u__' + n)}), "
        f"count(*) FILTER ({q('r__' + n)} IS NULL AND {q('u__' + n)})"
        for n in names
    )
    row = con.execute(f"SELECT {selects} FROM __eval").fetchone()
    return {
        n: FieldStats(int(row[stats * i]), int(row[stats * i + 1]), row[stats * i + 2], int(row[stats * i + 3]))
        for i, n in enumerate(names)
    }


# --------------------------------------------------------------------------- helpers


def _join_on(left: str, right: str, keys: list[str]) -> str:
    return " AND ".join(f"{left}.{q(k)} = {right}.{q(k)}" for k in keys)


def _record_json(fields: list[str], prefix: str) -> str:
    if not fields:
        return "NULL"
    return "to_json({" + ", ".join(f"{sql_literal(f)}: {q(prefix + f)}" for f in fields) + "})::VARCHAR"


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:500]
