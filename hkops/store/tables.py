"""Imports every table module, so that ``metadata`` knows the whole schema."""

from hkops import audit, carriers, settings
from hkops.agents import tables as agent_tables
from hkops.cards import tables as card_tables
from hkops.catalogue import tables as catalogue_tables
from hkops.commissions import tables as commission_tables
from hkops.monitoring import tables as monitoring_tables
from hkops.numbers import tables as number_tables
from hkops.orders import tables as order_tables
from hkops.payments import tables as payment_tables
from hkops.procurement import tables as procurement_tables
from hkops.security import tables as security_tables
from hkops.stock import tables as stock_tables
from hkops.subscribers import tables as subscriber_tables
from hkops.store.schema import metadata

#: Imported for their tables only: importing a module is what puts its tables on ``metadata``.
_TABLE_MODULES = (audit, carriers, settings, agent_tables, card_tables, catalogue_tables, commission_tables, monitoring_tables, number_tables, order_tables,
                  payment_tables, procurement_tables, security_tables, stock_tables, subscriber_tables)

__all__ = ["metadata"]
