"""Status errors and field errors, worded and shaped like kube-apiserver's."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hostdev_testing.apiserver.resources import ResourceType

_OMIT: Any = object()


def render_value(value: Any) -> str:
    """Print a bad value the way Go's field errors do: strings quoted, scalars bare."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field, as in k8s.io/apimachinery/pkg/util/validation/field."""

    type: str
    reason: str
    path: str
    value: Any = _OMIT
    detail: str = ""

    def body(self) -> str:
        text = self.type
        if self.value is not _OMIT:
            text = f"{text}: {render_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.path}: {self.body()}"


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("Required value", "FieldValueRequired", path, detail=detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid value", "FieldValueInvalid", path, value, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("Duplicate value", "FieldValueDuplicate", path, value)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("Forbidden", "FieldValueForbidden", path, detail=detail)


def too_long(path: str, limit: int) -> FieldError:
    detail = f"may not be more than {limit} bytes"
    return FieldError("Too long", "FieldValueTooLong", path, detail=detail)


def too_many(path: str, actual: int, limit: int) -> FieldError:
    detail = f"must have at most {limit} items"
    return FieldError("Too many", "FieldValueTooMany", path, actual, detail)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(json.dumps(s) for s in supported)
    return FieldError("Unsupported value", "FieldValueNotSupported", path, value, detail)


def immutable(path: str, value: Any) -> FieldError:
    return invalid(path, value, "field is immutable")


@dataclass(slots=True)
class ApiError(Exception):
    """A failed request; `status()` is the body the real server would send."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = field(default=None)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(rt: ResourceType, name: str) -> dict[str, Any]:
    # The real server puts the plural resource name into details.kind here.
    details: dict[str, Any] = {"name": name}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.plural
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    message = f'{rt.qualified} "{name}" already exists'
    return ApiError(409, "AlreadyExists", message, _details(rt, name))


def conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    message = f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(rt, name))


MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def invalid_object(
    qualified_kind: str, kind: str, group: str, name: str, errors: list[FieldError]
) -> ApiError:
    listed = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(map(str, errors)) + "]"
    causes = [{"reason": e.reason, "message": e.body(), "field": e.path} for e in errors]
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = causes
    return ApiError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {listed}', details)


def invalid_for(rt: ResourceType, name: str, errors: list[FieldError]) -> ApiError:
    return invalid_object(rt.qualified_kind, rt.kind, rt.group, name, errors)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    message = "the server does not allow this method on the requested resource"
    return ApiError(405, "MethodNotAllowed", message, {})


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unsupported_media_type(accepted: list[str]) -> ApiError:
    message = (
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted)
    )
    return ApiError(415, "UnsupportedMediaType", message, {})


def internal(message: str) -> ApiError:
    return ApiError(500, "", message)


def too_large_resource_version(requested: int, current: int) -> ApiError:
    message = f"Too large resource version: {requested}, current: {current}"
    details = {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }
    return ApiError(504, "Timeout", f"Timeout: {message}", details)
