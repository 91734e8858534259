"""Two tables in two PostgreSQL databases: per bucket of a hash of the key, each side returns
its row count and the sum of a 64-bit hash of each record (PostgreSQL's own per-type hash
functions, seeded per column); only the records of buckets whose summaries differ are
fetched and paired locally (``pushdown.bucket_pairs``; its ``ROWS_PER_BUCKET``,
``MIN_BUCKETS``/``MAX_BUCKETS`` and ``FETCH_ALL_SHARE`` size the buckets).

Moves: one summary row per non-empty bucket per side, then every record of the differing
buckets (both sides whole when more than ``FETCH_ALL_SHARE`` of the buckets differ).
"""

from __future__ import annotations

from recon_pipelines.engine.strategies.in_database import InDatabase


class BucketSummaries(InDatabase):
    name = "bucket_summaries"
