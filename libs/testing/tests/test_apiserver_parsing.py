"""Field selector parsing (the driver lists and watches slices by node and driver), without HTTP."""

from __future__ import annotations

from hostdev_testing.apiserver import RESOURCES
from hostdev_testing.apiserver.selectors import parse_fields

SLICES = RESOURCES["resourceslices"]


def test_field_selector_values_may_escape_commas() -> None:
    """A backslash-escaped comma stays inside the value."""
    selector = parse_fields(r"metadata.name=a\,b", SLICES)
    assert selector.matches({"metadata.name": "a,b"})
    assert not selector.matches({"metadata.name": "a"})


def test_missing_node_name_matches_an_empty_field_selector_value() -> None:
    """A slice without spec.nodeName has the field value "", as upstream indexes it."""
    selector = parse_fields("spec.nodeName=", SLICES)
    assert selector.matches(SLICES.fields({"metadata": {"name": "s"}, "spec": {"allNodes": True}}))
