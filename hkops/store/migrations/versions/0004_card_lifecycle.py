"""card lifecycle

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 20:02:18.000071
"""

from alembic import op
import sqlalchemy as sa
import hkops.store.schema


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('provisioning_outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('req', sa.String(length=40), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('iccid', sa.String(length=20), nullable=False),
    sa.Column('msisdn', sa.BigInteger(), nullable=False),
    sa.Column('other_iccid', sa.String(length=20), nullable=True),
    sa.Column('command', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('done_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provisioning_outbox')),
    sa.UniqueConstraint('req', name=op.f('uq_provisioning_outbox_req'))
    )
    with op.batch_alter_table('provisioning_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provisioning_outbox_iccid'), ['iccid'], unique=False)
        batch_op.create_index(batch_op.f('ix_provisioning_outbox_state_id'), ['state', 'id'], unique=False)

    with op.batch_alter_table('sims', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subscriber_id', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('network_sync', sa.String(length=8), server_default='none', nullable=False))
        batch_op.add_column(sa.Column('pending_action', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('suspend_reason', sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column('activated_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('replaced_by', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('swapped_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_sims_network_sync'), ['network_sync'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sims', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sims_network_sync'))
        batch_op.drop_column('swapped_at')
        batch_op.drop_column('replaced_by')
        batch_op.drop_column('activated_at')
        batch_op.drop_column('suspend_reason')
        batch_op.drop_column('pending_action')
        batch_op.drop_column('network_sync')
        batch_op.drop_column('subscriber_id')

    with op.batch_alter_table('provisioning_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_provisioning_outbox_state_id'))
        batch_op.drop_index(batch_op.f('ix_provisioning_outbox_iccid'))

    op.drop_table('provisioning_outbox')
