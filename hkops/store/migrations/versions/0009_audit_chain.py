"""STUB for h7's branch only: the lead keeps h6's real 0009 at merge

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
