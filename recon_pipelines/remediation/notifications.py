"""The tracker hook that turns a run's outcome into notifications, written to the outbox in
the run's own transaction (``Tracker.apply_run(on_outcome=notification_writer(spec))``):
a notification exists if and only if the change that caused it was committed.

- opened (new or reopened): routed by the discrepancy's tier, kind and field;
- escalated: routed again as ``critical``; a destination that already heard of this
  occurrence is not told twice (same idempotency key);
- resolved: sent to every destination told of the opening (digests excepted);
- Slack: one thread per run and channel, its parent message the run summary; more than
  ``aggregate_above`` discrepancies for one channel become one aggregated message;
- the run summary also goes, by its own tier, wherever the routing sends that tier when a
  run-level rule (``severity.run``) escalated it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timezone

import sqlalchemy as sa

from recon_pipelines.remediation import outbox
from recon_pipelines.remediation.outbox import Notification, chunks
from recon_pipelines.remediation.routing import TIER_RANK, RunShape, destinations_for, highest, run_tier
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.tracker.schema import discrepancies, runs, staging
from recon_pipelines.tracker.schema import outbox as outbox_table
from recon_pipelines.tracker.store import RunOutcome

DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"  # where `dagster dev` serves the UI
SLACK_TYPES = ("slack",)
DIGEST_TYPES = ("slack_digest",)

Hook = Callable[[sa.Connection, RunOutcome, datetime], None]


def notification_writer(spec: ReconciliationSpec) -> Hook | None:
    """The ``on_outcome`` hook for this spec, or None when the spec routes nothing."""
    if not spec.routing:
        return None

    def write(conn: sa.Connection, outcome: RunOutcome, now: datetime) -> None:
        if outcome.held:  # nothing was applied: one alert instead of a message per discrepancy
            outbox.enqueue(conn, spec.name, held_run_notifications(spec, outcome.run_id, outcome.held), now)
        else:
            outbox.enqueue(conn, spec.name, plan_notifications(conn, spec, outcome), now)

    return write


def opening_key(discrepancy_id: str, occurrence: int) -> str:
    return f"open:{discrepancy_id}:{occurrence}"


def run_key(reconciliation: str, run_id: str) -> str:
    return f"run:{reconciliation}:{run_id}"


def run_url(spec: ReconciliationSpec, run_id: str) -> str:
    """Tracker run ids are ``<dagster run id>:<scope>``; the link opens the Dagster run."""
    base = (os.environ.get(spec.notifications.dagster_url_env) or DEFAULT_DAGSTER_URL).rstrip("/")
    return f"{base}/runs/{run_id.split(':', 1)[0]}"


def run_failure_notifications(spec: ReconciliationSpec, run_id: str, job_name: str, message: str) -> list[Notification]:
    """A failed run is critical: it goes wherever the routing sends critical discrepancies."""
    payload = {"event": "run_failed", "reconciliation": spec.name, "run_id": run_id, "run_url": run_url(spec, run_id),
               "job_name": job_name, "message": message[:2000], "source_a": spec.source_names[0],
               "source_b": spec.source_names[1]}
    return [
        Notification(name, spec.notifications.destinations[name].type, "run_failed", f"run_failed:{spec.name}:{run_id}",
                     payload, tier="critical", run_id=run_id)
        for name in destinations_for(spec.routing, "critical")
        if spec.notifications.destinations[name].type not in DIGEST_TYPES
    ]


def held_run_notifications(spec: ReconciliationSpec, run_id: str, line: str) -> list[Notification]:
    """A run the export guard held is announced as a failed run, once per destination: keyed by
    its Dagster run id, so the run-failure sensor's own message for that run is not sent again."""
    return run_failure_notifications(spec, run_id.split(":", 1)[0], "export guard", line)


def plan_notifications(conn: sa.Connection, spec: ReconciliationSpec, outcome: RunOutcome) -> list[Notification]:
    """Every notification this run causes, in the order they must be delivered (thread parents first)."""
    url = run_url(spec, outcome.run_id)
    kinds = {name: dest.type for name, dest in spec.notifications.destinations.items()}
    opened = _load(conn, [*outcome.new_ids, *outcome.reopened_ids])
    openings = _openings(conn, spec, outcome, opened, url, kinds)

    shape = _run_shape(conn, outcome.run_id)
    run_rule = run_tier(spec.severity.run, shape) if opened else None
    summary_tier = highest([run_rule[0] if run_rule else None, *(r.severity for r in opened)])
    summary_dests = destinations_for(spec.routing, summary_tier) if run_rule else []
    summary = _summary_payload(spec, url, outcome.run_id, opened, shape, run_rule)
    header_key = run_key(spec.name, outcome.run_id)

    headers: list[Notification] = []
    replies: list[Notification] = []
    for dest in dict.fromkeys([*(n.destination for n in openings), *summary_dests]):
        mine = [n for n in openings if n.destination == dest]
        if kinds[dest] in DIGEST_TYPES:
            replies += [replace(n, status="in_digest") for n in mine]
        elif kinds[dest] in SLACK_TYPES:  # a thread: the run summary, then one reply each (or one aggregate)
            aggregated = len(mine) > spec.notifications.aggregate_above
            tier = highest([*(n.tier for n in mine), summary_tier if dest in summary_dests else None])
            headers.append(Notification(dest, kinds[dest], "run_summary", header_key,
                                        {**summary, **_routed_here(spec, mine, aggregated)}, tier=tier,
                                        run_id=outcome.run_id))
            replies += [replace(n, parent_key=header_key, status="covered" if aggregated else "pending") for n in mine]
        else:
            if dest in summary_dests:
                headers.append(Notification(dest, kinds[dest], "run_summary", header_key, summary, tier=summary_tier,
                                            run_id=outcome.run_id))
            replies += mine
    return headers + replies + _resolutions(conn, spec, outcome, url, kinds)


def _openings(conn, spec: ReconciliationSpec, outcome: RunOutcome, opened: list, url: str,
              kinds: dict) -> list[Notification]:
    """One notification per (destination, opened or escalated discrepancy), never one a destination already had."""
    items: dict[tuple[str, str], Notification] = {}
    for row in opened:
        for dest in destinations_for(spec.routing, row.severity, row.kind, row.field):
            items[(dest, opening_key(row.id, row.occurrence))] = _about(
                row, spec, url, outcome.run_id, dest, kinds[dest], "opened", row.severity)
    told = outbox.existing_keys(conn, outcome.escalated_ids)
    for row in _load(conn, outcome.escalated_ids):
        for dest in destinations_for(spec.routing, "critical", row.kind, row.field):
            key = (dest, opening_key(row.id, row.occurrence))
            if key not in told and key not in items:
                items[key] = _about(row, spec, url, outcome.run_id, dest, kinds[dest], "escalated", "critical")
    return list(items.values())


def _resolutions(conn, spec: ReconciliationSpec, outcome: RunOutcome, url: str, kinds: dict) -> list[Notification]:
    """Close what was sent: one resolve per destination told of the current occurrence's opening."""
    resolved = {row.id: row for row in _load(conn, outcome.resolved_ids)}
    per_dest: dict[str, list[Notification]] = {}
    for told in outbox.openings(conn, resolved):
        row = resolved[told.discrepancy_id]
        if told.occurrence != row.occurrence or told.destination_type in DIGEST_TYPES or told.destination not in kinds:
            continue
        per_dest.setdefault(told.destination, []).append(_resolution(row, told, spec, url, outcome.run_id))
    notes: list[Notification] = []
    for dest, mine in per_dest.items():
        if kinds[dest] in SLACK_TYPES and len(mine) > spec.notifications.aggregate_above:
            payload = {**_summary_payload(spec, url, outcome.run_id, [], None, None),
                       **_routed_here(spec, mine, True), "resolved": len(mine)}
            notes.append(Notification(dest, kinds[dest], "resolved_summary", f"resolved:{spec.name}:{outcome.run_id}",
                                      payload, tier="info", run_id=outcome.run_id))
            mine = [replace(n, status="covered") for n in mine]
        notes += mine
    return notes


def missing_resolutions(conn: sa.Connection, spec: ReconciliationSpec) -> list[Notification]:
    """Resolves owed for discrepancies resolved outside a run (by an operator): an opening was
    sent for the current occurrence, the discrepancy is resolved, no resolve was written."""
    o, r, d = outbox_table, outbox_table.alias("r"), discrepancies
    owed = sa.select(o).join(d, d.c.id == o.c.discrepancy_id).where(
        o.c.reconciliation == spec.name, o.c.event.in_(("opened", "escalated")), o.c.destination_type.not_in(DIGEST_TYPES),
        d.c.status == "resolved", o.c.occurrence == d.c.occurrence,
        ~sa.exists().where(r.c.destination == o.c.destination, r.c.discrepancy_id == o.c.discrepancy_id,
                           r.c.occurrence == o.c.occurrence, r.c.event == "resolved"),
    ).order_by(o.c.id)
    told = conn.execute(owed).all()
    current = {row.id: row for row in _load(conn, {t.discrepancy_id for t in told})}
    destinations = spec.notifications.destinations
    return [_resolution(current[t.discrepancy_id], t, spec, None, None) for t in told if t.destination in destinations]


def _resolution(row, told, spec: ReconciliationSpec, url: str | None, run_id: str | None) -> Notification:
    note = _about(row, spec, url, run_id, told.destination, told.destination_type, "resolved", told.tier)
    return replace(note, key=f"resolve:{row.id}:{row.occurrence}", parent_key=told.parent_key)


# --------------------------------------------------------------------------- payloads


def _about(row, spec, url, run_id, dest, dest_type, event, tier) -> Notification:
    payload = {
        "event": event, "reconciliation": spec.name, "discrepancy_id": row.id, "kind": row.kind, "key": row.key,
        "field": row.field, "reason": row.reason, "detail": row.detail, "value_a": row.value_a,
        "value_b": row.value_b, "difference": row.difference, "severity": row.severity, "tier": tier,
        "status": row.status, "first_seen": _iso(row.first_seen), "opened_at": _iso(row.opened_at),
        "resolved_at": _iso(row.resolved_at), "occurrence": row.occurrence, "source_a": spec.source_names[0],
        "source_b": spec.source_names[1], "run_id": run_id, "run_url": url,
    }
    if row.systems is not None:  # N-way: the reference's value against the odd ones out's, and every system
        payload.update(source_a=row.reference_system or "reference", source_b=row.odd_ones_out or "others",
                       systems=row.systems, odd_ones_out=row.odd_ones_out, reference_system=row.reference_system,
                       system_values=row.system_values)
    return Notification(dest, dest_type, event, opening_key(row.id, row.occurrence), payload, tier=tier,
                        discrepancy_id=row.id, occurrence=row.occurrence, run_id=run_id)


def _summary_payload(spec, url, run_id, opened, shape: RunShape | None, run_rule) -> dict:
    return {
        "event": "run_summary", "reconciliation": spec.name, "run_id": run_id, "run_url": url,
        "source_a": spec.source_names[0], "source_b": spec.source_names[1],
        "opened": len(opened), "opened_by_tier": dict(Counter(r.severity for r in opened)),
        "records": shape.records if shape else None, "affected": shape.affected if shape else None,
        "run_tier": run_rule[0] if run_rule else None, "run_tier_reason": run_rule[1] if run_rule else None,
        "aggregated": False, "routed_here": 0, "by_kind_field": [], "examples": [],
    }


def _routed_here(spec: ReconciliationSpec, mine: list[Notification], aggregated: bool) -> dict:
    counts = Counter((n.payload["kind"], n.payload["field"]) for n in mine)
    ranked = sorted(mine, key=lambda n: (TIER_RANK.get(n.tier or "", 9), n.payload["kind"], n.payload["key"]))
    return {
        "routed_here": len(mine), "aggregated": aggregated, "aggregate_above": spec.notifications.aggregate_above,
        "by_kind_field": [[kind, field, count] for (kind, field), count in counts.most_common()] if aggregated else [],
        "examples": [n.payload for n in ranked[: spec.notifications.top_examples]] if aggregated else [],
    }


# --------------------------------------------------------------------------- reads (inside the run's transaction)


def _load(conn: sa.Connection, ids: Iterable[str]) -> list[sa.Row]:
    d = discrepancies
    rows = []
    for chunk in chunks(list(dict.fromkeys(ids))):
        rows += conn.execute(sa.select(d).where(d.c.id.in_(chunk))).all()
    return sorted(rows, key=lambda r: (TIER_RANK.get(r.severity, 9), r.kind, r.key, r.field or ""))


def _run_shape(conn: sa.Connection, run_id: str) -> RunShape:
    """Records that disagree in this run (distinct keys staged) out of the records compared.
    Runs inside apply_run, before the staging rows of the run are removed."""
    affected = conn.scalar(sa.select(sa.func.count(sa.distinct(staging.c.key))).where(staging.c.run_id == run_id))
    row = conn.execute(sa.select(runs.c.rows_a, runs.c.rows_b, runs.c.matched).where(runs.c.run_id == run_id)).first()
    records = None
    if row is not None and None not in (row.rows_a, row.rows_b, row.matched):
        records = row.rows_a + row.rows_b - row.matched  # a matched pair is one record
    return RunShape(affected or 0, records)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
