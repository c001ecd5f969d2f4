"""The Prometheus text TF Serving serves (``util/prometheus_exporter.cc``), from a registry.

For each metric, sorted by name: a ``# TYPE <name> counter|gauge|histogram`` line (no ``HELP``),
then its points. The name is the metric's with every character outside ``[a-zA-Z0-9_]`` turned
into ``:`` (``/tensorflow/serving/request_count`` is ``:tensorflow:serving:request_count``),
``_`` prefixed when it starts with a digit. Label names turn every character outside
``[a-zA-Z0-9]`` into ``_`` (same prefix rule); label values escape ``\\`` and ``"``, and also the
newline, which TF Serving leaves raw (a raw one would end the line and break the scrape).
Scalars are ``name{labels} value`` (int64 as an integer, double as Python's ``repr``);
histograms are one ``name_bucket{labels,le="<limit>"} <cumulative count>`` per bucket, the
last ``le="+Inf"``, then ``name_sum{labels} <sum>`` and ``name_count{labels} <count>``, numbers
written as absl's ``StrCat`` writes a double (six significant digits). Lines are joined by
``\\n`` and end with one.

``prometheus_client`` is not used to write this: its exposition differs from TF Serving's
(``HELP`` lines, ``_total`` and ``_created`` series for counters, its own name rules), and a
scraper configured for TF Serving must see TF Serving's text. Its parser reads this text in the
tests.
"""

from __future__ import annotations

import re

from tfsfast.monitoring.collection_registry import CollectionRegistry
from tfsfast.monitoring.metrics import HistogramValue, MetricDescriptor

__all__ = ["PROMETHEUS_PATH", "generate_page", "metric_name"]

# Where the page is served when the config names no path.
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"

_NAME_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9]")


def metric_name(name: str) -> str:
    new = _NAME_INVALID.sub(":", name)
    return "_" + new if new[:1].isdigit() else new


def _label_name(name: str) -> str:
    new = _LABEL_INVALID.sub("_", name)
    return "_" + new if new[:1].isdigit() else new


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _double(value: float) -> str:
    """absl::StrCat(double): ``%.6g``, with ``inf``/``nan`` as absl writes them."""
    return f"{value:.6g}"


def _labels(descriptor: MetricDescriptor, values: tuple[str, ...]) -> list[str]:
    return [f'{_label_name(name)}="{_label_value(value)}"'
            for name, value in zip(descriptor.label_names, values, strict=True)]


def _type(descriptor: MetricDescriptor) -> str:
    if descriptor.value_type == "histogram":
        return "histogram"
    return "counter" if descriptor.metric_kind == "cumulative" else "gauge"


def generate_page(registry: CollectionRegistry) -> str:
    lines: list[str] = []
    for metric in registry.collect():
        descriptor = metric.descriptor
        name = metric_name(descriptor.name)
        lines.append(f"# TYPE {name} {_type(descriptor)}")
        for point in metric.points:
            labels = _labels(descriptor, point.labels)
            value = point.value
            if isinstance(value, HistogramValue):
                prefix = f"{name}_bucket{{" + "".join(label + "," for label in labels)
                cumulative = 0
                last = len(value.bucket_counts) - 1
                for i, count in enumerate(value.bucket_counts):
                    cumulative += count
                    limit = _double(value.bucket_limits[i]) if i < last else "+Inf"
                    lines.append(f'{prefix}le="{limit}"}} {cumulative}')
                joined = ",".join(labels)
                lines.append(f"{name}_sum{{{joined}}} {_double(value.total)}")
                lines.append(f"{name}_count{{{joined}}} {cumulative}")
            else:
                text = str(int(value)) if descriptor.value_type == "int64" else repr(float(value))
                lines.append(f"{name}{{{','.join(labels)}}} {text}")
    return "\n".join(lines) + "\n"
