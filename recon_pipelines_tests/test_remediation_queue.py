"""The incident queue's consumer API: concurrent consumers on PostgreSQL each claim distinct
incidents (FOR UPDATE SKIP LOCKED), every incident exactly once; complete and release."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from recon_pipelines.remediation.queue import IncidentQueue, open_incident, resolve_incident
from recon_pipelines.tracker.schema import incidents

NOW = datetime(2026, 11, 20, tzinfo=timezone.utc)


def fill(queue: IncidentQueue, n: int) -> None:
    with queue.engine.begin() as conn:
        for i in range(n):
            open_incident(conn, queue.queue, f"open:d{i}:1", "crm_vs_billing", f"d{i}", "critical",
                          f"incident {i}", {"i": i}, NOW)


@pytest.fixture
def pg_queue(pg_url):
    queue = IncidentQueue(pg_url)
    yield queue
    queue.engine.dispose()


def test_two_concurrent_consumers_claim_every_incident_exactly_once(pg_queue, pg_url):
    fill(pg_queue, 300)
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def consume(name: str) -> None:
        queue = IncidentQueue(pg_url, migrate_schema=False)  # its own engine, as a separate worker would have
        start.wait()
        while batch := queue.claim(7, consumer=name):
            for incident in batch:
                claimed[name].append(incident.id)
                queue.complete(incident.id)
        queue.engine.dispose()

    workers = [threading.Thread(target=consume, args=(name,)) for name in claimed]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    every = claimed["a"] + claimed["b"]
    assert Counter(every).most_common(1)[0][1] == 1  # nobody got an incident twice
    assert len(every) == 300
    assert claimed["a"] and claimed["b"]  # both worked (neither waited for the other's locks)
    assert pg_queue.counts() == {"done": 300}
    with pg_queue.engine.connect() as conn:
        owners = dict(conn.execute(sa.select(incidents.c.id, incidents.c.claimed_by)).all())
    assert {i for i, who in owners.items() if who == "a"} == set(claimed["a"])


def test_claim_skips_rows_another_consumer_holds_instead_of_waiting(pg_queue, pg_url):
    fill(pg_queue, 10)
    # Were the claim to wait for locks, it would fail after 3 s rather than hang.
    impatient = IncidentQueue(engine=sa.create_engine(pg_url, connect_args={"options": "-c lock_timeout=3000"}),
                              migrate_schema=False)
    with pg_queue.engine.connect() as other:
        # Another consumer's claim in progress: the five oldest are locked by its open transaction.
        tx = other.begin()
        held = other.execute(sa.text("SELECT id FROM recon_incidents ORDER BY id LIMIT 5 FOR UPDATE")).scalars().all()
        got = [i.id for i in impatient.claim(5, consumer="b")]
        tx.rollback()
    impatient.engine.dispose()
    assert set(got).isdisjoint(held) and len(got) == 5


def test_complete_release_and_resolution(tracker_url):
    queue = IncidentQueue(tracker_url, queue="incidents")
    fill(queue, 2)
    first, second = queue.claim(2, consumer="bot")
    assert (first.status, first.claimed_by, first.title, first.payload) == ("claimed", "bot", "incident 0", {"i": 0})
    queue.release(first.id)
    queue.complete(second.id)
    with pytest.raises(ValueError, match="is done, not claimed"):
        queue.complete(second.id)
    [again] = queue.claim(5, consumer="bot-2")
    assert again.id == first.id and again.attempts == 2
    # Resolved by the tracker: a pending incident leaves the queue; a claimed one is told.
    fill(queue, 3)
    with queue.engine.begin() as conn:
        resolve_incident(conn, "incidents", "open:d2:1", NOW)
        resolve_incident(conn, "incidents", "open:d0:1", NOW)
    # d0 and d1 were not enqueued twice; d2, new, was resolved before anyone claimed it.
    assert queue.claim(5, consumer="bot") == []
    assert queue.get(first.id).resolved_at == NOW and queue.get(first.id).status == "claimed"
    assert queue.counts() == {"claimed": 1, "done": 1, "resolved": 1}
    # Another queue is another queue.
    assert IncidentQueue(engine=queue.engine, queue="other", migrate_schema=False).claim(5, "bot") == []
    queue.engine.dispose()
