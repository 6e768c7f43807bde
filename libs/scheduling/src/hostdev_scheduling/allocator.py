"""The search: claims one after another, each by backtracking over its requests' devices.

It follows the structured-parameters allocator of kube-scheduler: requests in order, each
`exactly` request picks `count` devices (or every matching device with allocationMode All), a
firstAvailable request tries its subrequests in order, and a choice that leaves a later request
or a constraint unsatisfiable is undone and the next one tried, within a bounded number of steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from .celenv import CelRuntimeError, Selector
from .model import AllocatedDevice, Claim, ClaimOutcome, Object
from .pools import Device, DeviceId, Pool, Taint
from .quantity import format_quantity, parse_quantity
from .requests import ADMIN_ACCESS_LABEL, Alternative, CompiledClaim, Constraint, Toleration

BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")


class _Abort(Exception):
    """The claim cannot be allocated and the search stops (as upstream returns an error)."""


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """core/v1 toleration matching, as DRA device tolerations use it."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.operator == "Exists":
        return not toleration.key or toleration.key == taint.key
    return toleration.key == taint.key and toleration.value == taint.value


def untolerated(device: Device, tolerations: Sequence[Toleration]) -> list[Taint]:
    return [
        taint
        for taint in device.taints
        if taint.effect in BLOCKING_EFFECTS and not any(tolerates(t, taint) for t in tolerations)
    ]


@dataclass
class Pick:
    alternative: Alternative
    device: Device
    consumed: dict[str, Fraction]


@dataclass
class HeldState:
    """What earlier claims hold, shared by all claims of a simulation."""

    # device -> the claim (namespace/name) that holds it
    exclusive: dict[DeviceId, str] = field(default_factory=dict)
    # (driver, pool, counter set, counter) -> consumed
    counters: dict[tuple[str, str, str, str], Fraction] = field(default_factory=dict)
    # (device, capacity) -> consumed, for devices with allowMultipleAllocations
    capacity: dict[tuple[DeviceId, str], Fraction] = field(default_factory=dict)
    # multi-allocation devices whose counters are consumed, with how many holders
    counted: dict[DeviceId, int] = field(default_factory=dict)


def _requested(device: Device, alternative: Alternative, name: str) -> Fraction | None:
    for key, amount in alternative.capacity_requests.items():
        qualified = key if "/" in key else f"{device.id.driver}/{key}"
        if qualified == name:
            return amount
    return None


def consumption(device: Device, alternative: Alternative) -> dict[str, Fraction] | None:
    """Capacity a multi-allocation device gives this request, or None if its policy refuses it.

    Per KEP-5075: the requested amount, else the policy's default, else the whole capacity;
    raised to the policy's minimum, rounded up to a step or to the next valid value.
    """
    result: dict[str, Fraction] = {}
    for name, total in device.capacity.items():
        asked = _requested(device, alternative, name)
        policy = device.policies.get(name)
        if policy is None:
            amount = total if asked is None else asked
        else:
            amount = (
                asked
                if asked is not None
                else (policy.default if policy.default is not None else total)
            )
            if policy.valid_values:
                fitting = [v for v in policy.valid_values if v >= amount]
                if not fitting:
                    return None
                amount = fitting[0]
            else:
                if policy.minimum is not None and amount < policy.minimum:
                    amount = policy.minimum
                if policy.step is not None and policy.step > 0:
                    base = policy.minimum or Fraction(0)
                    steps = -((-(amount - base)) // policy.step)
                    amount = base + steps * policy.step
                if policy.maximum is not None and amount > policy.maximum:
                    return None
        result[name] = amount
    for key in alternative.capacity_requests:
        qualified = key if "/" in key else f"{device.id.driver}/{key}"
        if qualified not in device.capacity:
            return None
    return result


class Allocator:
    def __init__(self, pools: list[Pool], max_steps: int) -> None:
        self.pools = pools
        self.devices = [d for p in pools for d in p.devices]
        # Incomplete (being updated) and invalid pools give no device to a count request.
        self.usable = [
            d for p in pools if not p.incomplete and p.invalid is None for d in p.devices
        ]
        self.by_id = {d.id: d for d in self.devices}
        self.counter_totals = {
            (p.driver, p.name, s, c): v for p in pools for (s, c), v in p.counters.items()
        }
        self.held = HeldState()
        self.max_steps = max_steps
        self.steps = 0
        self._matches: dict[tuple[int, DeviceId], bool] = {}

    # ----- held state -----

    def _take(
        self, device: Device, consumed: dict[str, Fraction], admin: bool, sign: int, holder: str
    ) -> None:
        if admin:
            return  # admin access observes a device: it holds nothing and consumes nothing
        if device.multi:
            for name, amount in consumed.items():
                slot = (device.id, name)
                self.held.capacity[slot] = self.held.capacity.get(slot, Fraction(0)) + sign * amount
            holders = self.held.counted.get(device.id, 0) + sign
            self.held.counted[device.id] = holders
            # Counters of a shared device are consumed once, by its first holder.
            if not (sign > 0 and holders == 1) and not (sign < 0 and holders == 0):
                return
        elif sign > 0:
            self.held.exclusive[device.id] = holder
        else:
            self.held.exclusive.pop(device.id, None)
        for (counter_set, counter), amount in device.consumes.items():
            key = (device.id.driver, device.id.pool, counter_set, counter)
            self.held.counters[key] = self.held.counters.get(key, Fraction(0)) + sign * amount

    def hold_existing(self, allocation: Object, holder: str) -> list[AllocatedDevice]:
        """Record a claim's status.allocation as held; returns its devices."""
        results = (allocation.get("devices") or {}).get("results") or []
        devices = []
        for result in results:
            ident = DeviceId(
                str(result.get("driver")), str(result.get("pool")), str(result.get("device"))
            )
            admin = result.get("adminAccess") is True
            consumed = {
                k: parse_quantity(v) for k, v in (result.get("consumedCapacity") or {}).items()
            }
            device = self.by_id.get(ident)
            if device is not None:
                qualified = {
                    (k if "/" in k else f"{ident.driver}/{k}"): v for k, v in consumed.items()
                }
                self._take(device, qualified, admin, +1, holder)
            elif not admin:
                self.held.exclusive[ident] = holder
            devices.append(
                AllocatedDevice(
                    str(result.get("request")),
                    ident.driver,
                    ident.pool,
                    ident.device,
                    admin,
                    {k: format_quantity(v) for k, v in consumed.items()},
                )
            )
        return devices

    # ----- checks -----

    def matches(self, alternative: Alternative, device: Device, claim: Claim) -> bool:
        key = (id(alternative), device.id)
        cached = self._matches.get(key)
        if cached is not None:
            return cached
        result = self._evaluate(
            alternative.class_selectors, device, claim, f"DeviceClass {alternative.class_name}"
        ) and self._evaluate(
            alternative.request_selectors, device, claim, f"request {alternative.result_name}"
        )
        self._matches[key] = result
        return result

    def _evaluate(
        self, selectors: Sequence[Selector], device: Device, claim: Claim, owner: str
    ) -> bool:
        for index, selector in enumerate(selectors):
            try:
                if not selector.matches(device.cel_input):
                    return False
            except CelRuntimeError as error:
                raise _Abort(
                    f"{owner} selector #{index} {selector.expression!r} failed on device "
                    f"{device.id}: {error} (kube-scheduler aborts the allocation on a CEL runtime error)"
                ) from None
        return True

    def blocker(
        self, alternative: Alternative, device: Device, picks: Sequence[Pick]
    ) -> str | None:
        """Why `device` cannot be added to this claim's picks now, or None."""
        admin = alternative.admin_access
        if any(
            p.device.id == device.id and (not device.multi or p.alternative is alternative)
            for p in picks
        ):
            return "already chosen for this claim"
        holder = self.held.exclusive.get(device.id)
        if not device.multi and not admin and holder is not None:
            return f"allocated to an earlier claim ({holder})"
        taints = untolerated(device, alternative.tolerations)
        if taints:
            return "taint not tolerated: " + ", ".join(
                f"{t.key}={t.value}:{t.effect}" for t in taints
            )
        if device.multi:
            consumed = consumption(device, alternative)
            if consumed is None:
                return "capacity request outside the device's requestPolicy"
            if not admin:
                for name, amount in consumed.items():
                    used = self.held.capacity.get((device.id, name), Fraction(0))
                    used += sum(
                        (
                            p.consumed.get(name, Fraction(0))
                            for p in picks
                            if p.device.id == device.id
                        ),
                        Fraction(0),
                    )
                    if used + amount > device.capacity[name]:
                        return f"capacity {name} exhausted ({format_quantity(device.capacity[name] - used)} left)"
        else:
            for key, amount in alternative.capacity_requests.items():
                qualified = key if "/" in key else f"{device.id.driver}/{key}"
                if device.capacity.get(qualified, Fraction(-1)) < amount:
                    return f"capacity {qualified} below the requested {format_quantity(amount)}"
        # Admin access observes a device: it consumes no counters (see the README on how
        # upstream may differ), nor does a shared device whose counters are already consumed.
        counting = not admin and not (
            device.multi
            and (
                self.held.counted.get(device.id, 0) > 0
                or any(p.device.id == device.id for p in picks)
            )
        )
        if counting:
            for (counter_set, counter), amount in device.consumes.items():
                counter_key = (device.id.driver, device.id.pool, counter_set, counter)
                total = self.counter_totals.get(counter_key)
                if total is None:
                    return f"counter set {counter_set} (counter {counter}) is not in pool {device.id.pool}"
                used = self.held.counters.get(counter_key, Fraction(0)) + self._picked_counters(
                    picks, counter_key
                )
                if used + amount > total:
                    return f"counter {counter_set}/{counter} exhausted ({format_quantity(total - used)} of {format_quantity(total)} left)"
        return None

    def _picked_counters(self, picks: Sequence[Pick], key: tuple[str, str, str, str]) -> Fraction:
        """What this claim's picks so far consume of one counter (a shared device once)."""
        driver, pool, counter_set, counter = key
        seen: set[DeviceId] = set()
        total = Fraction(0)
        for pick in picks:
            device = pick.device
            if pick.alternative.admin_access or device.id in seen:
                continue
            if (device.id.driver, device.id.pool) != (driver, pool):
                continue
            if device.multi and self.held.counted.get(device.id, 0) > 0:
                continue  # its counters were consumed by an earlier claim
            seen.add(device.id)
            total += device.consumes.get((counter_set, counter), Fraction(0))
        return total

    def constraint_blocker(
        self,
        constraints: Sequence[Constraint],
        alternative: Alternative,
        device: Device,
        picks: Sequence[Pick],
    ) -> Constraint | None:
        for constraint in constraints:
            if not constraint.covers(alternative):
                continue
            value = device.attributes.get(constraint.attribute)
            if value is None:
                return constraint
            others = [
                p.device.attributes.get(constraint.attribute)
                for p in picks
                if constraint.covers(p.alternative)
            ]
            if constraint.distinct:
                if value in others:
                    return constraint
            elif any(other != value for other in others):
                return constraint
        return None

    # ----- search -----

    def _step(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise _Abort(
                f"gave up after {self.max_steps} search steps (kube-scheduler bounds its search too)"
            )

    def allocate(
        self, compiled: CompiledClaim, namespaces: dict[str, Object] | None = None
    ) -> ClaimOutcome:
        claim = compiled.claim
        self.steps = 0
        self._matches.clear()
        admin = [a for r in compiled.requests for a in r.alternatives if a.admin_access]
        if admin and not _admin_namespace(claim.namespace, namespaces or {}):
            return ClaimOutcome(
                claim.namespace,
                claim.name,
                [],
                (
                    f"request {admin[0].result_name} asks for adminAccess, which the API server only "
                    f"admits in a namespace labelled {ADMIN_ACCESS_LABEL}=true; namespace "
                    f"{claim.namespace} is not (give its Namespace object in the input)"
                ),
            )
        picks: list[Pick] = []
        try:
            found = self._solve(compiled, 0, picks)
            error = None if found else self._diagnose(compiled)
        except _Abort as abort:
            found, error = False, str(abort)
        if not found:
            return ClaimOutcome(claim.namespace, claim.name, [], error)
        for pick in picks:
            self._take(
                pick.device,
                pick.consumed,
                pick.alternative.admin_access,
                +1,
                f"{claim.namespace}/{claim.name}",
            )
        return ClaimOutcome(claim.namespace, claim.name, [_result(p) for p in picks], None)

    def _solve(self, compiled: CompiledClaim, index: int, picks: list[Pick]) -> bool:
        if index == len(compiled.requests):
            return True
        for alternative in compiled.requests[index].alternatives:
            if alternative.all_devices:
                if self._place_all(compiled, index, alternative, picks):
                    return True
            elif self._pick(compiled, index, alternative, 0, alternative.count, picks):
                return True
        return False

    def _add(
        self, compiled: CompiledClaim, alternative: Alternative, device: Device, picks: list[Pick]
    ) -> bool:
        if self.blocker(alternative, device, picks) is not None:
            return False
        if self.constraint_blocker(compiled.constraints, alternative, device, picks) is not None:
            return False
        consumed = consumption(device, alternative) if device.multi else {}
        picks.append(Pick(alternative, device, consumed or {}))
        return True

    def _pick(
        self,
        compiled: CompiledClaim,
        index: int,
        alternative: Alternative,
        start: int,
        remaining: int,
        picks: list[Pick],
    ) -> bool:
        if remaining == 0:
            return self._solve(compiled, index + 1, picks)
        for position in range(start, len(self.usable)):
            self._step()
            device = self.usable[position]
            if not self.matches(alternative, device, compiled.claim):
                continue
            if not self._add(compiled, alternative, device, picks):
                continue
            if self._pick(compiled, index, alternative, position + 1, remaining - 1, picks):
                return True
            picks.pop()
        return False

    def _all_matching(self, alternative: Alternative, claim: Claim) -> list[Device]:
        for pool in self.pools:
            if pool.incomplete:
                raise _Abort(
                    f"request {alternative.result_name} asks for all devices, but pool "
                    f"{pool.driver}/{pool.name} is incomplete (fewer slices of generation "
                    f"{pool.generation} than its resourceSliceCount): it is being updated"
                )
            if pool.invalid is not None:
                raise _Abort(
                    f"request {alternative.result_name} asks for all devices, but pool "
                    f"{pool.driver}/{pool.name} is invalid: {pool.invalid}"
                )
        return [d for d in self.devices if self.matches(alternative, d, claim)]

    def _place_all(
        self, compiled: CompiledClaim, index: int, alternative: Alternative, picks: list[Pick]
    ) -> bool:
        self._step()
        devices = self._all_matching(alternative, compiled.claim)
        if not devices:
            return False
        mark = len(picks)
        for device in devices:
            if self.blocker(alternative, device, picks) is not None:
                del picks[mark:]
                return False
            constraint = self.constraint_blocker(compiled.constraints, alternative, device, picks)
            if constraint is not None:
                # Upstream treats a constraint that keeps an "all" request from getting every
                # device as an error in the claim, not as something to search around.
                raise _Abort(
                    f"request {alternative.result_name} asks for all devices, but device "
                    f"{device.id} would break the constraint {constraint.describe()}"
                )
            self._add(compiled, alternative, device, picks)
        if self._solve(compiled, index + 1, picks):
            return True
        del picks[mark:]
        return False

    # ----- reasons -----

    def _diagnose(self, compiled: CompiledClaim) -> str:
        for request in compiled.requests:
            reasons = [self._alone(compiled, a) for a in request.alternatives]
            if all(r is not None for r in reasons):
                if len(reasons) == 1:
                    return f"request {request.name}: {reasons[0]}"
                return f"request {request.name}: no subrequest can be satisfied: " + "; ".join(
                    f"{a.result_name}: {r}"
                    for a, r in zip(request.alternatives, reasons, strict=True)
                )
        if compiled.constraints:
            return "no combination of devices satisfies the constraints: " + "; ".join(
                c.describe() for c in compiled.constraints
            )
        return "each request can be satisfied alone, but not all of them together with distinct devices"

    def _unusable_pools(self, alternative: Alternative, claim: Claim) -> str:
        pools = [
            p
            for p in self.pools
            if (p.incomplete or p.invalid is not None)
            and any(self.matches(alternative, d, claim) for d in p.devices)
        ]
        return ", ".join(_pool_state(p) for p in pools)

    def _alone(self, compiled: CompiledClaim, alternative: Alternative) -> str | None:
        claim = compiled.claim
        if alternative.all_devices:
            try:
                matching = self._all_matching(alternative, claim)
            except _Abort as abort:
                return str(abort)
        else:
            matching = [d for d in self.usable if self.matches(alternative, d, claim)]
        if not matching:
            waiting = self._unusable_pools(alternative, claim)
            if waiting:
                return (
                    f"the only devices that match {_selectors_text(alternative)} are in {waiting}"
                )
            return f"no device matches {_selectors_text(alternative)}"
        blocked = [(d, self.blocker(alternative, d, [])) for d in matching]
        unavailable = [(d, r) for d, r in blocked if r is not None]
        if alternative.all_devices:
            if unavailable:
                return f"allocationMode All needs every matching device but {_list_reasons(unavailable)}"
            return None
        available = len(matching) - len(unavailable)
        if available >= alternative.count:
            return None
        return (
            f"{alternative.count} device(s) needed, {len(matching)} match {_selectors_text(alternative)}, "
            f"{available} available: {_list_reasons(unavailable)}"
        )


def _pool_state(pool: Pool) -> str:
    if pool.invalid is not None:
        return f"pool {pool.driver}/{pool.name}, which is invalid ({pool.invalid})"
    return f"pool {pool.driver}/{pool.name}, which is incomplete (being updated)"


def _selectors_text(alternative: Alternative) -> str:
    text = f"DeviceClass {alternative.class_name}"
    if alternative.request_selectors:
        text += " and selectors " + ", ".join(
            repr(s.expression) for s in alternative.request_selectors
        )
    if alternative.capacity_requests:
        text += " with capacity " + ", ".join(
            f"{k}={format_quantity(v)}" for k, v in alternative.capacity_requests.items()
        )
    return text


def _list_reasons(unavailable: Sequence[tuple[Device, str | None]]) -> str:
    return "; ".join(f"{device.id}: {reason}" for device, reason in unavailable)


def _result(pick: Pick) -> AllocatedDevice:
    device = pick.device
    return AllocatedDevice(
        pick.alternative.result_name,
        device.id.driver,
        device.id.pool,
        device.id.device,
        pick.alternative.admin_access,
        {k: format_quantity(v) for k, v in pick.consumed.items()},
    )


def _admin_namespace(namespace: str, namespaces: dict[str, Object]) -> bool:
    obj = namespaces.get(namespace)
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return str(labels.get(ADMIN_ACCESS_LABEL, "")).lower() == "true"
