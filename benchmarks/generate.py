"""Seeded generator of the two benchmark sides, with the exact set of discrepancies it planted.

    .venv/bin/python -m benchmarks.generate --rows 1e6 [--sparse] [--seed 42] [--out DIR]

Writes ``a.parquet``, ``b.parquet`` and ``truth.json`` into DIR (default
``benchmarks/.data/n<rows>-<drift>-seed<seed>/``). Side A is random; side B is
derived from A chunk by chunk (``CHUNK_ROWS`` rows at a time, so 1e8 rows never
sit in memory at once), then shuffled within the chunk. B differs from A by:

* ``only_in_a``: rows of A dropped from B;
* ``only_in_b``: rows with new ids added to B;
* exactly one changed field in each *changed* row, the change drawn uniformly from
  ``CHANGES``. Some are discrepancies under the benchmark's rules (amount beyond
  the 0.01 tolerance, a 4 h timestamp shift, a null in B, a changed
  plan/status/country/is_paying) and some are not (amount moved by 0.004, a 1 s
  timestamp shift under the 60 s lag, an email differing only in case).

``truth.json`` holds the expected discrepancy set (kind, key, field) and its counts
per (kind, field), derived from how B was built, never from running a comparison;
``expected_set`` and ``expected_counts`` read it back. Both files use row groups of
``ROW_GROUP_ROWS`` rows, so DuckDB can read one file on several threads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

GENERATOR_VERSION = 1
ROW_GROUP_ROWS = 128 * 1024
CHUNK_ROWS = 8 * ROW_GROUP_ROWS  # rows of A generated (and held) at a time
DATA_ROOT = Path(__file__).resolve().parent / ".data"

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("email", pa.string()),
        ("plan", pa.string()),
        ("status", pa.string()),
        ("amount", pa.float64()),
        ("balance", pa.float64()),
        ("updated_at", pa.timestamp("us")),
        ("country", pa.string()),
        ("is_paying", pa.bool_()),
    ]
)
FIELDS = [f.name for f in SCHEMA][1:]

# The rules the planted changes are designed around (run.py compares with exactly these).
AMOUNT_ABS_TOL = 0.01
TIMESTAMP_LAG_SECONDS = 60

# The field rules every benchmark compares with; the ground truth above assumes exactly these.
SPEC_FIELDS = {
    "email": {"compare": "string", "normalize": ["trim", "lower"]},
    "plan": "exact",
    "status": "exact",
    "country": "exact",
    "is_paying": "exact",
    "amount": {"compare": "numeric", "abs_tol": AMOUNT_ABS_TOL},
    "balance": {"compare": "numeric", "abs_tol": AMOUNT_ABS_TOL},
    "updated_at": {"compare": "timestamp", "lag": f"{TIMESTAMP_LAG_SECONDS}s"},
}
# Planted changes stay far from the rule boundaries, so float representation cannot
# decide the outcome: 0.004 is clearly within 0.01, 0.5 or more clearly beyond it.
WITHIN_TOL_DELTA = 0.004
BEYOND_TOL_MIN, BEYOND_TOL_MAX = 0.5, 500.0
SMALL_SHIFT_SECONDS = 1  # under the lag: not a discrepancy
LARGE_SHIFT_SECONDS = 4 * 3600  # a discrepancy
BALANCE_NULL_SHARE = 0.01  # balance is null in A (and so in B) for ~1% of rows: null == null

PLANS = ["free", "starter", "pro", "business", "enterprise"]
PLAN_WEIGHTS = [0.40, 0.25, 0.20, 0.10, 0.05]
STATUSES = ["active", "trialing", "past_due", "canceled", "paused"]
STATUS_WEIGHTS = [0.70, 0.10, 0.05, 0.10, 0.05]
COUNTRIES = ["US", "GB", "DE", "FR", "NL", "ES", "IT", "SE", "NO", "DK", "FI", "PL", "IE", "PT", "BE",
             "AT", "CH", "CA", "AU", "NZ", "JP", "SG", "IN", "BR", "MX"]
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yolanda"]
DOMAINS = ["example.com", "mail.test", "corp.example", "inbox.test", "post.example"]
T0_US = 1_672_531_200 * 1_000_000  # 2023-01-01T00:00:00
SPAN_US = 2 * 365 * 86_400 * 1_000_000

CATEGORIES = {"plan": PLANS, "status": STATUSES, "country": COUNTRIES}
NULLABLE = ("email", "plan", "status", "country", "amount", "balance", "updated_at", "is_paying")


@dataclass(frozen=True)
class Change:
    name: str
    field: str | None  # None: drawn per row from NULLABLE (null_in_b)
    discrepancy: bool


CHANGES = (
    Change("amount_within_tol", "amount", False),
    Change("amount_beyond_tol", "amount", True),
    Change("ts_within_lag", "updated_at", False),
    Change("ts_beyond_lag", "updated_at", True),
    Change("null_in_b", None, True),
    Change("email_case", "email", False),
    Change("plan", "plan", True),
    Change("status", "status", True),
    Change("country", "country", True),
    Change("is_paying", "is_paying", True),
)


@dataclass(frozen=True)
class Drift:
    """Shares of A's row count: dropped from B, added to B, and changed (one field each)."""

    only_in_a: float
    only_in_b: float
    changed: float

    @property
    def total(self) -> float:
        return self.only_in_a + self.only_in_b + self.changed


DRIFTS = {
    "default": Drift(only_in_a=0.005, only_in_b=0.005, changed=0.01),  # 2% of rows affected
    "sparse": Drift(only_in_a=0.000025, only_in_b=0.000025, changed=0.00005),  # 0.01%
    "heavy": Drift(only_in_a=0.05, only_in_b=0.05, changed=0.1),  # 20%: where a pre-filter stops paying
}


# --------------------------------------------------------------------------- paths


def data_dir(rows: int, drift: str = "default", seed: int = 42, root: Path | None = None) -> Path:
    return (root or DATA_ROOT) / f"n{rows}-{drift}-seed{seed}"


def params(rows: int, drift: str, seed: int, chunk_rows: int = CHUNK_ROWS, row_group_rows: int = ROW_GROUP_ROWS) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "rows": rows,
        "drift": drift,
        "rates": asdict(DRIFTS[drift]),
        "seed": seed,
        "chunk_rows": chunk_rows,
        "row_group_rows": row_group_rows,
    }


def load_truth(directory: str | Path) -> dict:
    with open(Path(directory) / "truth.json", encoding="utf-8") as fh:
        return json.load(fh)


def ensure(rows: int, drift: str = "default", seed: int = 42, *, root: Path | None = None,
           regenerate: bool = False, log=print) -> dict:
    """The truth of the data set for these parameters, generating it when it is missing or stale."""
    directory = data_dir(rows, drift, seed, root)
    if not regenerate and (directory / "truth.json").exists():
        truth = load_truth(directory)
        if truth.get("params") == params(rows, drift, seed) and all((directory / f).exists() for f in ("a.parquet", "b.parquet")):
            return truth
    log(f"generating {rows:,} rows per side ({drift} drift, seed {seed}) into {directory} ...")
    truth = generate(rows, directory, seed=seed, drift=drift)
    log(f"  generated in {truth['generation_seconds']:.1f} s: {truth['rows_a']:,} rows in A, "
        f"{truth['rows_b']:,} in B, {truth['total_expected']:,} expected discrepancies")
    return truth


# --------------------------------------------------------------------------- ground truth


def expected_set(truth: dict) -> set[tuple[str, str, str | None]]:
    """Every expected discrepancy as (kind, key, field); field is None for record-level kinds."""
    out: set[tuple[str, str, str | None]] = set()
    expected = truth["expected"]
    for kind in ("only_in_a", "only_in_b"):
        out.update((kind, str(k), None) for k in expected[kind])
    for field_name, keys in expected["field_mismatch"].items():
        out.update(("field_mismatch", str(k), field_name) for k in keys)
    return out


def expected_counts(truth: dict) -> dict[tuple[str, str | None], int]:
    return {(c["kind"], c["field"]): c["count"] for c in truth["counts"]}


# --------------------------------------------------------------------------- generation


_PLAN_CDF = np.cumsum(PLAN_WEIGHTS)
_STATUS_CDF = np.cumsum(STATUS_WEIGHTS)


def _weighted(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1).astype(np.int8)


def _new_rows(rng: np.random.Generator, ids: np.ndarray) -> dict:
    """Random records for these ids: numpy arrays (categoricals as codes) and the email as Arrow."""
    n = len(ids)
    names = pa.array(NAMES).take(pa.array(rng.integers(0, len(NAMES), n)))
    domains = pa.array(DOMAINS).take(pa.array(rng.integers(0, len(DOMAINS), n)))
    email = pc.binary_join_element_wise(names, pc.cast(pa.array(ids), pa.string()), "@", domains, "")
    plan = _weighted(rng, _PLAN_CDF, n)
    return {
        "id": ids,
        "email": email,
        "plan": plan,
        "status": _weighted(rng, _STATUS_CDF, n),
        "amount": np.round(rng.uniform(0.0, 5000.0, n), 2),
        "balance": np.round(rng.normal(250.0, 1500.0, n), 2),
        "updated_at": T0_US + rng.integers(0, SPAN_US, n),
        "country": rng.integers(0, len(COUNTRIES), n).astype(np.int8),
        "is_paying": (plan != 0) & (rng.random(n) < 0.97),
        "__nulls": {"balance": rng.random(n) < BALANCE_NULL_SHARE},
    }


def _table(cols: dict) -> pa.Table:
    nulls = cols["__nulls"]
    arrays = []
    for f in SCHEMA:
        value = cols[f.name]
        mask = nulls.get(f.name)
        if f.name in CATEGORIES:
            value = pa.array(CATEGORIES[f.name]).take(pa.array(value))
            arrays.append(value if mask is None or not mask.any() else pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), value))
        elif isinstance(value, pa.Array):
            arrays.append(value if mask is None or not mask.any() else pc.if_else(pa.array(mask), pa.scalar(None, f.type), value))
        else:
            arrays.append(pa.array(value, type=f.type, mask=mask if mask is not None and mask.any() else None))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _derive_b(rng: np.random.Generator, a: dict, drift: Drift, truth: dict) -> tuple[dict, np.ndarray]:
    """B's version of one chunk of A (before drops/additions) and the mask of rows B keeps."""
    n = len(a["id"])
    ids = a["id"]
    k_drop, k_change = round(drift.only_in_a * n), round(drift.changed * n)
    chosen = rng.choice(n, size=k_drop + k_change, replace=False)
    drop, changed = chosen[:k_drop], chosen[k_drop:]
    kinds = rng.integers(0, len(CHANGES), len(changed))

    b = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in a.items() if k != "__nulls"}
    b["__nulls"] = {f: np.zeros(n, dtype=bool) for f in NULLABLE}
    b["__nulls"]["balance"] = a["__nulls"]["balance"].copy()
    email_upper = np.zeros(n, dtype=bool)

    truth["only_in_a"].append(ids[drop])
    for index, change in enumerate(CHANGES):
        rows = np.sort(changed[kinds == index])
        if not len(rows):
            continue
        sign = rng.choice(np.array([-1, 1]), len(rows))
        if change.name == "amount_within_tol":
            b["amount"][rows] = a["amount"][rows] + sign * WITHIN_TOL_DELTA
        elif change.name == "amount_beyond_tol":
            delta = np.round(rng.uniform(BEYOND_TOL_MIN, BEYOND_TOL_MAX, len(rows)), 2) * sign
            b["amount"][rows] = np.round(a["amount"][rows] + delta, 2)
        elif change.name == "ts_within_lag":
            b["updated_at"][rows] = a["updated_at"][rows] + sign * SMALL_SHIFT_SECONDS * 1_000_000
        elif change.name == "ts_beyond_lag":
            b["updated_at"][rows] = a["updated_at"][rows] + sign * LARGE_SHIFT_SECONDS * 1_000_000
        elif change.name == "email_case":
            email_upper[rows] = True
        elif change.name in CATEGORIES:
            k = len(CATEGORIES[change.name])
            b[change.name][rows] = (a[change.name][rows] + rng.integers(1, k, len(rows))) % k
        elif change.name == "is_paying":
            b["is_paying"][rows] = ~a["is_paying"][rows]
        elif change.name == "null_in_b":
            picked = np.array(NULLABLE)[rng.integers(0, len(NULLABLE), len(rows))]
            # A null balance in A cannot become "null in B": that row loses its amount instead.
            picked[(picked == "balance") & a["__nulls"]["balance"][rows]] = "amount"
            for field_name in NULLABLE:
                hit = rows[picked == field_name]
                b["__nulls"][field_name][hit] = True
                truth["planted"][f"null_in_b:{field_name}"] += len(hit)
                truth["field_mismatch"].setdefault(field_name, []).append(ids[hit])
            continue
        truth["planted"][change.name] += len(rows)
        if change.discrepancy:
            truth["field_mismatch"].setdefault(change.field, []).append(ids[rows])
        else:
            truth["not_discrepancies"].setdefault(change.name, []).append(ids[rows])

    if email_upper.any():
        mask = pa.array(email_upper)
        b["email"] = pc.replace_with_mask(a["email"], mask, pc.utf8_upper(pc.filter(a["email"], mask)))
    keep = np.ones(n, dtype=bool)
    keep[drop] = False
    return b, keep


def generate(rows: int, out_dir: str | Path | None = None, *, seed: int = 42, drift: str = "default",
             chunk_rows: int = CHUNK_ROWS, row_group_rows: int = ROW_GROUP_ROWS) -> dict:
    """Write a.parquet, b.parquet and truth.json into ``out_dir``; return the truth (as in truth.json)."""
    if drift not in DRIFTS:
        raise ValueError(f"drift must be one of {', '.join(DRIFTS)}")
    rates = DRIFTS[drift]
    out = Path(out_dir) if out_dir is not None else data_dir(rows, drift, seed)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    acc = {"only_in_a": [], "only_in_b": [], "field_mismatch": {}, "not_discrepancies": {}, "planted": Counter()}
    tmp_a, tmp_b = out / "a.parquet.tmp", out / "b.parquet.tmp"
    rows_b, next_new_id = 0, rows + 1
    with pq.ParquetWriter(tmp_a, SCHEMA, compression="snappy") as writer_a, \
         pq.ParquetWriter(tmp_b, SCHEMA, compression="snappy") as writer_b:
        for chunk, start in enumerate(range(0, rows, chunk_rows)):
            n = min(chunk_rows, rows - start)
            rng = np.random.default_rng([seed, chunk])
            a = _new_rows(rng, np.arange(start + 1, start + n + 1, dtype=np.int64))
            table_a = _table(a)
            writer_a.write_table(table_a, row_group_size=row_group_rows)

            b, keep = _derive_b(rng, a, rates, acc)
            k_new = round(rates.only_in_b * n)
            new_ids = np.arange(next_new_id, next_new_id + k_new, dtype=np.int64)
            next_new_id += k_new
            acc["only_in_b"].append(new_ids)
            table_b = pa.concat_tables([_table(b).filter(pa.array(keep)), _table(_new_rows(rng, new_ids))])
            table_b = table_b.take(pa.array(rng.permutation(table_b.num_rows)))  # B exports in another order
            writer_b.write_table(table_b, row_group_size=row_group_rows)
            rows_b += table_b.num_rows
            del a, b, table_a, table_b
    os.replace(tmp_a, out / "a.parquet")
    os.replace(tmp_b, out / "b.parquet")

    def ids(parts: list) -> list[int]:
        return sorted(np.concatenate(parts).tolist()) if parts else []

    expected = {
        "only_in_a": ids(acc["only_in_a"]),
        "only_in_b": ids(acc["only_in_b"]),
        "field_mismatch": {f: ids(acc["field_mismatch"][f]) for f in FIELDS if f in acc["field_mismatch"]},
    }
    counts = [{"kind": k, "field": None, "count": len(expected[k])} for k in ("only_in_a", "only_in_b")]
    counts += [{"kind": "field_mismatch", "field": f, "count": len(v)} for f, v in expected["field_mismatch"].items() if v]
    truth = {
        "params": params(rows, drift, seed, chunk_rows, row_group_rows),
        "files": {"a": "a.parquet", "b": "b.parquet"},
        "rows_a": rows,
        "rows_b": rows_b,
        "rules": {
            "key": "id",
            "email": "string, normalize trim+lower",
            "plan/status/country/is_paying": "exact",
            "amount/balance": f"numeric abs_tol {AMOUNT_ABS_TOL}",
            "updated_at": f"timestamp lag {TIMESTAMP_LAG_SECONDS}s",
            "nulls": "null vs null agrees, null vs value is a discrepancy",
        },
        "total_expected": sum(c["count"] for c in counts),
        "counts": counts,
        "planted": dict(sorted(acc["planted"].items())),
        "expected": expected,
        "not_discrepancies": {k: ids(v) for k, v in sorted(acc["not_discrepancies"].items())},
        "generation_seconds": round(time.perf_counter() - started, 2),
    }
    tmp = out / "truth.json.tmp"
    tmp.write_text(json.dumps(truth, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, out / "truth.json")  # written last: its presence marks a complete data set
    truth["dir"] = str(out)
    return truth


# --------------------------------------------------------------------------- CLI


def parse_count(text: str) -> int:
    value = float(text.replace("_", ""))
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number of rows")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.generate",
        description="Write two Parquet sides (A, B) and truth.json, the exact discrepancies planted in B.",
    )
    parser.add_argument("--rows", type=parse_count, required=True, help="rows of side A, e.g. 1e6")
    parser.add_argument("--sparse", action="store_true", help="0.01%% of rows affected instead of 2%%")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="output folder (default: benchmarks/.data/n<rows>-<drift>-seed<seed>)")
    parser.add_argument("--chunk-rows", type=parse_count, default=CHUNK_ROWS, help="rows generated at a time (memory bound)")
    args = parser.parse_args(argv)
    drift = "sparse" if args.sparse else "default"
    out = args.out or data_dir(args.rows, drift, args.seed)
    truth = generate(args.rows, out, seed=args.seed, drift=drift, chunk_rows=args.chunk_rows)
    print(f"{out}: {truth['rows_a']:,} rows in A, {truth['rows_b']:,} in B, generated in {truth['generation_seconds']} s")
    print(f"expected discrepancies: {truth['total_expected']:,}")
    for c in truth["counts"]:
        print(f"  {c['kind']:<15} {c['field'] or '-':<11} {c['count']:>10,}")
    print("planted changes that are not discrepancies: "
          + ", ".join(f"{k} {len(v):,}" for k, v in truth["not_discrepancies"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
