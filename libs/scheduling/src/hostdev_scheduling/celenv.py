"""The DRA CEL environment on Google's CEL runtime (cel-expr-python), as kube-scheduler declares it.

Expressions are type-checked against a `device` object with the fields Kubernetes declares
(`driver`, `attributes`, `capacity`, `allowMultipleAllocations`), so a misspelt field or a
comparison of a string with an int is refused at compile time as the API server would. They are
then run against plain maps: attribute values are CEL ints, bools and strings, version attributes
are `kubernetes.Semver` values and capacities `kubernetes.Quantity` values. Those two types and the
Kubernetes `quantity()` and `semver()` libraries are registered here as custom functions; the CEL
language itself (parsing, checking, evaluation, macros, `cel.bind`, string and optional
extensions) is the library's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_bindings, ext_math, ext_optional, ext_strings
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, struct_pb2

from .errors import CelCompileError, SchedulingError
from .quantity import format_quantity, parse_quantity
from .semver import Semver, parse_semver

_PACKAGE = "kubernetes"
_QUANTITY = f"{_PACKAGE}.Quantity"
_SEMVER = f"{_PACKAGE}.Semver"
_DEVICE = f"{_PACKAGE}.DRADevice"

FieldType = descriptor_pb2.FieldDescriptorProto


def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    struct_file = descriptor_pb2.FileDescriptorProto()
    struct_pb2.DESCRIPTOR.CopyToProto(struct_file)
    pool.Add(struct_file)
    file = descriptor_pb2.FileDescriptorProto(
        name="hostdev_scheduling/dra.proto", package=_PACKAGE, syntax="proto3"
    )
    file.dependency.append(struct_file.name)
    for name in ("Quantity", "Semver"):
        message = file.message_type.add(name=name)
        message.field.add(name="value", number=1, type=FieldType.TYPE_STRING, label=1)
    # Only for type-checking: attributes and capacity are maps of maps, which protobuf cannot
    # say, so they check as maps of dyn (what Struct stands for in CEL); evaluation uses maps.
    device = file.message_type.add(name="DRADevice")
    device.field.add(name="driver", number=1, type=FieldType.TYPE_STRING, label=1)
    for number, name in ((2, "attributes"), (3, "capacity")):
        device.field.add(
            name=name,
            number=number,
            type=FieldType.TYPE_MESSAGE,
            type_name=".google.protobuf.Struct",
            label=1,
        )
    device.field.add(name="allowMultipleAllocations", number=4, type=FieldType.TYPE_BOOL, label=1)
    pool.Add(file)
    return pool


_POOL = _pool()
_QuantityMessage: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(_QUANTITY))
_SemverMessage: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(_SEMVER))


def quantity_value(value: Fraction) -> Any:
    """A `kubernetes.Quantity` CEL value."""
    return _QuantityMessage(value=format_quantity(value))


def semver_value(text: str) -> Any:
    """A `kubernetes.Semver` CEL value; the text must be a semantic version."""
    return _SemverMessage(value=text)


def _q(message: Any) -> Fraction:
    return parse_quantity(message.value)


def _v(message: Any) -> Semver:
    version = parse_semver(message.value)
    if version is None:
        raise ValueError(f"invalid semantic version {message.value!r}")
    return version


def _cmp(a: Fraction, b: Fraction) -> int:
    return (a > b) - (a < b)


def _quantity(text: str) -> Any:
    return quantity_value(parse_quantity(text))


def _is_quantity(text: str) -> bool:
    try:
        parse_quantity(text)
    except SchedulingError:
        return False
    return True


def _semver(text: str) -> Any:
    if parse_semver(text) is None:
        raise ValueError(f"invalid semantic version {text!r}")
    return semver_value(text)


def _as_integer(message: Any) -> int:
    value = _q(message)
    if value.denominator != 1 or not -(2**63) <= value.numerator < 2**63:
        raise ValueError(f"cannot convert quantity {message.value!r} to an integer")
    return value.numerator


T = cel.Type
_Q = T(_QUANTITY)
_S = T(_SEMVER)

# (function, overload id, result, parameters, member?, implementation)
_Overload = tuple[str, str, Any, list[Any], bool, Callable[..., Any]]
_LIBRARY: list[_Overload] = [
    ("quantity", "quantity_string", _Q, [T.STRING], False, _quantity),
    ("isQuantity", "is_quantity_string", T.BOOL, [T.STRING], False, _is_quantity),
    ("sign", "quantity_sign", T.INT, [_Q], True, lambda a: _cmp(_q(a), Fraction(0))),
    ("isInteger", "quantity_is_integer", T.BOOL, [_Q], True, lambda a: _q(a).denominator == 1),
    ("asInteger", "quantity_as_integer", T.INT, [_Q], True, _as_integer),
    ("asApproximateFloat", "quantity_as_float", T.DOUBLE, [_Q], True, lambda a: float(_q(a))),
    ("add", "quantity_add", _Q, [_Q, _Q], True, lambda a, b: quantity_value(_q(a) + _q(b))),
    ("add", "quantity_add_int", _Q, [_Q, T.INT], True, lambda a, b: quantity_value(_q(a) + b)),
    ("sub", "quantity_sub", _Q, [_Q, _Q], True, lambda a, b: quantity_value(_q(a) - _q(b))),
    ("sub", "quantity_sub_int", _Q, [_Q, T.INT], True, lambda a, b: quantity_value(_q(a) - b)),
    ("compareTo", "quantity_compare", T.INT, [_Q, _Q], True, lambda a, b: _cmp(_q(a), _q(b))),
    ("isLessThan", "quantity_less", T.BOOL, [_Q, _Q], True, lambda a, b: _q(a) < _q(b)),
    ("isGreaterThan", "quantity_greater", T.BOOL, [_Q, _Q], True, lambda a, b: _q(a) > _q(b)),
    ("semver", "semver_string", _S, [T.STRING], False, _semver),
    (
        "isSemver",
        "is_semver_string",
        T.BOOL,
        [T.STRING],
        False,
        lambda t: parse_semver(t) is not None,
    ),
    ("major", "semver_major", T.INT, [_S], True, lambda a: _v(a).major),
    ("minor", "semver_minor", T.INT, [_S], True, lambda a: _v(a).minor),
    ("patch", "semver_patch", T.INT, [_S], True, lambda a: _v(a).patch),
    ("compareTo", "semver_compare", T.INT, [_S, _S], True, lambda a, b: _v(a).compare(_v(b))),
    ("isLessThan", "semver_less", T.BOOL, [_S, _S], True, lambda a, b: _v(a).compare(_v(b)) < 0),
    (
        "isGreaterThan",
        "semver_greater",
        T.BOOL,
        [_S, _S],
        True,
        lambda a, b: _v(a).compare(_v(b)) > 0,
    ),
]


def _dispatching(impls: list[Callable[..., Any]], params: list[list[Any]]) -> Callable[..., Any]:
    """One implementation for overloads the runtime cannot tell apart (Quantity and Semver are
    both messages to it): the receiver's message type picks the overload."""

    def call(*args: Any) -> Any:
        for impl, types in zip(impls, params, strict=True):
            if all(_fits(arg, kind) for arg, kind in zip(args, types, strict=True)):
                return impl(*args)
        raise ValueError("no matching overload")

    return call


def _fits(arg: Any, kind: Any) -> bool:
    if kind == _Q:
        return isinstance(arg, _QuantityMessage)
    if kind == _S:
        return isinstance(arg, _SemverMessage)
    return not isinstance(arg, (_QuantityMessage, _SemverMessage))


def _declarations() -> list[Any]:
    groups: dict[tuple[str, tuple[str, ...], bool], list[_Overload]] = {}
    for overload in _LIBRARY:
        kinds = tuple("message" if p in (_Q, _S) else p.name() for p in overload[3])
        groups.setdefault((overload[0], kinds, overload[4]), []).append(overload)
    by_name: dict[str, list[Any]] = {}
    for (name, _, _), overloads in groups.items():
        impl = _dispatching([o[5] for o in overloads], [o[3] for o in overloads])
        for index, (_, overload_id, result, params, member, _) in enumerate(overloads):
            # The runtime keys implementations on arity and value kinds: register it once.
            extra = {"impl": impl} if index == 0 else {}
            by_name.setdefault(name, []).append(
                cel.Overload(overload_id, result, params, is_member=member, **extra)
            )
    return [cel.FunctionDecl(name, overloads) for name, overloads in by_name.items()]


def _env(device_type: Any) -> Any:
    return cel.NewEnv(
        descriptor_pool=_POOL,
        variables={"device": device_type},
        functions=_declarations(),
        extensions=[
            ext_bindings.ExtBindings(),
            ext_strings.ExtStrings(),
            ext_optional.ExtOptional(),
            ext_math.ExtMath(),
        ],
    )


_CHECK_ENV = _env(T(_DEVICE))
_RUN_ENV = _env(T.Map(T.STRING, T.DYN))
_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'')


class CelRuntimeError(Exception):
    """An expression failed on one device; kube-scheduler aborts the allocation then."""


@dataclass(frozen=True)
class Selector:
    """One compiled selector expression."""

    expression: str
    program: Any
    # String literals of the expression: a domain it names that a device lacks reads as an
    # empty map, as Kubernetes' attribute and capacity maps answer for an unknown domain.
    literals: frozenset[str]

    def matches(self, device: Mapping[str, Any]) -> bool:
        data = dict(device)
        for key in ("attributes", "capacity"):
            missing = self.literals.difference(device[key])
            if missing:
                data[key] = {**device[key], **{domain: {} for domain in missing}}
        value = self.program.eval(data={"device": data})
        kind = value.type().name()
        if kind == "ERROR":
            raise CelRuntimeError(str(value.value()))
        if kind != "BOOL":
            raise CelRuntimeError(f"result of type {kind} is not a bool")
        return bool(value.value())


_CACHE: dict[str, Selector] = {}


def compile_selector(expression: str, owner: str) -> Selector:
    """The compiled selector, or CelCompileError naming `owner` and the expression."""
    cached = _CACHE.get(expression)
    if cached is not None:
        return cached
    try:
        checked = _CHECK_ENV.compile(expression)
        program = _RUN_ENV.compile(expression)
    except RuntimeError as error:
        raise CelCompileError(owner, expression, _first_line(str(error))) from None
    kind = checked.return_type().name()
    if kind not in ("BOOL", "DYN"):
        raise CelCompileError(owner, expression, f"must evaluate to bool, not {kind.lower()}")
    literals = frozenset(a or b for a, b in _LITERAL.findall(expression))
    selector = Selector(expression, program, literals)
    _CACHE[expression] = selector
    return selector


def _first_line(message: str) -> str:
    lines = [line for line in message.splitlines() if line.strip()]
    text = lines[0] if lines else message
    return text.removeprefix("INVALID_ARGUMENT: ").removeprefix("ERROR: ")
