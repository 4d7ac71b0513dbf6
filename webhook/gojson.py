"""The JSON form of the networks annotation, decoded as Go's encoding/json decodes it (core layer).

Multus unmarshals the JSON form into a list of its NetworkSelectionElement struct. Go's decoder
is not Python's `json.loads` into a dict, and the differences decide which NAD a pod reaches:

- a key matches a field case-insensitively, with Unicode simple folding (`Namespace`,
  `NAMESPACE`, and `name` U+017F `pace` with a long s all land on `namespace`); an exact key
  has no priority;
- keys are applied in order, so of several keys landing on one field the last wins, but a
  `null` leaves a string field as it was (`{"namespace": "a", "Namespace": null}` is `a`);
- a value of the wrong JSON type fails the whole annotation, as does a number that does not
  fit the field (an int64, or a float64 inside `cni-args`);
- a second array for a list field is decoded into the first one's storage: a `null` element
  there keeps what the earlier array held at that position.

`decode` returns, per entry, the fields as Multus holds them after decoding, or raises
`GoJsonError` with a sentence naming the entry and the field. tests/differential/ runs the same
inputs through Go.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from webhook.golang import parse_ip
from webhook.messages import quote, quote_key

# Multus's NetworkSelectionElement fields by their JSON name; the value says how each decodes.
_STRING_FIELDS = {
    "name": "name",
    "namespace": "namespace",
    "mac": "mac",
    "infiniband-guid": "infiniband_guid",
    "interface": "interface",
    "interfaceRequest": "interface_request",
    "deviceID": "device_id",
}
_PORT_MAP_FIELDS: dict[str, type] = {
    "hostPort": int,
    "containerPort": int,
    "protocol": str,
    "hostIP": str,
}
_BANDWIDTH_FIELDS: dict[str, type] = {
    "ingressRate": int,
    "ingressBurst": int,
    "egressRate": int,
    "egressBurst": int,
}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
# Past CPython's limit on integer digits, json.loads refuses a number Go would skip.
_MAX_INT_DIGITS = 4300
# A JSON string literal; on valid JSON each one ends, so a scan with it is linear.
STRING_LITERAL = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
# Python decodes a float literal past float64 as infinity, where Go's decoder fails.
_FLOAT64_MAX = sys.float_info.max


class GoJsonError(ValueError):
    """JSON that Go's decoder refuses for Multus's struct; the message names entry and field."""


@dataclass(slots=True)
class Selection:
    """One decoded entry, as Go zero values: "" for an absent string, None for a nil list."""

    name: str = ""
    namespace: str = ""
    interface: str = ""
    interface_request: str = ""
    mac: str = ""
    infiniband_guid: str = ""
    device_id: str = ""
    ips: tuple[str, ...] | None = None
    default_route: tuple[bytes | None, ...] | None = None
    # Keys spelt differently from the field they land on, e.g. "Namespace" -> "namespace".
    respelt: list[tuple[str, str]] = field(default_factory=list)
    # What a later array for "ips" decodes into (see the module docstring).
    _ips_storage: list[str] = field(default_factory=list)


# Python's str.upper() would also map e.g. U+0131 (dotless i) to "I"; Go does not.
_ASCII_FOLDS = {"\u017f": "S", "\u212a": "K"}


def fold(key: str) -> str:
    """The key as Go's encoding/json compares it with field names (simple Unicode folding).

    Only U+017F (long s) and U+212A (Kelvin sign) fold onto ASCII letters; any other non-ASCII
    character keeps the key from matching a field, whose names are all ASCII.
    """
    if key.isascii():
        return key.upper()
    return "".join(char.upper() if char.isascii() else _ASCII_FOLDS.get(char, char) for char in key)


_FOLDED = {fold(name): name for name in [*_STRING_FIELDS, "ips", "default-route"]}
_FOLDED.update({fold(name): name for name in ("portMappings", "bandwidth", "cni-args")})


class _Huge:
    """An integer literal too long for int(): only its size matters (it overflows int64)."""

    __slots__ = ("digits",)

    def __init__(self, digits: str) -> None:
        self.digits = digits


def _int_or_huge(text: str) -> int | _Huge:
    return int(text) if len(text) <= _MAX_INT_DIGITS else _Huge(text)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Objects become tuples of (key, value) pairs: the order and every duplicate key are kept.
_DECODER = json.JSONDecoder(object_pairs_hook=tuple, parse_constant=_refuse_constant)
_LONG_NUMBERS = json.JSONDecoder(
    object_pairs_hook=tuple, parse_constant=_refuse_constant, parse_int=_int_or_huge
)


def load(text: str) -> Any:
    """Parse JSON keeping duplicate keys: objects as tuples of pairs, arrays as lists.

    Raises ValueError (json.JSONDecodeError) for text Go's decoder would also refuse, and
    RecursionError for nesting deeper than Python's parser goes.
    """
    try:
        return _DECODER.decode(text)
    except ValueError as error:
        if "integer string conversion" not in str(error):
            raise
        return _LONG_NUMBERS.decode(text)


def go_string(value: str) -> str:
    """A decoded JSON string as Go holds it: lone surrogates become U+FFFD."""
    return value if value.isascii() else _SURROGATE.sub("\ufffd", value)


def decode(document: Any, max_list: int, max_cni_args: int) -> list[Selection | None]:
    """Decode a parsed annotation (from `load`) into Multus's []*NetworkSelectionElement.

    `max_list` bounds the lists of one entry (ips, default-route, portMappings) and
    `max_cni_args` the values inside its cni-args: Go has no such bounds, the webhook keeps the
    work per entry small.
    """
    if document is None:
        return []
    if not isinstance(document, list):
        raise GoJsonError(f"must be a JSON list of objects, not {json_type(document)}")
    entries: list[Selection | None] = []
    for index, item in enumerate(document, start=1):
        if item is None:
            entries.append(None)
        elif isinstance(item, tuple):
            entries.append(_selection(item, f"entry {index}", max_list, max_cni_args))
        else:
            raise GoJsonError(f"entry {index} must be an object with a name, not {json_type(item)}")
    return entries


def _selection(
    pairs: tuple[tuple[str, Any], ...], where: str, max_list: int, max_cni_args: int
) -> Selection:
    selection = Selection()
    for key, value in pairs:
        name = _FOLDED.get(fold(key))
        if name is None:
            continue  # Go skips keys that match no field
        if isinstance(value, list) and len(value) > max_list:
            raise GoJsonError(
                f"{_what(where, key, name)} with {len(value)} items; at most {max_list} are "
                "supported"
            )
        if key != name:
            selection.respelt.append((key, name))
        attribute = _STRING_FIELDS.get(name)
        if attribute is not None:
            if isinstance(value, str):
                setattr(selection, attribute, go_string(value))
            elif value is not None:
                what = _what(where, key, name)
                raise GoJsonError(f"{what} that is {json_type(value)}, not a string")
        elif name == "ips":
            _decode_ips(selection, value, where, key)
        elif name == "default-route":
            selection.default_route = _decode_routes(value, where, key)
        elif name == "portMappings":
            _decode_port_mappings(value, _what(where, key, name))
        elif name == "bandwidth":
            _decode_struct(value, "bandwidth", _what(where, key, name))
        else:  # cni-args: a map of anything
            if value is not None and not isinstance(value, tuple):
                what = _what(where, key, name)
                raise GoJsonError(f"{what} that is {json_type(value)}, not an object")
            _check_float64(value, where, key, name, max_cni_args)
    return selection


def _what(where: str, key: str, name: str) -> str:
    """How a message names a field: as written, and as Multus reads it when that differs."""
    return f'{where} has "{quote_key(key)}"' + ("" if key == name else f' (Multus reads "{name}")')


def _decode_ips(selection: Selection, value: Any, where: str, key: str) -> None:
    if value is None:
        selection.ips, selection._ips_storage = None, []
        return
    if not isinstance(value, list):
        what = _what(where, key, "ips")
        raise GoJsonError(f"{what} that is {json_type(value)}, not a list of strings")
    storage = selection._ips_storage
    for index, item in enumerate(value):
        if item is not None and not isinstance(item, str):
            what = _what(where, key, "ips")
            raise GoJsonError(f"{what} with {json_type(item)} in it; list strings only")
        if index == len(storage):
            storage.append("")
        if item is not None:  # null leaves a string as it was
            storage[index] = go_string(item)
    if not value:
        selection._ips_storage = []
    selection.ips = tuple(storage[: len(value)])


def _decode_routes(value: Any, where: str, key: str) -> tuple[bytes | None, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise GoJsonError(
            f"{_what(where, key, 'default-route')} that is {json_type(value)}, not a list of "
            "IP addresses"
        )
    routes: list[bytes | None] = []
    for item in value:
        if item is None or item == "":
            routes.append(None)  # a nil net.IP
            continue
        address = parse_ip(item) if isinstance(item, str) else None
        if address is None:
            shown = quote(item) if isinstance(item, str) else json_type(item)
            raise GoJsonError(
                f"{_what(where, key, 'default-route')} with {shown}, which is not an IP address"
            )
        routes.append(address)
    return tuple(routes)


def _decode_port_mappings(value: Any, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise GoJsonError(f"{what} that is {json_type(value)}, not a list")
    for item in value:
        _decode_struct(item, "portMappings", what)


_STRUCTS: dict[str, tuple[dict[str, type], dict[str, str]]] = {
    "portMappings": (_PORT_MAP_FIELDS, {fold(name): name for name in _PORT_MAP_FIELDS}),
    "bandwidth": (_BANDWIDTH_FIELDS, {fold(name): name for name in _BANDWIDTH_FIELDS}),
}


def _decode_struct(value: Any, struct: str, what: str) -> None:
    """A struct of ints and strings behind a pointer: null is nil, an object fills fields."""
    if value is None:
        return
    if not isinstance(value, tuple):
        raise GoJsonError(f"{what} with {json_type(value)} where an object belongs")
    fields, folded = _STRUCTS[struct]
    for key, item in value:
        name = folded.get(fold(key))
        if name is None or item is None:
            continue
        if fields[name] is str:
            if not isinstance(item, str):
                raise GoJsonError(
                    f'{what} whose "{quote_key(key)}" is {json_type(item)}, not a string'
                )
        elif type(item) is not int or not _INT64_MIN <= item <= _INT64_MAX:
            raise GoJsonError(f'{what} whose "{quote_key(key)}" is not a whole number (an int64)')


def _check_float64(value: Any, where: str, key: str, name: str, max_values: int) -> None:
    """Go decodes numbers inside interface{} values as float64: one that overflows fails.

    At most `max_values` values (nested ones included) are looked at; more are refused.
    """
    stack = [value]
    seen = -1  # the cni-args object itself is not counted
    while stack:
        node = stack.pop()
        seen += 1
        if seen > max_values:
            raise GoJsonError(
                f"{_what(where, key, name)} with more than {max_values} values; at most "
                f"{max_values} are supported"
            )
        if isinstance(node, tuple):
            stack.extend(item for _, item in node)
        elif isinstance(node, list):
            stack.extend(node)
        elif (
            isinstance(node, _Huge)
            or (type(node) is float and not -_FLOAT64_MAX <= node <= _FLOAT64_MAX)
            or (type(node) is int and not _fits_float64(node))
        ):
            what = _what(where, key, name)
            raise GoJsonError(f"{what} with a number too large for a float64")


def _fits_float64(number: int) -> bool:
    if -_FLOAT64_LIMIT < number < _FLOAT64_LIMIT:
        return True
    try:
        float(number)
    except OverflowError:
        return False
    return True


_FLOAT64_LIMIT = 2**1023


def json_type(value: object) -> str:
    """The JSON type of a decoded value, as messages name it."""
    if isinstance(value, tuple):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
