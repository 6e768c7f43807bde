"""USB devices: named by serial (or port when there is none), handed over as /dev/bus/usb nodes."""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Mapping
from typing import Any

from hostdev_devconfig import UsbSelector
from hostdev_events.inventory import (
    Attribute,
    ContainerEdits,
    Device,
    DeviceNodeEdit,
    NotOffered,
)
from hostdev_events.plans import AnyPlan, UsbPlan
from hostdev_families.base import (
    ATTR_FAMILY,
    NOT_SELECTED,
    Health,
    Survey,
    check_config,
    dns_label,
    own_plan,
)
from hostdev_sysfs import HostRoot, UsbDevice, list_usb

FAMILY = "usb"


class UsbFamily:
    """Selected USB devices; nothing to do on the host but hand over the node."""

    name = FAMILY
    blocking = False

    def __init__(self, root: HostRoot, selectors: tuple[UsbSelector, ...]) -> None:
        self.root = root
        self.selectors = selectors

    def _selected(self, usb: UsbDevice) -> bool:
        return any(
            (s.vendor is None or s.vendor.lower() == usb.vendor)
            and (s.product is None or s.product.lower() == usb.product)
            and (s.serial is None or s.serial == usb.serial)
            and (s.port is None or fnmatch.fnmatchcase(usb.port, s.port))
            for s in self.selectors
        )

    def discover(self) -> list[Device]:
        return self.survey().offered

    def survey(self) -> Survey:
        found, skipped = [], []
        for usb in list_usb(self.root):
            if self._selected(usb):
                found.append(usb)
            else:
                skipped.append(
                    NotOffered(
                        family=FAMILY,
                        candidate=usb.port,
                        code=NOT_SELECTED,
                        reason=f"no usb selector matches {usb.vendor}:{usb.product}",
                    )
                )
        # A serial names a device wherever it is plugged in; identical devices without
        # one (or with a serial shared by several) are told apart by their port.
        serials = Counter((u.vendor, u.product, u.serial) for u in found if u.serial)
        offered = [self._device(u, serials[(u.vendor, u.product, u.serial)] == 1) for u in found]
        return Survey(offered=offered, not_offered=skipped)

    def _device(self, usb: UsbDevice, by_serial: bool) -> Device:
        suffix = usb.serial if by_serial else f"port-{usb.port}"
        attributes = {
            ATTR_FAMILY: Attribute(string=FAMILY),
            "vendorID": Attribute(string=usb.vendor),
            "productID": Attribute(string=usb.product),
            "port": Attribute(string=usb.port),
            "busnum": Attribute(int_=usb.busnum),
            "devnum": Attribute(int_=usb.devnum),
        }
        for key, value in (
            ("serial", usb.serial),
            ("manufacturer", usb.manufacturer),
            ("product", usb.product_name),
        ):
            if value:
                attributes[key] = Attribute(string=value[:64])
        node = DeviceNodeEdit(
            path=usb.node, host_path=str(self.root.path(usb.node)), permissions="rw"
        )
        return Device(
            name=dns_label(f"usb-{usb.vendor}-{usb.product}-{suffix}"),
            family=FAMILY,
            attributes=attributes,
            edits=ContainerEdits(device_nodes=(node,)),
            params={
                "port": usb.port,
                "busnum": str(usb.busnum),
                "devnum": str(usb.devnum),
                "node": usb.node,
            },
        )

    def plan(self, device: Device, claim_uid: str, config: Mapping[str, Any]) -> AnyPlan:
        check_config(device.name, config, None)
        params = device.params
        return UsbPlan(
            device=device.name,
            port=params.get("port", ""),
            busnum=int(params.get("busnum", "0")),
            devnum=int(params.get("devnum", "0")),
            node=params.get("node", ""),
            edits=device.edits,
            attributes=device.attributes,
        )

    def apply(self, plan: AnyPlan) -> AnyPlan:
        return own_plan(plan, UsbPlan)  # access to the node is all a USB device needs

    def unprepare(self, plan: AnyPlan) -> None:
        own_plan(plan, UsbPlan)

    def healthy(self, device: Device) -> Health:
        node = device.params.get("node", "/nonexistent")
        if not self.root.exists(node):
            return Health(problem=f"{node} is gone")
        return Health()
