"""``--monitoring_config_file``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfsfast.monitoring.monitoring_config import PrometheusConfig, read_monitoring_config
from tfsfast.util.status import Code, ServingError


@pytest.mark.parametrize(("text", "expected"), [
    ('prometheus_config: { enable: true, path: "/monitoring/prometheus/metrics" }',
     PrometheusConfig(True, "/monitoring/prometheus/metrics")),
    ('prometheus_config { enable: true path: "/metrics" }', PrometheusConfig(True, "/metrics")),
    ("prometheus_config { enable: true }", PrometheusConfig(True)),
    ("prometheus_config { path: '/m' }", PrometheusConfig(False, "/m")),
    ("", PrometheusConfig(False)),
])
def test_config(tmp_path: Path, text: str, expected: PrometheusConfig) -> None:
    path = tmp_path / "monitoring.config"
    path.write_text(text)
    assert read_monitoring_config(str(path)) == expected


def test_no_file_serves_nothing() -> None:
    assert read_monitoring_config("") == PrometheusConfig(False)


def test_bad_files_are_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(ServingError) as missing:
        read_monitoring_config(str(tmp_path / "absent"))
    assert (missing.value.code, missing.value.message) == (
        Code.INVALID_ARGUMENT,
        f"Could not read --monitoring_config_file {tmp_path / 'absent'}: No such file or "
        "directory")
    bad = tmp_path / "bad"
    bad.write_text("prometheus_config { enable: maybe }")
    with pytest.raises(ServingError) as unparsable:
        read_monitoring_config(str(bad))
    assert unparsable.value.code == Code.INVALID_ARGUMENT
    assert unparsable.value.message.startswith(
        f"Error parsing text-format tensorflow.serving.MonitoringConfig in {bad}: 1:")
