"""Statistics: usage (DuckDB over the Parquet usage store) and sales (orders and their audit trail)."""
