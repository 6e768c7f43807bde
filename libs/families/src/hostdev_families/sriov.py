"""SR-IOV virtual functions, handed out as VFIO devices or as network interfaces."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import msgspec

from hostdev_devconfig import SriovSelector
from hostdev_events.alloc import group_entry
from hostdev_events.inventory import (
    Attribute,
    ContainerEdits,
    Device,
    NetDeviceEdit,
    NotOffered,
)
from hostdev_events.plans import AnyPlan, FunctionDriver, SriovPlan, VfValues
from hostdev_families import pci, pciattrs, vfio
from hostdev_families.base import (
    NOT_SELECTED,
    Health,
    Survey,
    check_config,
    own_plan,
)
from hostdev_families.clock import SYSTEM_CLOCK, ThreadClock
from hostdev_families.errors import FamilyError, HostRefused
from hostdev_families.netlink import VfNetlink, VfSettings
from hostdev_families.pcihealth import discovered_driver, vf_health
from hostdev_sysfs import HostRoot, PciFunction, SysfsWriter, list_functions, read_function

FAMILY = "sriov"
CONFIG_KIND = "VfConfig"
CONFIG_KEYS = frozenset({"mode", "vlan", "mac", "trust", "interfaceName"})
MODES = ("vfio", "netdevice")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_LINK_TYPES = {"1": "ethernet", "32": "infiniband"}
_NO_MAC = "00:00:00:00:00:00"
# The kernel keeps interface names in IFNAMSIZ (16) bytes with the terminating NUL.
IFNAME_MAX = 15


class SriovFamily:
    """VFs of selected PFs; VF settings go through netlink on the PF and are reverted."""

    name = FAMILY
    blocking = True

    def __init__(
        self,
        root: HostRoot,
        writer: SysfsWriter,
        netlink: VfNetlink,
        selectors: tuple[SriovSelector, ...],
        *,
        clock: ThreadClock = SYSTEM_CLOCK,
    ) -> None:
        self.root = root
        self.writer = writer
        self.netlink = netlink
        self.selectors = selectors
        self.clock = clock

    def _selector(self, pf: PciFunction) -> SriovSelector | None:
        for s in self.selectors:
            if not pciattrs.matches(pf, vendor=s.vendor, device=s.device, address=s.pf):
                continue
            if s.pf_name is None or s.pf_name in pf.netdevs:
                return s
        return None

    def discover(self) -> list[Device]:
        return self.survey().offered

    def survey(self) -> Survey:
        found = Survey()
        for address in list_functions(self.root):
            function = read_function(self.root, address)
            if function.physfn is not None or function.is_bridge:
                continue
            capable = bool(function.total_vfs or function.virtfns)
            selector = self._selector(function)
            problem = _pf_problem(capable, selector, function)
            if problem is not None:
                if problem[0] != NOT_SELECTED or capable:  # only PFs are SR-IOV candidates
                    found.not_offered.append(
                        NotOffered(
                            family=FAMILY, candidate=address, code=problem[0], reason=problem[1]
                        )
                    )
                continue
            assert selector is not None
            for index, vf in enumerate(function.virtfns):
                shared = self._group_strangers(vf) if selector.mode == "vfio" else None
                if shared:
                    found.not_offered.append(pci.group_shared(FAMILY, vf, *shared))
                else:
                    found.offered.append(self._vf(function, index, vf, selector.mode))
        found.offered = _count_shared_groups(found.offered)
        return found

    def _offered_vf(self, function: PciFunction) -> bool:
        """A VF of a selected PF: it may move to vfio-pci with a VF of its IOMMU group."""
        return function.physfn is not None and (
            self._selector(read_function(self.root, function.physfn)) is not None
        )

    def _group_strangers(self, address: str) -> tuple[int, list[PciFunction]] | None:
        """The VF's group and the functions in it that are not offered VFs, if any."""
        group = read_function(self.root, address).iommu_group
        if group is None:
            return None
        strangers = [
            m
            for m in pci.endpoints(self.root, group)
            if m.address != address and not self._offered_vf(m)
        ]
        return (group, strangers) if strangers else None

    def _link_type(self, pf: PciFunction) -> str:
        if not pf.netdevs:
            return "unknown"
        try:
            kind = self.root.read_text(f"/sys/class/net/{pf.netdevs[0]}/type")
        except OSError:
            return "ethernet"
        return _LINK_TYPES.get(kind, "unknown")

    def _vf(self, pf: PciFunction, index: int, address: str, mode: str) -> Device:
        function = read_function(self.root, address)
        group = function.iommu_group
        attributes = pciattrs.pci_attributes(FAMILY, function)
        attributes |= {
            "pfPciBusID": Attribute(string=pf.address),
            "vfIndex": Attribute(int_=index),
            "linkType": Attribute(string=self._link_type(pf)),
        }
        if pf.netdevs:
            attributes["pfName"] = Attribute(string=pf.netdevs[0])
        params = {
            "address": address,
            "pf": pf.address,
            "pf_ifname": pf.netdevs[0] if pf.netdevs else "",
            "vf_index": str(index),
            "mode": mode,
            **discovered_driver(function),
        }
        edits = ContainerEdits()
        also: tuple[str, ...] = ()
        if group is not None:
            params["group"] = str(group)
            edits = pciattrs.vfio_edits(self.root, group)
            also = (group_entry(group),)
        return Device(
            name=pciattrs.pci_name("vf", address),
            family=FAMILY,
            attributes=attributes,
            edits=edits,
            params=params,
            also_holds=also,
        )

    def plan(self, device: Device, claim_uid: str, config: Mapping[str, Any]) -> AnyPlan:
        check_config(device.name, config, CONFIG_KIND, CONFIG_KEYS)
        mode = str(config.get("mode", device.params["mode"]))
        if mode not in MODES:
            raise FamilyError(device.name, f"mode {mode!r} is not one of {', '.join(MODES)}")
        wanted = _settings(device.name, config)
        params = device.params
        if mode == "vfio":
            if "group" not in params:
                raise FamilyError(device.name, "no IOMMU group: vfio mode is impossible")
            _, members = pci.plan_group(self.root, device, self._offered_vf)
            edits = device.edits
        else:
            function = read_function(self.root, params["address"])
            members = (
                FunctionDriver(
                    address=function.address,
                    driver=function.driver or "",
                    override=function.driver_override or "",
                ),
            )
            edits = ContainerEdits()
        was = VfValues()
        if wanted != VfSettings():
            was = _values(self.netlink.get_vf(params["pf_ifname"], int(params["vf_index"])))
        return SriovPlan(
            device=device.name,
            mode=mode,
            address=params["address"],
            pf=params.get("pf", ""),
            pf_ifname=params["pf_ifname"],
            vf_index=int(params["vf_index"]),
            group=int(params["group"]) if params.get("group") else None,
            members=members,
            interface=_interface_name(device, config),
            want=_values(wanted),
            was=was,
            edits=edits,
            attributes=device.attributes,
            final_edits=mode == "vfio",  # a netdevice's interface name comes with its driver
        )

    def apply(self, plan: AnyPlan) -> AnyPlan:
        vf = own_plan(plan, SriovPlan)
        if vf.mode == "vfio":
            assert vf.group is not None  # plan refuses vfio mode without a group
            pci.apply_group(self.root, self.writer, vf.device, vf.group, vf.members, self.clock)
        else:
            try:
                vf = self._to_netdevice(vf)
            except HostRefused as err:
                raise _refused(vf.device, pci.reason(err), self._restore_driver(vf)) from err
        applied: list[VfSettings] = []
        try:
            # One setting at a time, as the kernel takes them: on a refusal, `applied`
            # says exactly which ones to revert.
            for setting in _one_by_one(_settings_of(vf.want)):
                self.netlink.set_vf(vf.pf_ifname, vf.vf_index, setting)
                applied.append(setting)
        except OSError as err:
            failures = self._revert(vf, applied) + self._restore_driver(vf)
            raise _refused(vf.device, f"VF settings refused: {err}", failures) from err
        return vf

    def _to_netdevice(self, plan: SriovPlan) -> SriovPlan:
        address = plan.address
        function = read_function(self.root, address)
        if function.driver in (None, vfio.VFIO_DRIVER):
            vfio.release_to_host(self.root, self.writer, plan.device, address)
            function = read_function(self.root, address)
        if not function.netdevs:
            raise HostRefused(
                plan.device, f"{address} has no network interface on {function.driver}"
            )
        host_interface = function.netdevs[0]
        edits = ContainerEdits(
            net_devices=(NetDeviceEdit(host_interface_name=host_interface, name=plan.interface),)
        )
        read_mac = plan.read_mac
        if plan.want.mac is None:
            read_mac = self._read_mac(host_interface) or read_mac
        return msgspec.structs.replace(plan, edits=edits, read_mac=read_mac, final_edits=True)

    def _read_mac(self, interface: str) -> str | None:
        """The interface's MAC as the kernel shows it; None when it cannot be read or is
        all zeros (no address yet: nothing worth reporting)."""
        try:
            mac = self.root.read_text(f"/sys/class/net/{interface}/address").strip().lower()
        except OSError:
            return None
        return mac if _MAC.match(mac) and mac != _NO_MAC else None

    def unprepare(self, plan: AnyPlan) -> None:
        """Revert the settings, then the driver even if the PF refused: a VF left on
        vfio-pci is worse than a VF on its driver with a stale VLAN. Raises one error
        naming every failure once everything possible was done."""
        vf = own_plan(plan, SriovPlan)
        failures = self._revert(vf, _one_by_one(_settings_of(vf.want)))
        failures += self._restore_driver(vf)
        if failures:
            raise FamilyError(vf.device, "; ".join(failures))

    def _revert(self, plan: SriovPlan, applied: list[VfSettings]) -> list[str]:
        """Put back the recorded value of each applied setting; the failure, if any."""
        was = plan.was
        revert = VfSettings(
            mac=was.mac if any(s.mac is not None for s in applied) else None,
            vlan=was.vlan if any(s.vlan is not None for s in applied) else None,
            trust=was.trust if any(s.trust is not None for s in applied) else None,
        )
        if revert == VfSettings():
            return []
        try:
            self.netlink.set_vf(plan.pf_ifname, plan.vf_index, revert)
        except OSError as err:
            return [f"could not revert VF settings: {err}"]
        return []

    def _restore_driver(self, plan: SriovPlan) -> list[str]:
        """Return the VF (its group in vfio mode) to the recorded drivers; the failures."""
        if plan.mode == "vfio":
            try:
                pci.restore_group(self.root, self.writer, plan.device, plan.members)
            except FamilyError as err:
                return [pci.reason(err)]
            return []
        original = next((m for m in plan.members if m.address == plan.address), None)
        try:
            vfio.restore_driver(
                self.root,
                self.writer,
                plan.device,
                plan.address,
                (original.driver or None) if original else None,
                (original.override or None) if original else None,
            )
        except HostRefused as err:
            return [pci.reason(err)]
        return []

    def healthy(self, device: Device) -> Health:
        return vf_health(self.root, device.params)


def container_interface(plan: AnyPlan) -> str | None:
    """The interface name a VF's plan asks for in the container; None unless netdevice mode."""
    if not isinstance(plan, SriovPlan) or plan.mode != "netdevice":
        return None
    return plan.interface


def handed_mac(plan: AnyPlan) -> str | None:
    """The MAC a netdevice VF was handed over with: the one set for the claim, else the one
    read from the interface at prepare; None when neither is known."""
    if not isinstance(plan, SriovPlan):
        return None
    return plan.want.mac or plan.read_mac or None


def default_interface_name(address: str) -> str:
    """A VF's interface name in the container when the claim names none: `vf` and its PCI
    address (`vf-0000-3b-02-2`, the DRA device's name). An address is unique on the node,
    so two VFs never get the same default, in one claim or in several claims of one pod.
    A PCI domain wider than four digits would not fit in 15 characters: then the address's
    hex digits alone (`vf100003b022`), which no other address shares either."""
    name = "vf-" + re.sub(r"[:.]", "-", address.lower())
    if len(name) <= IFNAME_MAX:
        return name
    return "vf" + re.sub(r"[^0-9a-f]", "", address.lower())


def interface_name_error(name: object) -> str | None:
    """Why `name` cannot name a network interface, or None when it can.

    The kernel's rules (dev_valid_name): not empty, at most 15 bytes, not `.` or `..`,
    no `/`, `:` or whitespace. Printable ASCII only, stricter than the kernel, so that
    the name reads the same in the pod, in the claim's status and in `ip link`.
    """
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if len(name) > IFNAME_MAX:
        return f"is longer than {IFNAME_MAX} characters"
    if name in (".", ".."):
        return "may not be . or .."
    if any(not ("!" <= c <= "~") or c in "/:" for c in name):
        return "may contain only printable ASCII without /, : or whitespace"
    return None


def _interface_name(device: Device, config: Mapping[str, Any]) -> str:
    name = config.get("interfaceName")
    if name is None:
        return default_interface_name(device.params["address"])
    error = interface_name_error(name)
    if error is not None:
        raise FamilyError(device.name, f"interfaceName {name!r} {error}")
    assert isinstance(name, str)  # interface_name_error checked it
    return name


def _count_shared_groups(devices: list[Device]) -> list[Device]:
    """VFs sharing an IOMMU group consume its counter set, as PCI functions do."""
    groups = Counter(d.params["group"] for d in devices if "group" in d.params)
    return [
        msgspec.structs.replace(d, consumes=(pci.group_counter(int(d.params["group"])),))
        if groups[d.params.get("group", "")] > 1
        else d
        for d in devices
    ]


def _pf_problem(
    capable: bool, selector: SriovSelector | None, pf: PciFunction
) -> tuple[str, str] | None:
    """Why a function's VFs are not offered (code, reason), or None when they are."""
    if selector is None:
        return NOT_SELECTED, "no sriov selector of the configuration matches this PF"
    if not capable:
        return "not-sriov-capable", "a sriov selector matches it but it has no SR-IOV capability"
    if not pf.virtfns:
        return "no-vfs", "SR-IOV capable but no VFs are enabled (write sriov_numvfs)"
    return None


def _settings(device: str, config: Mapping[str, Any]) -> VfSettings:
    mac, vlan, trust = config.get("mac"), config.get("vlan"), config.get("trust")
    if mac is not None and (not isinstance(mac, str) or not _MAC.match(mac.lower())):
        raise FamilyError(device, f"mac {mac!r} is not a MAC address like 52:54:00:12:34:56")
    if vlan is not None and (
        not isinstance(vlan, int) or isinstance(vlan, bool) or not 0 <= vlan <= 4095
    ):
        raise FamilyError(device, f"vlan {vlan!r} is not a number from 0 to 4095")
    if trust is not None and not isinstance(trust, bool):
        raise FamilyError(device, f"trust {trust!r} is not true or false")
    return VfSettings(mac=mac.lower() if isinstance(mac, str) else None, vlan=vlan, trust=trust)


def _refused(device: str, message: str, rollback_failures: list[str]) -> HostRefused:
    """The refusal, naming what the rollback could not undo, if anything."""
    if rollback_failures:
        message += f"; rollback also failed: {'; '.join(rollback_failures)}"
    return HostRefused(device, message)


def _one_by_one(settings: VfSettings) -> list[VfSettings]:
    """Each setting that is not None on its own, in the order the netlink adapter sets them."""
    return [
        s
        for s in (
            VfSettings(mac=settings.mac),
            VfSettings(vlan=settings.vlan),
            VfSettings(trust=settings.trust),
        )
        if s != VfSettings()
    ]


def _values(settings: VfSettings) -> VfValues:
    """Netlink's settings as recorded in a plan."""
    return VfValues(mac=settings.mac, vlan=settings.vlan, trust=settings.trust)


def _settings_of(values: VfValues) -> VfSettings:
    """A plan's recorded settings as netlink takes them."""
    return VfSettings(mac=values.mac, vlan=values.vlan, trust=values.trust)
