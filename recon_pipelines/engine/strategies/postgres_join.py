"""Pairing inside one PostgreSQL database: both tables are in the same database.

One read-only query full-joins the two tables on the key and returns only the *candidate
pairs* (at least one compared column differs, ``IS DISTINCT FROM`` per column, NULL-safe,
on the rules' operands: a unit scale or a time zone applied as the local engine does), the
one-sided rows, and the key anomalies (NULL or blank keys grouped by key; duplicate keys with
their counts, skipped when a primary key or unique index already rules them out), plus the
row counts. The rows are loaded into DuckDB as ``__pairs`` (``base.py``'s shape).

Moves: one record of each side per candidate pair, one per one-sided record, and one
aggregate row per anomalous key group (plus four counts).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import sqlalchemy as sa

from recon_pipelines.engine.pushdown import (
    Clock,
    PgColumn,
    PgSide,
    PushdownPairing,
    PushdownStats,
    close,
    eq,
    field_kind,
    fetch_arrow,
    invalid_key,
    not_,
    open_pg_sides,
    operand,
    run_read_only,
    same_server_refusal,
    strict_nulls,
    typed_null,
)
from recon_pipelines.engine.strategies.base import Sides, key_text_sql, match_stats, status_counts
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.sqlutil import quote_ident as q

STRATEGY = "postgres_join"


class PostgresJoin:
    """Both tables in one PostgreSQL database: one join there, only what may differ moves."""

    name = STRATEGY
    reads_sources = True
    why = "both tables are in one PostgreSQL database: paired there, only what may differ moves"

    def refuses(self, spec: ReconciliationSpec) -> str | None:
        return same_server_refusal(spec, same=True)

    def pair(self, spec: ReconciliationSpec, con: duckdb.DuckDBPyConnection, sides: Sides | None) -> PushdownPairing:
        pg_sides = open_pg_sides(spec)
        try:
            return _pair_in_database(spec, pg_sides["a"], pg_sides["b"], con)
        finally:
            close(pg_sides)


def _pair_in_database(spec: ReconciliationSpec, a: PgSide, b: PgSide, con) -> PushdownPairing:
    keys = [k.name for k in spec.key]
    names = [f.name for f in spec.fields]
    kinds = {fa.name: field_kind(spec.rule(fa.name), fa, fb) for fa, fb in zip(a.fields, b.fields)}
    src = {"a": a.table.alias("src_a"), "b": b.table.alias("src_b")}
    sides = {"a": a, "b": b}

    def cols(side: str, columns: list[PgColumn]) -> list[sa.ColumnElement]:
        return [src[side].c[c.column.name] for c in columns]

    invalid = {s: invalid_key(cols(s, sides[s].keys), sides[s].keys) for s in "ab"}
    valid = {s: not_(invalid[s]) for s in "ab"}

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
        return sa.exists().where(*[eq(dup_keys.c[f"k{i}"], c, k.group) for i, (c, k) in enumerate(zip(kc, sides[s].keys))])

    # The pairing: only rows that differ, or lack a counterpart, leave the database.
    subs = {}
    for s in "ab":
        side = sides[s]
        kc, fc = cols(s, side.keys), cols(s, side.fields)
        subs[s] = (sa.select(*[c.label(f"k{i}") for i, c in enumerate(kc)], *[c.label(f"f{j}") for j, c in enumerate(fc)])
                   .where(valid[s], not_(in_dups(s))).subquery(s))
    x, y = subs["a"], subs["b"]
    fx = [x.c[f"f{j}"] for j in range(len(names))]
    fy = [y.c[f"f{j}"] for j in range(len(names))]
    differs = []
    for j, (ca, cb) in enumerate(zip(a.fields, b.fields)):
        rule, kind = spec.rule(ca.name), kinds[ca.name]
        left, right = operand(rule, kind, fx[j], ca, "a"), operand(rule, kind, fy[j], cb, "b")
        differs.append(_eq_distinct(left, right, ca.group if kind == "raw" else ""))
    strict = strict_nulls(spec, fx, a.fields) + strict_nulls(spec, fy, b.fields)
    a_missing, b_missing = x.c.k0.is_(None), y.c.k0.is_(None)
    on = sa.and_(*[eq(x.c[f"k{i}"], y.c[f"k{i}"], k.group) for i, k in enumerate(a.keys)])
    pairs = (sa.select(
        sa.case((a_missing, "only_in_b"), (b_missing, "only_in_a"), else_="pair").label("__status"),
        sa.literal(1, sa.BigInteger).label("__count"),
        *[sa.func.coalesce(x.c[f"k{i}"], y.c[f"k{i}"]).label(f"k{i}") for i in range(len(keys))],
        *[c.label(f"a{j}") for j, c in enumerate(fx)], *[c.label(f"b{j}") for j, c in enumerate(fy)])
        .select_from(x.outerjoin(y, on, full=True))
        .where(sa.or_(a_missing, b_missing, *differs, *strict)))

    nulls_a, nulls_b = [typed_null(c) for c in a.fields], [typed_null(c) for c in b.fields]

    def aggregate(status, count, key_values=None):
        key_values = key_values or [typed_null(k) for k in a.keys]
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
    clock = Clock(pushed)
    rows = run_read_only(a, "comparing in the database", lambda conn: fetch_arrow(conn, statement, schema, spec.source_a.chunk_size))
    clock.lap("database")

    con.register("__pd_result", rows)
    key_text = key_text_sql([q(f"k{i}") for i in range(len(keys))])
    values = [f"{q(f'a{j}')} AS {q('a__' + n)}" for j, n in enumerate(names)] + [f"{q(f'b{j}')} AS {q('b__' + n)}" for j, n in enumerate(names)]
    con.execute(f"""CREATE OR REPLACE TEMP TABLE __pairs AS
        SELECT __status, {key_text} AS __key, __count{''.join(', ' + v for v in values)}
        FROM __pd_result WHERE NOT starts_with(__status, '__')""")
    counts, groups = status_counts(con, "__pd_result")
    con.unregister("__pd_result")

    def n(status: str) -> int:
        return counts.get(status, 0)

    stats = match_stats(counts, groups, n("__rows_a"), n("__rows_b"), n("__dup_excluded_a"))
    clock.lap("load")
    pushed.result_rows = rows.num_rows
    pushed.rows_fetched_a = stats.candidate_pairs + stats.only_in_a
    pushed.rows_fetched_b = stats.candidate_pairs + stats.only_in_b
    pushed.summary_rows_a = sum(n for s, n in groups.items() if s.endswith("_a") and not s.startswith("only"))
    pushed.summary_rows_b = sum(n for s, n in groups.items() if s.endswith("_b") and not s.startswith("only"))
    return PushdownPairing(stats, STRATEGY, "", {"a": pushed.rows_fetched_a, "b": pushed.rows_fetched_b}, pushdown=pushed)


def _eq_distinct(x: sa.ColumnElement, y: sa.ColumnElement, group: str) -> sa.ColumnElement:
    if group == "text":
        return x.collate("C").is_distinct_from(y.collate("C"))
    return x.is_distinct_from(y)
