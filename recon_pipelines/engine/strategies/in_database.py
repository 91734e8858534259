"""Strategies that pair two SQL tables where they live (``engine/pushdown.py`` builds and runs
the statements; these classes are its ``PairingStrategy`` face). ``sides`` is not read: the
database reads the tables itself, and only candidates or differing buckets come back."""

from __future__ import annotations

import duckdb

from recon_pipelines.engine import pushdown
from recon_pipelines.engine.strategies.base import PushdownPairing


class InDatabase:
    """One of ``pushdown.STRATEGY_MODES``: refused unless it is the one the sources call for."""

    name = ""
    reads_sources = True

    def refuses(self, spec) -> str | None:
        chosen, situation, refused = pushdown.explain(spec)
        if chosen == self.name:
            self.why = situation
            return None
        return refused[self.name]

    def pair(self, spec, con: duckdb.DuckDBPyConnection, sides=None) -> PushdownPairing:
        stats, moved = pushdown.pair_in_database(spec, con, want=self.name)
        return PushdownPairing(stats, self.name, getattr(self, "why", moved.mode),
                               {"a": moved.rows_fetched_a, "b": moved.rows_fetched_b,
                                "summary_a": moved.summary_rows_a, "summary_b": moved.summary_rows_b},
                               pushdown=moved)
