"""How to reach the API server: a URL, the pod's service account, or a kubeconfig.

In a pod (the production case) this reads the service account token and CA itself.
kubernetes_asyncio is imported only for the kubeconfig fallback: its import alone costs
about 1.7 s of start-up and 90 MiB of memory in every service that talks to the API.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class AccessError(Exception):
    """No way to reach the API server was found; the message says what was tried."""


@dataclass(slots=True)
class Access:
    """Where the API server is, how to trust it and how to authenticate."""

    host: str
    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    token_file: Path | None = None
    _token: tuple[float, str] = field(default=(0.0, ""))
    configuration: Any = None  # a kubernetes_asyncio Configuration, kubeconfig only

    async def headers(self) -> dict[str, str]:
        """Authorization for the next request (a rotated token is read again)."""
        headers = {"Accept": "application/json"}
        if self.token_file is not None:
            mtime = self.token_file.stat().st_mtime
            if mtime != self._token[0]:
                self._token = (mtime, self.token_file.read_text().strip())
            headers["Authorization"] = f"Bearer {self._token[1]}"
        elif self.configuration is not None:
            for auth in (await self.configuration.auth_settings()).values():
                headers[auth["key"]] = auth["value"]
        return headers


def in_cluster(env: dict[str, str] | None = None, base: Path = SERVICE_ACCOUNT) -> Access | None:
    """The pod's service account, when running in a pod."""
    env = dict(os.environ) if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    token = base / "token"
    if not host or not port or not token.exists():
        return None
    if ":" in host:
        host = f"[{host}]"  # IPv6
    context = ssl.create_default_context(cafile=str(base / "ca.crt"))
    return Access(host=f"https://{host}:{port}", ssl_context=context, token_file=token)


async def kubeconfig() -> Access:
    """The current context of the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    from kubernetes_asyncio import client as k8s
    from kubernetes_asyncio import config as k8s_config

    configuration = k8s.Configuration()
    try:
        await k8s_config.load_kube_config(client_configuration=configuration)
    except (k8s_config.ConfigException, OSError) as err:
        raise AccessError(f"not in a pod and no usable kubeconfig: {err}") from err
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return Access(
        host=str(configuration.host or "").rstrip("/"),
        ssl_context=context,
        server_hostname=configuration.tls_server_name or None,
        configuration=configuration,
    )


async def find(url: str = "") -> Access:
    """`url` when given (plain HTTP or HTTPS, no credentials); else in-cluster; else kubeconfig."""
    if url:
        return Access(host=url.rstrip("/"))
    return in_cluster() or await kubeconfig()
