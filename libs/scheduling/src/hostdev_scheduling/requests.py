"""A claim's requests and constraints, compiled: classes resolved, selectors compiled."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from .celenv import Selector, compile_selector
from .errors import SchedulingError, UnknownDeviceClassError
from .model import Claim, Object
from .quantity import parse_quantity

ADMIN_ACCESS_LABEL = "resource.kubernetes.io/admin-access"


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str
    value: str
    effect: str


@dataclass(frozen=True)
class Alternative:
    """One way to satisfy a request: `exactly`, or one firstAvailable subrequest."""

    request: str  # the top-level request name
    result_name: str  # "req", or "req/sub" for a subrequest
    class_name: str
    class_selectors: tuple[Selector, ...]
    request_selectors: tuple[Selector, ...]
    all_devices: bool
    count: int
    admin_access: bool
    tolerations: tuple[Toleration, ...]
    capacity_requests: Mapping[str, Fraction]


@dataclass(frozen=True)
class Request:
    name: str
    alternatives: tuple[Alternative, ...]


@dataclass(frozen=True)
class Constraint:
    """matchAttribute (all equal) or distinctAttribute (all different) over some requests."""

    requests: frozenset[str] | None  # None: every request of the claim
    attribute: str
    distinct: bool

    def covers(self, alternative: Alternative) -> bool:
        return self.requests is None or bool(
            {alternative.request, alternative.result_name} & self.requests
        )

    def describe(self) -> str:
        kind = "distinctAttribute" if self.distinct else "matchAttribute"
        scope = ", ".join(sorted(self.requests)) if self.requests else "all requests"
        return f"{kind} {self.attribute} over {scope}"


@dataclass(frozen=True)
class CompiledClaim:
    claim: Claim
    requests: tuple[Request, ...]
    constraints: tuple[Constraint, ...]


def _selectors(raw: object, owner: str) -> tuple[Selector, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SchedulingError(f"{owner}: selectors is not a list")
    compiled = []
    for index, item in enumerate(raw):
        cel = item.get("cel") if isinstance(item, Mapping) else None
        expression = cel.get("expression") if isinstance(cel, Mapping) else None
        if not isinstance(expression, str):
            raise SchedulingError(f"{owner}: selector #{index} has no cel.expression")
        compiled.append(compile_selector(expression, f"{owner} selector #{index}"))
    return tuple(compiled)


def _tolerations(raw: object, owner: str) -> tuple[Toleration, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SchedulingError(f"{owner}: tolerations is not a list")
    result = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise SchedulingError(f"{owner}: a toleration is not a mapping")
        operator = str(item.get("operator") or "Equal")
        if operator not in ("Equal", "Exists"):
            raise SchedulingError(
                f"{owner}: toleration operator {operator!r} is not Equal or Exists"
            )
        result.append(
            Toleration(
                str(item.get("key") or ""),
                operator,
                str(item.get("value") or ""),
                str(item.get("effect") or ""),
            )
        )
    return tuple(result)


def _alternative(
    request: str,
    result_name: str,
    raw: Object,
    admin_allowed: bool,
    classes: Mapping[str, Object],
    owner: str,
) -> Alternative:
    class_name = str(raw["deviceClassName"])
    device_class = classes.get(class_name)
    if device_class is None:
        raise UnknownDeviceClassError(f"{owner}: DeviceClass {class_name!r} is not in the input")
    mode = raw.get("allocationMode") or "ExactCount"
    if mode not in ("ExactCount", "All"):
        raise SchedulingError(f"{owner}: allocationMode {mode!r} is not ExactCount or All")
    count = raw.get("count", 1)
    if mode == "All" and "count" in raw:
        raise SchedulingError(f"{owner}: count must not be set with allocationMode All")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise SchedulingError(f"{owner}: count {count!r} is not a positive integer")
    capacity = raw.get("capacity") or {}
    requests = {str(k): parse_quantity(v) for k, v in (capacity.get("requests") or {}).items()}
    return Alternative(
        request=request,
        result_name=result_name,
        class_name=class_name,
        class_selectors=_selectors(
            device_class["spec"].get("selectors"), f"DeviceClass {class_name}"
        ),
        request_selectors=_selectors(raw.get("selectors"), owner),
        all_devices=mode == "All",
        count=count,
        admin_access=admin_allowed and raw.get("adminAccess") is True,
        tolerations=_tolerations(raw.get("tolerations"), owner),
        capacity_requests=requests,
    )


def compile_claim(claim: Claim, classes: Mapping[str, Object]) -> CompiledClaim:
    """Resolve classes and compile every selector; raises SchedulingError naming the claim."""
    devices = claim.spec.get("devices") or {}
    requests = []
    for raw in devices.get("requests") or []:
        name = str(raw["name"])
        owner = f"{claim.source} request {name}"
        if raw.get("exactly") is not None:
            alternatives: tuple[Alternative, ...] = (
                _alternative(name, name, raw["exactly"], True, classes, owner),
            )
        else:
            alternatives = tuple(
                _alternative(
                    name, f"{name}/{sub['name']}", sub, False, classes, f"{owner}/{sub['name']}"
                )
                for sub in raw["firstAvailable"]
            )
        requests.append(Request(name, alternatives))
    constraints = []
    for raw in devices.get("constraints") or []:
        attribute = raw.get("matchAttribute") or raw.get("distinctAttribute")
        if not isinstance(attribute, str) or "/" not in attribute:
            raise SchedulingError(
                f"{claim.source}: a constraint needs matchAttribute or distinctAttribute "
                "with a fully qualified name (domain/name)"
            )
        names = raw.get("requests")
        constraints.append(
            Constraint(
                frozenset(str(n) for n in names) if names else None,
                attribute,
                distinct=raw.get("matchAttribute") is None,
            )
        )
    return CompiledClaim(claim, tuple(requests), tuple(constraints))
