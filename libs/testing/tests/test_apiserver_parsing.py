"""Selector parsing, patch application and the patch-merge table, without HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hostdev_testing.apiserver import RESOURCES, ApiError
from hostdev_testing.apiserver.patch import json_patch, merge_patch, strategic_merge
from hostdev_testing.apiserver.selectors import parse_fields, parse_labels
from hostdev_testing.schemas import schemas_dir

SLICES = RESOURCES["resourceslices"]


@pytest.mark.parametrize("text", ["tier in ()", "=gold", "tier=bad value!", "tier > x", "-bad-=x"])
def test_malformed_label_selector_is_a_bad_request(text: str) -> None:
    """Unparseable label selectors are 400 BadRequest."""
    with pytest.raises(ApiError) as caught:
        parse_labels(text)
    assert caught.value.code == 400


def test_numeric_label_comparisons_match_integer_values() -> None:
    """`>` and `<` compare label values as integers and never match non-numbers."""
    selector = parse_labels("gen>2,gen<10")
    assert [selector.matches({"gen": v}) for v in ("3", "2", "10", "x")] == [
        True,
        False,
        False,
        False,
    ]


def test_field_selector_values_may_escape_commas() -> None:
    """A backslash-escaped comma stays inside the value."""
    selector = parse_fields(r"metadata.name=a\,b", SLICES)
    assert selector.matches({"metadata.name": "a,b"})
    assert not selector.matches({"metadata.name": "a"})


def test_missing_node_name_matches_an_empty_field_selector_value() -> None:
    """A slice without spec.nodeName has the field value "", as upstream indexes it."""
    selector = parse_fields("spec.nodeName=", SLICES)
    assert selector.matches(SLICES.fields({"metadata": {"name": "s"}, "spec": {"allNodes": True}}))


def test_merge_patch_replaces_lists_and_deletes_nulls() -> None:
    """RFC 7386: lists are replaced whole, null removes a key."""
    target = {"a": [1, 2], "b": {"c": 1, "d": 2}}
    assert merge_patch(target, {"a": [3], "b": {"c": None}}) == {"a": [3], "b": {"d": 2}}


def test_strategic_merge_deletes_a_keyed_list_entry() -> None:
    """`$patch: delete` inside a merge-keyed list removes the entry with that key."""
    target = {
        "metadata": {"ownerReferences": [{"uid": "1"}, {"uid": "2"}], "finalizers": ["x", "y"]}
    }
    patch = {
        "metadata": {
            "ownerReferences": [{"uid": "1", "$patch": "delete"}],
            "$deleteFromPrimitiveList/finalizers": ["x"],
        }
    }
    patched = strategic_merge(target, patch, SLICES.merge_keys)
    assert patched == {"metadata": {"ownerReferences": [{"uid": "2"}], "finalizers": ["y"]}}


def test_strategic_merge_replaces_lists_without_a_strategy() -> None:
    """Lists without a patch strategy (such as devices) are replaced, not merged."""
    target = {"spec": {"devices": [{"name": "a"}, {"name": "b"}]}}
    patched = strategic_merge(target, {"spec": {"devices": [{"name": "c"}]}}, SLICES.merge_keys)
    assert patched == {"spec": {"devices": [{"name": "c"}]}}


def test_json_patch_moves_copies_and_appends() -> None:
    """move, copy and add with "-" behave per RFC 6902."""
    ops = [
        {"op": "copy", "from": "/a", "path": "/b"},
        {"op": "move", "from": "/a", "path": "/c"},
        {"op": "add", "path": "/list/-", "value": 3},
        {"op": "remove", "path": "/list/0"},
    ]
    assert json_patch({"a": 1, "list": [1, 2]}, ops) == {"list": [2, 3], "b": 1, "c": 1}


def _merge_paths(
    schemas: dict[str, Any],
    schema: dict[str, Any],
    path: tuple[str, ...],
    found: dict[tuple[str, ...], str],
) -> None:
    while "$ref" in schema or len(schema.get("allOf", [])) == 1:
        schema = schemas[schema["$ref"].split("/")[-1]] if "$ref" in schema else schema["allOf"][0]
    for name, prop in schema.get("properties", {}).items():
        if "merge" in prop.get("x-kubernetes-patch-strategy", ""):
            found[(*path, name)] = prop.get("x-kubernetes-patch-merge-key", "")
        _merge_paths(schemas, prop.get("items", prop), (*path, name), found)


def test_merge_key_table_agrees_with_the_openapi_document() -> None:
    """The strategic-merge keys used for resource.k8s.io types are the documented ones."""
    document = json.loads((schemas_dir() / "k8s-resource.k8s.io-v1-openapi.json").read_text())
    schemas = document["components"]["schemas"]
    for rt in RESOURCES.values():
        if rt.schema is None:
            continue
        found: dict[tuple[str, ...], str] = {}
        _merge_paths(schemas, {"$ref": "#/x/" + rt.schema}, (), found)
        assert found == dict(rt.merge_keys), rt.plural
