"""number resources

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 18:33:24.832181
"""

from alembic import op
import sqlalchemy as sa
import hkops.store.schema


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=40), nullable=False),
    sa.Column('action', sa.String(length=24), nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=True),
    sa.Column('to_state', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('details', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_subject_id'), ['subject', 'id'], unique=False)

    op.create_table('carriers',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('name_zh', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_carriers'))
    )
    op.create_table('number_blocks',
    sa.Column('prefix', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('carrier', sa.String(length=32), nullable=False),
    sa.Column('province', sa.String(length=32), nullable=False),
    sa.Column('city', sa.String(length=32), nullable=False),
    sa.Column('province_zh', sa.String(length=32), nullable=False),
    sa.Column('city_zh', sa.String(length=32), nullable=False),
    sa.Column('created_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('prefix', name=op.f('pk_number_blocks'))
    )
    op.create_table('number_grades',
    sa.Column('grade', sa.String(length=24), nullable=False),
    sa.Column('label', sa.String(length=120), nullable=False),
    sa.Column('level', sa.SmallInteger(), nullable=False),
    sa.Column('price_fen', sa.BigInteger(), nullable=False),
    sa.Column('min_monthly_fen', sa.BigInteger(), nullable=False),
    sa.Column('prepay_fen', sa.BigInteger(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('grade', name=op.f('pk_number_grades'))
    )
    op.create_table('numbers',
    sa.Column('msisdn', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('rev', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('grade', sa.String(length=24), nullable=False),
    sa.Column('level', sa.SmallInteger(), nullable=False),
    sa.Column('price_fen', sa.BigInteger(), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=True),
    sa.Column('reserved_until', hkops.store.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_holder', sa.String(length=64), nullable=True),
    sa.Column('quarantine_until', hkops.store.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('blocked_from', sa.String(length=12), nullable=True),
    sa.Column('changed_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('msisdn', name=op.f('pk_numbers'))
    )
    with op.batch_alter_table('numbers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_numbers_grade_msisdn'), ['grade', 'msisdn'], unique=False)
        batch_op.create_index(batch_op.f('ix_numbers_rev'), ['rev'], unique=False)
        batch_op.create_index(batch_op.f('ix_numbers_state_msisdn'), ['state', 'msisdn'], unique=False)

    op.create_table('settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_settings'))
    )


def downgrade() -> None:
    op.drop_table('settings')
    with op.batch_alter_table('numbers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_numbers_state_msisdn'))
        batch_op.drop_index(batch_op.f('ix_numbers_rev'))
        batch_op.drop_index(batch_op.f('ix_numbers_grade_msisdn'))

    op.drop_table('numbers')
    op.drop_table('number_grades')
    op.drop_table('number_blocks')
    op.drop_table('carriers')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_subject_id'))
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')
