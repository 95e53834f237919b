"""sim cards: batches received from vendors and the cards, secrets encrypted

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 19:41:17.810419
"""

from alembic import op
import sqlalchemy as sa
import hkops.store.schema


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sim_batches',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('carrier', sa.String(length=32), nullable=False),
    sa.Column('vendor', sa.String(length=64), nullable=True),
    sa.Column('source_file', sa.String(length=255), nullable=False),
    sa.Column('layout', sa.String(length=8), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('header', sa.Text(), nullable=True),
    sa.Column('header_enc', sa.Text(), nullable=True),
    sa.Column('received_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sim_batches')),
    sa.UniqueConstraint('name', name=op.f('uq_sim_batches_name'))
    )
    op.create_table('sims',
    sa.Column('iccid', sa.String(length=20), nullable=False),
    sa.Column('imsi', sa.String(length=15), nullable=False),
    sa.Column('batch_id', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='in_stock', nullable=False),
    sa.Column('location', sa.String(length=64), nullable=True),
    sa.Column('ki_enc', sa.Text(), nullable=False),
    sa.Column('opc_enc', sa.Text(), nullable=True),
    sa.Column('pin1_enc', sa.Text(), nullable=True),
    sa.Column('puk1_enc', sa.Text(), nullable=True),
    sa.Column('pin2_enc', sa.Text(), nullable=True),
    sa.Column('puk2_enc', sa.Text(), nullable=True),
    sa.Column('adm1_enc', sa.Text(), nullable=True),
    sa.Column('msisdn', sa.BigInteger(), nullable=True),
    sa.Column('extra', sa.Text(), nullable=True),
    sa.Column('extra_enc', sa.Text(), nullable=True),
    sa.Column('changed_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['sim_batches.id'], name=op.f('fk_sims_batch_id_sim_batches')),
    sa.PrimaryKeyConstraint('iccid', name=op.f('pk_sims')),
    sa.UniqueConstraint('imsi', name=op.f('uq_sims_imsi'))
    )
    with op.batch_alter_table('sims', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sims_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sims_msisdn'), ['msisdn'], unique=False)
        batch_op.create_index(batch_op.f('ix_sims_state_iccid'), ['state', 'iccid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sims', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sims_state_iccid'))
        batch_op.drop_index(batch_op.f('ix_sims_msisdn'))
        batch_op.drop_index(batch_op.f('ix_sims_batch_id'))

    op.drop_table('sims')
    op.drop_table('sim_batches')
