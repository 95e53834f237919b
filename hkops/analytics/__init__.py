"""Statistics and analysis: usage (DuckDB over the Parquet usage store); sales, number planning and
forecasts written as Ibis expressions over the hkops tables (read by :mod:`hkops.analytics._state`),
with checked filters (:mod:`~hkops.analytics.filters`) and export (:mod:`~hkops.analytics.export`)."""
