"""`hostdev simulate`: would these claims be satisfied on this node, and with which devices?

The claims file may hold ResourceClaims, ResourceClaimTemplates and Pods (and DeviceClasses,
Namespaces, Nodes, more ResourceSlices). The node's slices come from a host root (built as
`hostdev slices` builds them) or from a file: `hostdev inventory --json` output or slices
YAML. DeviceClasses default to the driver's own (a copy of k8s/base/deviceclasses.yaml
shipped with the command); a class in the claims file or --classes replaces one of the
same name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import yaml

from hostdev_cli.errors import InputError
from hostdev_cli.output import table
from hostdev_events.inventory import Device
from hostdev_scheduling import ClaimOutcome, SchedulingError, load_objects, simulate

Object = dict[str, Any]


def read_documents(path: Path) -> list[Object]:
    """Every YAML (or JSON) document of a file, empty ones skipped; each must be an object."""
    try:
        text = path.read_text()
    except OSError as err:
        raise InputError(f"{path}: {err.strerror}") from err
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(f"{path}: not valid YAML: {err.problem or err.context}{where}") from err
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML: {_one_line(str(err))}") from err
    for index, document in enumerate(documents):
        if not isinstance(document, dict):
            raise InputError(f"{path}: document {index + 1} is not an object")
    return documents


def _one_line(text: str) -> str:
    return " ".join(text.split())


def default_classes() -> list[Object]:
    """The driver's DeviceClasses as shipped with the command."""
    text = resources.files("hostdev_cli").joinpath("deviceclasses.yaml").read_text()
    return [d for d in yaml.safe_load_all(text) if d]


def slices_from_file(path: Path, build: Any) -> list[Object]:
    """ResourceSlices from `hostdev inventory --json` output (rebuilt with `build`) or YAML."""
    documents = read_documents(path)
    if len(documents) == 1 and isinstance(documents[0].get("devices"), list):
        try:
            devices = msgspec.convert(documents[0]["devices"], list[Device])
        except msgspec.ValidationError as err:
            raise InputError(f"{path}: not hostdev inventory output: {err}") from err
        result: list[Object] = build(devices)
        return result
    documents = _flatten_lists(documents)
    others = sorted({str(d.get("kind")) for d in documents if d.get("kind") != "ResourceSlice"})
    if others or not documents:
        found = ", ".join(others) or "nothing"
        raise InputError(
            f"{path}: expected ResourceSlices or `hostdev inventory --json` output, found {found}"
        )
    return named(documents)


def named(slices: list[Object]) -> list[Object]:
    """Slices as the API server would store them: a generated name where only
    `generateName` is set (as `hostdev slices` writes them)."""
    result = []
    for index, body in enumerate(slices):
        metadata = body.get("metadata")
        if isinstance(metadata, dict) and not metadata.get("name"):
            prefix = metadata.get("generateName") or "slice-"
            body = {**body, "metadata": {**metadata, "name": f"{prefix}{index}"}}
        result.append(body)
    return result


def _flatten_lists(documents: Iterable[Object]) -> list[Object]:
    """`kubectl get -o yaml` wraps objects in a List; unwrap it."""
    flat: list[Object] = []
    for document in documents:
        if document.get("kind", "").endswith("List") and isinstance(document.get("items"), list):
            flat += [
                dict(item, kind=item.get("kind", document["kind"][:-4]))
                for item in document["items"]
            ]
        else:
            flat.append(document)
    return flat


def merge_classes(defaults: list[Object], given: list[Object]) -> list[Object]:
    """The given classes, plus each default whose name none of them takes."""
    taken = {_name(c) for c in given if c.get("kind") == "DeviceClass"}
    return [c for c in defaults if _name(c) not in taken]


def _name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, dict) else ""


def run(
    claims_file: Path, claims: list[Object], classes: list[Object], slices: list[Object], node: str
) -> list[ClaimOutcome]:
    """Load everything and allocate; SchedulingError becomes bad input naming the claims file."""
    documents = claims + classes + slices
    try:
        return simulate(load_objects(documents), node=node)
    except SchedulingError as err:
        raise InputError(f"{claims_file}: {_one_line(str(err))}") from err


def to_data(outcomes: list[ClaimOutcome]) -> list[Object]:
    """Plain data for --json / --yaml."""
    return [
        {
            "namespace": o.namespace,
            "name": o.name,
            "alreadyAllocated": o.already_allocated,
            "devices": [
                {
                    "request": d.request,
                    "driver": d.driver,
                    "pool": d.pool,
                    "device": d.device,
                    "adminAccess": d.admin_access,
                    **(
                        {"consumedCapacity": dict(d.consumed_capacity)}
                        if d.consumed_capacity
                        else {}
                    ),
                }
                for d in o.devices
            ],
            "error": o.error,
        }
        for o in outcomes
    ]


def render(outcomes: list[ClaimOutcome]) -> str:
    """One line per allocated device, or one line with the reason a claim fails."""
    rows: list[tuple[str, str, str, str]] = []
    for o in outcomes:
        claim = f"{o.namespace}/{o.name}"
        if o.error is not None:
            rows.append((claim, "-", "-", f"unsatisfiable: {o.error}"))
            continue
        if not o.devices:
            rows.append((claim, "-", "-", "allocated (no devices requested)"))
            continue
        verdict = "already allocated" if o.already_allocated else "allocated"
        for d in o.devices:
            note = verdict + (" (admin access)" if d.admin_access else "")
            rows.append((claim, d.request, f"{d.pool}/{d.device}", note))
    return table(("CLAIM", "REQUEST", "DEVICE", "RESULT"), rows)


def satisfied(outcomes: list[ClaimOutcome]) -> bool:
    """Whether every claim got its devices."""
    return all(o.error is None for o in outcomes)
