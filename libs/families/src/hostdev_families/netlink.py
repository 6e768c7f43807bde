"""VF settings (MAC, VLAN, trust) on a physical function, through netlink.

Netlink cannot run against a fake sysfs tree, so it sits behind a Protocol; tests
use a fake that keeps the same state the kernel would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from hostdev_events import killpoints


@dataclass(frozen=True, slots=True)
class VfSettings:
    """A VF's administrative settings as the PF reports them; None leaves one alone."""

    mac: str | None = None
    vlan: int | None = None
    trust: bool | None = None


class VfNetlink(Protocol):
    """Read and change the settings of VF `vf` of the PF interface `pf`."""

    def get_vf(self, pf: str, vf: int) -> VfSettings:
        """The VF's current settings."""
        ...

    def set_vf(self, pf: str, vf: int, settings: VfSettings) -> None:
        """Apply every field that is not None; raises OSError when the kernel refuses."""
        ...


class Pyroute2Netlink:
    """The real adapter, with pyroute2 (imported on first use: only the preparer needs it)."""

    def _ipr(self) -> Any:
        from pyroute2 import IPRoute

        return IPRoute()

    def get_vf(self, pf: str, vf: int) -> VfSettings:
        with self._ipr() as ipr:
            (index,) = ipr.link_lookup(ifname=pf)
            (link,) = ipr.link("get", index=index, ext_mask=1)  # RTEXT_FILTER_VF
            for info in link.get_attr("IFLA_VFINFO_LIST").get_attrs("IFLA_VF_INFO"):
                mac = info.get_attr("IFLA_VF_MAC")
                if mac["vf"] != vf:
                    continue
                vlan = info.get_attr("IFLA_VF_VLAN")
                trust = info.get_attr("IFLA_VF_TRUST")
                return VfSettings(
                    mac=mac["mac"],
                    vlan=vlan["vlan"] if vlan else None,
                    trust=bool(trust["setting"]) if trust else None,
                )
        raise OSError(f"{pf} reports no VF {vf}")

    def set_vf(self, pf: str, vf: int, settings: VfSettings) -> None:
        with self._ipr() as ipr:
            (index,) = ipr.link_lookup(ifname=pf)
            if settings.mac is not None:
                ipr.link("set", index=index, vf={"vf": vf, "mac": settings.mac})
            if settings.vlan is not None:
                ipr.link("set", index=index, vf={"vf": vf, "vlan": settings.vlan})
            if settings.trust is not None:
                ipr.link("set", index=index, vf={"vf": vf, "trust": int(settings.trust)})
        killpoints.reached(killpoints.NETLINK_WRITE)
