"""The pairing interface every strategy implements, and the pairing semantics they share.

A reconciliation runs in two steps: *pairing* (which records of A and B belong together, which
keys cannot be paired, which pairs may differ) and *evaluation* (the field rules, in
``engine.compare.evaluate``). Pairing can run in several places: locally in DuckDB, inside one
PostgreSQL database, across two databases by bucket summaries, ... Each place is one
``PairingStrategy`` in a sibling module of this package; they all leave the same table behind
and return the same ``MatchStats``, so evaluation, the tracker and the UI cannot tell them apart.

The ``__pairs`` table
---------------------
``pair`` leaves a DuckDB table named ``__pairs`` on the connection it is given, with exactly
these columns, in this order:

``__status`` VARCHAR
    One of ``STATUSES``: ``pair`` (a key on both sides, once each, whose compared values may
    differ), ``only_in_a`` / ``only_in_b`` (a valid key on one side only), ``duplicate_key_a`` /
    ``duplicate_key_b`` (a valid key held by more than one record of that side: none of the
    key's records, on either side, is paired), ``invalid_key_a`` / ``invalid_key_b`` (a key
    column NULL, or text blank after trimming ``instants.WHITESPACE``: ``keys.invalid_key_sql``),
    ``unmapped_a`` / ``unmapped_b`` (an id the ``key_mapping`` table lacks; local only).
``__key`` VARCHAR
    The key as discrepancies show it (``compare.render_key``; SQL twin ``key_text_sql``):
    the bare text of a single key (``<null>`` for NULL), a JSON list of texts for several.
``__count`` BIGINT
    1 for ``pair`` and ``only_in_*``; for ``duplicate_key_<s>`` the number of records of side
    ``s`` holding the key; for ``invalid_key_<s>`` / ``unmapped_<s>`` the number of records of
    side ``s`` grouped under that (invalid or unmapped) key value.
``a__<field>`` ..., then ``b__<field>`` ...
    One column per compared field, in the spec's order, under the spec's field names, typed as
    the DuckDB type of that side's values: side A's value then side B's. NULL where the side
    has no record (``only_in_b`` for ``a__*``, every anomaly row for both).

Only *candidate* pairs are stored: a pair whose compared values are certainly equal under the
rules' operands (``rules.hash_operand``) is counted in ``MatchStats.identical`` and left out. A
strategy may store more pairs than necessary (evaluation finds nothing in them), but then
``MatchStats.candidate_pairs`` counts what it stored: it is always the number of ``pair`` rows.

``MatchStats`` arithmetic (``match_stats``, written once): ``rows_<s>`` every record of the
side; ``matched = rows_a - invalid_key_rows_a - unmapped_rows_a - (valid records of A whose key
is duplicated on either side) - only_in_a``; ``identical = matched - candidate_pairs``.

Which sides a strategy reads
----------------------------
``pair(spec, con, sides)`` gets ``sides``, the local view of both sources (``Sides``: DuckDB
table expressions under the spec's names, opened on first use). A strategy that pairs where
the data lives reads the sources itself from the spec and ignores ``sides``; it declares
``reads_sources = True`` so the pipeline does not snapshot the sources for it, and it must
accept ``sides=None`` (the asset graph passes None once its snapshot steps recorded only a
reference). A strategy without the attribute is taken to read the sources itself. One that
pairs the local sides but needs each as one whole file under the spec's names (Spark reads the
file itself) declares ``reads_whole_files = True``: the run then takes Parquet snapshots
rather than scanning a file source in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import duckdb

from recon_pipelines.engine.compare import (  # noqa: F401 - re-exported: the pairing vocabulary
    ComparisonError,
    MatchStats,
    Side,
    side_columns,
)
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.sqlutil import quote_ident as q

PAIRS_TABLE = "__pairs"
PAIR = "pair"
STATUSES = (
    PAIR, "only_in_a", "only_in_b", "duplicate_key_a", "duplicate_key_b",
    "invalid_key_a", "invalid_key_b", "unmapped_a", "unmapped_b",
)


@dataclass(frozen=True)
class Pairing:
    """What a strategy did: the same ``MatchStats`` for every strategy, its name, why it was
    chosen (logged, shown in metadata) and how many rows it fetched from each side ("a", "b")."""

    stats: MatchStats
    strategy: str
    reason: str
    rows_moved: dict[str, int] = field(default_factory=lambda: {"a": 0, "b": 0})


@dataclass(frozen=True)
class PushdownPairing(Pairing):
    """A pairing done where the data lives, with the figures of what crossed the wire
    (``engine.pushdown.PushdownStats``)."""

    pushdown: object = None


class Sides:
    """The local view of both sources, each opened on first use (a file scanned in place, a
    snapshot read from Parquet, a database table streamed to a snapshot)."""

    def __init__(self, open_side: Callable[[str], Side], open_mapping: Callable[[], Side | None] = lambda: None):
        self._open_side, self._open_mapping = open_side, open_mapping
        self._opened: dict[str, Side | None] = {}

    @classmethod
    def of(cls, a: Side, b: Side, mapping: Side | None = None) -> "Sides":
        return cls({"a": a, "b": b}.__getitem__, lambda: mapping)

    def _get(self, name: str) -> Side | None:
        if name not in self._opened:
            self._opened[name] = self._open_mapping() if name == "mapping" else self._open_side(name)
        return self._opened[name]

    @property
    def a(self) -> Side:
        return self._get("a")

    @property
    def b(self) -> Side:
        return self._get("b")

    @property
    def mapping(self) -> Side | None:
        return self._get("mapping")

    @property
    def opened(self) -> list[Side]:
        return [side for side in self._opened.values() if side is not None]


@runtime_checkable
class PairingStrategy(Protocol):
    name: str

    def refuses(self, spec: ReconciliationSpec) -> str | None:
        """None when this strategy can pair the spec; otherwise one line saying why not."""
        ...

    def pair(self, spec: ReconciliationSpec, con: duckdb.DuckDBPyConnection, sides: Sides | None) -> Pairing:
        """Leave ``__pairs`` (the shape above) on ``con`` and return the stats."""
        ...


def reads_sources(strategy: PairingStrategy) -> bool:
    """True when the strategy reads the sources itself (no local snapshot needed)."""
    return bool(getattr(strategy, "reads_sources", True))


def remote_refusal(spec: ReconciliationSpec) -> str | None:
    """Why no strategy that reads the sources itself may pair this spec, whatever the sources:
    what the spec asks for needs a local copy of each side. The chooser applies it to every
    such strategy; their own ``refuses`` may call it too."""
    if not spec.pushdown:
        return "the spec sets pushdown: false"
    if spec.sample is not None:
        return "sample: the keys are drawn from local copies"
    if spec.source_a.expect or spec.source_b.expect:
        return "the sources declare expectations, checked on local snapshots"
    if spec.key_mapping is not None:
        return "key_mapping translates keys locally"
    if spec.suggest is not None:
        return "suggest: scores the unmatched records locally"
    if spec.aggregate_rules:
        return "match: group and window rules run locally"
    if spec.propagation_lag:
        return "propagation_lag: records still in flight are found in local snapshots"
    return None


# --------------------------------------------------------------------------- shared semantics


def key_text_sql(columns: list[str]) -> str:
    """DuckDB SQL twin of ``compare.render_key`` over already-qualified key columns."""
    if len(columns) == 1:
        return f"coalesce(CAST({columns[0]} AS VARCHAR), '<null>')"
    return f"to_json([{', '.join(f'CAST({c} AS VARCHAR)' for c in columns)}])::VARCHAR"


def status_counts(con: duckdb.DuckDBPyConnection, relation: str = PAIRS_TABLE) -> tuple[dict[str, int], dict[str, int]]:
    """Per status: the sum of ``__count`` (records) and the number of rows (keys)."""
    rows = con.execute(f"SELECT __status, sum(__count), count(*) FROM {relation} GROUP BY ALL").fetchall()
    return {s: int(n or 0) for s, n, _ in rows}, {s: int(g or 0) for s, _, g in rows}


def match_stats(records: dict[str, int], keys: dict[str, int], rows_a: int, rows_b: int,
                duplicate_excluded_a: int, settled: int = 0) -> MatchStats:
    """The one ``MatchStats`` arithmetic. ``records``/``keys`` come from ``status_counts``;
    ``duplicate_excluded_a`` counts valid records of A whose key is duplicated on either side;
    ``settled`` identical records per side that a strategy counted without pairing them
    (bucket summaries), added to the rows, the matched and the identical."""
    stats = MatchStats(
        rows_a=rows_a + settled, rows_b=rows_b + settled,
        invalid_key_rows_a=records.get("invalid_key_a", 0), invalid_key_rows_b=records.get("invalid_key_b", 0),
        unmapped_rows_a=records.get("unmapped_a", 0), unmapped_rows_b=records.get("unmapped_b", 0),
        duplicate_keys_a=keys.get("duplicate_key_a", 0), duplicate_keys_b=keys.get("duplicate_key_b", 0),
        duplicate_rows_a=records.get("duplicate_key_a", 0), duplicate_rows_b=records.get("duplicate_key_b", 0),
        only_in_a=keys.get("only_in_a", 0), only_in_b=keys.get("only_in_b", 0), candidate_pairs=keys.get(PAIR, 0),
    )
    stats.matched = (stats.rows_a - stats.invalid_key_rows_a - stats.unmapped_rows_a - duplicate_excluded_a
                     - stats.only_in_a)
    stats.identical = stats.matched - stats.candidate_pairs
    return stats


def relation_types(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    return {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}


def join_on(left: str, right: str, keys: list[str]) -> str:
    return " AND ".join(f"{left}.{q(k)} = {right}.{q(k)}" for k in keys)


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:500]
