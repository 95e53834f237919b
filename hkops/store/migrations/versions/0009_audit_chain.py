"""tamper-evident audit trail: records chained by HMAC, UPDATE/DELETE/TRUNCATE refused

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29

The records written before this revision are chained in id order with the key from the
audit key file (created here when missing), and the database gets the triggers that
refuse changing or deleting audit records (hkops.audit.create_guards).

Note for later migrations: on SQLite a batch_alter_table that recreates audit_log drops
these triggers; such a migration must call hkops.audit.create_guards again.
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    from hkops import audit

    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
    conn = op.get_bind()
    audit.rechain(conn)
    audit.create_guards(conn)


def downgrade() -> None:
    from hkops import audit

    audit.drop_guards(op.get_bind())
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
