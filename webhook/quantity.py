"""Kubernetes resource quantities (core layer): parse the strings and numbers a pod spec carries.

Only what the decision needs: the value of a quantity as an exact fraction, and the
whole-unit count of an extended resource (GPUs, SR-IOV virtual functions).
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction

_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]+))?$"
)


# Longer strings are no quantity the API server would store (and int() refuses huge ones).
_MAX_LENGTH = 64


def _shorten(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity."""


def parse_quantity(value: object) -> Fraction:
    """The exact value of a quantity given as a string ("8", "1k", "500m") or a YAML number."""
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    if not isinstance(value, str) or len(value) > _MAX_LENGTH:
        raise QuantityError(f"{_shorten(value)} is not a quantity")
    if value.isascii() and value.isdigit():  # the common case: "1", "8"
        return Fraction(int(value))
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise QuantityError(f"{value!r} is not a quantity")
    number = Fraction(match["number"])
    if match["exponent"] is not None:
        exponent = int(match["exponent"])
        if abs(exponent) > 30:
            raise QuantityError(f"{value!r} is out of range")
        return number * Fraction(10) ** exponent
    return number * _SUFFIXES[match["suffix"] or ""]


def whole_units(value: object) -> int:
    """The count of an extended resource; extended resources come only in whole units."""
    if isinstance(value, str):
        return _whole_units_of_text(value)
    return _whole_units(value)


@functools.lru_cache(maxsize=1024)
def _whole_units_of_text(value: str) -> int:
    # Cached: the same few strings ("1", "8") are parsed on every review.
    return _whole_units(value)


def _whole_units(value: object) -> int:
    quantity = parse_quantity(value)
    if quantity.denominator != 1 or quantity < 0:
        raise QuantityError(f"{value!r} is not a whole, non-negative number of units")
    return int(quantity)
