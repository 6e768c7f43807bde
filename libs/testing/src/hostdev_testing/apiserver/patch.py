"""PATCH bodies: JSON merge patch, strategic merge patch and JSON patch."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from hostdev_testing.apiserver.errors import ApiError, bad_request

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_YAML = "application/apply-patch+yaml"
ACCEPTED = [JSON_PATCH, MERGE, APPLY_YAML, STRATEGIC, "application/apply-patch+cbor"]

Path = tuple[str, ...]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(target: Any, patch: Any, keys: Mapping[Path, str], path: Path = ()) -> Any:
    """Strategic merge: like merge patch, but lists named in `keys` merge by their key."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [x for x in result.get(name) or [] if x not in value]
            continue
        sub = (*path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and sub in keys:
            result[key] = _merge_list(result.get(key) or [], value, keys[sub], keys, sub)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value, keys, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(patch.get("$retainKeys"), list):
        result = {k: v for k, v in result.items() if k in patch["$retainKeys"]}
    return result


def _merge_list(
    current: list[Any], items: list[Any], key: str, keys: Mapping[Path, str], path: Path
) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in items):
        return [copy.deepcopy(i) for i in items if not (isinstance(i, dict) and "$patch" in i)]
    if not key:
        return list(current) + [copy.deepcopy(i) for i in items if i not in current]
    result = [copy.deepcopy(i) for i in current]
    for item in items:
        if not isinstance(item, dict) or key not in item:
            raise bad_request(f"map: {item!r} does not contain declared merge key: {key}")
        index = next((n for n, old in enumerate(result) if old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            result = [old for old in result if old.get(key) != item[key]]
        elif index is None:
            result.append(strategic_merge({}, item, keys, path))
        else:
            result[index] = strategic_merge(result[index], item, keys, path)
    return result


def _pointer(text: str) -> list[str]:
    if text == "":
        return []
    if not text.startswith("/"):
        raise bad_request(f"JSON pointer must start with '/': {text!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in text[1:].split("/")]


def _failed(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def _parent(doc: Any, parts: list[str], op: str) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise _failed(
                f"{op} operation does not apply: doc is missing path: /{'/'.join(parts)}"
            ) from None
    return node, parts[-1]


def _get(doc: Any, parts: list[str], op: str) -> Any:
    if not parts:
        return doc
    node, last = _parent(doc, parts, op)
    try:
        return node[int(last)] if isinstance(node, list) else node[last]
    except (KeyError, IndexError, ValueError, TypeError):
        raise _failed(
            f"{op} operation does not apply: doc is missing path: /{'/'.join(parts)}"
        ) from None


def _remove(doc: Any, parts: list[str], op: str) -> Any:
    value = _get(doc, parts, op)
    node, last = _parent(doc, parts, op)
    if isinstance(node, list):
        del node[int(last)]
    else:
        del node[last]
    return value


def _add(doc: Any, parts: list[str], value: Any, op: str) -> Any:
    if not parts:
        return value
    node, last = _parent(doc, parts, op)
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if not 0 <= index <= len(node):
            raise _failed(f"{op} operation does not apply: index out of range: /{'/'.join(parts)}")
        node.insert(index, value)
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise _failed(f"{op} operation does not apply: doc is missing path: /{'/'.join(parts)}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902: add, remove, replace, move, copy and test, applied in order."""
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(target)
    for op in operations:
        name, parts = op.get("op"), _pointer(op.get("path", ""))
        if name == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")), "add")
        elif name == "remove":
            _remove(doc, parts, "remove")
        elif name == "replace":
            _get(doc, parts, "replace")
            if parts:
                _remove(doc, parts, "replace")
            doc = _add(doc, parts, copy.deepcopy(op.get("value")), "replace")
        elif name in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = (
                _remove(doc, source, name)
                if name == "move"
                else copy.deepcopy(_get(doc, source, name))
            )
            doc = _add(doc, parts, value, name)
        elif name == "test":
            if _get(doc, parts, "test") != op.get("value"):
                raise _failed(f"testing value /{'/'.join(parts)} failed: test failed")
        else:
            raise bad_request(f"Unexpected kind: {name}")
    return doc
