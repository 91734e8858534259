"""The Spark engine against the default DuckDB engine, on the same Parquet files.

Run from the repository root (one command):

    .venv/bin/python -m benchmarks.spark --sizes 1e7,3e7 --drifts default --wire 1e6 [--master local[2]]

For each size and drift, the generator's two sides (benchmarks/generate.py, generated under
benchmarks/.data/ on first use) are compared by ``run_reconciliation`` twice, each in a fresh
subprocess: ``duckdb`` (the default engine) and ``spark`` (``--engine spark``: pairing on Spark,
rules in local DuckDB). Reported per case: wall seconds (from before reading the files to the
discrepancy table, Spark's JVM start excluded: it is started and warmed on a 1,000-row pair
first), peak memory of the driver (this process's VmHWM, plus the Spark JVM's own VmHWM in
local mode, where the JVM is the driver and the executors), the rows that crossed from Spark to
the driver (candidate keys with their status; the compared fields of the records the rules
need), and whether the discrepancy set equals the generator's ground truth.

``--wire SIZE`` adds a run per drift level (sparse 0.01%, default 2%, heavy 20%) at SIZE rows,
Spark only, to show how the rows crossing the wire grow with drift. Results also go to
benchmarks/.data/spark-results-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import generate as gen  # numpy + pyarrow only
from benchmarks.pushdown import peak_rss_gb

COMMAND = ".venv/bin/python -m benchmarks.spark"


def build_spec(folder: str, engine: str):
    from recon_pipelines.spec import parse_spec

    return parse_spec({
        "name": "benchmark",
        "source_a": {"type": "file", "path": str(Path(folder) / "a.parquet")},
        "source_b": {"type": "file", "path": str(Path(folder) / "b.parquet")},
        "key": "id",
        "fields": gen.SPEC_FIELDS,
        "engine": {"type": engine},
    })


def _jvm_peak_gb() -> float:
    """VmHWM of the java processes this process started (the local-mode Spark driver JVM)."""
    total = 0.0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(os.getpid()) and fields.get("Name", "").strip() == "java":
            total += int(fields.get("VmHWM", "0 kB").split()[0]) / 1024 / 1024
    return total


def run_case(engine: str, truth_dir: str, master: str, conf: dict | None = None) -> dict:
    from recon_pipelines.engine import compare, evaluate
    from recon_pipelines.engine.strategies.spark import SparkPairing
    from recon_pipelines.runner import open_side
    from recon_pipelines.sqlutil import duckdb_connect

    spec = build_spec(truth_dir, engine)
    moved: dict = {}
    if engine == "spark":
        strategy = SparkPairing(master, dict(conf or {}))
        with tempfile.TemporaryDirectory() as warm:  # start and warm the JVM outside the timing
            gen.generate(1_000, warm, seed=1)
            warm_spec = build_spec(warm, "spark")
            strategy.pair(warm_spec, duckdb_connect(), tuple(open_side(warm_spec, s, Path(warm)) for s in "ab"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sides = tuple(open_side(spec, s, Path(tmp)) for s in "ab")
        if engine == "spark":
            con = duckdb_connect()
            pairing = strategy.pair(spec, con, sides)
            table, _ = evaluate(con, spec, "__pairs")
            stats, moved = pairing.stats, pairing.rows_moved
        else:
            result = compare(spec, *sides)
            table, stats = result.discrepancies, result.match
    seconds = time.perf_counter() - started
    found = set(zip(*(table.column(c).to_pylist() for c in ("kind", "key", "field"))))
    expected = gen.expected_set(gen.load_truth(truth_dir))
    return {"engine": engine, "seconds": seconds, "python_peak_gb": peak_rss_gb(), "jvm_peak_gb": _jvm_peak_gb(),
            "rows_a": stats.rows_a, "candidate_pairs": stats.candidate_pairs, "moved": moved,
            "missing": len(expected - found), "extra": len(found - expected), "discrepancies": len(found)}


def _spawn(job: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.spark", "--worker", json.dumps(job)]
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {**job, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            return {**job, **json.loads(line[len("RESULT "):])}
    tail = [line for line in (done.stderr or done.stdout).strip().splitlines() if not line.startswith(("\tat", "  at"))][-3:]
    return {**job, "error": " | ".join(tail) or f"exit {done.returncode}"}


def _row(size: int, drift: str, r: dict) -> str:
    if "error" in r:
        return f"| {size:,} | {drift} | {r['engine']} | ERROR: {r['error']} |||||"
    verdict = "AGREES" if not r["missing"] and not r["extra"] else f"DIFFERS ({r['missing']} missing, {r['extra']} extra)"
    wire = (f"{r['moved']['candidates']:,} + {r['moved']['a'] + r['moved']['b']:,}"
            if r["moved"] else "-")
    return (f"| {size:,} | {drift} | {r['engine']} | {r['seconds']:.1f} | {r['python_peak_gb']:.2f} + {r['jvm_peak_gb']:.2f} | "
            f"{r['candidate_pairs']:,} | {wire} | {verdict} |")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        job = json.loads(argv[1])
        print("RESULT " + json.dumps(run_case(job["engine"], job["truth_dir"], job["master"], job.get("conf"))), flush=True)
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e7", help="rows per side, comma-separated (default 1e7)")
    parser.add_argument("--drifts", default="default", help=f"comma-separated, from {', '.join(gen.DRIFTS)}")
    parser.add_argument("--wire", default=None, help="also run Spark at this size for every drift level")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--conf", action="append", default=[], help="a Spark setting KEY=VALUE (repeatable)")
    parser.add_argument("--engines", default="duckdb,spark", help="comma-separated, from duckdb, spark")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per case run")
    args = parser.parse_args(argv)
    jobs = [(gen.parse_count(s), d, e) for s in args.sizes.split(",") for d in args.drifts.split(",") for e in args.engines.split(",")]
    conf = dict(item.split("=", 1) for item in args.conf)
    if args.wire:
        jobs += [(gen.parse_count(args.wire), d, "spark") for d in gen.DRIFTS]
    lines = ["| rows per side | drift | engine | wall s | peak GB (Python + JVM) | candidate pairs | "
             "rows to the driver (keys + records) | discrepancies vs truth |", "|---:|---|---|---:|---:|---:|---:|---|"]
    results = []
    for size, drift, engine in jobs:
        gen.ensure(size, drift)
        r = _spawn({"engine": engine, "truth_dir": str(gen.data_dir(size, drift)), "master": args.master, "conf": conf},
                   args.timeout)
        r.update(rows=size, drift=drift)
        results.append(r)
        lines.append(_row(size, drift, r))
        print(lines[-1], flush=True)
    print("\n" + "\n".join(lines))
    out = gen.DATA_ROOT / f"spark-results-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"command": " ".join([COMMAND] + argv), "results": results}, indent=1), encoding="utf-8")
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
