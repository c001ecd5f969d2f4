"""Metrics with TF Serving's names and semantics, and their Prometheus exposition.

- ``metrics``: the metric types (``Counter``, ``Gauge``, ``Sampler``: TensorFlow's monitoring
  library's) whose cells are written per thread and read by merging at collection time;
- ``buckets``: a ``Sampler``'s bucket limits (``Buckets::Exponential`` / ``Explicit``);
- ``collection_registry``: where metrics are defined and collected from;
- ``prometheus_exporter``: the text TF Serving's ``PrometheusExporter`` serves;
- ``monitoring_config``: ``--monitoring_config_file`` (``MonitoringConfig``);
- ``serving_metrics``: TF Serving's metrics and the functions that record them;
- ``request_counts``: the compiled request paths' own counts of them, summed in at collection;
- ``server_metrics``: tfsfast's own (models, process, GC, build).
"""
