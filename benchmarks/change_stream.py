"""Event-driven reconciliation under load: N change events on JetStream, 1% not propagated.

    .venv/bin/python -m benchmarks.change_stream                 # 1,000,000 events (the default)
    .venv/bin/python -m benchmarks.change_stream --events 100000 --rate 4000   # steady state: publish while consuming
    .venv/bin/python -m benchmarks.change_stream --tracker postgresql+psycopg2://postgres@127.0.0.1/recon_bench  # a database of its own

Side A writes every key once; side B repeats 99% of them (same values) and never gets the rest.
Both sides' events go to a stream of this run's own (deleted at the end); the consumer then does
what the change_stream sensor does, in a loop: fetch a batch, fold it into the tracker's
expectation store, acknowledge it, and re-check (key-scoped, through the engine, on Parquet
snapshots of both sides) every batch of keys whose window has passed. Reported:

- publish and handling rates (events per second; handling = fetch + store + ack);
- for every not-propagated key, the time from its window's expiry to its discrepancy being in
  the tracker (median, p95, max);
- whether exactly the 1% came out as ``not_propagated`` (nothing lost, nothing extra).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recon_pipelines.spec import parse_spec
from recon_pipelines.streams import wiring
from recon_pipelines.streams.events import ChangeEvent
from recon_pipelines.streams.settle import NOT_PROPAGATED, recheck_expired
from recon_pipelines.tracker import Tracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in all (A's plus B's)")
    parser.add_argument("--missing", type=float, default=0.01, help="share of A's writes B never repeats")
    parser.add_argument("--window", type=float, default=5.0, help="seconds a counterpart may take")
    parser.add_argument("--batch", type=int, default=5_000, help="events fetched per batch")
    parser.add_argument("--keys-per-run", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="publish at this many events/s while consuming (steady state); 0: publish everything first")
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--tracker", default=None, help="tracker URL; default SQLite in a temporary folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="recon-stream-bench-") as tmp:
        run(args, Path(tmp))


def run(args, folder: Path) -> None:
    keys = int(args.events / (2 - args.missing))
    dropped = {k for k in range(keys) if k % round(1 / args.missing) == 7} if args.missing else set()
    pq.write_table(pa.table({"id": list(range(keys)), "amount": [k % 1000 for k in range(keys)]}), folder / "a.parquet")
    kept = [k for k in range(keys) if k not in dropped]
    pq.write_table(pa.table({"id": kept, "amount": [k % 1000 for k in kept]}), folder / "b.parquet")
    stream = f"RECON_BENCH_{uuid.uuid4().hex[:8]}"
    spec = parse_spec({
        "name": "bench", "key": "id", "fields": {"amount": {"compare": "numeric"}},
        "source_a": {"type": "file", "path": str(folder / "a.parquet")},
        "source_b": {"type": "file", "path": str(folder / "b.parquet")},
        "change_stream": {"stream": stream, "subject_prefix": f"recon_bench.{stream}", "url": args.url,
                          "window": args.window, "ack_wait": "60s"},
    })
    tracker = Tracker(args.tracker or f"sqlite:///{folder / 'tracker.sqlite'}")
    store = wiring.expectation_store(spec, tracker.engine)
    with wiring.shared_log(spec) as log:
        log.create_stream()
        try:
            if args.rate:  # a publisher of its own (its own connection and event loop) alongside the consumer
                total = keys + len(kept)
                publisher = threading.Thread(target=publish_paced, args=(spec, keys, dropped, args.rate))
                publisher.start()
                handled, handle_s, settle_s = consume_and_settle(spec, log, store, tracker, folder, total, args)
                publisher.join()
            else:
                published, publish_s = publish(log, keys, dropped)
                print(f"published {published:,} events in {publish_s:.1f} s: {published / publish_s:,.0f} events/s")
                handled, handle_s, settle_s = consume_and_settle(spec, log, store, tracker, folder, published, args)
        finally:
            log.delete_stream()
    if args.rate:  # the consumer waits for the publisher: its time is not a rate
        print(f"handled {handled:,} events published at {args.rate:,.0f} events/s; re-checks took {settle_s:.1f} s")
    else:
        print(f"handled {handled:,} events in {handle_s:.1f} s (fetch + store + ack): {handled / handle_s:,.0f} events/s; "
              f"re-checks took {settle_s:.1f} s more")
    report(tracker, store, dropped)


def publish_paced(spec, keys: int, dropped: set[int], rate: float) -> None:
    with wiring.shared_log(spec) as log:
        publish(log, keys, dropped, rate)


def publish(log, keys: int, dropped: set[int], rate: float = 0.0) -> tuple[int, float]:
    started, count, chunk = time.perf_counter(), 0, []
    for k in range(keys):
        at = datetime.now(timezone.utc) if k % 100 == 0 or not chunk else chunk[-1].at
        values = {"amount": str(k % 1000)}
        chunk.append(ChangeEvent("a", str(k), "upsert", at, values, f"{k:012d}"))
        if k not in dropped:
            chunk.append(ChangeEvent("b", str(k), "upsert", at, values, f"{k:012d}"))
        if len(chunk) >= (1_000 if rate else 10_000):
            log.publish(chunk)
            count, chunk = count + len(chunk), []
            if rate:
                time.sleep(max(0.0, started + count / rate - time.perf_counter()))
    log.publish(chunk)
    return count + len(chunk), time.perf_counter() - started


def consume_and_settle(spec, log, store, tracker, folder, total, args):
    handled = runs = 0
    handle_s = settle_s = 0.0
    while True:
        started = time.perf_counter()
        consumed = wiring.consume(log, store, max_events=args.batch, batch=args.batch, timeout=1.0)
        handle_s += time.perf_counter() - started
        handled += consumed.handled
        started = time.perf_counter()
        for claim, keys in store.claim_due(datetime.now(timezone.utc), args.keys_per_run, 100).items():
            recheck_expired(spec, tracker, store, keys, folder / "runs", run_id=f"bench-{runs}")
            runs += 1
        settle_s += time.perf_counter() - started
        if handled >= total and store.lag(datetime.now(timezone.utc)).open == 0:
            return handled, handle_s, settle_s
        if not consumed.handled:
            time.sleep(0.2)


def report(tracker, store, dropped: set[int]) -> None:
    found = tracker.discrepancies("bench")
    reported = {d["key"] for d in found if d["kind"] == NOT_PROPAGATED}
    expected = {str(k) for k in dropped}
    print(f"not_propagated: {len(reported):,} reported, {len(expected):,} expected; "
          f"missed {len(expected - reported)}, extra {len(reported - expected)}, other kinds "
          f"{sum(1 for d in found if d['kind'] != NOT_PROPAGATED)}")
    import json

    delays = []
    for d in found:
        due = datetime.fromisoformat(json.loads(d["detail"])["due_at"])
        first_seen = d["first_seen"] if d["first_seen"].tzinfo else d["first_seen"].replace(tzinfo=timezone.utc)
        delays.append((first_seen - due).total_seconds())
    if delays:
        delays.sort()
        print(f"window expiry -> discrepancy in the tracker: median {statistics.median(delays):.2f} s, "
              f"p95 {delays[int(len(delays) * 0.95) - 1]:.2f} s, max {delays[-1]:.2f} s")


if __name__ == "__main__":
    main()
