"""Facts about NetworkAttachmentDefinitions (NADs) and namespaces, and the lookups that serve them.

Pure layer: no Kubernetes client, no HTTP, no metrics. The mutation core asks a `NadLookup`
which SR-IOV device resource a NAD needs and a `NamespaceLookup` for namespace annotations;
both answer from memory, never from the network. This module holds the lookup protocols,
the extraction of facts from a NAD object, and the static lookups used without a cluster
(empty ones, or ones loaded from a file of NADs and Namespaces). The cluster-backed caches
live in `webhook.cluster`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import yaml

from webhook.claims import (
    CLAIM_GROUP,
    CLAIM_KINDS,
    ClaimFacts,
    StaticClaims,
    claim_facts_from_object,
)
from webhook.messages import quote

RESOURCE_NAME_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"
# Where a NAD says which nodes its network exists on: "key=value" pairs, comma-separated.
NODE_SELECTOR_ANNOTATION = "k8s.v1.cni.cncf.io/nodeSelector"
MAX_NODE_SELECTOR_PAIRS = 32
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?" + _LABEL_NAME
)
_LABEL_VALUE = re.compile(f"({_LABEL_NAME})?")
NAD_API_VERSION = "k8s.cni.cncf.io/v1"
NAD_KIND = "NetworkAttachmentDefinition"
NAMESPACE_KIND = "Namespace"
NAMESPACE_API_VERSION = "v1"
_LIST_KINDS = frozenset({"List"})


@dataclass(frozen=True, slots=True)
class NadFacts:
    """What the webhook needs to know about one NAD."""

    namespace: str
    name: str
    resource_name: str | None
    """The device resource the NAD's pods must request; None when it needs none (macvlan, ipoib)."""
    node_selector: tuple[tuple[str, str], ...] = ()
    """Node labels the network exists on (its nodeSelector annotation), as (key, value)."""
    node_selector_problem: str | None = None
    """Why the nodeSelector annotation could not be read, when it could not."""


class NadLookup(Protocol):
    """Read-only, in-memory NAD facts."""

    @property
    def authoritative(self) -> bool:
        """True when backed by a cluster, so a NAD it does not know can be judged missing."""
        ...

    def get(self, namespace: str, name: str) -> NadFacts | None: ...

    def names_in(self, namespace: str) -> tuple[str, ...]:
        """Sorted names of the NADs known in `namespace` (for "did you mean" messages)."""
        ...

    def covers(self, namespace: str) -> bool:
        """Whether this lookup knows every NAD of `namespace` (so a miss there is a real miss)."""
        ...


class NamespaceLookup(Protocol):
    """Read-only, in-memory namespace annotations (the one way the webhook looks them up)."""

    def annotations(self, namespace: str) -> Mapping[str, str] | None:
        """The namespace's annotations, or None when the namespace is unknown."""
        ...


def nad_facts_from_object(
    obj: Mapping[str, Any],
    resource_annotations: Sequence[str] = (RESOURCE_NAME_ANNOTATION,),
) -> NadFacts:
    """Extract `NadFacts` from a NAD object as the API server returns it.

    The device resource is the value of the first annotation among `resource_annotations`
    that is present and not blank. Raises ValueError naming the problem when the object has
    no metadata.name or metadata.namespace, or carries malformed annotations.
    """
    if isinstance(resource_annotations, str):
        raise TypeError("resource_annotations must be a sequence of annotation keys, not a string")
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        raise ValueError(
            "The NetworkAttachmentDefinition has no metadata; "
            "it needs metadata.name and metadata.namespace."
        )
    name = metadata.get("name")
    namespace = metadata.get("namespace")
    if not isinstance(name, str) or not name:
        raise ValueError(
            "The NetworkAttachmentDefinition has no metadata.name; every NAD needs a name."
        )
    if not isinstance(namespace, str) or not namespace:
        raise ValueError(
            f"The NetworkAttachmentDefinition {name!r} has no metadata.namespace; "
            "NADs are namespaced, so set the namespace it lives in."
        )
    annotations = metadata.get("annotations")
    if annotations is None:
        annotations = {}
    if not isinstance(annotations, Mapping):
        raise ValueError(
            f"The metadata.annotations of NetworkAttachmentDefinition {namespace}/{name} "
            "must be a mapping of strings to strings."
        )
    selector: tuple[tuple[str, str], ...] = ()
    problem = None
    raw_selector = annotations.get(NODE_SELECTOR_ANNOTATION)
    if raw_selector is not None:
        try:
            selector = parse_node_selector(raw_selector)
        except ValueError as error:
            problem = str(error)
    return NadFacts(
        namespace=namespace,
        name=name,
        resource_name=_first_resource_name(annotations, resource_annotations, namespace, name),
        node_selector=selector,
        node_selector_problem=problem,
    )


def parse_node_selector(value: object) -> tuple[tuple[str, str], ...]:
    """`key=value[,key=value...]` as (key, value) pairs; ValueError saying what is wrong."""
    if not isinstance(value, str):
        raise ValueError(f"{NODE_SELECTOR_ANNOTATION} is not a string")
    parts = value.split(",")
    if len(parts) > MAX_NODE_SELECTOR_PAIRS:
        raise ValueError(
            f"{NODE_SELECTOR_ANNOTATION} has {len(parts)} pairs; at most "
            f"{MAX_NODE_SELECTOR_PAIRS} are supported"
        )
    pairs = []
    for part in parts:
        key, equals, label = (text.strip() for text in part.partition("="))
        if not equals or len(key) > 317 or not _LABEL_KEY.fullmatch(key):
            raise ValueError(
                f"{NODE_SELECTOR_ANNOTATION} {quote(value, 120)} is not key=value pairs with "
                "label keys, separated by commas"
            )
        if not _LABEL_VALUE.fullmatch(label):
            raise ValueError(
                f"{NODE_SELECTOR_ANNOTATION} gives {quote(key)} the value {quote(label, 80)}, "
                "which is not a label value (63 characters: letters, digits, '-', '_', '.')"
            )
        pairs.append((key, label))
    return tuple(pairs)


def _first_resource_name(
    annotations: Mapping[str, Any], keys: Sequence[str], namespace: str, name: str
) -> str | None:
    for key in keys:
        value = annotations.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(
                f"The annotation {key!r} of NetworkAttachmentDefinition {namespace}/{name} "
                f"must be a string, not {type(value).__name__} {value!r}; quote it in YAML."
            )
        if value.strip():
            return value.strip()
    return None


class StaticNads:
    """A `NadLookup` over a fixed set of NAD facts.

    Built from a NAD file it is authoritative (the file describes every NAD there is);
    the empty instance used when there is no cluster is not (`StaticNads((), authoritative=False)`).
    """

    __slots__ = ("_by_key", "_names", "authoritative")

    authoritative: bool

    def __init__(self, facts: Iterable[NadFacts], *, authoritative: bool) -> None:
        self.authoritative = authoritative
        by_key: dict[tuple[str, str], NadFacts] = {}
        names: dict[str, list[str]] = {}
        for fact in facts:
            key = (fact.namespace, fact.name)
            if key in by_key:
                raise ValueError(
                    f"NetworkAttachmentDefinition {fact.namespace}/{fact.name} is given twice."
                )
            by_key[key] = fact
            bisect.insort(names.setdefault(fact.namespace, []), fact.name)
        self._by_key = by_key
        self._names = {namespace: tuple(sorted_names) for namespace, sorted_names in names.items()}

    def get(self, namespace: str, name: str) -> NadFacts | None:
        return self._by_key.get((namespace, name))

    def names_in(self, namespace: str) -> tuple[str, ...]:
        return self._names.get(namespace, ())

    def covers(self, namespace: str) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[NadFacts]:
        return iter(self._by_key.values())

    def __repr__(self) -> str:
        return f"StaticNads({len(self)} NADs, authoritative={self.authoritative})"


class StaticNamespaces:
    """A `NamespaceLookup` over fixed namespace annotations, e.g. the Namespace objects of a file.

    `NO_NAMESPACES`, the empty one, is used without a cluster: it knows no namespace.
    """

    __slots__ = ("_annotations",)

    def __init__(self, annotations: Mapping[str, Mapping[str, str]]) -> None:
        self._annotations = {name: MappingProxyType(dict(a)) for name, a in annotations.items()}

    def annotations(self, namespace: str) -> Mapping[str, str] | None:
        return self._annotations.get(namespace)

    def __len__(self) -> int:
        return len(self._annotations)

    def __repr__(self) -> str:
        return f"StaticNamespaces({len(self)} namespaces)"


NO_NAMESPACES: NamespaceLookup = StaticNamespaces({})


@dataclass(frozen=True, slots=True)
class FactsFile:
    """What a file of cluster objects tells the decision: NADs, namespaces, DRA claims."""

    nads: StaticNads
    namespaces: StaticNamespaces
    claims: StaticClaims


def load_nad_file(
    text: str,
    resource_annotations: Sequence[str] = (RESOURCE_NAME_ANNOTATION,),
    *,
    source: str = "the NAD file",
) -> StaticNads:
    """Load NAD facts from YAML: one or more NAD documents, or a List of NADs.

    `source` names the file in error messages. Documents and list items are counted from 1
    in messages, as an editor shows them. Empty documents are skipped. The result is
    authoritative: the file is taken to describe every NAD there is.
    """
    return _load(text, resource_annotations, source, (NAD_KIND,)).nads


def load_facts_file(
    text: str,
    resource_annotations: Sequence[str] = (RESOURCE_NAME_ANNOTATION,),
    *,
    source: str = "the NAD file",
) -> FactsFile:
    """As `load_nad_file`, and Namespace objects too (mixed with NADs, in documents or Lists):
    their annotations are the namespace annotations the decision reads; and ResourceClaimTemplates
    and ResourceClaims, for GPUs claimed through Dynamic Resource Allocation."""
    return _load(text, resource_annotations, source, (NAD_KIND, NAMESPACE_KIND, *CLAIM_KINDS))


def _load(
    text: str, resource_annotations: Sequence[str], source: str, kinds: tuple[str, ...]
) -> FactsFile:
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ValueError(f"{source} is not valid YAML: {exc}") from None
    facts: list[NadFacts] = []
    namespaces: dict[str, Mapping[str, str]] = {}
    claims: list[ClaimFacts] = []
    seen: dict[tuple[str, str, str], str] = {}
    for doc_number, document in enumerate(documents, start=1):
        for where, obj in _objects(document, f"{source}, document {doc_number}", kinds):
            kind = obj.get("kind", NAD_KIND)
            try:
                if kind == NAMESPACE_KIND:
                    name, annotations = _namespace_from_object(obj)
                    key, what = (kind, "", name), f"Namespace {name}"
                    namespaces[name] = annotations
                elif kind in CLAIM_KINDS:
                    claim = claim_facts_from_object(obj)
                    key = (kind, claim.namespace, claim.name)
                    what = f"{kind} {claim.namespace}/{claim.name}"
                    claims.append(claim)
                else:
                    fact = nad_facts_from_object(obj, resource_annotations)
                    key = (NAD_KIND, fact.namespace, fact.name)
                    what = f"NetworkAttachmentDefinition {fact.namespace}/{fact.name}"
                    facts.append(fact)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            if key in seen:
                raise ValueError(
                    f"{where}: {what} is already defined in {seen[key]}; each object may "
                    "appear once."
                )
            seen[key] = where
    return FactsFile(
        StaticNads(facts, authoritative=True),
        StaticNamespaces(namespaces),
        StaticClaims(claims, authoritative=True),
    )


def _namespace_from_object(obj: Mapping[str, Any]) -> tuple[str, Mapping[str, str]]:
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ValueError("The Namespace has no metadata.name; every Namespace needs a name.")
    assert isinstance(metadata, Mapping)
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, Mapping) or not all(
        isinstance(value, str) for value in annotations.values()
    ):
        raise ValueError(
            f"The metadata.annotations of Namespace {name} must be a mapping of strings to "
            "strings; quote the values in YAML."
        )
    return name, annotations


def _objects(
    document: object, where: str, kinds: tuple[str, ...]
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yield (position, object) for one YAML document, unwrapping a List."""
    if document is None:
        return
    wanted = " or ".join(kinds)
    if not isinstance(document, Mapping):
        raise ValueError(
            f"{where}: expected a {wanted} object (a mapping), got {type(document).__name__}."
        )
    kind = document.get("kind")
    if kind in _LIST_KINDS or kind in {f"{k}List" for k in kinds}:
        items = document.get("items")
        if items is None:
            return
        if not isinstance(items, list):
            raise ValueError(f"{where}: the {kind} has 'items' that is not a list.")
        for item_number, item in enumerate(items, start=1):
            item_where = f"{where}, item {item_number}"
            if not isinstance(item, Mapping):
                raise ValueError(
                    f"{item_where}: expected a {wanted} object (a mapping), "
                    f"got {type(item).__name__}."
                )
            # Items of a List written by kubectl carry kind; items of a typed list may not.
            item_kind = item.get("kind", str(kind).removesuffix("List") or NAD_KIND)
            if item_kind not in kinds:
                raise ValueError(_wrong_kind(item_where, item.get("kind"), kinds))
            _check_api_version(item, item_where)
            yield item_where, {**item, "kind": item_kind}
        return
    if kind not in kinds:
        raise ValueError(_wrong_kind(where, kind, kinds))
    _check_api_version(document, where)
    yield where, document


def _wrong_kind(where: str, kind: object, kinds: tuple[str, ...]) -> str:
    if kind is None:
        return f"{where}: the object has no 'kind'; expected kind: {' or '.join(kinds)}."
    return f"{where}: expected kind {' or '.join(kinds)} (or a List of them), got {kind!r}."


def _check_api_version(obj: Mapping[str, Any], where: str) -> None:
    api_version = obj.get("apiVersion")
    if obj.get("kind") in CLAIM_KINDS:
        # v1, v1beta1 and v1beta2 are all read.
        if api_version is not None and not str(api_version).startswith(f"{CLAIM_GROUP}/"):
            raise ValueError(f"{where}: expected apiVersion {CLAIM_GROUP}/v1, got {api_version!r}.")
        return
    expected = NAMESPACE_API_VERSION if obj.get("kind") == NAMESPACE_KIND else NAD_API_VERSION
    if api_version is not None and api_version != expected:
        raise ValueError(f"{where}: expected apiVersion {expected}, got {api_version!r}.")
