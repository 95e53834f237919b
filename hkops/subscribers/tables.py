"""Tables of real-name registration: subscribers, the ID blacklist, number bindings.

The clear resident ID is never stored. Each subscriber row holds:

* ``resident_id_enc``: an AES-GCM keyring token bound to ``subscribers.resident_id:<id>``;
* ``resident_id_hash``: HMAC-SHA256 of the normalised ID (18 characters, upper-case) under
  the *lookup key*, so a person is found again, duplicates are refused and 一证五号 is
  counted without decrypting anything;
* ``id_masked``: the screen form ``11***************X`` (:func:`hkops.ids.mask_id_text`);
* ``birth_year``: all the checks keep of the birth date. Month and day are not stored: beside
  a mask they would let anyone rebuild the ID (intake reads them from the clear ID it is given).

The lookup key is 32 random bytes made on first use and kept in ``subscriber_keys``,
itself encrypted with the keyring (envelope encryption). It is listed in
:data:`SEALED_COLUMNS`, so ``hkops keys rotate`` re-encrypts it like any other secret and
``hkops keys retire`` refuses while it still uses the old key. Rotating the keyring hence
never changes a hash. The database alone does not give the lookup key (an unkeyed hash of
an 18-character ID would be brute-forced in hours: the ID space is ~10^11).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from hkops.security.crypto import SealedColumn
from hkops.store.schema import BigKey, UTCDateTime, metadata, partial_index

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    # Personal data, not on the must-encrypt list: kept plain, never logged or audited.
    Column("name", String(64), nullable=False),
    Column("resident_id_enc", Text, nullable=False),
    Column("resident_id_hash", String(64), nullable=False, unique=True),
    Column("id_masked", String(18), nullable=False),
    Column("birth_year", Integer, nullable=False),
    Column("gender", String(6), nullable=False),
    # E.164 form, e.g. +8613800138000.
    Column("contact", String(16), nullable=False),
    Column("address", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Index(None, "id_masked"),
)

id_blacklist = Table(
    "id_blacklist",
    metadata,
    Column("resident_id_hash", String(64), primary_key=True),
    Column("id_masked", String(18), nullable=False),
    Column("reason", Text, nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
    Column("added_by", String(64), nullable=False),
)

subscriber_numbers = Table(
    "subscriber_numbers",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("subscriber_id", BigInteger, ForeignKey("subscribers.id"), nullable=False),
    Column("msisdn", BigInteger, nullable=False),
    Column("carrier", String(32), nullable=False),
    Column("since", UTCDateTime, nullable=False),
    # None while the number is live; set when it is unbound (terminated, ported away...).
    Column("until", UTCDateTime),
    Index(None, "subscriber_id", "carrier"),
    Index(None, "msisdn"),
    # One live holder per number.
    partial_index("uq_subscriber_numbers_live_msisdn", "msisdn", "until IS NULL", unique=True),
)

subscriber_keys = Table(
    "subscriber_keys",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("key_enc", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

#: Every encrypted column of this module, for key rotation (hkops.security.crypto.rotate).
SEALED_COLUMNS = [
    SealedColumn(subscribers, "resident_id_enc", "subscribers.resident_id", "id"),
    SealedColumn(subscriber_keys, "key_enc", "subscriber_keys.key", "name"),
]
