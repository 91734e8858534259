"""Remediation: the notification outbox, the incident queue and the log of automatic fixes.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Written in the tracker run's transaction, delivered afterwards: a notification exists
    # if and only if the change that caused it was committed.
    op.create_table(
        "recon_outbox",
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
        sa.Column("parent_key", sa.String(255)),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("locked_by", sa.String(128)),
        sa.Column("locked_until", TZ),
        sa.Column("last_error", sa.Text),
        sa.Column("external_ref", sa.String(255)),
        sa.Column("thread_ref", sa.String(255)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("delivered_at", TZ),
        sa.UniqueConstraint("destination", "idempotency_key", name="uq_recon_outbox_destination_key"),
    )
    op.create_index("ix_recon_outbox_due", "recon_outbox", ["status", "next_attempt_at"])
    op.create_index("ix_recon_outbox_discrepancy", "recon_outbox", ["discrepancy_id"])
    op.create_table(
        "recon_incidents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("dedup_key", sa.String(255), nullable=False),
        sa.Column("reconciliation", sa.String(128), nullable=False),
        sa.Column("discrepancy_id", sa.String(32)),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("claimed_at", TZ),
        sa.Column("completed_at", TZ),
        sa.Column("resolved_at", TZ),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("queue", "dedup_key", name="uq_recon_incidents_queue_key"),
    )
    op.create_index("ix_recon_incidents_claimable", "recon_incidents", ["queue", "status", "id"])
    op.create_table(
        "recon_fixes",
        sa.Column("fix_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("discrepancy_id", sa.String(32), nullable=False),
        sa.Column("reconciliation", sa.String(128), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("field", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("value_before", sa.Text),
        sa.Column("value_after", sa.Text),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index("ix_recon_fixes_discrepancy", "recon_fixes", ["discrepancy_id"])


def downgrade() -> None:
    for table in ("recon_fixes", "recon_incidents", "recon_outbox"):
        op.drop_table(table)
