"""Orders keep the customer's resident ID only encrypted (and masked for display), and the
key rotation re-encrypts it like every other secret."""

from __future__ import annotations

import json

from sqlalchemy import select

from distribution_world import distribution, place_order, rid  # noqa: F401  (fixture)
from hkops.cli import keys as keys_cli
from hkops.lookup import lookup
from hkops.orders import service as orders
from hkops.orders.tables import SEALED_COLUMNS, orders as orders_table
from hkops.security.crypto import count_by_key, load_keyring, new_key, rotate
from test_subscribers import _all_stored_text


def test_an_order_stores_and_shows_the_resident_id_only_encrypted_or_masked(distribution):
    db = distribution.db
    order = place_order(db, 7)
    clear = rid(7)
    assert clear not in _all_stored_text(db)
    assert clear not in json.dumps(orders.order_detail(db, order.number), default=str, ensure_ascii=False)
    assert clear not in json.dumps(lookup(db, order.number), default=str, ensure_ascii=False)
    assert order.id_masked == clear[:2] + "*" * 15 + clear[-1:]
    with db.read() as conn:
        token = conn.execute(select(orders_table.c.resident_id_enc)
                             .where(orders_table.c.number == order.number)).scalar_one()
    assert load_keyring().decrypt(token, f"orders.resident_id:{order.number}") == clear


def test_key_rotation_reencrypts_the_orders_resident_ids(distribution):
    db = distribution.db
    numbers = [place_order(db, n).number for n in range(3)]
    assert all(column in keys_cli.sealed_columns() for column in SEALED_COLUMNS)
    first = load_keyring().active_id
    second = new_key()
    assert count_by_key(db, SEALED_COLUMNS) == {second: 0, first: 3, "other": 0}
    assert rotate(db, SEALED_COLUMNS) == 3
    assert count_by_key(db, SEALED_COLUMNS) == {second: 3, first: 0, "other": 0}
    keyring = load_keyring()
    with db.read() as conn:
        tokens = dict(conn.execute(select(orders_table.c.number, orders_table.c.resident_id_enc)).all())
    assert [keyring.decrypt(tokens[n], f"orders.resident_id:{n}") for n in numbers] == [rid(n) for n in range(3)]
