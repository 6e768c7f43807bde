"""Simulate kube-scheduler's structured-parameters allocation of ResourceClaims on one node.

Objects are resource.k8s.io/v1 (and core/v1 Pod, Node, Namespace) documents as plain dicts, as
parsed from YAML. The public API, which `hostdev simulate` and other callers code against:

    from hostdev_scheduling import (
        simulate, load_objects, SimulationInput, ClaimOutcome, AllocatedDevice, SchedulingError,
    )

    inp = load_objects(docs)           # Iterable[Mapping[str, Any]] -> SimulationInput
    outcomes = simulate(inp, node="n") # -> list[ClaimOutcome], one per claim, in input order

`load_objects` sorts the documents into claims (ResourceClaims; a Pod's
`resourceClaimTemplateName` entry becomes a claim named `<pod>-<entry>`; a template no pod uses
becomes a claim named after the template), DeviceClasses, ResourceSlices, Nodes (their labels
decide `nodeSelector` slices) and Namespaces (their admin-access label decides `adminAccess`).
It raises `SchedulingError` naming the document for anything malformed or dangling.

`simulate` first resolves every DeviceClass and compiles every CEL selector, raising
`SchedulingError` (`UnknownDeviceClassError`, `CelCompileError`) naming the claim or class and
the expression. It then allocates the claims in order, each holding its devices for the ones
after it; claims that come with `status.allocation` are held as they are and reported with
`already_allocated=True`. Each `ClaimOutcome` has the `AllocatedDevice`s (request, driver, pool,
device, admin_access, consumed_capacity) or, with no devices, `error`: which request failed and
why. Pure and synchronous: no I/O, no clock, no global state but a cache of compiled expressions.
"""

from __future__ import annotations

from .allocator import Allocator
from .errors import CelCompileError, SchedulingError, UnknownDeviceClassError
from .loader import load_objects
from .model import AllocatedDevice, Claim, ClaimOutcome, SimulationInput
from .pools import gather_pools
from .requests import compile_claim

__all__ = [
    "AllocatedDevice",
    "CelCompileError",
    "Claim",
    "ClaimOutcome",
    "SchedulingError",
    "SimulationInput",
    "UnknownDeviceClassError",
    "load_objects",
    "simulate",
]

DEFAULT_MAX_STEPS = 100_000


def simulate(
    inp: SimulationInput, *, node: str, max_steps: int = DEFAULT_MAX_STEPS
) -> list[ClaimOutcome]:
    """Allocate `inp.claims` in order against the slices `node` sees; one outcome per claim.

    `max_steps` bounds the backtracking search of each claim; a claim that needs more gets an
    error saying so.
    """
    pending = [c for c in inp.claims if c.allocation is None]
    compiled = {id(c): compile_claim(c, inp.device_classes) for c in pending}
    allocator = Allocator(gather_pools(inp.slices, node, inp.nodes), max_steps)
    outcomes: list[ClaimOutcome] = []
    for claim in inp.claims:
        if claim.allocation is not None:
            devices = allocator.hold_existing(claim.allocation, f"{claim.namespace}/{claim.name}")
            outcomes.append(
                ClaimOutcome(claim.namespace, claim.name, devices, None, already_allocated=True)
            )
    # Held claims count wherever they sit in the input: the scheduler sees them all at once.
    results = {
        id(c): o
        for c, o in zip([c for c in inp.claims if c.allocation is not None], outcomes, strict=True)
    }
    for claim in pending:
        results[id(claim)] = allocator.allocate(compiled[id(claim)], dict(inp.namespaces))
    return [results[id(c)] for c in inp.claims]
