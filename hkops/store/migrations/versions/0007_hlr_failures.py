"""HLR refusals end pending moves visibly (failed outbox rows, the card's state before the move)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('provisioning_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('before_state', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('before_suspend_reason', sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column('suspend_reason', sa.String(length=24), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('provisioning_outbox', schema=None) as batch_op:
        batch_op.drop_column('suspend_reason')
        batch_op.drop_column('before_suspend_reason')
        batch_op.drop_column('before_state')
