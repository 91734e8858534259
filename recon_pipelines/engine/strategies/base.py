"""The interface every pairing strategy implements (locally, in a database, on a cluster)."""

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

    def refuses(self, spec) -> str | None:  # None = can run; else a one-line reason
        ...

    def pair(self, spec, con: duckdb.DuckDBPyConnection, sides) -> Pairing:  # leaves __pairs on con in compare.match's shape
        ...
