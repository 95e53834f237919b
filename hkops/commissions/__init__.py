"""Commissions (佣金), settlement batches and withdrawals: the money side of distribution (issue 10)."""
