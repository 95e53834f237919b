"""Procurement (采购): vendors, purchase orders, receiving vendor card files against them."""
