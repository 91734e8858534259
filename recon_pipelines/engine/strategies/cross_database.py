"""Two tables on two kinds of database (MariaDB and PostgreSQL, or two MariaDB servers): per
bucket of the key, each side sums the md5 of its records' canonical text
(``engine/portable_sql.py``); only the rows of buckets whose summaries differ are fetched and
paired locally (``pushdown.bucket_pairs``)."""

from __future__ import annotations

from recon_pipelines.engine.strategies.in_database import InDatabase


class CanonicalBuckets(InDatabase):
    name = "canonical_buckets"
