"""Fixtures shared by the deployment checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import yaml

from hostdev_devconfig import DevicesConfig


def _unknown_keys(raw: Any, info: msgspec.inspect.Type, where: str) -> list[str]:
    if isinstance(info, msgspec.inspect.StructType) and isinstance(raw, dict):
        fields = {field.encode_name: field for field in info.fields}
        found = [f"{where}.{key}" for key in raw if key not in fields]
        for key, value in raw.items():
            if key in fields:
                found += _unknown_keys(value, fields[key].type, f"{where}.{key}")
        return found
    if isinstance(info, msgspec.inspect.VarTupleType | msgspec.inspect.ListType) and isinstance(
        raw, list
    ):
        return [
            unknown
            for index, item in enumerate(raw)
            for unknown in _unknown_keys(item, info.item_type, f"{where}[{index}]")
        ]
    return []


def _check_device_selection(text: str) -> list[str]:
    msgspec.yaml.decode(text, type=DevicesConfig)  # raises on wrong types
    return _unknown_keys(yaml.safe_load(text), msgspec.inspect.type_info(DevicesConfig), "")


@pytest.fixture
def device_selection_problems() -> Callable[[str], list[str]]:
    """Decode a device selection file with the families' config type (raising on bad values)
    and return the keys it does not know: msgspec would ignore a misspelt `sharde: true`."""
    return _check_device_selection
