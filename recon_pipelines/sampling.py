"""Sampling (``sample:``): compare a deterministic sample of keys, the same keys on both sides.

A key is in the sample when the MD5 of ``<seed>\\x1f<key as text>`` (its low 64 bits) falls under
a threshold: ``fraction`` of the hash range, or for ``rows: N`` the N-th smallest hash among the
keys of both sides. The hash depends only on the key and the seed, so the same seed picks the
same keys on each side and in every run; MD5 (not DuckDB's ``hash()``) keeps it stable across
DuckDB versions. Records without a valid key are never sampled.

The mismatch rate (keys with a discrepancy / keys sampled) is reported with a 95% Wilson score
interval. No Dagster here.
"""

from __future__ import annotations

import math
from dataclasses import replace

from recon_pipelines.engine import Side
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.sqlutil import duckdb_connect, quote_ident, sql_literal

HASH_RANGE = 2**64
Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile


def _parts(spec: ReconciliationSpec, side: Side) -> list[str]:
    return [f"CAST({quote_ident(side.columns[k.name])} AS VARCHAR)" for k in spec.key]


def key_text_sql(spec: ReconciliationSpec, side: Side) -> str:
    """A side's key as the engine renders it in a discrepancy's ``key`` (compare._key_text):
    the text of a single key, a JSON list of texts for a composite one."""
    parts = _parts(spec, side)
    return parts[0] if len(parts) == 1 else f"to_json([{', '.join(parts)}])::VARCHAR"


def _valid_sql(spec: ReconciliationSpec, side: Side) -> str:
    return " AND ".join(f"{p} IS NOT NULL" for p in _parts(spec, side))


def key_hash_sql(spec: ReconciliationSpec, side: Side) -> str:
    seed = sql_literal(f"{spec.sample.seed}\x1f")
    return f"md5_number_lower({seed} || {key_text_sql(spec, side)})"


def threshold(spec: ReconciliationSpec, a: Side, b: Side) -> int:
    """Keys whose hash is below this value are sampled."""
    sample = spec.sample
    if sample.fraction is not None:
        return min(HASH_RANGE, math.ceil(sample.fraction * HASH_RANGE))
    union = " UNION ".join(f"SELECT {key_hash_sql(spec, s)} AS h FROM {s.scan} WHERE {_valid_sql(spec, s)}"
                           for s in (a, b))
    with duckdb_connect() as con:
        row = con.execute(f"SELECT max(h) FROM (SELECT h FROM ({union}) ORDER BY h LIMIT {sample.rows})").fetchone()
    return 0 if row[0] is None else int(row[0]) + 1


def sampled(spec: ReconciliationSpec, side: Side, below: int) -> Side:
    """``side`` restricted to the sampled keys (a DuckDB subquery over its scan)."""
    where = f"{_valid_sql(spec, side)} AND {key_hash_sql(spec, side)} < {below}::UHUGEINT"
    return replace(side, scan=f"(SELECT * FROM {side.scan} WHERE {where})")


def sampled_keys(spec: ReconciliationSpec, a: Side, b: Side) -> list[str]:
    """The keys in the sample, of either side (sampled sides)."""
    union = " UNION ".join(f"SELECT {key_text_sql(spec, s)} AS k FROM {s.scan}" for s in (a, b))
    with duckdb_connect() as con:
        return [r[0] for r in con.execute(f"SELECT DISTINCT k FROM ({union}) ORDER BY k").fetchall()]


def sample_sides(spec: ReconciliationSpec, a: Side, b: Side) -> tuple[Side, Side, list[str]]:
    below = threshold(spec, a, b)
    a, b = sampled(spec, a, below), sampled(spec, b, below)
    return a, b, sampled_keys(spec, a, b)


def wilson(failures: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a proportion failures/n."""
    if n == 0:
        return (0.0, 1.0)
    p = failures / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At p = 0 or 1 the bound on that side is exactly 0 or 1 (float rounding would miss it).
    low = 0.0 if failures == 0 else max(0.0, centre - half)
    high = 1.0 if failures == n else min(1.0, centre + half)
    return (low, high)


def sample_summary(spec: ReconciliationSpec, keys: list[str], keys_with_discrepancy: set[str]) -> dict:
    n = len(keys)
    x = len(keys_with_discrepancy & set(keys))
    low, high = wilson(x, n)
    return {"seed": spec.sample.seed, "fraction": spec.sample.fraction, "rows": spec.sample.rows,
            "keys_sampled": n, "keys_with_discrepancy": x, "mismatch_rate": x / n if n else 0.0,
            "mismatch_rate_ci95_low": low, "mismatch_rate_ci95_high": high}
