"""Serial stock: locations, the append-only ledger of moves, transfers, counts, alerts."""
