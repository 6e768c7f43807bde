"""Kubernetes resource quantities ("1Gi", "500m", "2e3") as exact fractions."""

from __future__ import annotations

import re
from fractions import Fraction

from .errors import SchedulingError

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_FORM = re.compile(
    r"^(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:(?P<exp>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$"
)


def parse_quantity(text: object) -> Fraction:
    """The exact value of a quantity in the Kubernetes serialization format."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise SchedulingError(f"quantity {text!r} is not a string")
    match = _FORM.match(str(text).strip())
    if match is None:
        raise SchedulingError(f"quantity {text!r} is not a Kubernetes quantity")
    number = Fraction(match["num"])
    if match["exp"]:
        return number * Fraction(10) ** int(match["exp"][1:])
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * Fraction(1024) ** _BINARY[suffix]
    return number * Fraction(10) ** _DECIMAL[suffix]


def format_quantity(value: Fraction) -> str:
    """A canonical text for a value (integers plain, fractions in milli or nano units)."""
    if value.denominator == 1:
        return str(value.numerator)
    milli = value * 1000
    if milli.denominator == 1:
        return f"{milli.numerator}m"
    nano = value * 10**9
    # Kubernetes keeps nano precision at most and rounds up what is finer.
    return f"{-((-nano.numerator) // nano.denominator)}n"
