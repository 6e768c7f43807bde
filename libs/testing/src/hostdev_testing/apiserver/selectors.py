"""Label and field selectors: the query syntax of `labelSelector` and `fieldSelector`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from hostdev_testing.apiserver import rules
from hostdev_testing.apiserver.errors import ApiError, bad_request
from hostdev_testing.apiserver.resources import ResourceType

_SPECIAL = "!=(),<>"
_OPERATORS = ("!=", "==", "=", "in", "notin", "<", ">")


@dataclass(frozen=True, slots=True)
class Requirement:
    """One clause of a selector: `key op values`; op "exists"/"!" carry no values."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, found: Mapping[str, str]) -> bool:
        present = self.key in found
        value = found.get(self.key, "")
        match self.op:
            case "exists":
                return present
            case "!":
                return not present
            case "=" | "==" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "<" | ">":
                return present and _compare(value, self.op, self.values[0])
            case _:
                return False


def _compare(value: str, op: str, bound: str) -> bool:
    try:
        number = int(value)
    except ValueError:
        return False
    return number < int(bound) if op == "<" else number > int(bound)


@dataclass(frozen=True, slots=True)
class Selector:
    """All requirements must hold; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, found: Mapping[str, str]) -> bool:
        return all(r.matches(found) for r in self.requirements)


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif text[i : i + 2] in ("!=", "=="):
            tokens.append(text[i : i + 2])
            i += 2
        elif char in _SPECIAL:
            tokens.append(char)
            i += 1
        else:
            start = i
            while i < len(text) and not text[i].isspace() and text[i] not in _SPECIAL:
                i += 1
            tokens.append(text[start:i])
    return tokens


class _LabelParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def fail(self, why: str) -> ApiError:
        return bad_request(f"unable to parse requirement: {why}")

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise bad_request(f"couldn't parse the selector string {self.text!r}: unexpected end")
        self.pos += 1
        return token

    def identifier(self, after: str) -> str:
        token = self.take()
        if token in _SPECIAL or token in ("!=", "=="):
            raise bad_request(f"found '{token}', expected: identifier after '{after}'")
        return token

    def parse(self) -> Selector:
        found: list[Requirement] = []
        while self.peek() is not None:
            found.append(self.requirement())
            if self.peek() is not None and self.take() != ",":
                raise bad_request(f"found '{self.tokens[self.pos - 1]}', expected: ','")
        return Selector(tuple(found))

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            return self.checked(Requirement(self.identifier("!"), "!"))
        key = self.identifier("start of requirement")
        if self.peek() in (None, ","):
            return self.checked(Requirement(key, "exists"))
        op = self.take()
        if op not in _OPERATORS:
            raise bad_request(f"found '{op}', expected: {', '.join(_OPERATORS)}")
        if op in ("in", "notin"):
            return self.checked(Requirement(key, op, self.value_set()))
        value = "" if self.peek() in (None, ",") else self.identifier(op)
        return self.checked(Requirement(key, op, (value,)))

    def value_set(self) -> tuple[str, ...]:
        if self.take() != "(":
            raise bad_request(f"found '{self.tokens[self.pos - 1]}', expected: '('")
        values: list[str] = []
        while (token := self.take()) != ")":
            if token == ",":
                continue
            values.append(token)
        return tuple(values)

    def checked(self, req: Requirement) -> Requirement:
        if errors := rules.qualified_name_errors(req.key):
            raise self.fail(f'key: Invalid value: "{req.key}": {"; ".join(errors)}')
        if req.op in ("in", "notin") and not req.values:
            raise self.fail("for 'in', 'notin' operators, values set can't be empty")
        for i, value in enumerate(req.values):
            if req.op in ("<", ">"):
                if not re.fullmatch(r"-?\d+", value):
                    raise self.fail(
                        f"for 'Gt', 'Lt' operators, the value must be an integer: {value}"
                    )
            elif errors := rules.label_value_errors(value):
                why = "; ".join(errors)
                raise self.fail(f'values[{i}][{req.key}]: Invalid value: "{value}": {why}')
        return req


def parse_labels(text: str) -> Selector:
    """Parse a `labelSelector` query value (=, ==, !=, in, notin, exists, !exists, <, >)."""
    return _LabelParser(text).parse()


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
