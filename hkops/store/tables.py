"""Imports every table module, so that ``metadata`` knows the whole schema."""

from hkops import audit, carriers, settings  # noqa: F401
from hkops.cards import tables as card_tables  # noqa: F401
from hkops.numbers import tables as number_tables  # noqa: F401
from hkops.subscribers import tables as subscriber_tables  # noqa: F401
from hkops.store.schema import metadata

__all__ = ["metadata"]
