"""Service settings: one frozen Struct per service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeVar

import msgspec

from hostdev_runtime.errors import SettingsError

ENV_PREFIX = "HOSTDEV_"


class CommonSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Settings every service has.

    node_name:   the Kubernetes node this instance serves (env NODE_NAME, required).
    nats_url:    the node's NATS leaf (HOSTDEV_NATS_URL).
    js_domain:   the JetStream domain of the node's leaf (HOSTDEV_JS_DOMAIN); empty uses
                 whatever JetStream the connected server serves locally.
    driver_name: the DRA driver name, also the CDI vendor suffix (HOSTDEV_DRIVER_NAME).
    log_level:   DEBUG, INFO, WARNING or ERROR (HOSTDEV_LOG_LEVEL).
    http_port:   port of the /healthz, /readyz and /metrics endpoints (HOSTDEV_HTTP_PORT);
                 0 serves none.
    kv_replicas: copies JetStream keeps of each KV bucket this service creates
                 (HOSTDEV_KV_REPLICAS): 1 on a node's own leaf, 3 on a JetStream cluster.
    event_loop:  `asyncio`, the standard library's loop (HOSTDEV_EVENT_LOOP, the default),
                 or `uvloop`, which falls back to asyncio's, with a warning, where it cannot
                 be imported. On the 2-CPU bench machine uvloop saved at most a few percent of
                 CPU per prepare and cost each service about 2 MiB of resident memory.
    """

    node_name: str
    nats_url: str = "nats://127.0.0.1:4222"
    js_domain: str = ""
    driver_name: str = "hostdev.k8s.io"
    log_level: str = "INFO"
    http_port: int = 0
    kv_replicas: int = 1
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"


S = TypeVar("S", bound=CommonSettings)


def env_name(field: str) -> str:
    """The environment variable that sets `field`."""
    return "NODE_NAME" if field == "node_name" else ENV_PREFIX + field.upper()


def load_settings(kind: type[S], env: Mapping[str, str]) -> S:
    """Build `kind` from environment variables; a missing required one is an error."""
    values: dict[str, str] = {}
    for field in msgspec.structs.fields(kind):
        name = env_name(field.name)
        if name in env:
            values[field.name] = env[name]
    try:
        return msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as err:
        raise SettingsError(_explain(str(err))) from err


def _explain(message: str) -> str:
    # msgspec names the field ("Object missing required field `node_name`"); name the variable.
    for part in message.split("`")[1::2]:
        return f"{message} (set {env_name(part.split('.')[-1])})"
    return message
