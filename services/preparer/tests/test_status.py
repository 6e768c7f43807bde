"""The claim's device status entries: schema-valid, and only what the driver knows."""

from __future__ import annotations

import datetime
from typing import Any

from hostdev_events.inventory import ContainerEdits, NetDeviceEdit
from hostdev_events.plans import SriovPlan, VfValues
from hostdev_preparer import status
from hostdev_testing.apiserver.schema import OpenApi
from hostdev_testing.schemas import schemas_dir

DRIVER = "hostdev.k8s.io"
NOW = datetime.datetime(2026, 12, 3, 6, 0, tzinfo=datetime.UTC)
SCHEMA = "io.k8s.api.resource.v1."


def _vf(device: str, mode: str, **fields: Any) -> SriovPlan:
    return SriovPlan(
        device=device, mode=mode, address="", pf="", pf_ifname="ens1f0", vf_index=0, **fields
    )


def _netdevice(
    device: str, host: str, name: str, want_mac: str = "", read_mac: str = ""
) -> SriovPlan:
    edits = ContainerEdits(net_devices=(NetDeviceEdit(host_interface_name=host, name=name),))
    return _vf(
        device,
        "netdevice",
        interface=name,
        edits=edits,
        want=VfValues(mac=want_mac or None),
        read_mac=read_mac,
    )


def _unknown_fields(value: Any, schema: dict[str, Any], api: OpenApi) -> list[str]:
    """Fields the API server would drop as unknown: every key must be a schema property."""
    while "$ref" in schema or len(schema.get("allOf", [])) == 1:
        schema = (
            api.components[schema["$ref"].split("/")[-1]]
            if "$ref" in schema
            else schema["allOf"][0]
        )
    if isinstance(value, dict) and "properties" in schema:
        found = [k for k in value if k not in schema["properties"]]
        for key, item in value.items():
            if key in schema["properties"]:
                found += _unknown_fields(item, schema["properties"][key], api)
        return found
    if isinstance(value, list) and "items" in schema:
        return [k for item in value for k in _unknown_fields(item, schema["items"], api)]
    return []


def test_entries_are_valid_allocated_device_statuses_with_no_unknown_field() -> None:
    """Each entry validates against resource.k8s.io/v1 AllocatedDeviceStatus and uses only
    fields the schema has (an unknown one would be dropped silently by the API server)."""
    api = OpenApi.load(schemas_dir())
    plans = [
        _netdevice("vf-a", "ens1f0v2", "vf-a", want_mac="52:54:00:12:34:56"),
        _netdevice("vf-b", "ens1f0v3", "data1", read_mac="02:00:00:00:00:03"),
    ]
    entries = status.entries(DRIVER, "node-1", plans, NOW, generation=3)
    assert len(entries) == 2
    for entry in entries:
        assert list(api.validator(SCHEMA + "AllocatedDeviceStatus").iter_errors(entry)) == []
        assert _unknown_fields(entry, {"$ref": "#/" + SCHEMA + "AllocatedDeviceStatus"}, api) == []


def test_entries_say_handed_to_the_runtime_with_the_name_and_mac_the_driver_knows() -> None:
    """Ready/HandedToRuntime naming CDI netDevices; networkData has the name asked for and the
    MAC set (or else read), never IPs; no MAC known, none reported; vfio VFs get no entry."""
    plans = [
        _netdevice("vf-a", "ens1f0v2", "net1", want_mac="52:54:00:12:34:56"),
        _netdevice("vf-b", "ens1f0v3", "net2", read_mac="02:00:00:00:00:03"),
        _netdevice("vf-c", "ens1f0v4", "net3"),
        _vf("vf-d", "vfio"),
    ]
    entries = {e["device"]: e for e in status.entries(DRIVER, "node-1", plans, NOW)}
    assert set(entries) == {"vf-a", "vf-b", "vf-c"}
    assert entries["vf-a"]["networkData"] == {
        "interfaceName": "net1",
        "hardwareAddress": "52:54:00:12:34:56",
    }
    assert entries["vf-b"]["networkData"]["hardwareAddress"] == "02:00:00:00:00:03"
    assert entries["vf-c"]["networkData"] == {"interfaceName": "net3"}
    (condition,) = entries["vf-a"]["conditions"]
    assert condition["type"] == "Ready"
    assert condition["reason"] == "HandedToRuntime"
    assert "observedGeneration" not in condition  # unknown generation: not claimed
    assert "ens1f0v2" in condition["message"]
    assert "netDevices" in condition["message"]
    assert condition["lastTransitionTime"] == "2026-12-03T06:00:00Z"
