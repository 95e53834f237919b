"""incremental commission accrual: the accrual watermark and ledger indexes (issue 10)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa
import hkops.store.schema


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('commission_accrual',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('audit_id', sa.BigInteger(), nullable=False),
    sa.Column('month_end', sa.Date(), nullable=True),
    sa.Column('until', sa.Date(), nullable=True),
    sa.Column('scheme_id', sa.BigInteger(), nullable=False),
    sa.Column('changed_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_commission_accrual'))
    )
    with op.batch_alter_table('commission_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_commission_entries_agent_id_state'))
        # Only entries in a batch: accrual inserts entries outside any, and never pays for indexing them.
        batch_op.drop_index(batch_op.f('ix_commission_entries_batch_id'))
        batch_op.create_index(batch_op.f('ix_commission_entries_batch_id'), ['batch_id'], unique=False,
                              sqlite_where=sa.text('batch_id IS NOT NULL'),
                              postgresql_where=sa.text('batch_id IS NOT NULL'))
        batch_op.create_index(batch_op.f('ix_commission_entries_agent_id_state_amount_fen'),
                              ['agent_id', 'state', 'amount_fen'], unique=False)
        batch_op.create_index(batch_op.f('ix_commission_entries_state_eligible_on'), ['state', 'eligible_on'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('commission_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_commission_entries_state_eligible_on'))
        batch_op.drop_index(batch_op.f('ix_commission_entries_agent_id_state_amount_fen'))
        batch_op.drop_index(batch_op.f('ix_commission_entries_batch_id'))
        batch_op.create_index(batch_op.f('ix_commission_entries_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_commission_entries_agent_id_state'), ['agent_id', 'state'], unique=False)
    op.drop_table('commission_accrual')
