"""Finding the API server: explicit URL, the pod's service account, rotated tokens."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from hostdev_kube.access import find, in_cluster


async def test_explicit_url_needs_no_credentials() -> None:
    """A URL setting is used as it is, without TLS or a token."""
    access = await find("http://127.0.0.1:8080/")
    assert access.host == "http://127.0.0.1:8080"
    assert await access.headers() == {"Accept": "application/json"}


def test_outside_a_pod_there_is_no_service_account(tmp_path: Path) -> None:
    """Without the service host variables or the token file, in-cluster access is not used."""
    assert in_cluster({}, tmp_path) is None
    assert (
        in_cluster(
            {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, tmp_path
        )
        is None
    )


async def test_service_account_token_is_read_again_after_rotation(tmp_path: Path) -> None:
    """The kubelet rotates projected tokens; the next request carries the new one."""
    ca = ssl.get_default_verify_paths().cafile
    assert ca is not None
    (tmp_path / "ca.crt").write_bytes(Path(ca).read_bytes())
    token = tmp_path / "token"
    token.write_text("first\n")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    access = in_cluster(env, tmp_path)
    assert access is not None
    assert access.host == "https://[fd00::1]:443"
    assert (await access.headers())["Authorization"] == "Bearer first"
    token.write_text("second\n")
    os.utime(token, (1, 1))  # a different mtime, as a rewrite by the kubelet gives
    assert (await access.headers())["Authorization"] == "Bearer second"
