"""The Multus `k8s.v1.cni.cncf.io/networks` pod annotation (core layer).

Both forms Multus accepts are parsed and rendered back in the form the pod already uses:

- comma form: `name`, `namespace/name`, `name@iface`, `namespace/name@iface`, separated by commas;
- JSON form: a list of objects with `name` and optional `namespace`, `interface`, `ips`, `mac`, ...

Multus decides between them the same way: a value containing any of `[`, `{` or `"` is JSON.
Entries the user wrote are kept exactly (order, interface, every extra JSON field); new
entries are only ever appended.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"

Form = Literal["comma", "json"]

# Multus checks each part of the comma form against the DNS-1123 label format.
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A NetworkAttachmentDefinition's own name is a DNS-1123 subdomain.
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_MAC = re.compile(
    r"^(?:[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){7}"
    r"|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){19}|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){2,9})$"
)
_MAX_INTERFACE_LEN = 15  # IFNAMSIZ - 1 on Linux
# No pod needs more attachments than this (8 GPUs x 8 rails is 64); a bound keeps one absurd
# pod from occupying the server.
MAX_ATTACHMENTS = 256
# Multus's fields (cni-args included) are shallow; a bound keeps rendering safe.
_MAX_JSON_DEPTH = 32


class AnnotationError(ValueError):
    """A networks annotation Multus would not accept; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class NetworkRef:
    """One attachment requested by the annotation.

    `namespace` is None when the entry does not name one (Multus then uses the pod's).
    `source` is what the user wrote: the comma-form text, or the JSON object, kept for rendering.
    """

    name: str
    namespace: str | None = None
    interface: str | None = None
    source: str | Mapping[str, Any] = field(default="", compare=False, repr=False)

    def resolved(self, pod_namespace: str) -> tuple[str, str]:
        """(namespace, name) of the NetworkAttachmentDefinition this entry points at."""
        return (self.namespace or pod_namespace, self.name)

    def display(self) -> str:
        """How the entry reads in the comma form, for messages."""
        text = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{text}@{self.interface}" if self.interface else text


@dataclass(frozen=True, slots=True)
class NetworksAnnotation:
    form: Form
    entries: tuple[NetworkRef, ...]


EMPTY = NetworksAnnotation("comma", ())


def parse(value: str) -> NetworksAnnotation:
    """Parse an annotation value; raises AnnotationError naming the bad entry and the fix."""
    if not isinstance(value, str):
        raise AnnotationError(f"{NETWORKS_ANNOTATION} must be a string, not {type(value).__name__}")
    if not value.strip():
        return EMPTY
    if any(marker in value for marker in '[{"'):
        parsed = NetworksAnnotation("json", _parse_json(value))
    else:
        parsed = NetworksAnnotation("comma", _parse_comma(value))
    if len(parsed.entries) > MAX_ATTACHMENTS:
        raise AnnotationError(
            f"{NETWORKS_ANNOTATION} lists {len(parsed.entries)} networks; at most "
            f"{MAX_ATTACHMENTS} attachments per pod are supported"
        )
    return parsed


def _parse_comma(value: str) -> tuple[NetworkRef, ...]:
    entries = []
    for position, raw in enumerate(value.split(","), start=1):
        item = raw.strip()
        if not item:
            raise AnnotationError(
                f"{NETWORKS_ANNOTATION} {value!r} has an empty entry at position {position}; "
                "remove the extra comma"
            )
        namespace: str | None = None
        rest = item
        if "/" in item:
            parts = item.split("/")
            if len(parts) != 2:
                raise AnnotationError(
                    f"{NETWORKS_ANNOTATION} entry {item!r} has more than one '/'; "
                    "write it as namespace/name@interface"
                )
            namespace, rest = parts[0].strip(), parts[1]
        interface: str | None = None
        if "@" in rest:
            at_parts = rest.split("@")
            if len(at_parts) != 2:
                raise AnnotationError(
                    f"{NETWORKS_ANNOTATION} entry {item!r} has more than one '@'; "
                    "write it as namespace/name@interface"
                )
            rest, interface = at_parts[0], at_parts[1].strip()
        name = rest.strip()
        for part, what in ((namespace, "namespace"), (name, "network name")):
            if part is not None and not is_dns1123_label(part):
                raise AnnotationError(
                    f"{NETWORKS_ANNOTATION} entry {item!r}: {what} {part!r} is not a DNS-1123 "
                    "label (lower-case letters, digits and '-', starting and ending alphanumeric)"
                )
        if interface is not None:
            _check_interface(interface, item)
        entries.append(NetworkRef(name, namespace, interface, item))
    return tuple(entries)


def _parse_json(value: str) -> tuple[NetworkRef, ...]:
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise AnnotationError(
            f"{NETWORKS_ANNOTATION} is not valid JSON ({error}); write a JSON list such as "
            '[{"name": "sriov-rdma-net"}] or the comma form sriov-rdma-net'
        ) from None
    if _depth(document) > _MAX_JSON_DEPTH:
        raise AnnotationError(
            f"{NETWORKS_ANNOTATION} nests JSON deeper than {_MAX_JSON_DEPTH} levels; "
            "Multus reads only flat entries"
        )
    if not isinstance(document, list):
        raise AnnotationError(
            f"{NETWORKS_ANNOTATION} must be a JSON list of objects, not {_json_type(document)}; "
            'write [{"name": "sriov-rdma-net"}]'
        )
    return tuple(_json_entry(entry, index) for index, entry in enumerate(document, start=1))


def _depth(document: object) -> int:
    """How deeply lists and objects nest in `document` (iteratively: no recursion limit)."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if deepest > _MAX_JSON_DEPTH:
                return deepest
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _json_entry(entry: object, index: int) -> NetworkRef:
    where = f"{NETWORKS_ANNOTATION} entry {index}"
    if not isinstance(entry, dict):
        raise AnnotationError(f"{where} must be an object with a name, not {_json_type(entry)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise AnnotationError(f'{where} needs a "name" string naming a NetworkAttachmentDefinition')
    if "/" in name:
        raise AnnotationError(
            f'{where} has name {name!r}: in the JSON form "name" is the bare NAD name; '
            'put the namespace in "namespace"'
        )
    if not _DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        raise AnnotationError(f"{where} has name {name!r}, which is not a valid NAD name")
    namespace = _optional_string(entry, "namespace", where)
    if namespace is not None and not is_dns1123_label(namespace):
        raise AnnotationError(f"{where} has namespace {namespace!r}, which is not a namespace name")
    interface = _optional_string(entry, "interface", where)
    if interface is None:
        # Multus still honours the pre-3.2 spelling.
        interface = _optional_string(entry, "interfaceRequest", where)
    if interface is not None:
        _check_interface(interface, name)
    mac = _optional_string(entry, "mac", where)
    if mac is not None and not _MAC.match(mac):
        raise AnnotationError(f"{where} has mac {mac!r}, which is not a MAC address")
    ips = entry.get("ips")
    if ips is not None:
        if not isinstance(ips, list) or not all(isinstance(ip, str) for ip in ips):
            raise AnnotationError(f'{where} has "ips" that is not a list of strings')
        for ip in ips:
            try:
                ipaddress.ip_interface(ip)
            except ValueError:
                raise AnnotationError(
                    f"{where} has ip {ip!r}, which is not an IP address or CIDR"
                ) from None
    return NetworkRef(name, namespace or None, interface or None, entry)


def _optional_string(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise AnnotationError(f'{where} has "{key}" that is not a string')
    return value


def is_interface_name(value: str) -> bool:
    """Whether Linux accepts `value` as an interface name."""
    return (
        0 < len(value) <= _MAX_INTERFACE_LEN
        and value not in {".", ".."}
        and not any(char in value for char in "/: \t\n")
    )


def is_dns1123_label(value: str) -> bool:
    """Whether `value` is a DNS-1123 label (namespace names, comma-form NAD names)."""
    return len(value) <= 63 and _DNS1123_LABEL.match(value) is not None


def _check_interface(interface: str, item: str) -> None:
    if not is_interface_name(interface):
        raise AnnotationError(
            f"{NETWORKS_ANNOTATION} entry {item!r}: interface {interface!r} is not a Linux "
            "interface name (1-15 characters, no '/', ':' or spaces)"
        )


def _json_type(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else "null"
    )


def new_entry(form: Form, name: str, namespace: str | None, interface: str | None) -> NetworkRef:
    """An entry the webhook appends, in the annotation's form."""
    if form == "json":
        source: dict[str, str] = {"name": name}
        if namespace:
            source["namespace"] = namespace
        if interface:
            source["interface"] = interface
        return NetworkRef(name, namespace, interface, source)
    ref = NetworkRef(name, namespace, interface)
    return NetworkRef(name, namespace, interface, ref.display())


def render(form: Form, entries: Sequence[NetworkRef]) -> str:
    """The annotation value for `entries`, each as its user wrote it."""
    if form == "json":
        return orjson.dumps([entry.source for entry in entries]).decode()
    return ",".join(
        entry.source if isinstance(entry.source, str) and entry.source else entry.display()
        for entry in entries
    )
