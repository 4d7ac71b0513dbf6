"""Reading a dump of cluster objects for the audit (edge layer: files).

A dump is what `kubectl get pods,network-attachment-definitions,namespaces,nodes,events -A
-o yaml` (or `-o json`) prints: one List, or several YAML documents each an object or a List.
Objects of other kinds are ignored; a kind the dump holds none of is unknown to the audit (its
checks are skipped), since kubectl prints nothing for a kind without objects.

The text is parsed as a stream of YAML events (JSON is YAML), and each object is reduced to
what the checks read as soon as it is complete (webhook.audit_fields): a List of ten thousand
pods is never held whole. Bounded: at most `MAX_DUMP_BYTES` of text and `MAX_OBJECTS` objects.
Anything else wrong is one sentence (`DumpError`) naming the file and, where it can, the
document and item.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import yaml

from webhook.audit_fields import SLIM
from webhook.findings import Inventory, Kind

MAX_DUMP_BYTES = 1024 * 1024 * 1024
"""About 300,000 pods as kubectl prints them (some 3.5 KiB each in YAML)."""
MAX_OBJECTS = 200_000

KINDS: dict[str, Kind] = {
    "Pod": "pods",
    "NetworkAttachmentDefinition": "nads",
    "Namespace": "namespaces",
    "Node": "nodes",
    "Event": "events",
    "MutatingWebhookConfiguration": "webhooks",
}
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: much faster
_NO_KEY = object()
# The safe loader's constructors by tag, called directly: construct_object would remember
# every node it ever made.
_CONSTRUCTORS: dict[Any, Any] = yaml.constructor.SafeConstructor.yaml_constructors
_STR = "tag:yaml.org,2002:str"
_TAG_CACHE = 65536


class DumpError(ValueError):
    """A dump that cannot be read; the message is one sentence."""


def read_dump(
    name: str, *, max_bytes: int = MAX_DUMP_BYTES, max_objects: int = MAX_OBJECTS
) -> Inventory:
    """The objects of the dump `name` ("-" for stdin), each reduced to what the checks read."""
    found: dict[Kind, list[Mapping[str, Any]]] = {}
    count = 0
    with _open(name, max_bytes) as stream:
        for where, obj in _objects(name, stream):
            kind = KINDS.get(str(obj.get("kind")))
            if kind is None:
                continue
            if not isinstance(obj.get("metadata"), Mapping):
                raise DumpError(f"{where}: the {obj.get('kind')} has no metadata")
            count += 1
            if count > max_objects:
                raise DumpError(
                    f"{name!r} holds more than {max_objects} objects, the audit's bound; dump "
                    "one namespace at a time, or audit the cluster live"
                )
            found.setdefault(kind, []).append(SLIM[str(obj["kind"])](obj))
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


class _Bounded(io.RawIOBase):
    """A binary stream that fails with DumpError past `limit` bytes."""

    def __init__(self, raw: BinaryIO, name: str, limit: int) -> None:
        self._raw, self._name, self._limit, self._read = raw, name, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(min(len(buffer), self._limit - self._read + 1))
        self._read += len(data)
        if self._read > self._limit:
            raise DumpError(_too_large(self._name, self._limit))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._raw is not sys.stdin.buffer:
            self._raw.close()
        super().close()


def _open(name: str, max_bytes: int) -> TextIO:
    try:
        if name == "-":
            raw: BinaryIO = sys.stdin.buffer
        else:
            path = Path(name)
            if path.is_file() and path.stat().st_size > max_bytes:
                raise DumpError(_too_large(name, max_bytes))
            raw = path.open("rb")
    except OSError as error:
        raise DumpError(f"cannot read {name!r}: {error.strerror or error}") from None
    buffered = io.BufferedReader(_Bounded(raw, name, max_bytes), 1 << 20)
    return io.TextIOWrapper(buffered, encoding="utf-8", errors="strict")


def _too_large(name: str, max_bytes: int) -> str:
    return (
        f"{name!r} is larger than {max_bytes // (1024 * 1024)} MiB, the audit's bound for a "
        "dump; dump one namespace at a time, or audit the cluster live"
    )


def _objects(name: str, stream: TextIO) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each object of the dump with where it is: a List's items one by one as the parser
    completes them."""
    try:
        yield from _walk(name, stream)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "unreadable"
        raise DumpError(f"{name!r} is neither YAML nor JSON{where}: {problem}") from None
    except UnicodeDecodeError:
        raise DumpError(f"{name!r} is not UTF-8 text (a YAML or JSON dump)") from None
    except OSError as error:
        raise DumpError(f"cannot read {name!r}: {error.strerror or error}") from None


def _walk(name: str, stream: TextIO) -> Iterator[tuple[str, Mapping[str, Any]]]:
    builder = _Builder()
    number = 0
    for event in yaml.parse(stream, Loader=_Loader):
        if isinstance(event, yaml.DocumentStartEvent):
            number, builder = number + 1, _Builder()
        elif isinstance(event, yaml.DocumentEndEvent):
            yield from _document(f"{name!r}, document {number}", builder)
        else:
            builder.feed(event)
            if builder.ready:
                for index, item in builder.take_ready():
                    yield f"{name!r}, document {number}, item {index}", item


def _document(where: str, builder: _Builder) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """A finished document: the object itself, or the List's items still held (those without
    a kind, which the List's kind names: typed lists' items carry none)."""
    document = builder.result
    if document is None:
        return
    if not isinstance(document, Mapping):
        raise DumpError(f"{where} is not a Kubernetes object or List")
    kind = document.get("kind")
    is_list = isinstance(kind, str) and kind.endswith("List")
    items = document.get("items")
    if not builder.items_seen and not (is_list and items is not None):
        yield where, document
        return
    if not is_list:
        raise DumpError(f"{where}: only a List has items, not a {kind!r}")
    if not isinstance(items, list):
        raise DumpError(f"{where}: the {kind}'s items are not a list")
    for index, item in builder.held:
        if not isinstance(item, Mapping):
            raise DumpError(f"{where}, item {index} is not a Kubernetes object")
        yield f"{where}, item {index}", {**item, "kind": str(kind).removesuffix("List")}


class _Builder:
    """Python values from YAML parser events, made as PyYAML's safe loader makes them, except
    that each entry of a top-level `items` list is handed out once complete instead of kept."""

    def __init__(self) -> None:
        self._constructor = yaml.constructor.SafeConstructor()
        self._resolver = yaml.resolver.Resolver()
        self._stack: list[tuple[Any, list[Any]]] = []  # (container, [the pending key])
        self._anchors: dict[str, Any] = {}
        self._tags: dict[str, str] = {}  # plain scalars recur (keys above all): resolved once
        self.ready: list[tuple[int, Any]] = []
        self._count = 0
        self.result: Any = None
        self.items_seen = False
        self.held: list[tuple[int, Any]] = []
        """Items without a kind: they wait for the List's kind at the document's end."""

    def feed(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.ScalarEvent):
            self._add(self._scalar(event), event.anchor)
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            container: Any = {} if isinstance(event, yaml.MappingStartEvent) else []
            if event.anchor is not None:
                self._anchors[event.anchor] = container
            self._stack.append((container, [_NO_KEY]))
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            self._add(self._stack.pop()[0], None)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in self._anchors:
                raise DumpError(f"the alias *{event.anchor} names no anchor")
            self._add(self._anchors[event.anchor], None)

    def _scalar(self, event: yaml.ScalarEvent) -> Any:
        """The value of a scalar as the safe loader resolves and constructs it (a quoted or
        block scalar without a tag is a string: most of a dump's scalars, taken at once)."""
        if event.tag is None:
            if event.style:
                return event.value
            tag = self._tags.get(event.value)
            if tag is None:
                tag = self._resolver.resolve(  # type: ignore[no-untyped-call]
                    yaml.ScalarNode, event.value, event.implicit
                )
                if len(self._tags) < _TAG_CACHE:
                    self._tags[event.value] = tag
            if tag == _STR:
                return event.value
        else:
            tag = event.tag
        construct = _CONSTRUCTORS.get(tag) or _CONSTRUCTORS[None]
        return construct(self._constructor, yaml.ScalarNode(tag, event.value, style=event.style))

    def take_ready(self) -> list[tuple[int, Any]]:
        ready, self.ready = self.ready, []
        return ready

    def _add(self, value: Any, anchor: str | None) -> None:
        if anchor is not None:
            self._anchors[anchor] = value
        if not self._stack:
            self.result = value
            return
        container, pending = self._stack[-1]
        if isinstance(container, list):
            if len(self._stack) == 2 and self._in_items():
                self._count += 1
                self.items_seen = True
                has_kind = isinstance(value, Mapping) and "kind" in value
                (self.ready if has_kind else self.held).append((self._count, value))
            else:
                container.append(value)
        elif pending[0] is _NO_KEY:
            pending[0] = value
        else:
            key, pending[0] = pending[0], _NO_KEY
            try:
                container[key] = value
            except TypeError:
                raise DumpError("a mapping has a key that is not a string") from None

    def _in_items(self) -> bool:
        document, pending = self._stack[0]
        return isinstance(document, dict) and pending[0] == "items"
