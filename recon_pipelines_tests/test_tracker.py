"""The tracker on the embedded SQLite and on the real PostgreSQL (fixture ``tracker_url``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
import sqlalchemy as sa

from recon_pipelines.engine import DISCREPANCY_SCHEMA
from recon_pipelines.tracker import Scope, Tracker
from recon_pipelines.tracker.schema import discrepancies, events, runs, staging

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def found(*rows: dict) -> pa.Table:
    """An engine-shaped discrepancy table from a few dicts (id, key, field are enough)."""
    full = [
        {"reconciliation": "crm_vs_billing", "kind": "field_mismatch", "reason": "value_differs",
         "value_a": "1", "value_b": "2", "severity": "warning", **row}
        for row in rows
    ]
    return pa.Table.from_pylist(full, schema=DISCREPANCY_SCHEMA)


def d(key: str, field: str = "amount", **extra) -> dict:
    return {"id": f"{key}-{field}", "key": key, "field": field, **extra}


@pytest.fixture
def tracker(tracker_url):
    t = Tracker(tracker_url)
    yield t
    t.engine.dispose()


def state(tracker: Tracker) -> dict[str, str]:
    return {r["id"]: r["status"] for r in tracker.discrepancies("crm_vs_billing")}


def test_new_then_seen_again_is_updated_not_reported(tracker):
    first = tracker.apply_run("crm_vs_billing", "r1", found(d("1"), d("2")), now=T0)
    assert sorted(first.new_ids) == ["1-amount", "2-amount"]
    second = tracker.apply_run("crm_vs_billing", "r2", found(d("1", value_b="3"), d("2")), now=T0 + timedelta(hours=1))
    assert second.new_ids == [] and second.seen_again == 2
    row = tracker.get("1-amount")
    assert row["times_seen"] == 2 and row["value_b"] == "3"
    assert row["first_seen"] == T0 and row["last_seen"] == T0 + timedelta(hours=1)
    assert [e["action"] for e in tracker.history("1-amount")] == ["detected"]


def test_no_longer_seen_is_resolved_automatically(tracker):
    tracker.apply_run("crm_vs_billing", "r1", found(d("1"), d("2")), now=T0)
    outcome = tracker.apply_run("crm_vs_billing", "r2", found(d("1")), now=T0 + timedelta(hours=1))
    assert outcome.resolved_ids == ["2-amount"]
    row = tracker.get("2-amount")
    assert row["status"] == "resolved" and row["resolution"] == "auto"
    assert tracker.history("2-amount")[-1]["to_status"] == "resolved"


def test_scoped_run_resolves_only_keys_it_compared(tracker):
    tracker.apply_run("crm_vs_billing", "r1", found(d("1"), d("2"), d("3")), now=T0)
    # A run that read only keys 2 and 3 found nothing: key 1 was not compared and stays open.
    outcome = tracker.apply_run("crm_vs_billing", "r2", found(), scope=Scope.of_keys(["2", "3"], "keys"), now=T0)
    assert sorted(outcome.resolved_ids) == ["2-amount", "3-amount"]
    assert state(tracker) == {"1-amount": "new", "2-amount": "resolved", "3-amount": "resolved"}


def test_other_reconciliations_are_untouched(tracker):
    tracker.apply_run("crm_vs_billing", "r1", found(d("1")), now=T0)
    tracker.apply_run("billing_vs_warehouse", "r2",
                      pa.Table.from_pylist([{**found(d("9")).to_pylist()[0], "id": "other"}], schema=DISCREPANCY_SCHEMA), now=T0)
    tracker.apply_run("crm_vs_billing", "r3", found(), now=T0)
    assert tracker.get("other")["status"] == "new"
    assert tracker.get("1-amount")["status"] == "resolved"


def test_resolved_then_seen_again_is_reopened_with_history(tracker):
    tracker.apply_run("crm_vs_billing", "r1", found(d("1")), now=T0)
    tracker.apply_run("crm_vs_billing", "r2", found(), now=T0 + timedelta(days=1))
    outcome = tracker.apply_run("crm_vs_billing", "r3", found(d("1")), now=T0 + timedelta(days=2))
    assert outcome.reopened_ids == ["1-amount"] and outcome.new_ids == []
    row = tracker.get("1-amount")
    assert row["status"] == "new" and row["occurrence"] == 2 and row["resolution"] is None
    assert row["first_seen"] == T0 and row["opened_at"] == T0 + timedelta(days=2)
    assert [(e["from_status"], e["to_status"]) for e in tracker.history("1-amount")] == [
        (None, "new"), ("new", "resolved"), ("resolved", "new")]


def test_same_run_applied_twice_changes_nothing(tracker):
    tracker.apply_run("crm_vs_billing", "r1", found(d("1")), now=T0)
    again = tracker.apply_run("crm_vs_billing", "r1", found(d("1")), now=T0)
    assert again.already_applied
    assert tracker.get("1-amount")["times_seen"] == 1


def test_values_round_trip_exactly(tracker):
    """Empty strings stay empty, nulls stay null, and text that looks like CSV survives COPY."""
    tricky = 'a,"b"\nc'
    tracker.apply_run("crm_vs_billing", "r1", found(d("1", value_a="", value_b=None), d("2", value_a=tricky)), now=T0)
    assert tracker.get("1-amount")["value_a"] == "" and tracker.get("1-amount")["value_b"] is None
    assert tracker.get("2-amount")["value_a"] == tricky


def test_run_log_records_each_run(tracker):
    tracker.apply_run("crm_vs_billing", "r1", found(d("1"), d("2")), summary={"rows_a": 10, "rows_b": 9, "matched": 8}, now=T0)
    (run,) = tracker.runs("crm_vs_billing")
    assert (run["run_id"], run["rows_a"], run["rows_b"], run["matched"], run["discrepancies"], run["new"]) == ("r1", 10, 9, 8, 2, 2)
    assert run["scope"] == "full" and run["outcome"] == "ok"


def test_staging_is_empty_after_a_run(tracker):
    tracker.apply_run("crm_vs_billing", "r1", found(d("1")), scope=Scope.of_keys(["1"]), now=T0)
    with tracker.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(staging)) == 0


def test_killed_run_leaves_tracker_as_before(tracker_url, tracker):
    tracker.apply_run("crm_vs_billing", "r1", found(d("1"), d("2")), now=T0)
    before = _dump(tracker)
    # A real process, killed in the middle of the write (after staging, before commit).
    script = textwrap.dedent(f"""
        import os, pyarrow as pa
        from recon_pipelines.tracker import Tracker
        from recon_pipelines.tracker import store
        from recon_pipelines_tests.test_tracker import found, d
        def die(*args, **kwargs):
            os._exit(9)
        store.Tracker._log_new = die
        Tracker({tracker_url!r}).apply_run("crm_vs_billing", "r2", found(d("1"), d("3")))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert _dump(tracker) == before
    outcome = tracker.apply_run("crm_vs_billing", "r2", found(d("1"), d("3")), now=T0 + timedelta(hours=1))
    assert outcome.new_ids == ["3-amount"] and outcome.resolved_ids == ["2-amount"]
    assert state(tracker) == {"1-amount": "new", "2-amount": "resolved", "3-amount": "new"}


def test_concurrent_runs_of_one_reconciliation_lose_nothing(tracker_url, tracker):
    """Two writers at once (a schedule and a backfill) are serialised: every discrepancy is
    inserted once, detected once, and the final state is that of the later run."""
    shared = [d(str(i)) for i in range(200)]
    errors: list[BaseException] = []

    def write(run_id: str, extra: str) -> None:
        try:
            Tracker(tracker_url).apply_run("crm_vs_billing", run_id, found(*shared, d(extra)))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"run-{n}", f"x{n}")) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with tracker.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(discrepancies)) == 202
        detected = conn.execute(
            sa.select(events.c.discrepancy_id, sa.func.count()).where(events.c.action == "detected")
            .group_by(events.c.discrepancy_id)
        ).all()
        assert len(detected) == 202 and all(n == 1 for _, n in detected)
        assert conn.scalar(sa.select(sa.func.count()).select_from(runs)) == 2
    rows = {r["id"]: r for r in tracker.discrepancies("crm_vs_billing")}
    assert all(rows[x["id"]]["times_seen"] == 2 for x in shared)
    # The later run did not see the earlier run's extra discrepancy, so it resolved it.
    statuses = sorted(rows[f"x{n}-amount"]["status"] for n in range(2))
    assert statuses == ["new", "resolved"]


def test_bulk_write_is_set_based(tracker):
    """100,000 new discrepancies go in with a handful of statements, not one per row."""
    rows = [{"id": f"k{i}", "reconciliation": "crm_vs_billing", "kind": "field_mismatch", "key": str(i), "field": "amount",
             "reason": "value_differs", "value_a": "1", "value_b": "2", "severity": "warning"} for i in range(100_000)]
    big = pa.Table.from_pylist(rows, schema=DISCREPANCY_SCHEMA)
    statements = []
    sa.event.listen(tracker.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    outcome = tracker.apply_run("crm_vs_billing", "r1", big, now=T0)
    assert len(outcome.new_ids) == 100_000
    assert len(statements) < 40, statements[:50]


def _dump(tracker: Tracker) -> tuple:
    with tracker.engine.connect() as conn:
        return tuple(
            sorted(tuple(str(v) for v in row) for row in conn.execute(sa.select(table)))
            for table in (discrepancies, events, runs, staging)
        )


def test_full_run_leaves_excluded_keys_open(tracker):
    """Keys still in flight (modified within the propagation lag) are not judged: not resolved."""
    tracker.apply_run("crm_vs_billing", "r1", found(d("1"), d("2")), now=T0)
    outcome = tracker.apply_run("crm_vs_billing", "r2", found(), scope=Scope.full(exclude=["2"]), now=T0)
    assert outcome.resolved_ids == ["1-amount"]
    assert state(tracker) == {"1-amount": "resolved", "2-amount": "new"}
