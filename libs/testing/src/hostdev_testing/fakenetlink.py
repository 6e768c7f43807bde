"""A fake of the netlink VF settings, kept in a file under the fake root so processes share it."""

from __future__ import annotations

from pathlib import Path

import msgspec

from hostdev_events import killpoints
from hostdev_families import VfSettings

STATE_FILE = ".fake-netlink.json"
DEFAULT = VfSettings(mac="00:00:00:00:00:00", vlan=0, trust=False)


class FakeNetlink:
    """Stores each VF's MAC, VLAN and trust the way the PF driver would report them."""

    def __init__(self, root: Path) -> None:
        self.path = root / STATE_FILE
        self.refused: set[tuple[str, int]] = set()
        # (pf, vf, field): the PF driver refuses that one setting ("mac", "vlan" or "trust"),
        # as a driver without VF trust support does, and accepts the others.
        self.refused_fields: set[tuple[str, int, str]] = set()

    def _load(self) -> dict[str, VfSettings]:
        if not self.path.exists():
            return {}
        return msgspec.json.decode(self.path.read_bytes(), type=dict[str, VfSettings])

    def get_vf(self, pf: str, vf: int) -> VfSettings:
        return self._load().get(f"{pf}/{vf}", DEFAULT)

    def set_vf(self, pf: str, vf: int, settings: VfSettings) -> None:
        if (pf, vf) in self.refused:
            raise OSError(f"{pf} refused settings for VF {vf}")
        for field in ("mac", "vlan", "trust"):
            if getattr(settings, field) is not None and (pf, vf, field) in self.refused_fields:
                raise OSError(f"{pf} refused {field} for VF {vf}")
        # Under killpoints.UNTORN: the kernel applies a netlink request whole, so a kill from
        # another thread waits for the record to be written rather than truncate it.
        with killpoints.UNTORN:
            current = self.get_vf(pf, vf)
            state = self._load()
            state[f"{pf}/{vf}"] = VfSettings(
                mac=settings.mac if settings.mac is not None else current.mac,
                vlan=settings.vlan if settings.vlan is not None else current.vlan,
                trust=settings.trust if settings.trust is not None else current.trust,
            )
            self.path.write_bytes(msgspec.json.encode(state))
        killpoints.reached(killpoints.NETLINK_WRITE)

    def settings(self) -> dict[str, VfSettings]:
        """Every VF's settings as stored, for before/after comparisons."""
        return self._load()
