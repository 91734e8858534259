"""The one interface every pairing strategy implements.

A strategy pairs the two sides wherever it runs (local DuckDB, a database, Spark) and leaves
the candidate pairs and key anomalies on the DuckDB connection as ``__pairs``, in exactly the
shape ``compare.match`` produces; ``compare.evaluate`` then applies the field rules, defined once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import duckdb

from recon_pipelines.engine.compare import MatchStats


@dataclass(frozen=True)
class Pairing:
    stats: MatchStats
    strategy: str
    reason: str
    rows_moved: dict[str, int]


class PairingStrategy(Protocol):
    name: str

    def refuses(self, spec) -> str | None:
        """None when this strategy can run the spec; else a one-line reason."""

    def pair(self, spec, con: duckdb.DuckDBPyConnection, sides) -> Pairing:
        """Pair the sides; leaves ``__pairs`` on ``con``."""
