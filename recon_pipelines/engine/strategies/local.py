"""Local pairing in DuckDB: both sides are DuckDB relations (files in place, snapshots).

Audits keys (null/empty keys, ids without a mapping, duplicate keys: each is its own
``__pairs`` row and never paired), then full-joins the sides on the key carrying only one
64-bit hash of each record's compared fields. Pairs whose hashes are equal are identical and
are only counted; the *candidate pairs* (hashes differ, or one side missing) are fetched
whole into ``__pairs``. This costs about one scan of each side plus a join on (key, hash),
whatever the drift (measured in benchmarks/). With sparse drift, per-bucket counts and hash
sums are compared first and only the rows of differing buckets are joined.

Hash equality stands for raw equality; a 64-bit collision between a record's two versions
would hide a difference with probability about 2^-64 per record.
"""

from __future__ import annotations

import duckdb

from recon_pipelines.engine.keys import invalid_key_sql
from recon_pipelines.engine.rules import hash_operand, unsettled
from recon_pipelines.engine.strategies.base import (
    ComparisonError,
    MatchStats,
    Pairing,
    Side,
    Sides,
    first_line,
    join_on,
    key_text_sql,
    match_stats,
    relation_types,
    status_counts,
)
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.sqlutil import quote_ident as q

# Sparse drift: per-bucket counts and hash sums first, then only the rows of buckets that differ.
BUCKETS = 1 << 16
SPARSE_SHARE = 0.25  # above this share of differing buckets, narrowing costs more than it saves
# Integer keys spanning at most this many values are checked for duplicates with one bitmap.
BITMAP_MAX_RANGE = 1 << 31


class LocalStrategy:
    """Today's DuckDB pairing; it always runs (the fallback of every other strategy)."""

    name = "local"
    reads_sources = False

    def refuses(self, spec: ReconciliationSpec) -> str | None:
        return None

    def pair(self, spec: ReconciliationSpec, con: duckdb.DuckDBPyConnection, sides: Sides | None) -> Pairing:
        if sides is None:
            raise ComparisonError(f"{spec.name}: local pairing needs both sides opened locally")
        stats = match(con, spec, sides.a, sides.b, sides.mapping)
        # A file scanned in place or a local snapshot: nothing crossed a network to pair.
        return Pairing(stats, self.name, "compared locally in DuckDB", {"a": 0, "b": 0})


def match(
    con: duckdb.DuckDBPyConnection, spec: ReconciliationSpec, side_a: Side, side_b: Side,
    mapping: Side | None = None, settled: int = 0,
) -> MatchStats:
    """Pair the sides by key; leaves the candidate pairs and key anomalies in ``__pairs``.
    ``settled`` identical records per side were already counted elsewhere (bucket summaries)."""
    keys = [k.name for k in spec.key]
    fields = [f.name for f in spec.fields]
    reserved = [name for name in keys + fields if name.startswith("__")]
    if reserved:
        raise ComparisonError(f"{', '.join(reserved)}: names starting with '__' are reserved for the engine")
    _create_side_views(con, spec, side_a, side_b, mapping)
    types = {"a": relation_types(con, "__a"), "b": relation_types(con, "__b")}
    hashes = {side: _row_hash(spec, types[side], types[other], side) for side, other in (("a", "b"), ("b", "a"))}

    # Key audit: rows that cannot be matched are reported, never paired.
    has_dups = _audit_duplicates(con, keys, types["a"])
    not_dup = f"AND NOT EXISTS (SELECT 1 FROM __dups d WHERE {join_on('d', 's', keys)})" if has_dups else ""
    views, clean_rows = {"a": "__a", "b": "__b"}, 0
    if mapping is None and not has_dups:
        narrowed = _narrow_to_differing_buckets(con, keys, hashes)
        if narrowed is not None:
            views, clean_rows = {"a": "__a_sub", "b": "__b_sub"}, narrowed

    key_list = ", ".join(map(q, keys))

    def hashed(side: str) -> str:
        row_hash, strict = hashes[side]
        return f"SELECT {key_list}, {row_hash} AS __h, {strict} AS __strict FROM {views[side]} s WHERE __flag IS NULL {not_dup}"

    key_pick = ", ".join(f"coalesce(x.{q(k)}, y.{q(k)}) AS {q(k)}" for k in keys)
    first_key = q(keys[0])
    con.execute(f"""CREATE OR REPLACE TEMP TABLE __cand AS
        SELECT {key_pick}, x.{first_key} IS NOT NULL AS __in_a, y.{first_key} IS NOT NULL AS __in_b
        FROM ({hashed('a')}) x FULL JOIN ({hashed('b')}) y ON {join_on('x', 'y', keys)}
        WHERE x.{first_key} IS NULL OR y.{first_key} IS NULL OR x.__h <> y.__h OR x.__strict OR y.__strict""")

    # Fetch the candidate records whole; identical pairs never leave the scan.
    key_text = key_text_sql([f"c.{q(k)}" for k in keys])
    values_a = ", ".join(f"ca.{q(f)} AS {q('a__' + f)}" for f in fields)
    values_b = ", ".join(f"cb.{q(f)} AS {q('b__' + f)}" for f in fields)
    nulls_a = ", ".join(f"CAST(NULL AS {types['a'][f]}) AS {q('a__' + f)}" for f in fields)
    nulls_b = ", ".join(f"CAST(NULL AS {types['b'][f]}) AS {q('b__' + f)}" for f in fields)
    sep = ", " if fields else ""
    anomaly_key = key_text_sql([f"s.{q(k)}" for k in keys])
    con.execute(f"""CREATE OR REPLACE TEMP TABLE __pairs AS
        WITH ca AS (SELECT * FROM {views['a']} s SEMI JOIN (SELECT {key_list} FROM __cand WHERE __in_a) c USING ({key_list}) WHERE __flag IS NULL {not_dup}),
             cb AS (SELECT * FROM {views['b']} s SEMI JOIN (SELECT {key_list} FROM __cand WHERE __in_b) c USING ({key_list}) WHERE __flag IS NULL {not_dup})
        SELECT CASE WHEN c.__in_a AND c.__in_b THEN 'pair' WHEN c.__in_a THEN 'only_in_a' ELSE 'only_in_b' END AS __status,
               {key_text} AS __key, 1::BIGINT AS __count{sep}{values_a}{sep}{values_b}
        FROM __cand c LEFT JOIN ca ON {join_on('c', 'ca', keys)} LEFT JOIN cb ON {join_on('c', 'cb', keys)}
        UNION ALL
        SELECT 'duplicate_key_' || s.__side, {anomaly_key}, s.__n{sep}{nulls_a}{sep}{nulls_b} FROM __dups s
        UNION ALL
        SELECT s.__flag, {anomaly_key}, count(*){sep}{nulls_a}{sep}{nulls_b} FROM {views['a']} s WHERE __flag IS NOT NULL GROUP BY ALL
        UNION ALL
        SELECT s.__flag, {anomaly_key}, count(*){sep}{nulls_a}{sep}{nulls_b} FROM {views['b']} s WHERE __flag IS NOT NULL GROUP BY ALL""")
    rows_a, rows_b = con.execute(f"SELECT (SELECT count(*) FROM {views['a']}), (SELECT count(*) FROM {views['b']})").fetchone()
    records, groups = status_counts(con)
    excluded = _dup_excluded_rows(con, views["a"], keys) if has_dups else 0
    return match_stats(records, groups, int(rows_a), int(rows_b), excluded, settled=clean_rows + settled)


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

    A single integer key is first checked with a bitmap over its range (one pass, no hash
    table): when every row sets a distinct bit there is nothing to group."""
    key_list = ", ".join(map(q, keys))
    parts = []
    for side in "ab":
        if not (len(keys) == 1 and unique_by_bitmap(con, q(keys[0]), types[keys[0]], f"__{side}", "__flag IS NULL")):
            parts.append(f"SELECT '{side}' AS __side, {key_list}, count(*) AS __n FROM __{side} "
                         "WHERE __flag IS NULL GROUP BY ALL HAVING count(*) > 1")
    parts.append(f"SELECT 'a' AS __side, {key_list}, 0::BIGINT AS __n FROM __a WHERE FALSE")
    con.execute(f"CREATE OR REPLACE TEMP TABLE __dups AS {' UNION ALL '.join(parts)}")
    return con.execute("SELECT count(*) FROM __dups").fetchone()[0] > 0


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


def _narrow_to_differing_buckets(con, keys: list[str], hashes: dict) -> int | None:
    """Compare per-bucket counts and hash sums of the two sides. When few buckets differ, copy
    only their rows to ``__a_sub``/``__b_sub`` and return how many rows the identical buckets
    hold; when many differ, return None and compare everything."""
    key_list = ", ".join(map(q, keys))
    bucket = f"(hash({key_list}) & {BUCKETS - 1})"

    def summary(side: str) -> str:
        row_hash, strict = hashes[side]
        return (f"SELECT {bucket} AS b, count(*) AS n, sum(hash({key_list}, {row_hash})::HUGEINT) AS h, "
                f"bool_or({strict} OR __flag IS NOT NULL) AS d FROM __{side} GROUP BY 1")

    con.execute(f"""CREATE OR REPLACE TEMP TABLE __buckets AS
        SELECT coalesce(x.b, y.b) AS b, coalesce(x.n, 0) AS n,
               (x.n IS DISTINCT FROM y.n OR x.h IS DISTINCT FROM y.h OR coalesce(x.d OR y.d, TRUE)) AS differs
        FROM ({summary('a')}) x FULL JOIN ({summary('b')}) y ON x.b = y.b""")
    differing, clean_rows = con.execute(
        "SELECT count(*) FILTER (differs), coalesce(sum(n) FILTER (NOT differs), 0) FROM __buckets").fetchone()
    if differing > SPARSE_SHARE * BUCKETS:
        return None
    for side in "ab":
        con.execute(f"CREATE OR REPLACE TEMP TABLE __{side}_sub AS SELECT * FROM __{side} "
                    f"WHERE {bucket} IN (SELECT b FROM __buckets WHERE differs)")
    return int(clean_rows)


def _create_side_views(con, spec: ReconciliationSpec, side_a: Side, side_b: Side, mapping: Side | None) -> None:
    keys = [k.name for k in spec.key]
    for name, side in (("__a_raw", side_a), ("__b_raw", side_b)):
        select = ", ".join(f"{q(col)} AS {q(canonical)}" for canonical, col in side.columns.items())
        try:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {select} FROM {side.scan}")
            con.execute(f"SELECT * FROM {name} LIMIT 0")
        except duckdb.Error as exc:
            raise ComparisonError(f"{side.label or name}: {first_line(exc)}") from None
    raw_a, raw_b = relation_types(con, "__a_raw"), relation_types(con, "__b_raw")

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
        raise ComparisonError(f"{mapping.label or 'key_mapping'}: {first_line(exc)}") from None
    for column in ("a_id", "b_id"):
        clash = con.execute(f"SELECT {column}, count(*) FROM __map GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 1").fetchone()
        if clash:
            raise ComparisonError(
                f"{mapping.label or 'key_mapping'}: id {clash[0]!r} ({column[0].upper()} side) maps to {clash[1]} different ids; "
                "a mapping must be one-to-one"
            )
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


def _dup_excluded_rows(con, view: str, keys: list[str]) -> int:
    """Rows of ``view`` left out of matching because their key is duplicated on either side."""
    return con.execute(
        f"SELECT count(*) FROM {view} s WHERE __flag IS NULL AND EXISTS (SELECT 1 FROM __dups d WHERE {join_on('d', 's', keys)})"
    ).fetchone()[0]
