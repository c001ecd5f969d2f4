"""``--monitoring_config_file``: TF Serving's ``MonitoringConfig`` text proto.

``prometheus_config { enable: true path: "/metrics" }`` serves the Prometheus page on the REST
port at ``path`` (empty: ``/monitoring/prometheus/metrics``), as TF Serving's
``http_server.cc`` does; without ``enable`` nothing is served.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import text_format

from tfsfast.monitoring.prometheus_exporter import PROMETHEUS_PATH
from tfsfast.server.grpc.protos import message_class
from tfsfast.util.status import Code, ServingError

__all__ = ["PrometheusConfig", "read_monitoring_config"]


@dataclass(frozen=True)
class PrometheusConfig:
    """Whether the page is served, and where."""

    enable: bool = False
    path: str = PROMETHEUS_PATH


def read_monitoring_config(path: str) -> PrometheusConfig:
    """The Prometheus part of the MonitoringConfig in ``path``; INVALID_ARGUMENT when the file
    cannot be read or parsed. An empty ``path`` argument means no file: nothing is served."""
    if not path:
        return PrometheusConfig()
    config = message_class("tensorflow.serving.MonitoringConfig")()
    try:
        with open(path, encoding="utf-8") as f:
            text_format.Parse(f.read(), config)
    except OSError as e:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Could not read --monitoring_config_file {path}: "
                           f"{e.strerror}") from None
    except text_format.ParseError as e:
        raise ServingError(Code.INVALID_ARGUMENT,
                           "Error parsing text-format tensorflow.serving.MonitoringConfig in "
                           f"{path}: {e}") from None
    prometheus = config.prometheus_config
    return PrometheusConfig(enable=prometheus.enable, path=prometheus.path or PROMETHEUS_PATH)
