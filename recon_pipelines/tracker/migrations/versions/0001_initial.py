"""The tracker's first schema: discrepancies, their event log, the run log, staging.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "recon_discrepancies",
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
        sa.Column("first_seen", TZ, nullable=False),
        sa.Column("last_seen", TZ, nullable=False),
        sa.Column("opened_at", TZ, nullable=False),
        sa.Column("times_seen", sa.Integer, nullable=False),
        sa.Column("consecutive_runs", sa.Integer, nullable=False),
        sa.Column("occurrence", sa.Integer, nullable=False),
        sa.Column("last_run_id", sa.String(64)),
        sa.Column("resolved_at", TZ),
        sa.Column("resolution", sa.String(16)),
        sa.Column("assignee", sa.String(128)),
        sa.Column("muted_until", TZ),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_recon_discrepancies_recon_status", "recon_discrepancies", ["reconciliation", "status"])
    op.create_index("ix_recon_discrepancies_recon_key", "recon_discrepancies", ["reconciliation", "key"])
    op.create_table(
        "recon_discrepancy_events",
        sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("discrepancy_id", sa.String(32), nullable=False),
        sa.Column("reconciliation", sa.String(128), nullable=False),
        sa.Column("from_status", sa.String(16)),
        sa.Column("to_status", sa.String(16)),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("run_id", sa.String(64)),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index("ix_recon_events_discrepancy", "recon_discrepancy_events", ["discrepancy_id"])
    op.create_table(
        "recon_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("reconciliation", sa.String(128), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("started_at", TZ),
        sa.Column("finished_at", TZ, nullable=False),
        sa.Column("rows_a", sa.BigInteger),
        sa.Column("rows_b", sa.BigInteger),
        sa.Column("matched", sa.BigInteger),
        sa.Column("discrepancies", sa.BigInteger),
        sa.Column("new", sa.BigInteger),
        sa.Column("resolved", sa.BigInteger),
        sa.Column("summary", sa.JSON),
        sa.Column("outcome", sa.String(16), nullable=False),
    )
    op.create_table(
        "recon_staging",
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
    op.create_index("ix_recon_staging_run_id", "recon_staging", ["run_id", "id"])
    op.create_table(
        "recon_scope_keys",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
    )
    op.create_index("ix_recon_scope_keys_run_key", "recon_scope_keys", ["run_id", "key"])


def downgrade() -> None:
    for table in ("recon_scope_keys", "recon_staging", "recon_runs", "recon_discrepancy_events", "recon_discrepancies"):
        op.drop_table(table)
