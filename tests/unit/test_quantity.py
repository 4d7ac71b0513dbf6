from __future__ import annotations

from fractions import Fraction

import pytest

from webhook.quantity import QuantityError, parse_quantity, whole_units


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("8", 8),
        (8, 8),
        ("1k", 1000),
        ("1Ki", 1024),
        ("500m", Fraction(1, 2)),
        ("1e3", 1000),
        ("0.5", Fraction(1, 2)),
        (" 2 ", 2),
        ("+3", 3),
        (1.5, Fraction(3, 2)),
    ],
)
def test_parse(value: object, expected: Fraction) -> None:
    assert parse_quantity(value) == expected


@pytest.mark.parametrize("value", ["", "abc", "1x", True, None, [1], "1e999", "--1"])
def test_not_quantities(value: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(value)


def test_whole_units() -> None:
    assert whole_units("2") == 2
    assert whole_units("2000m") == 2
    with pytest.raises(QuantityError, match="whole"):
        whole_units("500m")
    with pytest.raises(QuantityError, match="whole"):
        whole_units("-1")


@pytest.mark.parametrize("value", ["²", "9" * 5000, "1" * 65])
def test_odd_and_huge_digit_strings(value: str) -> None:
    with pytest.raises(QuantityError, match="is not a quantity"):
        parse_quantity(value)
