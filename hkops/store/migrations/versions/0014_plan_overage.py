"""plans: overage rates beyond the monthly allowances (issue 11)

Revision ID: 0014
Revises: 0011
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('overage_data_fen_per_gb', sa.Integer(), server_default='500', nullable=False))
        batch_op.add_column(sa.Column('overage_voice_fen_per_min', sa.Integer(), server_default='15', nullable=False))
        batch_op.add_column(sa.Column('overage_sms_fen', sa.Integer(), server_default='10', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.drop_column('overage_sms_fen')
        batch_op.drop_column('overage_voice_fen_per_min')
        batch_op.drop_column('overage_data_fen_per_gb')
