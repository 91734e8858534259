"""The tracker's tables. Plain SQL tables, meant to be read by BI tools too (docs/tracker.md).

The schema is created and changed only by the Alembic migrations in ``migrations/``;
this module describes it for queries.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

OPEN_STATUSES = ("new", "acknowledged", "escalated", "muted")
STATUSES = (*OPEN_STATUSES, "resolved")

discrepancies = sa.Table(
    "recon_discrepancies",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("reconciliation", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("field", sa.String(128)),
    sa.Column("reason", sa.String(64)),
    sa.Column("value_a", sa.Text),
    sa.Column("value_b", sa.Text),
    sa.Column("difference", sa.Float),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text),
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

# Append-only: one row per reconciliation run that wrote to the tracker.
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
    sa.Column("outcome", sa.String(16), nullable=False),
)

# Scratch space for one run's discrepancies and scope; rows are tagged by run and removed in
# the same transaction that writes them, so they never outlive the run.
staging = sa.Table(
    "recon_staging",
    metadata,
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("id", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("field", sa.String(128)),
    sa.Column("reason", sa.String(64)),
    sa.Column("value_a", sa.Text),
    sa.Column("value_b", sa.Text),
    sa.Column("difference", sa.Float),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text),
)

scope_keys = sa.Table(
    "recon_scope_keys",
    metadata,
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
)
