"""Local pairing in DuckDB: both sides are DuckDB relations (files in place, snapshots),
paired by ``compare.match`` (key audit, then a full join on the key carrying one 64-bit hash
of each record's compared fields; only candidate pairs are stored in ``__pairs``).

Moves: nothing beyond what the sides already hold (a file scanned in place or a snapshot).
"""

from __future__ import annotations

import duckdb

from recon_pipelines.engine.compare import match
from recon_pipelines.engine.strategies.base import ComparisonError, Pairing, Sides
from recon_pipelines.spec.models import ReconciliationSpec


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
