"""The multi-level agent tree (代理)."""
