"""Two tables in one PostgreSQL database: one read-only query full-joins them on the key and
returns only the candidate pairs (a compared column differs, ``IS DISTINCT FROM``, on the
rules' operands), the one-sided rows and the key anomalies, plus the row counts
(``pushdown.same_database_pairs`` with PostgreSQL's profile).

Moves: one record of each side per candidate pair, one per one-sided record, and one
aggregate row per anomalous key group (plus four counts).
"""

from __future__ import annotations

from recon_pipelines.engine.strategies.in_database import InDatabase


class PostgresJoin(InDatabase):
    name = "postgres_join"
