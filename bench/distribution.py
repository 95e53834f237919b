"""Distribution: ``python -m bench distribution --json``.

Stock figures come from ``bench/stock.py`` (receive_100k_s, transfer_100k_s and their
anchors), order figures from ``bench/orders.py`` (orders_per_s and its anchors).
"""

from __future__ import annotations

GOALS = {"receive_100k_s": "<= 5", "transfer_100k_s": "<= 5", "orders_per_s": ">= 500"}


def run(log=None) -> dict:
    from bench import orders, stock

    result = {}
    result.update(stock.run(log=log))
    result.update(orders.run(log=log))
    result["goals"] = GOALS
    return result
