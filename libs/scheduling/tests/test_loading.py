"""Input handling: documents sorted into claims, bad input refused with a typed error that names
the object, CEL compile errors, and the quantity and semver helpers behind the CEL library."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from typing import Any

import pytest

from hostdev_scheduling import (
    CelCompileError,
    SchedulingError,
    UnknownDeviceClassError,
    load_objects,
    simulate,
)
from hostdev_scheduling.quantity import format_quantity, parse_quantity
from hostdev_scheduling.semver import parse_semver

CLASS: dict[str, Any] = {
    "apiVersion": "resource.k8s.io/v1",
    "kind": "DeviceClass",
    "metadata": {"name": "pci"},
    "spec": {"selectors": [{"cel": {"expression": 'device.driver == "hostdev.k8s.io"'}}]},
}
SLICE: dict[str, Any] = {
    "apiVersion": "resource.k8s.io/v1",
    "kind": "ResourceSlice",
    "metadata": {"name": "s"},
    "spec": {
        "driver": "hostdev.k8s.io",
        "nodeName": "n",
        "pool": {"name": "n", "generation": 1, "resourceSliceCount": 1},
        "devices": [{"name": "d0"}, {"name": "d1"}],
    },
}


def claim(name: str = "c", cls: str = "pci", selectors: list[str] | None = None) -> dict[str, Any]:
    exactly: dict[str, Any] = {"deviceClassName": cls}
    if selectors:
        exactly["selectors"] = [{"cel": {"expression": e}} for e in selectors]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"devices": {"requests": [{"name": "r", "exactly": exactly}]}},
    }


def test_claims_come_out_in_input_order_with_pod_claims_at_the_pod() -> None:
    template = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {"spec": claim()["spec"]},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "t"}]},
    }
    inp = load_objects([claim("first"), template, pod, claim("last"), CLASS, SLICE])
    assert [(c.namespace, c.name) for c in inp.claims] == [
        ("ns", "first"),
        ("ns", "p-gpu"),
        ("ns", "last"),
    ]
    assert inp.claims[1].source == "Pod ns/p entry gpu (template t)"


def test_a_template_no_pod_uses_is_simulated_under_its_own_name() -> None:
    template = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": "t"},
        "spec": {"spec": claim()["spec"]},
    }
    (outcome,) = simulate(load_objects([template, CLASS, SLICE]), node="n")
    assert (outcome.namespace, outcome.name, outcome.error) == ("default", "t", None)
    assert [d.device for d in outcome.devices] == ["d0"]


def test_list_documents_are_unpacked() -> None:
    inp = load_objects([{"apiVersion": "v1", "kind": "List", "items": [CLASS, SLICE, claim()]}])
    assert len(inp.claims) == 1
    assert set(inp.device_classes) == {"pci"}
    assert len(inp.slices) == 1


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        ([["not", "a", "mapping"]], "document 1: not a mapping"),
        (
            [{"kind": "ConfigMap", "metadata": {"name": "x"}}],
            "kind 'ConfigMap' is not one the simulator reads",
        ),
        (
            [{"apiVersion": "v1", "kind": "ResourceClaim", "metadata": {"name": "x"}, "spec": {}}],
            "apiVersion resource.k8s.io",
        ),
        (
            [
                {
                    "apiVersion": "resource.k8s.io/v1",
                    "kind": "ResourceClaim",
                    "metadata": {},
                    "spec": {},
                }
            ],
            "metadata.name is missing",
        ),
        (
            [
                {
                    "apiVersion": "resource.k8s.io/v1",
                    "kind": "ResourceClaim",
                    "metadata": {"name": "x"},
                    "spec": {"devices": {"requests": [{"name": "r"}]}},
                }
            ],
            "request 'r' must set exactly one of exactly and firstAvailable",
        ),
        (
            [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "p"},
                    "spec": {"resourceClaims": [{"name": "e", "resourceClaimName": "missing"}]},
                }
            ],
            "refers to ResourceClaim default/missing, which is not in the input",
        ),
        (
            [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "p"},
                    "spec": {"resourceClaims": [{"name": "e", "resourceClaimTemplateName": "t"}]},
                }
            ],
            "refers to ResourceClaimTemplate default/t, which is not in the input",
        ),
        ([claim(), claim()], "appears twice"),
        (
            [{**SLICE, "spec": {**SLICE["spec"], "pool": None}}],
            "document 1 (ResourceSlice s): spec.pool.name is missing",
        ),
    ],
)
def test_malformed_input_raises_a_scheduling_error_naming_the_document(
    docs: list[Any], message: str
) -> None:
    with pytest.raises(SchedulingError) as caught:
        load_objects(docs)
    assert message in str(caught.value)


def test_unknown_device_class_is_a_typed_error_naming_the_claim() -> None:
    inp = load_objects([claim(cls="nope"), SLICE])
    with pytest.raises(UnknownDeviceClassError) as caught:
        simulate(inp, node="n")
    assert "ResourceClaim ns/c request r" in str(caught.value)
    assert "'nope'" in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        ('device.driver == "a" &&', "Syntax error"),
        ('device.drivr == "a"', "undefined field 'drivr'"),
        ("device.driver == 1", "no matching overload"),
        ("device.driver", "must evaluate to bool, not string"),
        ('quantity(1) == quantity("1")', "no matching overload"),
    ],
)
def test_cel_errors_name_the_claim_and_the_expression(expression: str, detail: str) -> None:
    inp = load_objects([claim(selectors=[expression]), CLASS, SLICE])
    with pytest.raises(CelCompileError) as caught:
        simulate(inp, node="n")
    assert caught.value.owner == "ResourceClaim ns/c request r selector #0"
    assert caught.value.expression == expression
    assert detail in caught.value.detail


def test_cel_error_in_a_class_names_the_class() -> None:
    bad_class = {**CLASS, "spec": {"selectors": [{"cel": {"expression": "device.attributes"}}]}}
    with pytest.raises(CelCompileError) as caught:
        simulate(load_objects([claim(), bad_class, SLICE]), node="n")
    assert caught.value.owner == "DeviceClass pci selector #0"


def test_bad_attribute_value_in_a_slice_names_the_device() -> None:
    broken = {
        **SLICE,
        "spec": {
            **SLICE["spec"],
            "devices": [{"name": "d0", "attributes": {"x": {"int": "seven"}}}],
        },
    }
    with pytest.raises(SchedulingError) as caught:
        simulate(load_objects([claim(), CLASS, broken]), node="n")
    assert "ResourceSlice s device d0 attribute x" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1Gi", Fraction(2**30)),
        ("500m", Fraction(1, 2)),
        ("1.5k", Fraction(1500)),
        ("2e3", Fraction(2000)),
        ("100n", Fraction(100, 10**9)),
        ("-1", Fraction(-1)),
    ],
)
def test_quantities_parse_as_kubernetes_writes_them(text: str, value: Fraction) -> None:
    """apimachinery resource.Quantity: binary (Ki..Ei), decimal (n..E) suffixes and exponents."""
    assert parse_quantity(text) == value
    assert parse_quantity(format_quantity(value)) == value


@pytest.mark.parametrize("text", ["", "1GB", "Gi", "1..0", "0x10"])
def test_malformed_quantities_are_refused(text: str) -> None:
    with pytest.raises(SchedulingError):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [
        ("1.0.0-alpha", "1.0.0-alpha.1"),
        ("1.0.0-alpha.1", "1.0.0-beta"),
        ("1.0.0-rc.1", "1.0.0"),
        ("1.9.0", "1.10.0"),
    ],
)
def test_semver_precedence_follows_semver_org(smaller: str, larger: str) -> None:
    """semver.org 2.0.0 section 11: precedence of versions and pre-release identifiers."""
    low, high = parse_semver(smaller), parse_semver(larger)
    assert low is not None
    assert high is not None
    assert low.compare(high) == -1
    assert high.compare(low) == 1


def test_the_library_imports_without_the_rest_of_the_project() -> None:
    code = (
        "import sys, hostdev_scheduling\n"
        "others = sorted(m for m in sys.modules if m.startswith('hostdev_') and not m.startswith('hostdev_scheduling'))\n"
        "print(','.join(others))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""
