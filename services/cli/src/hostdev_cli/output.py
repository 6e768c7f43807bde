"""Human tables by default; JSON or YAML of the same data for tools."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import yaml

Format = Literal["table", "json", "yaml"]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, header first; no trailing blanks."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def dump(data: Any, fmt: Format) -> str:
    """`data` (plain dicts, lists and scalars) as JSON or YAML."""
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")


def dump_all(documents: Sequence[Any]) -> str:
    """Several YAML documents, `---` between them, as kubectl reads them."""
    return yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False).rstrip("\n")
