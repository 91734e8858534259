"""Suggested matches: pairs of records that no key paired but a person would.

When a key is unreliable (a CRM keyed by an email the customer changed, an id typed by
hand), the two versions of a record end up as ``only_in_a`` and ``only_in_b``. For specs with
``suggest:``, those records are scored against each other with Splink (probabilistic record
linkage, Fellegi-Sunter, on DuckDB) and each pair scoring at least the threshold becomes a
``suggested_match``. A suggestion never resolves anything: the ``only_in_*`` discrepancies
stay open until an operator confirms the pair (``recon suggestions confirm``), after which
later runs pair the two records (``rekeyed``) and compare their fields like any other pair.

How the model is trained: the records the key *did* pair are labelled true matches, so the
m probabilities (how often a true pair agrees on each field, at each similarity level) are
estimated from them (``estimate_m_from_label_column``), and the u probabilities (how often
two random records agree) from random pairs. The prior is that every unmatched record has at
most one counterpart: 1 / max(unmatched A, unmatched B). Scoring is a cartesian product of
the unmatched records, bounded by ``max_pairs``; ``block_on`` restricts it to pairs that agree
on those fields. Measured precision and recall: benchmarks/README.md ("Suggested matches").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from recon_pipelines.engine.compare import DISCREPANCY_SCHEMA, Side, discrepancy_id
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.sqlutil import duckdb_connect, quote_ident, sql_literal

KIND = "suggested_match"
TRAINING_PAIRS = 5000  # matched records sampled to learn what a true pair looks like
MIN_TRAINING_PAIRS = 20  # fewer: Splink's default m probabilities are used (said in the result)
ARROW = " ↔ "  # a suggestion's key: "<key A> ↔ <key B>"


@dataclass(frozen=True)
class Suggestion:
    key_a: str
    key_b: str
    score: float  # Splink's match probability
    fields: dict[str, str]  # per compared field: equal, similar, differs or missing


@dataclass
class Suggestions:
    pairs: list[Suggestion] = field(default_factory=list)
    scored: int = 0  # candidate pairs scored
    training_pairs: int = 0
    skipped: str | None = None  # why nothing was scored, when nothing was

    def summary(self) -> dict:
        return {"suggested": len(self.pairs), "scored_pairs": self.scored, "training_pairs": self.training_pairs,
                **({"skipped": self.skipped} if self.skipped else {})}


def unmatched_keys(found: pa.Table) -> tuple[list[str], list[str]]:
    """The keys reported only in A and only in B (a comparison's discrepancy table)."""
    kinds, keys = found.column("kind").to_pylist(), found.column("key").to_pylist()
    return ([k for kind, k in zip(kinds, keys) if kind == "only_in_a"],
            [k for kind, k in zip(kinds, keys) if kind == "only_in_b"])


def suggest(spec: ReconciliationSpec, side_a: Side, side_b: Side, unmatched_a: Sequence[str],
            unmatched_b: Sequence[str], decided: Iterable[tuple[str, str]] = ()) -> Suggestions:
    """Score unmatched A against unmatched B; ``decided`` pairs (confirmed or rejected) are not suggested again."""
    options = spec.suggest
    if options is None or not unmatched_a or not unmatched_b:
        return Suggestions()
    if not options.block_on and len(unmatched_a) * len(unmatched_b) > options.max_pairs:
        return Suggestions(skipped=f"{len(unmatched_a)} x {len(unmatched_b)} unmatched records exceed "
                                   f"suggest.max_pairs ({options.max_pairs}); add suggest.block_on")
    con = duckdb_connect()
    con.register("__unmatched_a", pa.table({"key": pa.array(list(unmatched_a), pa.string())}))
    con.register("__unmatched_b", pa.table({"key": pa.array(list(unmatched_b), pa.string())}))
    names = list(dict.fromkeys([c.field for c in options.compare] + list(options.block_on)))
    train = _training_keys(con, spec, side_a, side_b)
    con.register("__train", pa.table({"key": pa.array(train, pa.string())}))
    tables = {}
    for side, s in (("a", side_a), ("b", side_b)):
        key = f"CAST({quote_ident(s.columns[spec.key[0].name])} AS VARCHAR)"
        values = ", ".join(f"CAST({quote_ident(s.columns[n])} AS VARCHAR) AS {quote_ident(n)}" for n in names)
        select = f"SELECT {key} AS __uid, {{label}} AS __label, {values} FROM {s.scan} WHERE {key} IN (SELECT key FROM {{keys}})"
        tables[side] = con.sql(
            f"{select.format(label='NULL::VARCHAR', keys=f'__unmatched_{side}')} UNION ALL "
            f"{select.format(label=key, keys='__train')}").to_arrow_table()
    model = _trained_model(options, tables, len(train))
    unmatched = {side: tables[side].filter(pc.is_null(tables[side].column("__label"))) for side in "ab"}
    model["probability_two_random_records_match"] = 1 / max(len(unmatched_a), len(unmatched_b), 2)
    scored, pairs = _predict(model, unmatched, options.threshold, [c.field for c in options.compare])
    skip = set(decided)
    pairs = _best(sorted((p for p in pairs if (p.key_a, p.key_b) not in skip), key=lambda p: (-p.score, p.key_a, p.key_b)),
                  options.per_record)
    return Suggestions(pairs, scored, len(train))


def _training_keys(con: duckdb.DuckDBPyConnection, spec: ReconciliationSpec, side_a: Side, side_b: Side) -> list[str]:
    """A sample of keys held once on each side: pairs the key matched, labelled true matches."""
    own = []
    for s in (side_a, side_b):
        key = f"CAST({quote_ident(s.columns[spec.key[0].name])} AS VARCHAR)"
        own.append(f"SELECT {key} AS k FROM {s.scan} WHERE {key} IS NOT NULL GROUP BY ALL HAVING count(*) = 1")
    rows = con.execute(f"SELECT k FROM (({own[0]}) INTERSECT ({own[1]})) "
                       f"ORDER BY hash(k), k LIMIT {TRAINING_PAIRS}").fetchall()
    return [r[0] for r in rows]


def _comparisons(options):
    import splink.comparison_library as cl

    # No term-frequency adjustment (Splink's NameComparison applies one): it would be computed on the
    # few unmatched records scored, where every name is rare or repeated by construction, not on the
    # sides, and swamp the evidence. A name is compared at NameComparison's Jaro-Winkler levels.
    make = {"exact": cl.ExactMatch, "email": cl.EmailComparison,
            "name": lambda name: cl.JaroWinklerAtThresholds(name, [0.92, 0.88, 0.7]),
            "text": lambda name: cl.JaroWinklerAtThresholds(name, [0.9, 0.7])}
    return [make[c.similarity](c.field).configure(term_frequency_adjustments=False) for c in options.compare]


def _splink(tables: dict[str, pa.Table], settings):
    from splink import DuckDBAPI, Linker

    db = DuckDBAPI(duckdb_connect())
    frames = [db.register(tables[side], table_name=f"side_{side}") for side in "ab"]
    return Linker(frames, settings, log_level=logging.ERROR)


def _trained_model(options, tables: dict[str, pa.Table], training_pairs: int) -> dict:
    from splink import SettingsCreator, block_on

    settings = SettingsCreator(
        link_type="link_only", unique_id_column_name="__uid", comparisons=_comparisons(options),
        blocking_rules_to_generate_predictions=[block_on(name) for name in options.block_on],
        retain_intermediate_calculation_columns=False, retain_matching_columns=True)
    quiet = logging.getLogger("splink")
    level, quiet.level = quiet.level, logging.ERROR  # Splink logs each training step at INFO/WARNING
    try:
        linker = _splink(tables, settings)
        linker.training.estimate_u_using_random_sampling(max_pairs=200_000, seed=1)
        if training_pairs >= MIN_TRAINING_PAIRS:
            linker.training.estimate_m_from_label_column("__label")
        return linker.misc.save_model_to_json()
    finally:
        quiet.level = level


def _predict(model: dict, tables: dict[str, pa.Table], threshold: float, names: list[str]) -> tuple[int, list[Suggestion]]:
    quiet = logging.getLogger("splink")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        linker = _splink(tables, model)
        scored = linker.inference.predict().as_duckdbpyrelation()
        rows = scored.to_arrow_table().to_pylist()
    finally:
        quiet.level = level
    pairs = []
    for row in rows:
        if row["match_probability"] < threshold:
            continue
        a, b = ("l", "r") if row["source_dataset_l"] == "side_a" else ("r", "l")
        pairs.append(Suggestion(row[f"__uid_{a}"], row[f"__uid_{b}"], float(row["match_probability"]),
                                {n: _agreement(row, n, a, b) for n in names}))
    return len(rows), pairs


def _agreement(row: dict, name: str, a: str, b: str) -> str:
    va, vb = row.get(f"{name}_{a}"), row.get(f"{name}_{b}")
    if va is None or vb is None:
        return "missing"
    if va == vb:
        return "equal"
    return "similar" if row.get(f"gamma_{name}", 0) > 0 else "differs"


def _best(pairs: list[Suggestion], per_record: int) -> list[Suggestion]:
    """Highest scores first; at most ``per_record`` suggestions per A record and per B record."""
    count_a: dict[str, int] = {}
    count_b: dict[str, int] = {}
    kept = []
    for p in pairs:
        if count_a.get(p.key_a, 0) < per_record and count_b.get(p.key_b, 0) < per_record:
            kept.append(p)
            count_a[p.key_a] = count_a.get(p.key_a, 0) + 1
            count_b[p.key_b] = count_b.get(p.key_b, 0) + 1
    return kept


def as_discrepancies(spec: ReconciliationSpec, suggestions: Suggestions) -> pa.Table:
    """One ``suggested_match`` row per pair: the key names both records, value_a/value_b hold them."""
    rows = []
    for p in suggestions.pairs:
        key = f"{p.key_a}{ARROW}{p.key_b}"
        fields = ", ".join(f"{name} {how}" for name, how in p.fields.items())
        rows.append({"id": discrepancy_id(spec.name, KIND, key, None), "reconciliation": spec.name, "kind": KIND,
                     "key": key, "field": None, "reason": KIND, "value_a": p.key_a, "value_b": p.key_b,
                     "difference": None, "relative_difference": None, "severity": spec.suggest.severity,
                     "detail": f"match probability {p.score:.3f}: {fields}"})
    return pa.Table.from_pylist(rows, schema=DISCREPANCY_SCHEMA)


def rekeyed(spec: ReconciliationSpec, side_b: Side, confirmed: Sequence[tuple[str, str]]) -> Side:
    """Side B with each confirmed pair's B key replaced by its A key, so the key pairs them.

    The A key is cast to B's key type (TRY_CAST: a pair whose A key B's type cannot hold keeps
    B's key, and stays unmatched, rather than failing the run)."""
    if not confirmed:
        return side_b
    column = quote_ident(side_b.columns[spec.key[0].name])
    pairs = ", ".join(f"({sql_literal(a)}, {sql_literal(b)})" for a, b in confirmed)
    with duckdb_connect() as con:
        key_type = con.execute(f"SELECT typeof({column}) FROM {side_b.scan} LIMIT 1").fetchone()
    cast = f"TRY_CAST(__m.key_a AS {key_type[0]})" if key_type else "__m.key_a"
    scan = (f"(SELECT __s.* REPLACE (COALESCE({cast}, __s.{column}) AS {column}) FROM {side_b.scan} AS __s "
            f"LEFT JOIN (VALUES {pairs}) AS __m(key_a, key_b) ON CAST(__s.{column} AS VARCHAR) = __m.key_b)")
    return Side(scan, side_b.columns, side_b.label)
