"""live monitoring: alerts and the monitor's watermarks on the usage feed (issue 11)

Revision ID: 0013
Revises: 0011
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa
import hkops.store.schema


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('severity', sa.String(length=8), nullable=False),
    sa.Column('subject', sa.String(length=40), nullable=False),
    sa.Column('window', sa.String(length=24), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('first_seen', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('hits', sa.BigInteger(), nullable=False),
    sa.Column('details', sa.Text(), nullable=True),
    sa.Column('raised_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('acknowledged_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=64), nullable=True),
    sa.Column('closed_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_by', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('rule', 'subject', 'window', name=op.f('uq_alerts_rule_subject_window'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_state_id'), ['state', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_subject'), ['subject'], unique=False)

    op.create_table('monitor_watermarks',
    sa.Column('consumer', sa.String(length=32), nullable=False),
    sa.Column('batch', sa.BigInteger(), nullable=False),
    sa.Column('records', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('consumer', name=op.f('pk_monitor_watermarks'))
    )


def downgrade() -> None:
    op.drop_table('monitor_watermarks')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_subject'))
        batch_op.drop_index(batch_op.f('ix_alerts_state_id'))

    op.drop_table('alerts')
