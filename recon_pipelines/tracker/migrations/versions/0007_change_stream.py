"""Event-driven reconciliation: open expectations per key, and the last handled position per source.

- ``recon_stream_expectations``: a change seen on one side whose counterpart on the other side
  is still awaited (``waiting_for``) until ``due_at``; ``claim`` names the re-check run that
  settles it once the window has passed.
- ``recon_stream_positions``: the last change handled per source (a replication slot's commit
  LSN, a JetStream stream sequence), so a change delivered again after a restart is skipped.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recon_stream_expectations",
        sa.Column("reconciliation", sa.String(128), primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("waiting_for", sa.String(1), nullable=False),  # 'a' or 'b'
        sa.Column("op", sa.String(8), nullable=False),  # the awaited change: upsert or delete
        sa.Column("values_digest", sa.String(32), nullable=False),
        sa.Column("event_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counterpart_at", sa.DateTime(timezone=True)),  # a counterpart that did not match
        sa.Column("claim", sa.String(64)),
    )
    op.create_index("ix_recon_stream_expectations_due", "recon_stream_expectations", ["reconciliation", "claim", "due_at"])
    op.create_table(
        "recon_stream_positions",
        sa.Column("reconciliation", sa.String(128), primary_key=True),
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("position", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("recon_stream_positions")
    op.drop_index("ix_recon_stream_expectations_due", "recon_stream_expectations")
    op.drop_table("recon_stream_expectations")
