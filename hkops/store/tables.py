"""Imports every table module, so that ``metadata`` knows the whole schema."""

from hkops import audit, carriers, settings  # noqa: F401
from hkops.agents import tables as agent_tables  # noqa: F401
from hkops.cards import tables as card_tables  # noqa: F401
from hkops.catalogue import tables as catalogue_tables  # noqa: F401
from hkops.numbers import tables as number_tables  # noqa: F401
from hkops.orders import tables as order_tables  # noqa: F401
from hkops.payments import tables as payment_tables  # noqa: F401
from hkops.procurement import tables as procurement_tables  # noqa: F401
from hkops.stock import tables as stock_tables  # noqa: F401
from hkops.subscribers import tables as subscriber_tables  # noqa: F401
from hkops.store.schema import metadata

__all__ = ["metadata"]
