"""subscribers: real-name registration, ID blacklist, number bindings (一证五号), lookup key

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 19:55:10.957309
"""

from alembic import op
import sqlalchemy as sa
import hkops.store.schema


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('id_blacklist',
    sa.Column('resident_id_hash', sa.String(length=64), nullable=False),
    sa.Column('id_masked', sa.String(length=18), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('added_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('added_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('resident_id_hash', name=op.f('pk_id_blacklist'))
    )
    op.create_table('subscriber_keys',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('key_enc', sa.Text(), nullable=False),
    sa.Column('created_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_subscriber_keys'))
    )
    op.create_table('subscribers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('resident_id_enc', sa.Text(), nullable=False),
    sa.Column('resident_id_hash', sa.String(length=64), nullable=False),
    sa.Column('id_masked', sa.String(length=18), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=False),
    sa.Column('gender', sa.String(length=6), nullable=False),
    sa.Column('contact', sa.String(length=16), nullable=False),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('created_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscribers')),
    sa.UniqueConstraint('resident_id_hash', name=op.f('uq_subscribers_resident_id_hash'))
    )
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscribers_id_masked'), ['id_masked'], unique=False)
    op.create_table('subscriber_numbers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('subscriber_id', sa.BigInteger(), nullable=False),
    sa.Column('msisdn', sa.BigInteger(), nullable=False),
    sa.Column('carrier', sa.String(length=32), nullable=False),
    sa.Column('since', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('until', hkops.store.schema.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_subscriber_numbers_subscriber_id_subscribers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriber_numbers'))
    )
    with op.batch_alter_table('subscriber_numbers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriber_numbers_msisdn'), ['msisdn'], unique=False)
        batch_op.create_index(batch_op.f('ix_subscriber_numbers_subscriber_id_carrier'), ['subscriber_id', 'carrier'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('subscriber_numbers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscriber_numbers_subscriber_id_carrier'))
        batch_op.drop_index(batch_op.f('ix_subscriber_numbers_msisdn'))

    op.drop_table('subscriber_numbers')
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscribers_id_masked'))

    op.drop_table('subscribers')
    op.drop_table('subscriber_keys')
    op.drop_table('id_blacklist')
