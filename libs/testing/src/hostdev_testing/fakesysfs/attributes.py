"""Contents of PCI attributes: uevent, config space, resource, MAC addresses and VF numbering."""

from __future__ import annotations

import struct

PciIds = tuple[int, int, int, int]
"""Vendor, device, class code and revision of a function."""


def parse_hex(value: int | str) -> int:
    """An ID given as an int or as hex text (`0x144d`, `144d`)."""
    return value if isinstance(value, int) else int(value, 16)


def devfn(bdf: str) -> tuple[int, int]:
    """The bus number and the devfn byte (slot << 3 | function) of a BDF."""
    _, bus, slot_fn = bdf.split(":")
    slot, fn = slot_fn.split(".")
    return int(bus, 16), (int(slot, 16) << 3) | int(fn)


def vf_bdfs(pf_bdf: str, count: int, offset: int = 16, stride: int = 1) -> list[str]:
    """The BDFs the kernel gives a PF's VFs: devfn arithmetic carrying into the bus number."""
    domain = pf_bdf.split(":")[0]
    bus, pf_devfn = devfn(pf_bdf)
    result = []
    for index in range(count):
        routing = pf_devfn + offset + stride * index
        vf_bus, vf_devfn = bus + (routing >> 8), routing & 0xFF
        result.append(f"{domain}:{vf_bus:02x}:{vf_devfn >> 3:02x}.{vf_devfn & 7}")
    return result


def uevent(bdf: str, ids: PciIds, subsys: tuple[int, int]) -> str:
    """The PCI bus's uevent variables (the driver core adds DRIVER= while bound)."""
    vendor, device, class_code, _ = ids
    base, sub, prog_if = class_code >> 16, (class_code >> 8) & 0xFF, class_code & 0xFF
    modalias = (
        f"pci:v{vendor:08X}d{device:08X}sv{subsys[0]:08X}sd{subsys[1]:08X}"
        f"bc{base:02X}sc{sub:02X}i{prog_if:02X}"
    )
    return (
        f"PCI_CLASS={class_code:X}\nPCI_ID={vendor:04X}:{device:04X}\n"
        f"PCI_SUBSYS_ID={subsys[0]:04X}:{subsys[1]:04X}\nPCI_SLOT_NAME={bdf}\nMODALIAS={modalias}\n"
    )


def is_bridge_class(class_code: int) -> bool:
    """Whether a class code is a PCI-to-PCI bridge (type 1 header)."""
    return class_code >> 8 == 0x0604


def config(ids: PciIds, subsys: tuple[int, int]) -> bytes:
    """The first 256 bytes of config space as an unprivileged reader sees them."""
    vendor, device, class_code, revision = ids
    space = bytearray(256)
    struct.pack_into("<HHI", space, 0, vendor, device, (class_code << 8) | revision)
    space[0x0E] = 1 if is_bridge_class(class_code) else 0
    if space[0x0E] == 0:
        # Only type 0 headers carry subsystem IDs at 0x2c; bridges keep them in a capability.
        struct.pack_into("<HH", space, 0x2C, subsys[0], subsys[1])
    return bytes(space)


def resource(bdf: str) -> str:
    """Thirteen `start end flags` rows: one 16 KiB 64-bit memory BAR, the rest unused."""
    bus, fn = devfn(bdf)
    # Distinct per BDF so two functions never claim the same window.
    start = 0xA0000000 + (bus << 22) + (fn << 14)
    rows = [f"0x{start:016x} 0x{start + 0x3FFF:016x} 0x{0x140204:016x}"]
    rows += [f"0x{0:016x} 0x{0:016x} 0x{0:016x}"] * 12
    return "\n".join(rows) + "\n"


def mac(bdf: str) -> str:
    """A locally administered MAC derived from the BDF, so rebuilt trees agree."""
    domain = int(bdf.split(":")[0], 16)
    bus, fn = devfn(bdf)
    return f"02:{domain & 0xFF:02x}:{bus:02x}:{fn >> 3:02x}:{fn & 7:02x}:00"
