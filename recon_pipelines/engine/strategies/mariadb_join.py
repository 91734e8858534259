"""Two tables in one MariaDB database: one read-only statement joins them there and returns
only the candidate pairs, one-sided rows and key anomalies (``pushdown.same_database_pairs``
with MariaDB's profile: text compared byte-wise in ``utf8mb4_nopad_bin``, NULL-safe ``<=>``,
a left join and an anti join for MariaDB's missing FULL JOIN)."""

from __future__ import annotations

from recon_pipelines.engine.strategies.in_database import InDatabase


class MariaDbSameDatabase(InDatabase):
    name = "mariadb_same_database"
