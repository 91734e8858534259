"""Suggested matches decided by an operator (engine/suggest.py, tracker/matches.py).

- ``recon_match_decisions``: one row per (reconciliation, key A, key B) an operator confirmed
  or rejected. Confirmed pairs are paired by later runs; decided pairs are not suggested again.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recon_match_decisions",
        sa.Column("reconciliation", sa.String(128), primary_key=True),
        sa.Column("key_a", sa.Text, primary_key=True),
        sa.Column("key_b", sa.Text, primary_key=True),
        sa.Column("decision", sa.String(16), nullable=False),  # confirmed or rejected
        sa.Column("discrepancy_id", sa.String(32), nullable=False),  # the suggestion decided
        sa.Column("score", sa.Float),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("recon_match_decisions")
