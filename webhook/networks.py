"""The Multus networks annotations, read exactly as Multus reads them (core layer).

`k8s.v1.cni.cncf.io/networks` (extra interfaces) and `v1.multus-cni.io/default-network` (the
NAD that replaces eth0) share one syntax, in two forms:

- comma form: `name`, `namespace/name`, `name@iface`, `namespace/name@iface`, separated by
  commas; each part trimmed of Go's whitespace, an empty namespace or interface means "not set";
- JSON form: a list of objects with `name` and optional `namespace`, `interface`, `ips`, `mac`,
  ... decoded with Go's encoding/json rules (webhook.gojson).

Multus decides between them the same way: a value containing any of `[`, `{` or `"` is JSON.
`parse` accepts what Multus accepts and what can then run: it also refuses entries whose NAD
cannot exist (a name that is no NAD name) or whose interface libcni refuses, since those pods
fail at sandbox creation. Entries the user wrote are never rewritten; new entries are appended
to the text as it stands (`appended`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Literal

import orjson

from webhook import gojson
from webhook.golang import (
    interface_name_problem,
    parse_cidr,
    parse_ip,
    parse_mac,
    trim_space,
)
from webhook.messages import quote

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NETWORK_ANNOTATION = "v1.multus-cni.io/default-network"

Form = Literal["comma", "json"]

# Multus's pattern for each part of the comma form (Go's regexp: no length limit).
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# A NetworkAttachmentDefinition's own name is a DNS-1123 subdomain of at most 253 characters.
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_NAD_NAME = 253
MAX_NAMESPACE_NAME = 63

# Bounds of ours (Multus has none): no pod needs more, and each keeps one hostile annotation
# from occupying the server. 8 GPUs x 8 rails is 64 attachments; an attachment has an IPv4 and
# an IPv6 address, a default route per family, a port mapping or two.
MAX_ATTACHMENTS = 256
MAX_LIST_ITEMS = 16  # ips, default-route and portMappings of one entry
MAX_CNI_ARGS_VALUES = 16  # values in one entry's cni-args, nested ones included
MAX_JSON_DEPTH = 32
# "[" and "{" characters in the JSON form, counted in the text as written (strings included):
# this bounds the objects and lists to decode and walk. 64 attachments with ips, cni-args
# and port mappings need a few hundred.
MAX_JSON_BRACKETS = 1024

_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
# "[" and "{" become byte 1 (one level deeper), "]" and "}" byte 0 (one level up).
_BRACKET_STEPS = bytes.maketrans(b"[]{}", b"\x01\x00\x01\x00")
_STEP_VALUES = (-1, 1)


class AnnotationError(ValueError):
    """A networks annotation Multus would not accept; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class NetworkRef:
    """One attachment, as Multus reads it.

    `namespace` and `interface` are None when not set (Multus then uses the pod's namespace,
    and names the interface itself). `selection` holds every field of a JSON entry.
    """

    name: str
    namespace: str | None = None
    interface: str | None = None
    selection: gojson.Selection | None = field(default=None, compare=False, repr=False)

    def resolved(self, default_namespace: str) -> tuple[str, str]:
        """(namespace, name) of the NetworkAttachmentDefinition this entry points at."""
        return (self.namespace or default_namespace, self.name)

    def display(self) -> str:
        """How the entry reads in the comma form, for messages."""
        text = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{text}@{self.interface}" if self.interface else text


@dataclass(frozen=True, slots=True)
class NetworksAnnotation:
    form: Form
    entries: tuple[NetworkRef, ...]
    text: str = ""
    """The value as written; new entries are appended to it."""


EMPTY = NetworksAnnotation("comma", ())


def parse(value: object, annotation: str = NETWORKS_ANNOTATION) -> NetworksAnnotation:
    """Read an annotation value as Multus does; AnnotationError naming the entry and the fix."""
    if not isinstance(value, str):
        raise AnnotationError(f"{annotation} must be a string, not {type(value).__name__}")
    if value == "":
        return EMPTY
    try:
        if any(marker in value for marker in '[{"'):
            return NetworksAnnotation("json", _parse_json(value), value)
        return NetworksAnnotation("comma", _parse_comma(value), value)
    except AnnotationError as error:
        raise AnnotationError(f"{annotation} {error}") from None


def parse_default_network(value: object) -> NetworkRef:
    """The one NAD `v1.multus-cni.io/default-network` names (Multus refuses none or several)."""
    annotation = DEFAULT_NETWORK_ANNOTATION
    if value == "":
        raise AnnotationError(
            f"{annotation} is empty; Multus fails such a pod: name one NAD or drop the annotation"
        )
    entries = parse(value, annotation).entries
    if len(entries) != 1:
        raise AnnotationError(
            f"{annotation} names {len(entries)} networks; Multus takes exactly one NAD there "
            "(it replaces the pod's eth0)"
        )
    return entries[0]


def _parse_comma(value: str) -> tuple[NetworkRef, ...]:
    if value.count(",") >= MAX_ATTACHMENTS:
        raise AnnotationError(_too_many(value.count(",") + 1))
    if not trim_space(value):
        raise AnnotationError(
            "is blank; Multus reads it as a network without a name and fails the pod: remove "
            "the annotation or name a network"
        )
    entries = []
    for position, raw in enumerate(value.split(","), start=1):
        item = trim_space(raw)
        if not item:
            raise AnnotationError(
                f"{quote(value, 120)} has an empty entry at position {position}; remove the "
                "extra comma"
            )
        where = f"entry {position} ({quote(item, 80)})"
        parts = item.split("/")
        if len(parts) > 2:
            raise AnnotationError(
                f"{where} has more than one '/'; write it as namespace/name@interface"
            )
        namespace, rest = (trim_space(parts[0]), parts[1]) if len(parts) == 2 else ("", item)
        at_parts = rest.split("@")
        if len(at_parts) > 2:
            raise AnnotationError(
                f"{where} has more than one '@'; write it as namespace/name@interface"
            )
        name = trim_space(at_parts[0])
        interface = trim_space(at_parts[1]) if len(at_parts) == 2 else ""
        for part, what in ((namespace, "namespace"), (name, "network name")):
            if part and not _DNS1123_LABEL.fullmatch(part):
                raise AnnotationError(
                    f"{where}: {what} {quote(part)} must consist of lower-case "
                    "letters, digits and '-', starting and ending with a letter or digit"
                )
        entries.append(_admissible(name, namespace, interface, where, None))
    return tuple(entries)


def _parse_json(value: str) -> tuple[NetworkRef, ...]:
    brackets = value.count("[") + value.count("{")
    if brackets > MAX_JSON_BRACKETS:
        raise AnnotationError(
            f"holds {brackets} '[' and '{{' characters; at most {MAX_JSON_BRACKETS} are "
            "supported (a pod's networks need a few dozen)"
        )
    try:
        document = gojson.load(value)
    except RecursionError:
        raise AnnotationError(_too_deep()) from None
    except ValueError as error:
        raise AnnotationError(
            f"is not valid JSON ({error}); write a JSON list such as "
            '[{"name": "sriov-rdma-net"}] or the comma form sriov-rdma-net'
        ) from None
    if isinstance(document, list) and len(document) > MAX_ATTACHMENTS:
        raise AnnotationError(_too_many(len(document)))
    if brackets > MAX_JSON_DEPTH and _depth(value) > MAX_JSON_DEPTH:
        raise AnnotationError(_too_deep())
    try:
        selections = gojson.decode(document, MAX_LIST_ITEMS, MAX_CNI_ARGS_VALUES)
    except gojson.GoJsonError as error:
        raise AnnotationError(str(error)) from None
    return tuple(_json_entry(selection, index) for index, selection in enumerate(selections, 1))


def _json_entry(selection: gojson.Selection | None, index: int) -> NetworkRef:
    where = f"entry {index}"
    if selection is None:
        raise AnnotationError(f"{where} is null; Multus fails on a null entry, so remove it")
    if "/" in selection.name:
        raise AnnotationError(
            f'{where} has name {quote(selection.name)}: in the JSON form "name" is the bare NAD '
            'name; put the namespace in "namespace"'
        )
    for text, what in ((selection.mac, "mac"), (selection.infiniband_guid, "infiniband-guid")):
        if text and parse_mac(text) is None:
            raise AnnotationError(
                f"{where} has {what} {quote(text)}, which Go's net.ParseMAC refuses (6, 8 or 20 "
                "hex octets, all separated by ':' or all by '-', or groups of four by '.')"
            )
    for ip in selection.ips or ():
        if (parse_cidr(ip) if "/" in ip else parse_ip(ip)) is None:
            raise AnnotationError(
                f"{where} has ip {quote(ip)}, which is not an IP address or address/prefix "
                "as Go's net package reads them"
            )
    interface = selection.interface or selection.interface_request
    return _admissible(selection.name, selection.namespace, interface, where, selection)


def _admissible(
    name: str, namespace: str, interface: str, where: str, selection: gojson.Selection | None
) -> NetworkRef:
    """The entry, once it names a NAD that can exist and an interface libcni accepts."""
    if not name:
        raise AnnotationError(f"{where} names no network; give the NAD's name")
    if len(name) > MAX_NAD_NAME or not _DNS1123_SUBDOMAIN.fullmatch(name):
        raise AnnotationError(
            f"{where} has name {quote(name)}, which no NAD can have (lower-case letters, digits, "
            f"'-' and '.', at most {MAX_NAD_NAME} characters)"
        )
    if namespace and (
        len(namespace) > MAX_NAMESPACE_NAME or not _DNS1123_LABEL.fullmatch(namespace)
    ):
        raise AnnotationError(
            f"{where} has namespace {quote(namespace)}, which is not a namespace name"
        )
    problem = interface_name_problem(interface) if interface else None
    if problem:
        raise AnnotationError(
            f"{where} asks for interface {quote(interface)}, which CNI refuses ({problem}); "
            "use at most 15 bytes without '/', ':' or spaces"
        )
    return NetworkRef(name, namespace or None, interface or None, selection)


def _depth(text: str) -> int:
    """How deeply lists and objects nest in valid JSON text, in C-speed passes.

    String literals are blanked (on valid JSON each ends, so this is one linear pass), the
    brackets kept, and the running count of "[" and "{" less "]" and "}" peaks at the depth.
    There are at most MAX_JSON_BRACKETS of each, so the last step is short.
    """
    brackets = gojson.STRING_LITERAL.sub("", text).encode("utf-8", "surrogatepass")
    steps = brackets.translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(accumulate(map(_STEP_VALUES.__getitem__, steps)), default=0)


def _too_many(count: int) -> str:
    return f"lists {count} networks; at most {MAX_ATTACHMENTS} attachments per pod are supported"


def _too_deep() -> str:
    return f"nests JSON deeper than {MAX_JSON_DEPTH} levels; Multus reads only flat entries"


def is_interface_name(value: str) -> bool:
    """Whether CNI (libcni's ValidateInterfaceName) accepts `value` as an interface name."""
    return interface_name_problem(value) is None


def is_dns1123_label(value: str, limit: int = MAX_NAMESPACE_NAME) -> bool:
    """Whether `value` is a DNS-1123 label of at most `limit` characters (63: a namespace)."""
    return len(value) <= limit and _DNS1123_LABEL.fullmatch(value) is not None


def is_nad_name(value: str) -> bool:
    """Whether a NetworkAttachmentDefinition can be called `value` (a DNS-1123 subdomain)."""
    return len(value) <= MAX_NAD_NAME and _DNS1123_SUBDOMAIN.fullmatch(value) is not None


def new_entry(name: str, namespace: str | None, interface: str | None) -> NetworkRef:
    """An entry the webhook appends."""
    return NetworkRef(name, namespace, interface)


def appended(annotation: NetworksAnnotation, added: Sequence[NetworkRef]) -> str:
    """The annotation's text with `added` after its entries, in its form; the rest untouched."""
    if not added:
        return annotation.text
    if annotation.form == "json":
        new = ",".join(_json_text(entry) for entry in added)
        text = annotation.text
        if not text:
            return f"[{new}]"
        body = text.rstrip(" \t\n\r")
        closing = len(body) - 1  # the list's "]": the text parsed as a JSON list
        separator = "," if annotation.entries else ""
        return f"{body[:closing]}{separator}{new}{text[closing:]}"
    new = ",".join(entry.display() for entry in added)
    return f"{annotation.text},{new}" if annotation.text else new


def _json_text(entry: NetworkRef) -> str:
    source: dict[str, str] = {"name": entry.name}
    if entry.namespace:
        source["namespace"] = entry.namespace
    if entry.interface:
        source["interface"] = entry.interface
    return orjson.dumps(source).decode()
