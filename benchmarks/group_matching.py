"""What the match: group and window rules cost (engine/groups.py).

Run from the repository root:

    .venv/bin/python -m benchmarks.group_matching --charges 1e5,1e6 --targets 200

``group``    N charges (amounts in cents, a fee each) in payouts of 1 to 9 charges, one charge
             missing from the ledger: the whole comparison (key pairing finds nothing, the
             group rule settles every line). Checked: exactly one group_mismatch, of that
             charge's net amount.
``window``   T payouts, each alone in its window with exactly ``max_candidates`` unreferenced
             charges, of which a known subset of 3 sums to the payout: the search's worst
             case per target (every candidate in the window), with non-negative amounts
             (the sorted search stops early) and with mixed signs (no pruning: every subset of
             at most k is visited, sum_{j<=k} C(m, j)). Checked: every payout matched, or,
             where another subset fits too, reported ambiguous (never chosen).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from decimal import Decimal
from math import comb

import pyarrow as pa

from recon_pipelines.engine import Side, compare, side_columns
from recon_pipelines.spec import parse_spec

SRC = {"type": "file", "path": "unused.csv"}
FIELDS = {"amount": {"compare": "numeric"}, "at": {"compare": "timestamp"}}


def _spec(rule: dict):
    return parse_spec({"name": "bench_groups", "source_a": SRC, "source_b": SRC, "key": "id", "fields": FIELDS,
                       "match": [{"by": "key"}, rule]}, source_file="bench.yaml")


def _run(spec, a: pa.Table, b: pa.Table):
    from recon_pipelines.sqlutil import duckdb_connect

    con = duckdb_connect()
    con.register("ta", a)
    con.register("tb", b)
    started = time.perf_counter()
    result = compare(spec, Side("ta", side_columns(spec, "a")), Side("tb", side_columns(spec, "b")), con=con)
    return result, time.perf_counter() - started


def bench_group(charges: int, seed: int = 5) -> dict:
    rng = random.Random(seed)
    ids, cents, fees, owner, totals = [], [], [], [], []
    payout = 0
    while len(ids) < charges:
        size = rng.randint(1, 9)
        net = 0
        for _ in range(size):
            c, f = rng.randrange(500, 90_000), rng.randrange(0, 300)
            ids.append(f"c{len(ids)}"), cents.append(c), fees.append(f), owner.append(f"p{payout}")
            net += c - f
        totals.append(net)
        payout += 1
    gone = rng.randrange(len(ids))
    keep = [i for i in range(len(ids)) if i != gone]
    at = pa.array(["2026-11-01T00:00:00Z"] * len(keep))
    a = pa.table({"id": [ids[i] for i in keep], "amount": pa.array([Decimal(cents[i]).scaleb(-2) for i in keep], pa.decimal128(18, 2)),
                  "fee": pa.array([Decimal(fees[i]).scaleb(-2) for i in keep], pa.decimal128(18, 2)),
                  "payout": [owner[i] for i in keep], "at": at})
    b = pa.table({"id": [f"p{i}" for i in range(payout)], "amount": pa.array([Decimal(t).scaleb(-2) for t in totals], pa.decimal128(18, 2)),
                  "payout": [f"p{i}" for i in range(payout)], "at": pa.array(["2026-11-02T00:00:00Z"] * payout)})
    spec = _spec({"by": "group", "a": "payout", "b": "payout", "amount": "amount", "fee_a": "fee"})
    result, seconds = _run(spec, a, b)
    rows = result.discrepancies.to_pylist()
    expected_gap = Decimal(cents[gone] - fees[gone]).scaleb(-2)
    agrees = [(r["kind"], r["key"]) for r in rows] == [("group_mismatch", owner[gone])] and \
        Decimal(str(rows[0]["difference"])) == expected_gap
    if owner.count(owner[gone]) == 1:  # its payout's only charge: the payout is left unmatched instead
        agrees = [(r["kind"], r["key"]) for r in rows] == [("unmatched_b", owner[gone])]
    return {"case": "group", "charges": len(keep), "payouts": payout, "seconds": round(seconds, 3),
            "ground_truth": "AGREES" if agrees else "DIFFERS"}


def bench_window(targets: int, candidates: int, max_lines: int, signed: bool, seed: int = 9) -> dict:
    rng = random.Random(seed)
    a_ids, a_amounts, a_at, b_ids, b_amounts, b_at = [], [], [], [], [], []
    for t in range(targets):
        when = f"{2027 + t // 300}-{1 + (t // 25) % 12:02d}-{1 + t % 25:02d}T00:00:00Z"  # a day of its own
        low = -50_000 if signed else 1
        amounts = [rng.randrange(low, 50_000) for _ in range(candidates)]
        for j, x in enumerate(amounts):
            a_ids.append(f"c{t}_{j}"), a_amounts.append(x), a_at.append(when)
        b_ids.append(f"p{t}"), b_amounts.append(sum(rng.sample(amounts, 3))), b_at.append(when)
    a = pa.table({"id": a_ids, "amount": a_amounts, "at": a_at})
    b = pa.table({"id": b_ids, "amount": b_amounts, "at": b_at})
    spec = _spec({"by": "window", "amount": "amount", "date": "at", "days": 0.5, "max_lines": max_lines,
                  "max_candidates": candidates})
    result, seconds = _run(spec, a, b)
    g = result.groups
    settled = g.window_matches + g.ambiguous == targets and g.unmatched_b == 0
    subsets = sum(comb(candidates, j) for j in range(1, max_lines + 1))
    return {"case": "window", "targets": targets, "max_candidates": candidates, "max_lines": max_lines,
            "amounts": "mixed signs" if signed else "non-negative", "subsets_bound_per_target": subsets,
            "seconds": round(seconds, 3), "ms_per_target": round(1000 * seconds / targets, 2),
            "matched": g.window_matches, "ambiguous": g.ambiguous,
            "ground_truth": "AGREES" if settled else "DIFFERS"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charges", default="1e5", help="comma-separated charge counts for the group case")
    parser.add_argument("--targets", type=int, default=100, help="payouts searched in the window case")
    args = parser.parse_args()
    results = [bench_group(int(float(n))) for n in args.charges.split(",")]
    for signed in (False, True):
        for candidates, max_lines in ((20, 4), (40, 4)):
            results.append(bench_window(args.targets, candidates, max_lines, signed))
    for row in results:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
