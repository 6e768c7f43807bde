"""Field selectors: the query syntax of `fieldSelector` (the driver selects by node and driver)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hostdev_testing.apiserver.errors import bad_request
from hostdev_testing.apiserver.resources import ResourceType


@dataclass(frozen=True, slots=True)
class Requirement:
    """One clause of a field selector: `key op value`, op one of =, ==, !=."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, found: Mapping[str, str]) -> bool:
        present = self.key in found
        value = found.get(self.key, "")
        if self.op == "!=":
            return not present or value not in self.values
        return present and value in self.values


@dataclass(frozen=True, slots=True)
class Selector:
    """All requirements must hold; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, found: Mapping[str, str]) -> bool:
        return all(r.matches(found) for r in self.requirements)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == sep:
            parts.append(current)
            current = ""
        else:
            current += char
    if escaped:
        current += "\\"
    parts.append(current)
    return parts


def _unescape(value: str) -> str:
    out, i = "", 0
    while i < len(value):
        if value[i] == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise bad_request(f"invalid field selector: invalid escape sequence in {value!r}")
            out += value[i + 1]
            i += 2
        else:
            out += value[i]
            i += 1
    return out


def parse_fields(text: str, rt: ResourceType) -> Selector:
    """Parse a `fieldSelector` (=, ==, !=) and reject labels the resource does not index."""
    supported = rt.fields({})
    found: list[Requirement] = []
    for term in _split_unescaped(text, ","):
        if not term:
            continue
        for op in ("!=", "==", "="):
            if op in term:
                key, value = term.split(op, 1)
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        key = key.strip()
        if key not in supported:
            raise bad_request(rt.field_label_error(key))
        found.append(Requirement(key, op, (_unescape(value),)))
    return Selector(tuple(found))
