"""Where the official schemas are, and validators for what the project writes."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

REPO_ROOT = Path(__file__).resolve().parents[4]


class SchemasMissing(RuntimeError):
    """The official schema folder is not where it should be."""


# Unmodified upstream copies; tests/schemas/README.md says where each comes from.
VENDORED_SCHEMAS = REPO_ROOT / "tests" / "schemas"


def schemas_dir() -> Path:
    """`$HOSTDEV_SCHEMAS_DIR`, else the copies kept in `tests/schemas`."""
    configured = os.environ.get("HOSTDEV_SCHEMAS_DIR")
    path = Path(configured) if configured else VENDORED_SCHEMAS
    if not (path / "cdi-schema.json").exists():
        raise SchemasMissing(
            f"official schemas not found at {path}; set HOSTDEV_SCHEMAS_DIR to the folder "
            "holding cdi-schema.json and the resource.k8s.io OpenAPI documents"
        )
    return path


@cache
def _cdi_validator(folder: Path) -> jsonschema.Draft7Validator:
    schema = json.loads((folder / "cdi-schema.json").read_text())
    defs = json.loads((folder / "defs.json").read_text())
    # The schema refers to "defs.json#/definitions/..."; register the file under that name.
    registry: Registry[Any] = Registry().with_resource(
        "defs.json", Resource.from_contents(defs, default_specification=DRAFT7)
    )
    return jsonschema.Draft7Validator(schema, registry=registry)


def validate_cdi(spec: Any, folder: Path | None = None) -> None:
    """Raise jsonschema.ValidationError if `spec` breaks the official CDI schema."""
    _cdi_validator(folder or schemas_dir()).validate(spec)
