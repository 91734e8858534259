"""The comparison engine: two sides in, discrepancies out, all set-based in DuckDB.

It runs in two steps, which the Dagster graph shows as two assets:

``match`` (pairing)
    Which records of A and B belong together, which keys cannot be paired, which pairs may
    differ: left in the ``__pairs`` table. Where that runs is a *pairing strategy*
    (``engine/strategies/``: locally in DuckDB, in one PostgreSQL database, by bucket
    summaries across two); ``match`` here is the local one.

``evaluate``
    Applies each field's rule to the candidate pairs only and unpivots the
    disagreements into one row per (record, field) with both raw values, the
    reason, the size of the difference, a severity and a stable id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from recon_pipelines.engine.rules import compile_rule, stages
from recon_pipelines.engine.severity import severity_sql
from recon_pipelines.engine.strategies.base import (  # noqa: F401 - re-exported: the engine's vocabulary
    ComparisonError,
    MatchStats,
    Side,
    relation_types,
    side_columns,
)
from recon_pipelines.engine.strategies.local import match, unique_by_bitmap  # noqa: F401 - re-exported
from recon_pipelines.spec.models import ReconciliationSpec
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

DISCREPANCY_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("reconciliation", pa.string()),
        ("kind", pa.string()),
        ("key", pa.string()),
        ("field", pa.string()),
        ("reason", pa.string()),
        ("value_a", pa.string()),
        ("value_b", pa.string()),
        ("difference", pa.float64()),
        ("relative_difference", pa.float64()),
        ("severity", pa.string()),
        ("detail", pa.string()),
    ]
)
_SEP = "\x1f"  # unit separator: cannot occur in a rendered key by accident


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
    # subclasses' positional fields (PushdownResult's stats) keep their places.
    sample: dict | None = field(default=None, kw_only=True)

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
        }


def value_counts(table: pa.Table, column: str) -> dict[str, int]:
    """How many rows hold each value of ``column``, sorted by value (counted in Arrow)."""
    counts = pc.value_counts(table.column(column)).to_pylist()
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}


def discrepancy_id(reconciliation: str, kind: str, key: str, field: str | None) -> str:
    """Stable id of a disagreement: the same record, field and kind give the same id on every run."""
    raw = _SEP.join([reconciliation, kind, key, field or ""])
    return hashlib.md5(raw.encode("utf-8")).hexdigest()[:24]


def render_key(values: list) -> str:
    """The key as stored in the tracker: the bare value for one key field, a JSON list for several."""
    if len(values) == 1:
        return "<null>" if values[0] is None else str(values[0])
    return json.dumps([None if v is None else str(v) for v in values], separators=(",", ":"))


def compare(
    spec: ReconciliationSpec, side_a: Side, side_b: Side, mapping: Side | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> ComparisonResult:
    """Match and evaluate in one go (``recon run``, tests, the benchmark)."""
    con = con or connect()
    stats = match(con, spec, side_a, side_b, mapping)
    table, fields = evaluate(con, spec, "__pairs")
    return ComparisonResult(table, stats, fields)


# --------------------------------------------------------------------------- evaluate


def evaluate(con: duckdb.DuckDBPyConnection, spec: ReconciliationSpec, pairs: str) -> tuple[pa.Table, dict[str, FieldStats]]:
    """Apply the field rules to the candidate pairs in ``pairs`` (a table or table expression)."""
    types = relation_types(con, pairs)
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


def _record_json(fields: list[str], prefix: str) -> str:
    if not fields:
        return "NULL"
    return "to_json({" + ", ".join(f"{sql_literal(f)}: {q(prefix + f)}" for f in fields) + "})::VARCHAR"

