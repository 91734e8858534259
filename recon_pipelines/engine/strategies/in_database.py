"""Strategies that pair two SQL tables where they live (``engine/pushdown.py`` builds and runs
the statements; these classes are its ``PairingStrategy`` face). ``sides`` is not read: the
database reads the tables itself, and only candidates or differing buckets come back."""

from __future__ import annotations

import duckdb

from recon_pipelines.engine import pushdown
from recon_pipelines.engine.strategies.base import Pairing


class InDatabase:
    """One of ``pushdown.STRATEGY_MODES``: refused unless it is the one the sources call for."""

    name = ""

    def refuses(self, spec) -> str | None:
        chosen, _, refused = pushdown.explain(spec)
        return None if chosen == self.name else refused[self.name]

    def pair(self, spec, con: duckdb.DuckDBPyConnection, sides=None) -> Pairing:
        stats, moved = pushdown.pair_in_database(spec, con, want=self.name)
        return Pairing(stats, self.name, moved.mode, {"a": moved.rows_fetched_a, "b": moved.rows_fetched_b,
                                                      "summary_a": moved.summary_rows_a, "summary_b": moved.summary_rows_b})
