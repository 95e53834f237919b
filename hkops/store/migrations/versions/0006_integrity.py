"""one owner per shared state: partial unique indexes for open orders, live SIMs, live bindings; order expiry

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

#: (index, table, condition): at most one open order, one live SIM, one live holder per number.
_INDEXES = (
    ("uq_orders_open_msisdn", "orders",
     "msisdn IS NOT NULL AND state IN ('verifying', 'approved', 'paid', 'allocated', 'shipped', 'delivered')"),
    ("uq_sims_live_msisdn", "sims", "state IN ('paired', 'active', 'suspended', 'lost')"),
    ("uq_subscriber_numbers_live_msisdn", "subscriber_numbers", "until IS NULL"),
)


def upgrade() -> None:
    for name, table, condition in _INDEXES:
        op.create_index(name, table, ["msisdn"], unique=True, sqlite_where=sa.text(condition),
                        postgresql_where=sa.text(condition))


def downgrade() -> None:
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
