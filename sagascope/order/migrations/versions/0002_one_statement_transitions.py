"""saga_instances.failure_kind, and saga_guard() for one-statement saga writes on PostgreSQL

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Ends every multi-part saga write on PostgreSQL (sagascope/saga/store.py): raising
# rolls back every data-modifying CTE of the statement, so a write whose lease CAS (or a new
# saga's claim) matched no row writes nothing. The message prefix is store.GUARD_MESSAGE.
SAGA_GUARD = """
CREATE OR REPLACE FUNCTION saga_guard(ok boolean, meaning text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION 'saga guard: %', meaning USING ERRCODE = 'P0001';
    END IF;
    RETURN true;
END
$$
"""


def upgrade() -> None:
    with op.batch_alter_table("saga_instances") as batch:
        batch.add_column(sa.Column("failure_kind", sa.String(16), nullable=False, server_default=""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(SAGA_GUARD)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS saga_guard(boolean, text)")
    with op.batch_alter_table("saga_instances") as batch:
        batch.drop_column("failure_kind")
