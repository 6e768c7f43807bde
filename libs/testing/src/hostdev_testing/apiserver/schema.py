"""Decoding against the official OpenAPI document: defaults, unknown fields, types, formats."""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from hostdev_testing.apiserver.errors import ApiError, FieldError, bad_request, required

DOCUMENT = "k8s-resource.k8s.io-v1-openapi.json"
_PREFIX = "#/components/schemas/"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_QUANTITY_RE = re.compile(
    r"[+-]?(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?"
)
_QUANTITY_MSG = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "bool",
    int: "number",
    float: "number",
}
_GO_TYPES = {
    "integer": "int64",
    "number": "float64",
    "string": "string",
    "boolean": "bool",
    "array": "[]",
}


def path_of(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass(slots=True)
class Decoded:
    """A request body after decoding: the object as stored and the unknown fields dropped."""

    obj: dict[str, Any]
    unknown: list[str] = field(default_factory=list)


class OpenApi:
    """The `components.schemas` of one OpenAPI 3.0 document, used the way the decoder would."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.components: dict[str, Any] = document["components"]["schemas"]
        self._validators: dict[str, Draft202012Validator] = {}

    @staticmethod
    @functools.cache
    def load(schemas_dir: Path) -> OpenApi:
        """Read the document once per folder; the parsed schemas are shared and never changed."""
        return OpenApi(json.loads((schemas_dir / DOCUMENT).read_text()))

    def validator(self, name: str) -> Draft202012Validator:
        if name not in self._validators:
            root = {"$ref": _PREFIX + name, "components": {"schemas": self.components}}
            self._validators[name] = Draft202012Validator(root)
        return self._validators[name]

    def _resolve(self, schema: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Follow `$ref` and single-entry `allOf` wrappers to the schema that has the shape."""
        name = ""
        while True:
            if "$ref" in schema:
                name = schema["$ref"].removeprefix(_PREFIX)
                schema = self.components[name]
            elif len(schema.get("allOf", [])) == 1:
                schema = schema["allOf"][0]
            else:
                return schema, name

    def decode(self, name: str, kind: str, body: dict[str, Any]) -> Decoded:
        """Prune, default and normalise `body`; raise 400 the way a failed Go decode does."""
        unknown: list[str] = []
        try:
            obj = self._walk(body, {"$ref": _PREFIX + name}, [], unknown)
        except _DecodeError as exc:
            raise bad_request(
                f'{kind} in version "v1" cannot be handled as a {kind}: {exc}'
            ) from None
        return Decoded(obj, unknown)

    def _walk(self, value: Any, schema: dict[str, Any], path: list[Any], unknown: list[str]) -> Any:
        shape, name = self._resolve(schema)
        if name == _QUANTITY:
            return _quantity(value)
        if "properties" in shape and isinstance(value, dict):
            return self._struct(value, shape, path, unknown)
        if "additionalProperties" in shape and isinstance(value, dict):
            inner = shape["additionalProperties"]
            return {k: self._walk(v, inner, [*path, k], unknown) for k, v in value.items()}
        if shape.get("type") == "array" and isinstance(value, list):
            return [
                self._walk(v, shape.get("items", {}), [*path, i], unknown)
                for i, v in enumerate(value)
            ]
        if shape.get("format") == "date-time" and isinstance(value, str):
            return _timestamp(value)
        return value

    def _struct(
        self, value: dict[str, Any], shape: dict[str, Any], path: list[Any], unknown: list[str]
    ) -> Any:
        props: dict[str, Any] = shape["properties"]
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key not in props:
                unknown.append(path_of([*path, key]))
            elif item is not None:
                out[key] = self._walk(item, props[key], [*path, key], unknown)
        for key, prop in props.items():
            if key not in out and "default" in prop:
                out[key] = self._walk(copy.deepcopy(prop["default"]), prop, [*path, key], unknown)
        return out

    def check(self, name: str, kind: str, obj: dict[str, Any]) -> list[FieldError]:
        """Schema errors: wrong types are a 400 (decode), missing required fields are listed."""
        found: list[FieldError] = []
        for error in sorted(
            self.validator(name).iter_errors(obj), key=lambda e: list(e.absolute_path)
        ):
            where = path_of(error.absolute_path)
            if error.validator == "required":
                missing = error.message.split("'")[1]
                found.append(required(f"{where}.{missing}" if where else missing))
            else:
                raise _type_error(kind, where, error)
        return found

    def storage_form(self, name: str, obj: dict[str, Any]) -> dict[str, Any]:
        """What survives the protobuf round trip: optional empty lists and maps are dropped."""
        result = self._compact(obj, {"$ref": _PREFIX + name})
        return result if isinstance(result, dict) else obj

    def _compact(self, value: Any, schema: dict[str, Any]) -> Any:
        shape, _ = self._resolve(schema)
        if isinstance(value, dict) and "properties" in shape:
            props, needed = shape["properties"], set(shape.get("required", []))
            out = {}
            for key, item in value.items():
                inner = self._compact(item, props[key]) if key in props else item
                if (
                    key in needed
                    or "default" in props.get(key, {})
                    or not _empty_collection(inner, props.get(key))
                ):
                    out[key] = inner
            return out
        if isinstance(value, list) and shape.get("type") == "array":
            return [self._compact(v, shape.get("items", {})) for v in value]
        if isinstance(value, dict) and isinstance(shape.get("additionalProperties"), dict):
            return {k: self._compact(v, shape["additionalProperties"]) for k, v in value.items()}
        return value


def _empty_collection(value: Any, schema: dict[str, Any] | None) -> bool:
    # Structs, even empty ones, survive the protobuf round trip; empty lists and maps do not.
    if isinstance(value, list):
        return not value
    return isinstance(value, dict) and not value and "additionalProperties" in (schema or {})


class _DecodeError(Exception):
    pass


def _quantity(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return value
    text = str(value)
    if not _QUANTITY_RE.fullmatch(text):
        raise _DecodeError(_QUANTITY_MSG)
    return text


def _timestamp(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value:
        raise _DecodeError(f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse')
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _type_error(kind: str, where: str, error: ValidationError) -> ApiError:
    found = _JSON_TYPES.get(type(error.instance), "value")
    schema = error.schema if isinstance(error.schema, dict) else {}
    wanted = schema.get("format") or _GO_TYPES.get(str(schema.get("type")), "struct")
    detail = f"json: cannot unmarshal {found} into Go struct field {kind}.{where} of type {wanted}"
    return bad_request(f'{kind} in version "v1" cannot be handled as a {kind}: {detail}')
