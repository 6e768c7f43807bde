"""compose.yaml and the Dockerfile it builds: valid against the Compose specification, one
image for every service, each container running a module that exists with settings it
understands, and the same host access split as in Kubernetes."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import yaml

from hostdev_runtime.settings import env_name
from hostdev_testing.nats import nats_server_executable
from hostdev_testing.schemas import schemas_dir
from hostdev_testing.services import MODULES

REPO = Path(__file__).resolve().parents[2]

# Containers that are not built from the project's Dockerfile: image name prefix each must use.
INFRASTRUCTURE = {"nats": "nats:", "jaeger": "jaegertracing/"}

# The kubelet simulator the `kubelet` container runs.
SIMULATOR = "hostdev_testing.kubelet_node"


HTTP_PORTS = {
    "gateway": 9410,
    "discovery": 9411,
    "allocator": 9412,
    "preparer": 9413,
    "cdi-writer": 9414,
}

# Kubelet directory -> the gateway mounts it read-only (it only dials the pod-resources socket).
KUBELET_DIRS = {
    "/var/lib/kubelet/plugins": False,
    "/var/lib/kubelet/plugins_registry": False,
    "/var/lib/kubelet/device-plugins": False,
    "/var/lib/kubelet/pod-resources": True,
}


@cache
def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return loaded


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _compose()["services"]
    return services


@cache
def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads((schemas_dir() / "compose-spec.json").read_text())
    return jsonschema.Draft7Validator(schema)


def _errors(document: dict[str, Any]) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator().iter_errors(document)
    ]


def _environment(service: str) -> dict[str, str]:
    env = _services()[service].get("environment", {})
    if isinstance(env, list):  # KEY=VALUE form
        return dict(entry.partition("=")[::2] for entry in env)
    return {key: str(value) for key, value in env.items()}


def _volumes(service: str) -> dict[str, tuple[str, bool]]:
    """Container path -> (source, read-only) of the service's short-syntax volumes."""
    out = {}
    for entry in _services()[service].get("volumes", []):
        source, target, *options = entry.split(":")
        out[target] = (source, "ro" in options)
    return out


def _settings_env(module: str) -> frozenset[str]:
    settings = importlib.import_module(f"{module}.settings").Settings
    return frozenset(env_name(field.name) for field in msgspec.structs.fields(settings))


def _runs_with_dash_m(module: str) -> bool:
    """`python -m module` works: a module, or a package with __main__."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        return False
    return (
        spec.submodule_search_locations is None
        or importlib.util.find_spec(f"{module}.__main__") is not None
    )


def _config_content(name: str) -> str:
    return str(_compose()["configs"][name]["content"])


def test_compose_file_matches_the_compose_specification() -> None:
    """compose.yaml validates against the official Compose JSON schema."""
    assert _errors(_compose()) == []


def test_compose_schema_check_rejects_a_misspelt_key() -> None:
    """The schema check rejects an unknown service key, so a clean run above means something."""
    broken = copy.deepcopy(_compose())
    broken["services"]["gateway"]["enviroment"] = {}
    assert _errors(broken)


def test_one_service_builds_the_image_and_every_project_container_runs_it() -> None:
    """Exactly one service builds from ./Dockerfile; every container but NATS and Jaeger uses
    that image and never pulls it."""
    builders = [name for name, service in _services().items() if "build" in service]
    assert builders == ["gateway"]
    build = _services()["gateway"]["build"]
    context = build if isinstance(build, str) else build["context"]
    assert (REPO / context / "Dockerfile").is_file()
    image = _services()["gateway"]["image"]
    for name, service in _services().items():
        if name in INFRASTRUCTURE:
            assert service["image"].startswith(INFRASTRUCTURE[name]), name
            continue
        assert service["image"] == image, name
        if name not in builders:
            assert service.get("pull_policy") == "never", name


def test_every_project_container_runs_an_existing_module() -> None:
    """Each container's command names a module `python -m` can run (the kubelet simulator
    included), and the five services run their own module."""
    for name, service in _services().items():
        if name in INFRASTRUCTURE:
            continue
        module = service["command"][0]
        if name in MODULES:
            assert module == MODULES[name], name
        assert _runs_with_dash_m(module), f"{name}: python -m {module}"
    assert _services()["kubelet"]["command"][0] == SIMULATOR


def test_service_environment_holds_only_settings_fields() -> None:
    """Every variable a service container sets is a field of its Settings or a standard OTEL_
    variable, and NODE_NAME is always set."""
    for service, module in MODULES.items():
        env = _environment(service)
        assert "NODE_NAME" in env, service
        unknown = {n for n in env if not n.startswith("OTEL_")} - _settings_env(module)
        assert unknown == set(), service


def test_services_check_readiness_on_their_http_port() -> None:
    """Each service serves HTTP on its own port and its healthcheck asks /readyz there."""
    for service, port in HTTP_PORTS.items():
        assert _environment(service)["HOSTDEV_HTTP_PORT"] == str(port), service
        check = " ".join(_services()[service]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in check, service


def test_services_use_the_jetstream_domain_nats_serves() -> None:
    """HOSTDEV_JS_DOMAIN of every service is the domain in the NATS configuration, and
    HOSTDEV_NATS_URL points at the NATS container."""
    (domain,) = re.findall(r"^\s*domain: (\S+)$", _config_content("nats"), re.MULTILINE)
    for service in MODULES:
        env = _environment(service)
        assert env["HOSTDEV_JS_DOMAIN"] == domain, service
        assert env["HOSTDEV_NATS_URL"] == "nats://nats:4222", service


def test_nats_configuration_is_accepted_by_nats_server(tmp_path: Path) -> None:
    """nats-server (the version the tests run) accepts compose's NATS configuration."""
    path = tmp_path / "nats.conf"
    path.write_text(_config_content("nats"))
    run = subprocess.run(
        [str(nats_server_executable()), "--config", str(path), "-t"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr


def test_gateway_and_simulator_share_the_kubelet_directories() -> None:
    """The gateway and the kubelet simulator mount the same volumes at the kubelet's paths, and
    no other service mounts them."""
    gateway, kubelet = _volumes("gateway"), _volumes("kubelet")
    assert set(gateway) == set(KUBELET_DIRS)
    for path, read_only in KUBELET_DIRS.items():
        assert gateway[path] == (kubelet[path][0], read_only), path
        assert not kubelet[path][1], path
        others = [s for s in MODULES if s != "gateway" and path in _volumes(s)]
        assert others == [], path


def test_cdi_writer_alone_writes_the_cdi_directory_the_simulator_reads() -> None:
    """The CDI writer mounts /var/run/cdi read-write; the simulator reads the same volume."""
    writer, kubelet = _volumes("cdi-writer"), _volumes("kubelet")
    assert writer == {"/var/run/cdi": (writer["/var/run/cdi"][0], False)}
    assert kubelet["/var/run/cdi"] == (writer["/var/run/cdi"][0], True)
    assert [s for s in MODULES if s != "cdi-writer" and "/var/run/cdi" in _volumes(s)] == []


def test_host_tree_access_mirrors_the_privilege_table() -> None:
    """Only discovery (read-only) and the preparer (read-write) see the fake host tree, which
    is a bind-mounted folder, and the allocator mounts nothing."""
    seen = {service: _volumes(service).get("/host") for service in MODULES}
    tree = seen["preparer"]
    assert tree is not None
    assert tree[0].startswith("./")
    assert not tree[1]
    assert seen["discovery"] == (tree[0], True)
    assert {s for s, mount in seen.items() if mount is not None} == {"discovery", "preparer"}
    assert _volumes("allocator") == {}
    for service in ("discovery", "preparer"):
        assert _environment(service)["HOSTDEV_HOST_ROOT"] == "/host", service


def test_device_selection_decodes_as_the_families_config(
    device_selection_problems: Callable[[str], list[str]],
) -> None:
    """The device selection compose hands to the gateway, discovery and the preparer decodes
    with the families' config type, at the path their settings name."""
    assert device_selection_problems(_config_content("devices")) == []
    for service in ("gateway", "discovery", "preparer"):
        targets = {c["target"] for c in _services()[service]["configs"] if c["source"] == "devices"}
        assert targets == {_environment(service)["HOSTDEV_DEVICES_CONFIG"]}, service


def _dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] = stages.setdefault("", [])
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = stages.setdefault(match.group(1), [])
        current.append(line)
    return stages


def test_image_installs_every_service_and_runs_them_as_non_root() -> None:
    """The Dockerfile installs exactly the five service packages, its default (last) stage runs
    `python -m` as a non-root user, and compose builds a stage that exists."""
    stages = _dockerfile_stages()
    (default_services,) = re.findall(
        r'^ARG SERVICES="([^"]+)"$', "\n".join(stages[""]), re.MULTILINE
    )
    # services/cli is the hostdev command, an application beside the services, not in the image.
    packages = {
        tomllib.loads(p.read_text())["project"]["name"]
        for p in REPO.glob("services/*/pyproject.toml")
    } - {"hostdev-cli"}
    assert set(default_services.split()) == packages
    assert {package.removeprefix("hostdev-").replace("-", "_") for package in packages} == {
        module.removeprefix("hostdev_") for module in MODULES.values()
    }
    last = list(stages)[-1]
    inherited = [line for stage in ("base", last) for line in stages[stage]]
    (user,) = [line.split()[1] for line in inherited if line.startswith("USER ")]
    assert int(user.split(":")[0]) != 0
    assert 'ENTRYPOINT ["python", "-m"]' in inherited
    assert stages[last][0].split()[1] == "base"
    assert _services()["gateway"]["build"]["target"] in stages
