"""The payment ledger: collections and refunds, and their reconciliation against orders."""
