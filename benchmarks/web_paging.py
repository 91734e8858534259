"""How fast the triage queue pages over a large PostgreSQL tracker (keyset pagination, issue 15).

Fills a throwaway PostgreSQL database with N discrepancies (one INSERT ... SELECT over
generate_series, server-side), then times the queue's page query (``tracker.queue.page``, the
code the web page runs) for several filter/sort combinations, first pages and pages deep into
the result (reached by following cursors), and reports p50/p95/max per combination.

    .venv/bin/python -m benchmarks.web_paging                   # 1,000,000 rows
    .venv/bin/python -m benchmarks.web_paging --rows 100000 --pages 20

Needs PostgreSQL (``--admin-url``, default the test server); the database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import timedelta

import sqlalchemy as sa

from recon_pipelines.tracker import Tracker
from recon_pipelines.tracker import queue as q

FILL = """
INSERT INTO recon_discrepancies (id, kind, key, field, reason, value_a, value_b, difference, severity, detail,
    reconciliation, status, first_seen, last_seen, opened_at, times_seen, consecutive_runs, occurrence,
    last_run_id, assignee, updated_at)
SELECT md5(i::text)::varchar(24),
       (ARRAY['field_mismatch', 'only_in_a', 'only_in_b'])[1 + i % 3],
       'K' || lpad(i::text, 9, '0'),
       (ARRAY['amount', 'email', 'plan', 'status', 'country', 'balance', 'updated_at', 'is_paying'])[1 + i % 8],
       'value_differs', (i % 1000)::text, (i % 997)::text, NULL,
       (ARRAY['info', 'warning', 'warning', 'critical'])[1 + (i / 7) % 4], NULL,
       'recon_' || (i % 10),
       (ARRAY['new', 'new', 'new', 'acknowledged', 'escalated', 'muted', 'resolved', 'resolved', 'resolved', 'resolved'])
           [1 + (i / 3) % 10],
       now() - interval '91 days',
       now() - ((hashtext(i::text) & 2147483647) % 86400) * interval '1 second',
       now() - ((hashtext('o' || i) & 2147483647) % 7776000) * interval '1 second',
       1 + i % 20, 1 + i % 5, 1, 'run-' || (i % 500),
       CASE WHEN i % 10 = 0 THEN 'user' || (i / 10 % 5) END,
       now()
FROM generate_series(1, :n) AS i
"""

SCENARIOS = {
    "open, newest seen first (default)": (q.QueueFilter(), "newest"),
    "open, oldest first": (q.QueueFilter(), "oldest"),
    "one reconciliation": (q.QueueFilter(reconciliation="recon_3"), "newest"),
    "critical in one reconciliation": (q.QueueFilter(reconciliation="recon_3", severity="critical"), "newest"),
    "status acknowledged": (q.QueueFilter(status="acknowledged"), "newest"),
    "assignee user2": (q.QueueFilter(assignee="user2"), "newest"),
    "kind + field, open > 30d": (q.QueueFilter(kind="only_in_a", field="plan", older_than=timedelta(days=30)), "oldest"),
    "key contains '00042'": (q.QueueFilter(key="00042"), "newest"),
    "key contains 'nomatch' (worst case)": (q.QueueFilter(key="nomatch"), "newest"),
    "resolved (all history)": (q.QueueFilter(status="resolved"), "oldest"),
    "everything, any status": (q.QueueFilter(status="all"), "newest"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=30, help="pages followed per scenario (cursor after cursor)")
    parser.add_argument("--size", type=int, default=50)
    parser.add_argument("--admin-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()

    name = f"recon_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        tracker = Tracker(sa.make_url(args.admin_url).set(database=name).render_as_string(hide_password=False))
        started = time.perf_counter()
        with tracker.engine.begin() as conn:
            conn.execute(sa.text(FILL), {"n": args.rows})
        with tracker.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE recon_discrepancies"))
        print(f"filled {args.rows:,} discrepancies in {time.perf_counter() - started:.1f}s (with the 0006 indexes)")
        everything = []
        print(f"{'scenario':<38} {'pages':>5} {'rows':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for label, (filters, sort) in SCENARIOS.items():
            timings, rows, after = [], 0, None
            q.page(tracker.engine, filters, sort=sort, size=args.size)  # warm the plan cache and the pages
            for _ in range(args.pages):
                t0 = time.perf_counter()
                page = q.page(tracker.engine, filters, sort=sort, after=after, size=args.size)
                timings.append((time.perf_counter() - t0) * 1000)
                rows += len(page.rows)
                after = page.next_cursor
                if after is None:
                    break
            everything += timings
            print(f"{label:<38} {len(timings):>5} {rows:>6} {statistics.median(timings):>8.1f} "
                  f"{_p95(timings):>8.1f} {max(timings):>8.1f}")
        print(f"{'all page queries':<38} {len(everything):>5} {'':>6} {statistics.median(everything):>8.1f} "
              f"{_p95(everything):>8.1f} {max(everything):>8.1f}")
        # For comparison only: the same page found by OFFSET, which the queue never uses.
        offset_query = sa.text("SELECT * FROM recon_discrepancies WHERE status IN ('new', 'acknowledged', 'escalated', "
                               "'muted') ORDER BY opened_at DESC, id DESC OFFSET :o LIMIT :n")
        for offset in (args.size * args.pages, args.rows // 4):
            timings = []
            with tracker.engine.connect() as conn:
                for _ in range(5):
                    t0 = time.perf_counter()
                    conn.execute(offset_query, {"o": offset, "n": args.size}).all()
                    timings.append((time.perf_counter() - t0) * 1000)
            print(f"{'(OFFSET ' + format(offset, ',') + ', for comparison)':<38} {5:>5} {'':>6} "
                  f"{statistics.median(timings):>8.1f} {_p95(timings):>8.1f} {max(timings):>8.1f}")
        tracker.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


if __name__ == "__main__":
    main()
