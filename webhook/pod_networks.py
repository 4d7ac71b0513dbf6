"""A pod already on the cluster, read for the audit as the webhook reads it (core layer).

The networks and default-network annotations are parsed by the webhook's own parser
(webhook.networks), each attachment's device resource is the one the decision would use
(webhook.references.resource_of: the NAD's annotation, else the policy network's), and units
are counted per container as the decision counts them (webhook.pod). So the audit judges a pod
exactly as the webhook would have at its creation. Multus's `k8s.v1.cni.cncf.io/network-status`
annotation, which says what each attachment got, is read here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.findings import ObjectRef, ref_of
from webhook.nads import NadLookup
from webhook.networks import (
    DEFAULT_NETWORK_ANNOTATION,
    NETWORKS_ANNOTATION,
    AnnotationError,
    NetworkRef,
    parse,
    parse_default_network,
)
from webhook.plan import Plan
from webhook.pod import (
    Container,
    PodShapeError,
    PodTooLarge,
    gpu_count,
    read_annotations,
    read_containers,
)
from webhook.policy import Policy
from webhook.references import resource_of

NETWORK_STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True, slots=True)
class Attachment:
    entry: NetworkRef
    key: tuple[str, str]
    """(namespace, name) of the NAD, resolved as Multus resolves it."""
    resource: str | None
    """The device resource it needs, as the webhook decides it; None when it needs none."""

    @property
    def network(self) -> str:
        return f"{self.key[0]}/{self.key[1]}"


@dataclass(frozen=True, slots=True)
class PodView:
    ref: ObjectRef
    phase: str
    node: str
    created: str
    annotations: Mapping[str, Any]
    attachments: tuple[Attachment, ...]
    default_network: Attachment | None
    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...]
    gpus: int

    @property
    def namespace(self) -> str:
        return self.ref.namespace

    @property
    def active(self) -> bool:
        """Not finished: it holds its devices and addresses (or will, once scheduled)."""
        return self.phase not in FINISHED_PHASES

    @property
    def running(self) -> bool:
        return self.phase == "Running"

    def units(self, resource: str) -> int:
        """Units of `resource` the containers request, as the decision counts them."""
        return sum(_units(container, resource) for container in self.containers)

    def attached(self, resource: str) -> int:
        """Attachments (the default network's included) that need `resource`."""
        everything = (*self.attachments, *([self.default_network] if self.default_network else ()))
        return sum(1 for attachment in everything if attachment.resource == resource)

    def requested(self, resource: str) -> int:
        """The pod's effective request of `resource`, as the scheduler counts it: the larger of
        the containers' sum and any one init container."""
        initial = max((_units(c, resource) for c in self.init_containers), default=0)
        return max(self.units(resource), initial)

    def network_status(self) -> list[Mapping[str, Any]] | None:
        """Multus's network-status entries; None when absent or not a JSON list."""
        raw = self.annotations.get(NETWORK_STATUS_ANNOTATION)
        if not isinstance(raw, str):
            return None
        try:
            entries = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(entries, list):
            return None
        return [entry for entry in entries if isinstance(entry, Mapping)]


class UnreadablePod(ValueError):
    """A pod whose spec or annotations the webhook itself would refuse to read."""


def read_pod(obj: Mapping[str, Any], policy: Policy, nads: NadLookup) -> PodView:
    """The pod as the webhook reads it; UnreadablePod when it cannot (the message says why)."""
    ref = ref_of(obj, "Pod")
    try:
        annotations = read_annotations(obj) or {}
        containers = read_containers(obj)
        init_containers = _init_containers(obj)
        raw = annotations.get(NETWORKS_ANNOTATION)
        entries = parse(raw).entries if raw is not None else ()
        default = (
            parse_default_network(annotations[DEFAULT_NETWORK_ANNOTATION])
            if DEFAULT_NETWORK_ANNOTATION in annotations
            else None
        )
        gpus = sum(gpu_count(container, policy) for container in containers)
    except (PodShapeError, PodTooLarge, AnnotationError) as error:
        raise UnreadablePod(str(error)) from None
    namespace = ref.namespace
    by_reference = {network.resolved(namespace): network for network in policy.networks}
    plan = Plan(namespace, [])  # only for the decision's notes, which the audit does not use

    def attachment(entry: NetworkRef, default_namespace: str) -> Attachment:
        key = entry.resolved(default_namespace)
        return Attachment(entry, key, resource_of(nads, key, by_reference.get(key), plan))

    spec = obj.get("spec")
    status = obj.get("status")
    metadata = obj.get("metadata")
    return PodView(
        ref=ref,
        phase=_field(status, "phase"),
        node=_field(spec, "nodeName"),
        created=_field(metadata, "creationTimestamp"),
        annotations=annotations,
        attachments=tuple(attachment(entry, namespace) for entry in entries),
        default_network=attachment(default, policy.multus_namespace) if default else None,
        containers=tuple(containers),
        init_containers=init_containers,
        gpus=gpus,
    )


def read_pods(
    objects: Iterable[Mapping[str, Any]], policy: Policy, nads: NadLookup
) -> tuple[list[PodView], int]:
    """Every pod that can be read, and how many could not."""
    views, unreadable = [], 0
    for obj in objects:
        try:
            views.append(read_pod(obj, policy, nads))
        except UnreadablePod:
            unreadable += 1
    return views, unreadable


def status_for(
    attachments: Sequence[Attachment], entries: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any] | None]:
    """The network-status entry Multus wrote for each attachment (None when it wrote none):
    entries name the NAD as namespace/name; several attachments of one NAD take its entries in
    order, and an attachment that asked for an interface takes the entry with that interface."""
    free = [entry for entry in entries if not entry.get("default")]
    found: list[Mapping[str, Any] | None] = []
    for attachment in attachments:
        match = next(
            (
                entry
                for entry in free
                if entry.get("name") == attachment.network
                and (
                    attachment.entry.interface is None
                    or entry.get("interface") == attachment.entry.interface
                )
            ),
            None,
        )
        if match is not None:
            free.remove(match)
        found.append(match)
    return found


def _init_containers(obj: Mapping[str, Any]) -> tuple[Container, ...]:
    spec = obj.get("spec")
    raw = spec.get("initContainers") if isinstance(spec, Mapping) else None
    if not isinstance(raw, list):
        return ()
    containers = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            continue
        resources = item.get("resources")
        resources = resources if isinstance(resources, Mapping) else None
        sections = [resources.get(key) if resources else None for key in ("requests", "limits")]
        requests, limits = (s if isinstance(s, Mapping) else None for s in sections)
        containers.append(
            Container(index, str(item.get("name", index)), resources, requests, limits)
        )
    return tuple(containers)


def _units(container: Container, resource: str) -> int:
    try:
        return container.units(resource)
    except PodShapeError:
        return 0  # a quantity the API server would have refused: not a unit of anything


def _field(section: object, key: str) -> str:
    value = section.get(key) if isinstance(section, Mapping) else None
    return value if isinstance(value, str) else ""
