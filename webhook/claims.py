"""GPUs claimed through Dynamic Resource Allocation (core layer): which containers they are in.

Since Kubernetes 1.34 (`resource.k8s.io/v1`) a pod may get its GPUs from a ResourceClaim (or a
ResourceClaimTemplate, from which one is made per pod) whose requests name a DeviceClass, e.g.
`gpu.nvidia.com`, instead of asking for `nvidia.com/gpu`. A container whose `resources.claims`
refer to such a claim is a GPU container. Its GPU count is the request's `count` when its
`allocationMode` is ExactCount (1 when absent); `All` cannot be counted. A v1 request holds its
fields in `exactly`, or lists alternatives in `firstAvailable`; v1beta1 has them on the request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

from webhook.messages import quote

ClaimKind = Literal["ResourceClaimTemplate", "ResourceClaim"]
CLAIM_KINDS: tuple[ClaimKind, ...] = ("ResourceClaimTemplate", "ResourceClaim")
CLAIM_GROUP = "resource.k8s.io"
# Kubernetes' own limits (resource.k8s.io validation): requests per claim, alternatives per
# request, claims per pod.
MAX_REQUESTS = 32
MAX_ALTERNATIVES = 8
MAX_POD_CLAIMS = 32


@dataclass(frozen=True, slots=True)
class Choice:
    """One way a request can be met: a DeviceClass, and All of them or `count`."""

    device_class: str
    all: bool
    count: int


@dataclass(frozen=True, slots=True)
class ClaimFacts:
    """What the webhook needs of a ResourceClaimTemplate or ResourceClaim: its requests."""

    kind: ClaimKind
    namespace: str
    name: str
    requests: tuple[tuple[str, tuple[Choice, ...]], ...]
    """(request name, its choices in order of preference)."""


class ClaimLookup(Protocol):
    """Read-only, in-memory facts about ResourceClaimTemplates and ResourceClaims."""

    @property
    def authoritative(self) -> bool:
        """True when backed by a cluster (or a file), so a missing one is really missing."""
        ...

    def get(self, kind: ClaimKind, namespace: str, name: str) -> ClaimFacts | None: ...


class StaticClaims:
    """A `ClaimLookup` over fixed facts (a file's, or none at all without a cluster)."""

    __slots__ = ("_by_key", "authoritative")

    def __init__(self, facts: Iterable[ClaimFacts], *, authoritative: bool) -> None:
        self.authoritative = authoritative
        self._by_key = {(f.kind, f.namespace, f.name): f for f in facts}

    def get(self, kind: ClaimKind, namespace: str, name: str) -> ClaimFacts | None:
        return self._by_key.get((kind, namespace, name))

    def __len__(self) -> int:
        return len(self._by_key)


NO_CLAIMS: ClaimLookup = StaticClaims((), authoritative=False)


def claim_facts_from_object(obj: Mapping[str, Any]) -> ClaimFacts:
    """Read a ResourceClaimTemplate or ResourceClaim (v1, v1beta1 or v1beta2 shape)."""
    kind = obj.get("kind")
    if kind not in CLAIM_KINDS:
        raise ValueError(f"expected a ResourceClaimTemplate or ResourceClaim, got {quote(kind)}")
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    namespace = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    if not isinstance(name, str) or not isinstance(namespace, str) or not name or not namespace:
        raise ValueError(f"the {kind} has no metadata.name and metadata.namespace")
    spec = obj.get("spec")
    if kind == "ResourceClaimTemplate":
        spec = spec.get("spec") if isinstance(spec, Mapping) else None
    devices = spec.get("devices") if isinstance(spec, Mapping) else None
    raw = devices.get("requests") if isinstance(devices, Mapping) else None
    if raw is None:
        raw = []
    if not isinstance(raw, list) or len(raw) > MAX_REQUESTS:
        raise ValueError(
            f"{kind} {namespace}/{name} has no list of at most {MAX_REQUESTS} requests"
        )
    requests = []
    for request in raw:
        if not isinstance(request, Mapping) or not isinstance(request.get("name"), str):
            raise ValueError(f"{kind} {namespace}/{name} has a request without a name")
        requests.append((request["name"], _choices(request, f"{kind} {namespace}/{name}")))
    return ClaimFacts(cast(ClaimKind, kind), namespace, name, tuple(requests))


def _choices(request: Mapping[str, Any], where: str) -> tuple[Choice, ...]:
    alternatives = request.get("firstAvailable")
    if isinstance(alternatives, list) and alternatives:
        if len(alternatives) > MAX_ALTERNATIVES:
            raise ValueError(f"{where} has a request of more than {MAX_ALTERNATIVES} alternatives")
        return tuple(_choice(item, where) for item in alternatives)
    exactly = request.get("exactly")
    return (_choice(exactly if isinstance(exactly, Mapping) else request, where),)


def _choice(fields: object, where: str) -> Choice:
    if not isinstance(fields, Mapping):
        raise ValueError(f"{where} has a request alternative that is not an object")
    device_class = fields.get("deviceClassName")
    mode = fields.get("allocationMode", "ExactCount")
    count = fields.get("count", 1)
    if not isinstance(device_class, str) or mode not in ("ExactCount", "All"):
        raise ValueError(f"{where} has a request without a deviceClassName or allocationMode")
    if type(count) is not int or not 1 <= count <= 1_000_000:
        raise ValueError(f"{where} has a request whose count is not a positive number")
    return Choice(device_class, mode == "All", count)


@dataclass(slots=True)
class ClaimedGpus:
    """GPUs per container (by index) from the pod's claims, and what could not be counted."""

    per_container: dict[int, int] = field(default_factory=dict)
    uncountable: list[str] = field(default_factory=list)
    missing: list[tuple[ClaimKind, str]] = field(default_factory=list)
    unseen: list[tuple[ClaimKind, str]] = field(default_factory=list)


def claimed_gpus(
    pod: Mapping[str, Any],
    namespace: str,
    containers: Sequence[Mapping[str, Any]],
    device_classes: Sequence[str],
    claims: ClaimLookup,
) -> ClaimedGpus:
    """Count, per container, the GPUs its claims request from `device_classes`."""
    found = ClaimedGpus()
    if not device_classes:
        return found
    spec = pod.get("spec")
    pod_claims = spec.get("resourceClaims") if isinstance(spec, Mapping) else None
    if not isinstance(pod_claims, list) or not pod_claims:
        return found
    sources = {
        entry["name"]: _source(entry)
        for entry in pod_claims[:MAX_POD_CLAIMS]
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str)
    }
    counted: dict[tuple[ClaimKind, str], _Counted | None] = {}
    for index, container in enumerate(containers):
        resources = container.get("resources")
        refs = resources.get("claims") if isinstance(resources, Mapping) else None
        for ref in refs[:MAX_POD_CLAIMS] if isinstance(refs, list) else ():
            if not isinstance(ref, Mapping) or ref.get("name") not in sources:
                continue
            source = sources[ref["name"]]
            if source is None:
                continue
            if source not in counted:
                counted[source] = _gpu_requests(claims, namespace, source, device_classes, found)
            gpus = counted[source]
            if gpus is None:
                continue
            wanted = ref.get("request")
            if isinstance(wanted, str):
                # A container may name a request, or a firstAvailable alternative of one.
                count, uncountable = gpus.by_request.get(wanted.split("/", 1)[0], (0, False))
            else:
                count, uncountable = gpus.total, gpus.uncountable
            if uncountable:
                found.uncountable.append(f"{source[0]} {source[1]}")
            if count:
                found.per_container[index] = found.per_container.get(index, 0) + count
    return found


@dataclass(frozen=True, slots=True)
class _Counted:
    """GPUs a template or claim requests: per request name (count, All?), and in all."""

    by_request: dict[str, tuple[int, bool]]
    total: int
    uncountable: bool


def _gpu_requests(
    claims: ClaimLookup,
    namespace: str,
    source: tuple[ClaimKind, str],
    device_classes: Sequence[str],
    found: ClaimedGpus,
) -> _Counted | None:
    """The GPUs of a template or claim (each request's first GPU choice; All counts once), or
    None when it cannot be found (noted in `found`)."""
    facts = claims.get(source[0], namespace, source[1])
    if facts is None:
        (found.missing if claims.authoritative else found.unseen).append(source)
        return None
    by_request = {}
    for request, choices in facts.requests:
        gpu = next((c for c in choices if c.device_class in device_classes), None)
        if gpu is not None:
            by_request[request] = (1 if gpu.all else gpu.count, gpu.all)
    return _Counted(
        by_request,
        sum(count for count, _ in by_request.values()),
        any(every for _, every in by_request.values()),
    )


def _source(entry: Mapping[str, Any]) -> tuple[ClaimKind, str] | None:
    """Where a pod's claim comes from: (kind, name) of a template or a claim."""
    for fields in (entry, entry.get("source")):
        if not isinstance(fields, Mapping):
            continue
        if isinstance(fields.get("resourceClaimTemplateName"), str):
            return ("ResourceClaimTemplate", fields["resourceClaimTemplateName"])
        if isinstance(fields.get("resourceClaimName"), str):
            return ("ResourceClaim", fields["resourceClaimName"])
    return None
