"""Statistics and analysis written once as Ibis expressions, run on DuckDB or Spark: usage over the
Parquet usage store, sales, number planning and forecasts over the hkops tables, all read through
:mod:`~hkops.analytics.engine`, with checked filters (:mod:`~hkops.analytics.filters`) and export
(:mod:`~hkops.analytics.export`)."""
