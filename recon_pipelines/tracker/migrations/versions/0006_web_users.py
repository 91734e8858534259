"""The web triage page: its users, its settings, and the indexes its queue pages on.

- ``recon_web_users``: who may sign in, with an argon2 hash and a role (viewer, operator, admin).
- ``recon_web_settings``: the session-signing secret generated on first start (shared by every
  web process on the same tracker, so a restart does not sign everyone out).
- Indexes for keyset pagination of the queue (``ORDER BY opened_at, id`` either way, with
  ``(opened_at, id) < cursor``): a partial one over the open statuses for the default view, and
  composite ones that lead with a filter column (reconciliation, status, assignee).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_OPEN = sa.text("status IN ('new', 'acknowledged', 'escalated', 'muted')")
_INDEXES = {
    "ix_recon_disc_open_opened_at": (["opened_at", "id"], _OPEN),
    "ix_recon_disc_opened_at": (["opened_at", "id"], None),  # status "all"
    "ix_recon_disc_recon_opened_at": (["reconciliation", "opened_at", "id"], None),
    "ix_recon_disc_status_opened_at": (["status", "opened_at", "id"], None),
    "ix_recon_disc_assignee_opened_at": (["assignee", "opened_at", "id"], None),
}


def upgrade() -> None:
    op.create_table(
        "recon_web_users",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "recon_web_settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    for name, (columns, where) in _INDEXES.items():
        op.create_index(name, "recon_discrepancies", columns, postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name="recon_discrepancies")
    op.drop_table("recon_web_settings")
    op.drop_table("recon_web_users")
