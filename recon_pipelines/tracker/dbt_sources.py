"""The tracker's tables as a dbt source (``recon dbt-sources``): a ``sources.yml`` that dbt users
drop in ``models/`` to write ``select * from {{ source('recon', 'open_discrepancies') }}``.

Only the tables meant to be read are described (docs/tracker.md); scratch tables (staging, scope
keys), the web accounts (password hashes) and the stream bookkeeping are left out. Each column's
meaning is written here once; a test holds every exported column to having one.
"""

from __future__ import annotations

import sqlalchemy as sa
import yaml

from recon_pipelines.tracker.schema import OPEN_STATUSES, STATUSES, discrepancies, events, fixes, incidents, outbox, runs
from recon_pipelines.tracker.schema import source_schemas

SOURCE_NAME = "recon"
_FOUND = {
    "id": "Stable id of the discrepancy (reconciliation, kind, key, field): the same disagreement keeps it across runs.",
    "kind": "field_mismatch, only_in_a, only_in_b, duplicate_key_a/b, invalid_key_a/b, unmapped_a/b, and the kinds of docs/spec-reference.md (Kinds and reasons).",
    "key": "The record's key (several key columns: a JSON array).",
    "field": "The compared field (null for record-level kinds).",
    "reason": "value_differs, null_in_a, null_in_b, both_null, type_mismatch_a, type_mismatch_b.",
    "value_a": "Side A's raw value (or record), as text.",
    "value_b": "Side B's raw value (or record), as text.",
    "difference": "|a - b| for numbers, seconds apart for timestamps.",
    "severity": "critical, warning or info (the spec's severity rules).",
    "detail": "The reason in words, and by how much.",
    "systems": "N-way specs: the systems holding the record, comma-separated (null for two sources).",
    "odd_ones_out": "N-way specs: the systems that disagree with the reference, comma-separated.",
    "reference_system": "N-way specs: the system the others are judged against (system of record or majority).",
    "system_values": "N-way specs: each system's value, as JSON.",
}
_OPEN = f"Open means status in ({', '.join(OPEN_STATUSES)})."
TABLES: dict[sa.Table | str, tuple[str, str, dict[str, str]]] = {
    discrepancies: ("discrepancies", "Every discrepancy ever found, one row each, with its current state. " + _OPEN, {
        **_FOUND,
        "reconciliation": "The spec's name.",
        "status": f"One of {', '.join(STATUSES)}.",
        "first_seen": "When a run first found it (UTC).",
        "last_seen": "When a run last found it (UTC).",
        "opened_at": "Start of the current occurrence (after a reopening, the reopening).",
        "times_seen": "How many runs found it.",
        "consecutive_runs": "How many runs in a row found it, up to the latest.",
        "occurrence": "1, then 2 after it was resolved and found again, and so on.",
        "last_run_id": "The tracker run id of the run that last found it (recon_runs.run_id).",
        "resolved_at": "When it was resolved (null while open).",
        "resolution": "auto (a run no longer found it) or manual.",
        "assignee": "Who took it (recon discrepancies assign).",
        "muted_until": "A mute's end (null when not muted).",
        "updated_at": "Last change to this row (UTC).",
    }),
    "recon_open_discrepancies": ("open_discrepancies", "The open discrepancies (a view over recon_discrepancies). " + _OPEN, {}),
    events: ("discrepancy_events", "Audit trail: every status change, by whom, why, in which run (append-only).", {
        "event_id": "Increasing id.",
        "discrepancy_id": "recon_discrepancies.id.",
        "reconciliation": "The spec's name.",
        "from_status": "Status before (null when found the first time).",
        "to_status": "Status after.",
        "action": "detected, reopened, escalated, resolved, unmuted, or an operator action (acknowledge, mute, ...).",
        "actor": "The operator, or recon-run for a run.",
        "note": "Why, as the operator wrote it.",
        "run_id": "The run that caused it (null for an operator's action).",
        "at": "When (UTC).",
    }),
    runs: ("runs", "One row per reconciliation run that wrote to the tracker.", {
        "run_id": "<Dagster or CLI run id>:<reconciliation>.",
        "reconciliation": "The spec's name.",
        "scope": "What the run compared: full, a day, a date range, or keys-<digest>.",
        "started_at": "When the run started (UTC).",
        "finished_at": "When it wrote to the tracker (UTC).",
        "rows_a": "Records read on side A.",
        "rows_b": "Records read on side B.",
        "matched": "Records paired by key.",
        "discrepancies": "Discrepancies the run found.",
        "new": "Of which new or reopened.",
        "resolved": "Discrepancies the run resolved.",
        "summary": "The run's figures (JSON).",
        "outcome": "ok, suspicious (held by the export guard) or accepted.",
        "guard_note": "Why the export guard held it.",
        "key_sample": "The key hashes the export guard compares (JSON).",
        "accepted_by": "Who accepted a held run.",
        "accepted_at": "When it was accepted.",
    }),
    fixes: ("fixes", "Every automatic fix applied or attempted, with the values before and after (append-only).", {
        "fix_id": "Increasing id.",
        "discrepancy_id": "recon_discrepancies.id.",
        "reconciliation": "The spec's name.",
        "key": "The record's key.",
        "field": "The field fixed.",
        "action": "sql_update or http_call.",
        "target": "What was changed (table or endpoint, no credentials).",
        "value_before": "The value before the fix.",
        "value_after": "The value written.",
        "outcome": "applied, skipped or failed.",
        "error": "Why it failed.",
        "actor": "Who or what applied it.",
        "run_id": "The run that applied it.",
        "at": "When (UTC).",
    }),
    incidents: ("incidents", "The incident queue: critical discrepancies awaiting a consumer.", {
        "id": "Increasing id.",
        "queue": "The destination's queue name.",
        "dedup_key": "One incident per discrepancy occurrence.",
        "reconciliation": "The spec's name.",
        "discrepancy_id": "recon_discrepancies.id.",
        "severity": "The discrepancy's severity.",
        "title": "One line for people.",
        "payload": "The discrepancy (JSON).",
        "status": "pending, claimed, done or resolved.",
        "attempts": "Claims so far.",
        "claimed_by": "The consumer holding it.",
        "claimed_at": "When it was claimed.",
        "completed_at": "When the consumer finished.",
        "resolved_at": "When its discrepancy was resolved.",
        "created_at": "When it was queued.",
    }),
    outbox: ("notifications", "Notifications waiting for, or done with, delivery (Slack, webhooks, digests).", {
        "id": "Increasing id.",
        "reconciliation": "The spec's name.",
        "destination": "The spec's destination name.",
        "destination_type": "slack, slack_digest, webhook, queue or log.",
        "event": "new, reopened, escalated, resolved or run_failed.",
        "idempotency_key": "One message per destination and event.",
        "discrepancy_id": "recon_discrepancies.id (null for run-level messages).",
        "occurrence": "The discrepancy's occurrence.",
        "run_id": "The run that wrote it.",
        "tier": "critical, warning or info.",
        "parent_key": "The message this one replies to (a Slack thread).",
        "payload": "The message (JSON).",
        "status": "pending, delivered, logged, covered, in_digest or failed.",
        "attempts": "Delivery attempts.",
        "next_attempt_at": "When the next attempt may run.",
        "locked_by": "The deliverer holding it.",
        "locked_until": "Until when.",
        "claims": "Claims so far (the current one's fencing token).",
        "last_error": "The last delivery error.",
        "external_ref": "Slack ts, incident id or HTTP status.",
        "thread_ref": "The Slack thread.",
        "created_at": "When it was written (in the run's transaction).",
        "delivered_at": "When it was delivered.",
    }),
    source_schemas: ("source_schemas", "Each side's source schema as the last run saw it (schema drift's baseline).", {
        "reconciliation": "The spec's name.",
        "side": "a or b.",
        "source": "The source, as the run named it (no credentials).",
        "columns": "The columns in order: name, declared type and type family (JSON).",
        "run_id": "The run that recorded it.",
        "recorded_at": "When (UTC).",
    }),
}


def sources_yaml(engine: sa.Engine, schema: str | None = None, database: str | None = None) -> str:
    """The dbt ``sources.yml`` for the tracker behind ``engine`` (the tables it has)."""
    inspector = sa.inspect(engine)
    present = set(inspector.get_table_names(schema=schema)) | set(inspector.get_view_names(schema=schema))
    schema = schema or inspector.default_schema_name
    if database is None and engine.dialect.name == "postgresql":
        database = engine.url.database
    tables = []
    for table, (name, description, described) in TABLES.items():
        identifier = table if isinstance(table, str) else str(table.name)
        if identifier not in present:
            continue
        like = discrepancies if isinstance(table, str) else table  # the view has the table's columns
        described = described or TABLES[discrepancies][2]
        tables.append({"name": name, "identifier": identifier, "description": description,
                       "columns": [{"name": str(c), "description": described[c]} for c in like.c.keys()]})
    source = {"name": SOURCE_NAME, "description": "The recon_pipelines discrepancy tracker (docs/tracker.md).",
              **({"database": database} if database else {}), "schema": schema, "tables": tables}
    header = ("# Generated by `recon dbt-sources`: the recon_pipelines tracker as a dbt source.\n"
              "# select * from {{ source('recon', 'open_discrepancies') }} where severity = 'critical'\n")
    return header + yaml.safe_dump({"version": 2, "sources": [source]}, sort_keys=False, allow_unicode=True, width=120)
