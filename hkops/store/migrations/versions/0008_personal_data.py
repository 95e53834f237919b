"""personal data that cannot be rebuilt: birth year instead of birth date, masks that hide more

subscribers.birth_date becomes subscribers.birth_year (filled from it). Every stored mask
(``110105********002X``) becomes the narrower one of hkops.ids.mask_id_text
(``11***************X``): in subscribers, orders and id_blacklist, and inside the texts that
quote one (order reasons, audit subjects, reasons and details). No key is needed: the new
mask shows a subset of what the old one showed. The downgrade cannot bring the hidden
characters back; it restores the column (as 1 January of the birth year) and leaves masks narrow.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

import datetime
import re

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# The old mask: area (6), 8 stars, sequence (3), check character; text around it is kept.
_OLD_MASK = re.compile(r"(\d{2})\d{4}\*{8}\d{3}([0-9X])")
_STARS = "*" * 15
_MASKED_TABLES = ("subscribers", "orders", "id_blacklist")
_TEXTS = [("orders", "id", ("reason",)), ("audit_log", "id", ("subject", "reason", "details"))]


def _table(name: str, *columns: str) -> sa.Table:
    return sa.table(name, *(sa.column(c) for c in columns))


def _narrow_masks() -> None:
    """Set-wise: one UPDATE per table, in SQL both databases speak."""
    for name in _MASKED_TABLES:
        t = _table(name, "id_masked")
        op.execute(t.update().where(sa.func.length(t.c.id_masked) == 18).values(
            id_masked=sa.func.substr(t.c.id_masked, 1, 2) + sa.literal(_STARS) + sa.func.substr(t.c.id_masked, 18, 1)))


def _narrow_texts() -> None:
    """Masks quoted inside free text: only the rows holding one are read and rewritten."""
    conn = op.get_bind()
    for name, key, columns in _TEXTS:
        t = _table(name, key, *columns)
        holding = sa.or_(*(t.c[c].like("%********%") for c in columns))
        rows = conn.execute(sa.select(t).where(holding)).all()
        changed = [{"k": row[0], **{c: _OLD_MASK.sub(rf"\1{_STARS}\2", v) if v else v
                                    for c, v in zip(columns, row[1:])}} for row in rows]
        if changed:
            conn.execute(t.update().where(t.c[key] == sa.bindparam("k"))
                         .values({c: sa.bindparam(c) for c in columns}), changed)


def upgrade() -> None:
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('birth_year', sa.Integer(), nullable=True))
    subscribers = _table("subscribers", "birth_year", "birth_date")
    op.execute(subscribers.update().values(
        birth_year=sa.cast(sa.extract("year", subscribers.c.birth_date), sa.Integer)))
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.alter_column('birth_year', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column('birth_date')
    _narrow_masks()
    _narrow_texts()


def downgrade() -> None:
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('birth_date', sa.Date(), nullable=True))
    subscribers = sa.table("subscribers", sa.column("birth_year", sa.Integer), sa.column("birth_date", sa.Date))
    conn = op.get_bind()
    years = conn.execute(sa.select(subscribers.c.birth_year).distinct()).scalars().all()
    for year in years:  # one UPDATE per distinct year, not per row
        conn.execute(subscribers.update().where(subscribers.c.birth_year == year)
                     .values(birth_date=sa.literal(datetime.date(year, 1, 1), sa.Date)))
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.alter_column('birth_date', existing_type=sa.Date(), nullable=False)
        batch_op.drop_column('birth_year')
