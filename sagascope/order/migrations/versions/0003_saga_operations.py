"""saga operations: the timeline, PAUSED, manual resolution and the audit table (issue 20)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("saga_instances") as batch:
        batch.add_column(sa.Column("reference", sa.String(128), nullable=False, server_default=""))
        batch.add_column(sa.Column("history", sa.Text, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("paused_from", sa.String(16), nullable=False, server_default=""))
        batch.add_column(sa.Column("resolution", sa.String(16), nullable=False, server_default=""))
    op.create_index("ix_saga_instances_reference", "saga_instances", ["reference"])
    op.create_index("ix_saga_instances_correlation_id", "saga_instances", ["correlation_id"])
    op.create_table(
        "saga_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("saga_id", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("from_status", sa.String(16), nullable=False),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("correlation_id", sa.String(128), nullable=False),
    )
    op.create_index("ix_saga_audit_saga", "saga_audit", ["saga_id", "at"])


def downgrade() -> None:
    op.drop_table("saga_audit")
    op.drop_index("ix_saga_instances_correlation_id", "saga_instances")
    op.drop_index("ix_saga_instances_reference", "saga_instances")
    with op.batch_alter_table("saga_instances") as batch:
        for column in ("resolution", "paused_from", "history", "reference"):
            batch.drop_column(column)
