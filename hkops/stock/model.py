"""Stock rules: kinds of locations and of moves. No I/O here."""

from __future__ import annotations

from enum import StrEnum


class LocationKind(StrEnum):
    WAREHOUSE = "warehouse"
    AGENT = "agent"
    VIRTUAL = "virtual"


#: Virtual locations: the other end of receipts, sales, scrapping and count losses. They
#: exist as rows of stock_locations so every ledger row names two real rows; on-hand
#: figures leave them out.
VENDOR, CUSTOMER, SCRAP, MISSING = "VENDOR", "CUSTOMER", "SCRAP", "MISSING"
VIRTUAL = {VENDOR: "Vendors (receipts)", CUSTOMER: "Customers (sold)", SCRAP: "Scrapped",
           MISSING: "Missing at a count"}


class MoveKind(StrEnum):
    RECEIPT = "receipt"  # VENDOR -> warehouse
    TRANSFER = "transfer"  # location -> location
    SALE = "sale"  # location -> CUSTOMER (an order shipped)
    RETURN = "return"  # CUSTOMER -> location, or agent -> warehouse
    SCRAP = "scrap"  # location -> SCRAP (faulty card destroyed)
    COUNT = "count"  # -> MISSING, or from where it was thought to be -> where it was counted
