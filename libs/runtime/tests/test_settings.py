"""Settings come from the environment; a missing required one names its variable."""

from __future__ import annotations

import pytest

from hostdev_runtime.errors import SettingsError
from hostdev_runtime.settings import CommonSettings, load_settings
from hostdev_runtime.telemetry import tracing_wanted


def test_settings_read_prefixed_variables_and_node_name() -> None:
    """HOSTDEV_* variables fill fields; NODE_NAME fills node_name."""
    settings = load_settings(CommonSettings, {"NODE_NAME": "n1", "HOSTDEV_NATS_URL": "nats://x:1"})
    assert (settings.node_name, settings.nats_url) == ("n1", "nats://x:1")


def test_missing_node_name_is_an_error_naming_the_variable() -> None:
    """Without NODE_NAME the service refuses to start and says which variable to set."""
    with pytest.raises(SettingsError, match="NODE_NAME"):
        load_settings(CommonSettings, {})


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://j:4317", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://j:4317", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_on_only_when_otel_variables_ask(env: dict[str, str], wanted: bool) -> None:
    """No OTEL_* variables means no exporter; the standard switches turn it on and off."""
    assert tracing_wanted(env) is wanted
