"""AER statistics files of a PCIe function, as drivers/pci/pcie/aer.c prints them.

`aer_dev_<severity>` has one "<name> <count>" line per named error bit, an unnamed bit's
line only while its count is not zero, then "TOTAL_ERR_<SEVERITY> <total>". The files are
the fake kernel's only record of the counts, so raising an error rewrites them.
"""

from __future__ import annotations

from hostdev_testing.fakesysfs.tree import Tree

# Bit names of the Correctable and Uncorrectable Error Status registers (6.x kernels).
_CORRECTABLE: dict[int, str] = {
    0: "RxErr",
    6: "BadTLP",
    7: "BadDLLP",
    8: "Rollover",
    12: "Timeout",
    13: "NonFatalErr",
    14: "CorrIntErr",
    15: "HeaderOF",
}
_UNCORRECTABLE: dict[int, str] = {
    0: "Undefined",
    4: "DLP",
    5: "SDES",
    12: "TLP",
    13: "FCP",
    14: "CmpltTO",
    15: "CmpltAbrt",
    16: "UnxCmplt",
    17: "RxOF",
    18: "MalfTLP",
    19: "ECRC",
    20: "UnsupReq",
    21: "ACSViol",
    22: "UncorrIntErr",
    23: "BlockedTLP",
    24: "AtomicOpBlocked",
    25: "TLPBlockedErr",
    26: "PoisonTLPBlocked",
}
# severity -> (bit names, the stats array name for unnamed bits, the total's suffix, bits)
SEVERITIES: dict[str, tuple[dict[int, str], str, str, int]] = {
    "correctable": (_CORRECTABLE, "dev_cor_errs", "ERR_COR", 16),
    "fatal": (_UNCORRECTABLE, "dev_fatal_errs", "ERR_FATAL", 27),
    "nonfatal": (_UNCORRECTABLE, "dev_nonfatal_errs", "ERR_NONFATAL", 27),
}
FILES = {
    "correctable": "aer_dev_correctable",
    "fatal": "aer_dev_fatal",
    "nonfatal": "aer_dev_nonfatal",
}


def render(severity: str, counts: dict[int, int]) -> str:
    """The file's text for per-bit counts."""
    names, array, total_name, bits = SEVERITIES[severity]
    lines = []
    for bit in range(bits):
        count = counts.get(bit, 0)
        if bit in names:
            lines.append(f"{names[bit]} {count}")
        elif count:
            lines.append(f"{array}_bit[{bit}] {count}")
    lines.append(f"TOTAL_{total_name} {sum(counts.values())}")
    return "\n".join(lines) + "\n"


def parse(severity: str, text: str) -> dict[int, int]:
    """Per-bit counts back from a file's text."""
    names, array, _, _ = SEVERITIES[severity]
    bits = {name: bit for bit, name in names.items()}
    counts = {}
    for line in text.splitlines():
        name, _, count = line.rpartition(" ")
        if name in bits:
            counts[bits[name]] = int(count)
        elif name.startswith(f"{array}_bit["):
            counts[int(name[len(array) + 5 : -1])] = int(count)
    return {bit: count for bit, count in counts.items() if count}


def create(tree: Tree, dev_dir: str) -> None:
    """Zeroed statistics, as pci_aer_init leaves them."""
    for severity, name in FILES.items():
        tree.write(f"{dev_dir}/{name}", render(severity, {}))


def record(tree: Tree, dev_dir: str, severity: str, error: str, count: int) -> None:
    """Count `count` more `error`s (a bit name such as "DLP") of `severity` on the function."""
    if severity not in FILES:
        raise ValueError(f"severity {severity!r} is not one of {', '.join(FILES)}")
    names = SEVERITIES[severity][0]
    bit = next((b for b, n in names.items() if n == error), None)
    if bit is None:
        raise ValueError(f"{error!r} is not a {severity} AER error ({', '.join(names.values())})")
    path = f"{dev_dir}/{FILES[severity]}"
    if not tree.lexists(path):
        raise ValueError(f"{dev_dir} has no AER statistics")
    counts = parse(severity, tree.read(path))
    counts[bit] = counts.get(bit, 0) + count
    tree.rewrite(path, render(severity, counts))
