"""Reading a dump of cluster objects for the audit (edge layer: files).

A dump is what `kubectl get pods,network-attachment-definitions,namespaces,nodes,events -A
-o yaml` (or `-o json`) prints: one List, or several YAML documents each an object or a List.
Objects of other kinds are ignored; a kind the dump holds none of is unknown to the audit (its
checks are skipped), since kubectl prints nothing for a kind without objects. Bounded: at most
`MAX_DUMP_BYTES` of text and `MAX_OBJECTS` objects. Anything else wrong is one sentence
(`DumpError`) naming the file and, where it can, the document and item.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import yaml

from webhook.findings import Inventory, Kind

MAX_DUMP_BYTES = 256 * 1024 * 1024
"""About 30,000 pods as kubectl prints them with managedFields; audit larger clusters live."""
MAX_OBJECTS = 200_000

KINDS: dict[str, Kind] = {
    "Pod": "pods",
    "NetworkAttachmentDefinition": "nads",
    "Namespace": "namespaces",
    "Node": "nodes",
    "Event": "events",
    "MutatingWebhookConfiguration": "webhooks",
}
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ten times faster


class DumpError(ValueError):
    """A dump that cannot be read; the message is one sentence."""


def read_dump(
    name: str, *, max_bytes: int = MAX_DUMP_BYTES, max_objects: int = MAX_OBJECTS
) -> Inventory:
    """The objects of the dump `name` ("-" for stdin)."""
    text = _text(name, max_bytes)
    found: dict[Kind, list[Mapping[str, Any]]] = {}
    count = 0
    for where, obj in _objects(name, text):
        kind = KINDS.get(str(obj.get("kind")))
        if kind is None:
            continue
        if not isinstance(obj.get("metadata"), Mapping):
            raise DumpError(f"{where}: the {obj.get('kind')} has no metadata")
        count += 1
        if count > max_objects:
            raise DumpError(
                f"{name!r} holds more than {max_objects} objects, the audit's bound; dump one "
                "namespace at a time, or audit the cluster live"
            )
        found.setdefault(kind, []).append(obj)
    if not found:
        raise DumpError(
            f"{name!r} holds no Pods, NetworkAttachmentDefinitions, Namespaces, Nodes, Events or "
            "MutatingWebhookConfigurations; give it the output of kubectl get pods,"
            "network-attachment-definitions,namespaces,nodes,events -A -o yaml"
        )
    return Inventory(
        pods=_kind(found, "pods"),
        nads=_kind(found, "nads"),
        namespaces=_kind(found, "namespaces"),
        nodes=_kind(found, "nodes"),
        events=_kind(found, "events"),
        webhooks=_kind(found, "webhooks"),
    )


def _kind(
    found: dict[Kind, list[Mapping[str, Any]]], kind: Kind
) -> tuple[Mapping[str, Any], ...] | None:
    return tuple(found[kind]) if kind in found else None


def _text(name: str, max_bytes: int) -> str:
    try:
        if name == "-":
            raw = sys.stdin.buffer.read(max_bytes + 1)
        else:
            path = Path(name)
            if path.is_file() and path.stat().st_size > max_bytes:
                raise DumpError(_too_large(name, max_bytes))
            with path.open("rb") as file:
                raw = file.read(max_bytes + 1)
    except OSError as error:
        raise DumpError(f"cannot read {name!r}: {error.strerror or error}") from None
    if len(raw) > max_bytes:
        raise DumpError(_too_large(name, max_bytes))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DumpError(f"{name!r} is not UTF-8 text (a YAML or JSON dump)") from None


def _too_large(name: str, max_bytes: int) -> str:
    return (
        f"{name!r} is larger than {max_bytes // (1024 * 1024)} MiB, the audit's bound for a "
        "dump; dump one namespace at a time, or audit the cluster live"
    )


def _objects(name: str, text: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for number, document in enumerate(_documents(name, text), start=1):
        where = f"{name!r}, document {number}"
        if document is None:
            continue
        if not isinstance(document, Mapping):
            raise DumpError(f"{where} is not a Kubernetes object or List")
        kind = document.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and "items" in document:
            items = document.get("items")
            items = [] if items is None else items
            if not isinstance(items, list):
                raise DumpError(f"{where}: the {kind}'s items are not a list")
            default_kind = kind.removesuffix("List")
            for index, item in enumerate(items, start=1):
                if not isinstance(item, Mapping):
                    raise DumpError(f"{where}, item {index} is not a Kubernetes object")
                if "kind" not in item and default_kind:
                    item = {**item, "kind": default_kind}  # typed lists' items carry no kind
                yield f"{where}, item {index}", item
        else:
            yield where, document


def _documents(name: str, text: str) -> list[Any]:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            document = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            pass  # perhaps YAML in flow style; YAML reads JSON too
        else:
            return document if isinstance(document, list) else [document]
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "unreadable"
        raise DumpError(f"{name!r} is neither YAML nor JSON{where}: {problem}") from None
