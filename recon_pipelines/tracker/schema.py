"""The tracker's tables. Plain SQL tables, meant to be read by BI tools too (docs/tracker.md).

The schema is created and changed only by the Alembic migrations in ``migrations/``;
this module describes it for queries.
"""

from __future__ import annotations

import sqlalchemy as sa

from recon_pipelines.tracker.values import LosslessText

metadata = sa.MetaData()

OPEN_STATUSES = ("new", "acknowledged", "escalated", "muted")
STATUSES = (*OPEN_STATUSES, "resolved")


def _found(primary_key: bool) -> list[sa.Column]:
    """The columns of a discrepancy as the engine reports it (the tracker adds its state)."""
    return [
        sa.Column("id", sa.String(32), primary_key=primary_key, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", LosslessText, nullable=False),
        sa.Column("field", sa.Text),  # any column name (migration 0004 widened it from 128)
        sa.Column("reason", sa.String(64)),
        sa.Column("value_a", LosslessText),
        sa.Column("value_b", LosslessText),
        sa.Column("difference", sa.Float),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("detail", LosslessText),
        # N-way reconciliations (migration 0008); null for two sources.
        sa.Column("systems", sa.Text),  # comma-separated: the systems holding the record
        sa.Column("odd_ones_out", sa.Text),  # comma-separated: the systems that disagree with the reference
        sa.Column("reference_system", sa.String(64)),
        sa.Column("system_values", LosslessText),  # JSON: system -> value
    ]


discrepancies = sa.Table(
    "recon_discrepancies",
    metadata,
    *_found(primary_key=True),
    sa.Column("reconciliation", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),  # start of the current occurrence
    sa.Column("times_seen", sa.Integer, nullable=False),
    sa.Column("consecutive_runs", sa.Integer, nullable=False),
    sa.Column("occurrence", sa.Integer, nullable=False),
    sa.Column("last_run_id", sa.String(64)),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Column("resolution", sa.String(16)),
    sa.Column("assignee", sa.String(128)),
    sa.Column("muted_until", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Append-only: every status change, by whom, why, in which run.
events = sa.Table(
    "recon_discrepancy_events",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("discrepancy_id", sa.String(32), nullable=False),
    sa.Column("reconciliation", sa.String(128), nullable=False),
    sa.Column("from_status", sa.String(16)),
    sa.Column("to_status", sa.String(16)),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("run_id", sa.String(64)),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# One row per reconciliation run that wrote to the tracker. A run the export guard held is
# ``suspicious`` (its discrepancies wait in staging) until an operator accepts it.
RUN_OUTCOMES = ("ok", "suspicious", "accepted")
APPLIED_OUTCOMES = ("ok", "accepted")
runs = sa.Table(
    "recon_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("reconciliation", sa.String(128), nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("rows_a", sa.BigInteger),
    sa.Column("rows_b", sa.BigInteger),
    sa.Column("matched", sa.BigInteger),
    sa.Column("discrepancies", sa.BigInteger),
    sa.Column("new", sa.BigInteger),
    sa.Column("resolved", sa.BigInteger),
    sa.Column("summary", sa.JSON),
    sa.Column("outcome", sa.String(16), nullable=False),  # RUN_OUTCOMES
    # The export guard (migration 0005): why a run was held, what it saw, who let it through.
    sa.Column("guard_note", sa.Text),
    sa.Column("key_sample", sa.JSON),
    sa.Column("accepted_by", sa.String(128)),
    sa.Column("accepted_at", sa.DateTime(timezone=True)),
)

# Scratch space for one run's discrepancies and scope; rows are tagged by run and removed in
# the same transaction that writes them, so they never outlive the run, except for a run held
# by the export guard: its rows stay until it is accepted (they are what accepting applies).
staging = sa.Table(
    "recon_staging",
    metadata,
    sa.Column("run_id", sa.String(64), nullable=False),
    *_found(primary_key=False),
)

scope_keys = sa.Table(
    "recon_scope_keys",
    metadata,
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("key", LosslessText, nullable=False),
)

# --------------------------------------------------------------------------- remediation (migration 0003)

# Notifications waiting for, or done with, delivery; written in the run's transaction.
# Unique per (destination, idempotency_key): a message exists once per destination.
# ``claims`` (migration 0004) counts the claims of a row: the fencing token of the current one.
OUTBOX_STATUSES = ("pending", "delivered", "logged", "covered", "in_digest", "failed")
outbox = sa.Table(
    "recon_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("reconciliation", sa.String(128), nullable=False),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("destination_type", sa.String(16), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False),
    sa.Column("discrepancy_id", sa.String(32)),
    sa.Column("occurrence", sa.Integer),
    sa.Column("run_id", sa.String(64)),
    sa.Column("tier", sa.String(16)),
    sa.Column("parent_key", sa.String(255)),  # the thread this message replies in (same destination)
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("locked_by", sa.String(128)),
    sa.Column("locked_until", sa.DateTime(timezone=True)),
    sa.Column("claims", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("external_ref", sa.String(255)),  # Slack ts, incident id, HTTP status
    sa.Column("thread_ref", sa.String(255)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("destination", "idempotency_key", name="uq_recon_outbox_destination_key"),
)

# The incident queue: consumers claim rows with FOR UPDATE SKIP LOCKED (remediation/queue.py).
INCIDENT_STATUSES = ("pending", "claimed", "done", "resolved")
incidents = sa.Table(
    "recon_incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("queue", sa.String(64), nullable=False),
    sa.Column("dedup_key", sa.String(255), nullable=False),
    sa.Column("reconciliation", sa.String(128), nullable=False),
    sa.Column("discrepancy_id", sa.String(32)),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("title", LosslessText, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claimed_by", sa.String(128)),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("queue", "dedup_key", name="uq_recon_incidents_queue_key"),
)

# Append-only: every automatic fix applied (or attempted), with the values before and after.
fixes = sa.Table(
    "recon_fixes",
    metadata,
    sa.Column("fix_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("discrepancy_id", sa.String(32), nullable=False),
    sa.Column("reconciliation", sa.String(128), nullable=False),
    sa.Column("key", LosslessText, nullable=False),
    sa.Column("field", sa.Text, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("value_before", LosslessText),
    sa.Column("value_after", LosslessText),
    sa.Column("outcome", sa.String(16), nullable=False),  # applied, skipped, failed
    sa.Column("error", sa.Text),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# --------------------------------------------------------------------------- web (migration 0006)

WEB_ROLES = ("viewer", "operator", "admin")  # each can do what the ones before it can
web_users = sa.Table(
    "recon_web_users",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),  # argon2id, never the password
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

web_settings = sa.Table(
    "recon_web_settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Event-driven runs (streams/expectations.py): a change awaiting its counterpart, per key.
stream_expectations = sa.Table(
    "recon_stream_expectations",
    metadata,
    sa.Column("reconciliation", sa.String(128), primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("waiting_for", sa.String(1), nullable=False),
    sa.Column("op", sa.String(8), nullable=False),
    sa.Column("values_digest", sa.String(32), nullable=False),
    sa.Column("event_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("counterpart_at", sa.DateTime(timezone=True)),
    sa.Column("claim", sa.String(64)),
)

# The last change handled per source (a slot's commit LSN, a stream sequence), for idempotency.
stream_positions = sa.Table(
    "recon_stream_positions",
    metadata,
    sa.Column("reconciliation", sa.String(128), primary_key=True),
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("position", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Suggested matches an operator decided (migration 0010, tracker/matches.py).
MATCH_DECISIONS = ("confirmed", "rejected")
match_decisions = sa.Table(
    "recon_match_decisions",
    metadata,
    sa.Column("reconciliation", sa.String(128), primary_key=True),
    sa.Column("key_a", LosslessText, primary_key=True),
    sa.Column("key_b", LosslessText, primary_key=True),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("discrepancy_id", sa.String(32), nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
)

# --------------------------------------------------------------------------- schema drift (migration 0009)

# Each side's source schema as the last run saw it (schema_diff.py): the baseline of the next run.
source_schemas = sa.Table(
    "recon_source_schemas",
    metadata,
    sa.Column("reconciliation", sa.String(128), primary_key=True),
    sa.Column("side", sa.String(1), primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("columns", sa.JSON, nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)
