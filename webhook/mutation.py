"""The decision (core layer): which networks and SR-IOV resources a pod gets, as JSON Patch ops.

`decide(pod, namespace, policy, nads, namespace_annotations)` is a pure function: it reads the pod
(never mutates it), the policy and facts about NetworkAttachmentDefinitions already in memory, and
returns a Decision. It knows nothing of HTTP, AdmissionReview or the Kubernetes client.

The rules, in order:
1. A pod with a GPU container gets every policy network it lacks appended to the networks
   annotation (a perGpu network once per GPU), in the form the pod already uses.
2. Per resource name, the attachments that map to it and the units the pod requests are made
   equal by raising the lower side: missing units go to the right container as
   requests = limits, missing attachments come from the policy network for that resource.
3. A request without a limit (or the reverse) of such a resource is completed.
Nothing else in the pod is touched; a mutated pod mutates to an empty patch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from webhook.messages import QUOTE_LIMIT, quote
from webhook.nads import NadLookup, StaticNads
from webhook.networks import (
    DEFAULT_NETWORK_ANNOTATION,
    EMPTY,
    MAX_ATTACHMENTS,
    NETWORKS_ANNOTATION,
    AnnotationError,
    NetworkRef,
    NetworksAnnotation,
    appended,
    new_entry,
    parse,
    parse_default_network,
)
from webhook.patch import Op, OpName, pointer
from webhook.policy import Network, Policy
from webhook.quantity import QuantityError, whole_units

INJECT_ANNOTATION = "gpu-rdma-injector/inject"
CONTAINER_ANNOTATION = "gpu-rdma-injector/container"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
WARNING_PREFIX = "gpu-rdma-injector: "
MAX_WARNING_LENGTH = 119
# The API server refuses a pod whose annotations (keys and values) exceed this many bytes; a
# mutating webhook sees the pod before that check, so it applies it first.
TOTAL_ANNOTATION_BYTES = 256 * 1024
# Bounds of ours: no real pod comes near them, and each keeps one review cheap. The API server
# keeps at most 4 KiB of warnings per response, about 34 of ours.
MAX_CONTAINERS = 128
MAX_WARNINGS = 32

Outcome = Literal["mutated", "unchanged", "skipped", "denied", "error"]


# Static mode: nothing is known about NADs, so nothing can be judged unknown.
NO_NADS: NadLookup = StaticNads((), authoritative=False)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one pod: allowed or not, the patch, warnings for the user, a short reason."""

    allowed: bool
    outcome: Outcome
    reason: str
    patch: tuple[Op, ...] = ()
    warnings: tuple[str, ...] = ()
    message: str = ""
    code: int = 200


def skipped(reason: str) -> Decision:
    return Decision(allowed=True, outcome="skipped", reason=reason)


def denied(message: str, code: int, reason: str) -> Decision:
    return Decision(allowed=False, outcome="denied", reason=reason, message=message, code=code)


class PodShapeError(ValueError):
    """The object is not a pod the API server would send; the message names the field."""


class _TooManyContainers(ValueError):
    """More containers than the webhook judges in one review."""


@dataclass(slots=True)
class _Container:
    index: int
    name: str
    resources: Mapping[str, Any] | None
    requests: Mapping[str, Any] | None
    limits: Mapping[str, Any] | None
    _amounts: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)

    def amount(self, resource: str) -> tuple[int | None, int | None]:
        """(request, limit) of an extended resource, None where absent."""
        known = self._amounts.get(resource)
        if known is None:
            known = (self.units_in(self.requests, resource), self.units_in(self.limits, resource))
            self._amounts[resource] = known
        return known

    def units(self, resource: str) -> int:
        request, limit = self.amount(resource)
        return max(request or 0, limit or 0)

    def units_in(self, section: Mapping[str, Any] | None, resource: str) -> int | None:
        if section is None or resource not in section:
            return None
        try:
            return whole_units(section[resource])
        except QuantityError as error:
            raise PodShapeError(
                f"container {quote(self.name)} asks for {resource[:QUOTE_LIMIT]} "
                f"{quote(section[resource])}: {error}"
            ) from None


def _read_containers(pod: Mapping[str, Any]) -> list[_Container]:
    spec = pod.get("spec")
    if not isinstance(spec, Mapping):
        raise PodShapeError("the pod has no spec")
    raw = spec.get("containers")
    if not isinstance(raw, list) or not raw:
        raise PodShapeError("the pod has no spec.containers list")
    if len(raw) > MAX_CONTAINERS:
        raise _TooManyContainers(
            f"the pod has {len(raw)} containers; gpu-rdma-injector supports at most "
            f"{MAX_CONTAINERS} per pod"
        )
    containers = []
    for index, container in enumerate(raw):
        if not isinstance(container, Mapping) or not isinstance(container.get("name"), str):
            raise PodShapeError(f"spec.containers[{index}] is not a container with a name")
        resources = container.get("resources")
        if resources is not None and not isinstance(resources, Mapping):
            raise PodShapeError(
                f"container {quote(container['name'])} has resources that are not a map"
            )
        sections: list[Mapping[str, Any] | None] = []
        for key in ("requests", "limits"):
            section = resources.get(key) if resources else None
            if section is not None and not isinstance(section, Mapping):
                raise PodShapeError(
                    f"container {quote(container['name'])} has {key} that are not a map"
                )
            sections.append(section)
        requests, limits = sections
        containers.append(_Container(index, container["name"], resources, requests, limits))
    return containers


def _read_annotations(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    metadata = pod.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise PodShapeError("the pod's metadata is not a map")
    annotations = metadata.get("annotations")
    if annotations is not None and not isinstance(annotations, Mapping):
        raise PodShapeError("the pod's metadata.annotations is not a map")
    return annotations


@dataclass(slots=True)
class _Plan:
    """What the decision has chosen so far; turned into patch ops at the end."""

    namespace: str
    entries: list[NetworkRef]
    added: list[NetworkRef] = field(default_factory=list)
    added_reasons: list[str] = field(default_factory=list)
    # container index -> resource -> the units it must request and limit
    units: dict[int, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (denial, warning)

    def count(self, key: tuple[str, str]) -> int:
        return sum(1 for entry in self.entries if entry.resolved(self.namespace) == key)

    def append(self, network: Network, reason: str, count: int = 1) -> None:
        """Append `count` attachments of `network`; the first takes its interface if free."""
        if len(self.entries) + count > MAX_ATTACHMENTS:
            raise _TooManyAttachments(
                f"the pod would need {len(self.entries) + count} network attachments "
                f"({reason}); at most {MAX_ATTACHMENTS} per pod are supported, so check its "
                "GPU and network resource counts"
            )
        taken: set[str | None] = {entry.interface for entry in self.entries if entry.interface}
        for _ in range(count):
            interface = network.interface if network.interface not in taken else None
            taken.add(interface)
            entry = new_entry(network.nad_name, network.namespace, interface)
            self.entries.append(entry)
            self.added.append(entry)
        if reason not in self.added_reasons:
            self.added_reasons.append(reason)


class _TooManyAttachments(ValueError):
    """A pod whose counts would need more attachments than any pod can use."""


class _UnknownContainer(ValueError):
    """The container annotation names a container the pod does not have."""


def decide(
    pod: Mapping[str, Any],
    namespace: str,
    policy: Policy,
    nads: NadLookup = NO_NADS,
    namespace_annotations: Mapping[str, str] | None = None,
) -> Decision:
    """Decide what `pod`, created in `namespace`, needs. Never raises for bad pods: it denies."""
    try:
        annotations = _read_annotations(pod) or {}
        containers = _read_containers(pod)
    except PodShapeError as error:
        return denied(f"the object is not a valid pod: {error}", 400, "malformed-pod")
    except _TooManyContainers as error:
        return denied(str(error), 400, "too-many-containers")
    if MIRROR_ANNOTATION in annotations:
        return skipped("mirror-pod")
    if _annotation_bytes(annotations) > TOTAL_ANNOTATION_BYTES:
        return denied(
            f"metadata.annotations: Too long: may not be more than {TOTAL_ANNOTATION_BYTES} bytes",
            422,
            "annotations-too-long",
        )

    try:
        raw = annotations.get(NETWORKS_ANNOTATION)
        current = parse(raw) if raw is not None else EMPTY
        default_network = (
            parse_default_network(annotations[DEFAULT_NETWORK_ANNOTATION])
            if DEFAULT_NETWORK_ANNOTATION in annotations
            else None
        )
    except AnnotationError as error:
        return denied(str(error), 400, "malformed-annotation")

    # The boundary holds for every pod, opted out or not: opting out skips injection only.
    for entry in current.entries:
        if not policy.allows(namespace, entry.resolved(namespace)):
            return _outside(
                f"{NETWORKS_ANNOTATION} entry {quote(entry.display())}", entry, namespace, namespace
            )
    if default_network is not None:
        key = default_network.resolved(policy.multus_namespace)
        if not policy.allows(namespace, key):
            return _outside(
                DEFAULT_NETWORK_ANNOTATION, default_network, namespace, policy.multus_namespace
            )

    if str(annotations.get(INJECT_ANNOTATION, "")).lower() == "false":
        return skipped("opted-out")

    try:
        networks = _networks_for(namespace, policy, namespace_annotations)
    except AnnotationError as error:
        return denied(str(error), 400, "malformed-annotation")
    for network in networks:
        if not policy.allows(namespace, network.resolved(namespace)):
            return denied(
                f"namespace {quote(namespace)} has {policy.namespace_networks_annotation} naming "
                f"{quote(network.name)}, a NAD outside the namespaces its pods may use; the "
                "namespace's owner must name a NAD in the namespace, or the cluster admin add "
                f"{quote(network.name)} to allowedNadNamespaces",
                403,
                "namespace-not-allowed",
            )

    try:
        gpus = [_gpu_count(container, policy.gpu_resources) for container in containers]
        explicit = _explicit_container(annotations, containers)
    except PodShapeError as error:
        return denied(f"the object is not a valid pod: {error}", 400, "malformed-pod")
    except _UnknownContainer as error:
        return denied(str(error), 400, "unknown-container")

    plan = _Plan(namespace, list(current.entries))
    plan.warnings.extend(_respelt_warnings(current))
    # Networks that can make up missing attachments: those chosen for injection, then the
    # policy's own (a namespace annotation chooses what is injected, not what exists).
    chosen = {network.resolved(namespace) for network in networks}
    balancing = (
        *networks,
        *(network for network in policy.networks if network.resolved(namespace) not in chosen),
    )
    resource_of_network = {
        network.name: _resource(nads, network.resolved(namespace), network, plan)
        for network in balancing
    }

    total_gpus = sum(gpus)
    try:
        for network in networks if total_gpus else ():
            wanted = total_gpus if network.per_gpu else 1
            missing = wanted - plan.count(network.resolved(namespace))
            if missing > 0 and _usable(network, namespace, nads, plan):
                plan.append(
                    network, f"{total_gpus} GPUs" if network.per_gpu else "GPU pod", missing
                )
    except _TooManyAttachments as error:
        return denied(str(error), 400, "too-many-attachments")

    user_references = [(entry, entry.resolved(namespace)) for entry in current.entries]
    if default_network is not None:
        user_references.append((default_network, default_network.resolved(policy.multus_namespace)))
    _check_user_entries(user_references, nads, plan)

    by_reference = {network.resolved(namespace): network for network in balancing}

    def resource_of(key: tuple[str, str]) -> str | None:
        return _resource(nads, key, by_reference.get(key), plan)

    attachments: dict[str, int] = {}
    keys = [entry.resolved(namespace) for entry in plan.entries]
    if default_network is not None:
        # The NAD that replaces eth0 takes a device of its resource like any attachment.
        keys.append(default_network.resolved(policy.multus_namespace))
    for key in keys:
        resource = resource_of(key)
        if resource is not None:
            attachments[resource] = attachments.get(resource, 0) + 1
    resources = list(
        dict.fromkeys([r for r in resource_of_network.values() if r] + list(attachments))
    )

    try:
        for resource in resources:
            _balance(
                resource,
                attachments.get(resource, 0),
                containers,
                gpus,
                explicit,
                balancing,
                resource_of_network,
                nads,
                plan,
            )
        _complete_requests_and_limits(resources, containers, plan)
    except PodShapeError as error:
        return denied(f"the object is not a valid pod: {error}", 400, "malformed-pod")
    except _TooManyAttachments as error:
        return denied(str(error), 400, "too-many-attachments")

    if plan.problems and policy.unknown_networks == "deny":
        return denied(plan.problems[0][0], 400, "unknown-network")
    plan.warnings[:0] = [warning for _, warning in plan.problems]

    ops = _annotation_ops(pod, annotations, current, plan) + _resource_ops(containers, plan)
    warnings = _capped(_describe(plan, containers) + plan.warnings)
    if not ops:
        return Decision(True, "unchanged", "nothing-missing", warnings=tuple(warnings))
    return Decision(True, "mutated", "injected", tuple(ops), tuple(warnings))


def _capped(warnings: list[str]) -> list[str]:
    if len(warnings) <= MAX_WARNINGS:
        return warnings
    more = len(warnings) - MAX_WARNINGS + 1
    return [*warnings[: MAX_WARNINGS - 1], _warning(f"and {more} more warnings")]


def _annotation_bytes(annotations: Mapping[str, Any]) -> int:
    """Bytes of keys and values, as the API server counts them (UTF-8)."""
    total = 0
    for key, value in annotations.items():
        if not isinstance(key, str) or not isinstance(value, str):
            continue  # not a string: the parse that reads it says so
        total += (
            len(key) + len(value)
            if key.isascii() and value.isascii()
            else (
                len(key.encode("utf-8", "surrogatepass"))
                + len(value.encode("utf-8", "surrogatepass"))
            )
        )
    return total


def _outside(subject: str, entry: NetworkRef, pod_namespace: str, default: str) -> Decision:
    target, name = entry.resolved(default)
    return denied(
        f"{subject} points at NAD {quote(name)} in namespace {quote(target)}, which pods in "
        f"{quote(pod_namespace)} may not use; reference a NAD in {quote(pod_namespace)}, or ask "
        f"the cluster admin to add {quote(target)} (or {quote(target + '/' + name)}) to "
        "allowedNadNamespaces",
        403,
        "namespace-not-allowed",
    )


def _respelt_warnings(annotation: NetworksAnnotation) -> list[str]:
    """Warn about JSON keys Multus reads as another key (e.g. "Namespace" as "namespace")."""
    warnings = []
    for index, entry in enumerate(annotation.entries, start=1):
        for key, name in entry.selection.respelt if entry.selection else ():
            warnings.append(_warning(f'entry {index}: Multus reads key "{key}" as "{name}"'))
    return warnings


def _networks_for(
    namespace: str, policy: Policy, namespace_annotations: Mapping[str, str] | None
) -> tuple[Network, ...]:
    """The policy's networks, or the namespace's own choice when it annotates one."""
    if not namespace_annotations:
        return policy.networks
    value = namespace_annotations.get(policy.namespace_networks_annotation)
    if value is None:
        return policy.networks
    try:
        chosen = parse(value)
    except AnnotationError as error:
        raise AnnotationError(
            f"namespace {quote(namespace)} has a malformed {policy.namespace_networks_annotation} "
            f"annotation ({error}); the namespace's owner must fix it"
        ) from None
    by_reference = {network.resolved(namespace): network for network in policy.networks}
    networks = []
    for entry in chosen.entries:
        known = by_reference.get(entry.resolved(namespace))
        if known is not None and (entry.interface is None or entry.interface == known.interface):
            networks.append(known)
        else:
            name = f"{entry.namespace}/{entry.name}" if entry.namespace else entry.name
            networks.append(
                Network(
                    name=name,
                    interface=entry.interface,
                    resourceName=known.resource_name if known else None,
                )
            )
    return tuple(networks)


def _resource(
    nads: NadLookup, key: tuple[str, str], network: Network | None, plan: _Plan
) -> str | None:
    """The device resource an attachment needs: the NAD's own annotation when it has one (it is
    what Multus looks the device up by), else the policy network's resourceName, else none."""
    facts = nads.get(*key)
    from_nad = facts.resource_name if facts is not None else None
    from_policy = network.resource_name if network is not None else None
    if from_nad and from_policy and from_nad != from_policy:
        warning = _warning(f"{key[1]}: NAD says {from_nad}, policy {from_policy}; using the NAD's")
        if warning not in plan.warnings:
            plan.warnings.append(warning)
    return from_nad or from_policy


def _unknown_nad(
    nads: NadLookup, key: tuple[str, str], subject: str, consequence: str
) -> tuple[str, str] | None:
    """(denial message, short warning) about a reference to a NAD the cluster does not have."""
    namespace, name = key
    if not nads.authoritative or not nads.covers(namespace) or nads.get(namespace, name):
        return None
    existing = nads.names_in(namespace)
    there = ", ".join(existing[:8]) + (", ..." if len(existing) > 8 else "") if existing else "none"
    message = (
        f"{subject}: NetworkAttachmentDefinition {quote(name)} does not exist in namespace "
        f"{quote(namespace)} (NADs there: {there}); fix the name or create the NAD"
    )
    return message, _warning(f"NAD {name!r} not found in namespace {namespace!r}; {consequence}")


def _note_problem(plan: _Plan, problem: tuple[str, str] | None) -> bool:
    """Record a problem once; True when there was none."""
    if problem is None:
        return True
    if problem not in plan.problems:
        plan.problems.append(problem)
    return False


def _usable(network: Network, namespace: str, nads: NadLookup, plan: _Plan) -> bool:
    subject = f"policy network {quote(network.name)}"
    problem = _unknown_nad(nads, network.resolved(namespace), subject, "not injected")
    return _note_problem(plan, problem)


def _check_user_entries(
    references: Iterable[tuple[NetworkRef, tuple[str, str]]], nads: NadLookup, plan: _Plan
) -> None:
    for entry, key in references:
        subject = f"{NETWORKS_ANNOTATION} entry {quote(entry.display())}"
        problem = _unknown_nad(nads, key, subject, "pod will not start")
        _note_problem(plan, problem)


def _gpu_count(container: _Container, gpu_resources: Sequence[str]) -> int:
    return sum(container.units(resource) for resource in gpu_resources)


def _explicit_container(
    annotations: Mapping[str, Any], containers: Sequence[_Container]
) -> _Container | None:
    name = annotations.get(CONTAINER_ANNOTATION)
    if name is None:
        return None
    for container in containers:
        if container.name == name:
            return container
    names = ", ".join(quote(container.name) for container in containers[:8])
    more = f" and {len(containers) - 8} more" if len(containers) > 8 else ""
    raise _UnknownContainer(
        f"{CONTAINER_ANNOTATION} names container {quote(name)}, but the pod's containers are "
        f"{names}{more}; set it to one of them"
    )


def _balance(
    resource: str,
    attached: int,
    containers: Sequence[_Container],
    gpus: Sequence[int],
    explicit: _Container | None,
    networks: Sequence[Network],
    resource_of_network: Mapping[str, str | None],
    nads: NadLookup,
    plan: _Plan,
) -> None:
    """Raise the lower of attachments and units of `resource` to the higher."""
    requested = sum(_planned_units(plan, container, resource) for container in containers)
    if requested < attached:
        per_gpu = any(
            network.per_gpu for network in networks if resource_of_network[network.name] == resource
        )
        for container, extra in _targets(
            attached - requested, resource, containers, gpus, explicit, per_gpu, plan
        ):
            plan.units.setdefault(container.index, {})[resource] = (
                _planned_units(plan, container, resource) + extra
            )
    elif requested > attached:
        source = next(
            (network for network in networks if resource_of_network[network.name] == resource),
            None,
        )
        if source is None:
            plan.warnings.append(
                _warning(
                    f"{requested} {resource} requested, {attached} attached; "
                    "no policy network for it, left as is"
                )
            )
            return
        if _usable(source, plan.namespace, nads, plan):
            plan.append(source, f"pod requests {requested} {resource}", requested - attached)


def _planned_units(plan: _Plan, container: _Container, resource: str) -> int:
    planned = plan.units.get(container.index, {}).get(resource)
    return planned if planned is not None else container.units(resource)


def _targets(
    missing: int,
    resource: str,
    containers: Sequence[_Container],
    gpus: Sequence[int],
    explicit: _Container | None,
    per_gpu: bool,
    plan: _Plan,
) -> list[tuple[_Container, int]]:
    """Which containers receive the `missing` units, and how many each."""
    if explicit is not None:
        return [(explicit, missing)]
    gpu_containers = [c for c, count in zip(containers, gpus, strict=True) if count]
    if not gpu_containers:
        return [(containers[0], missing)]
    if not per_gpu:
        return [(gpu_containers[0], missing)]
    targets: list[tuple[_Container, int]] = []
    if per_gpu:
        # Each GPU container gets the units for its own GPUs first.
        for container in gpu_containers:
            short = gpus[container.index] - _planned_units(plan, container, resource)
            give = min(missing, max(short, 0))
            if give:
                targets.append((container, give))
                missing -= give
    if missing:
        first = gpu_containers[0]
        given = sum(extra for container, extra in targets if container is first)
        targets = [(c, extra) for c, extra in targets if c is not first]
        targets.insert(0, (first, given + missing))
        targets.sort(key=lambda item: item[0].index)
    return targets


def _complete_requests_and_limits(
    resources: Sequence[str], containers: Sequence[_Container], plan: _Plan
) -> None:
    """Extended resources need requests == limits; complete whichever half is missing or lower."""
    for container in containers:
        for resource in resources:
            if resource in plan.units.get(container.index, {}):
                continue
            request, limit = container.amount(resource)
            if (request, limit) != (None, None) and request != limit:
                plan.units.setdefault(container.index, {})[resource] = max(request or 0, limit or 0)


def _annotation_ops(
    pod: Mapping[str, Any],
    annotations: Mapping[str, Any],
    current: NetworksAnnotation,
    plan: _Plan,
) -> list[Op]:
    if not plan.added:
        return []
    value = appended(current, plan.added)
    if "metadata" not in pod or pod["metadata"] is None:
        return [Op("add", pointer("metadata"), {"annotations": {NETWORKS_ANNOTATION: value}})]
    if pod["metadata"].get("annotations") is None:
        return [Op("add", pointer("metadata", "annotations"), {NETWORKS_ANNOTATION: value})]
    op: OpName = "replace" if NETWORKS_ANNOTATION in annotations else "add"
    return [Op(op, pointer("metadata", "annotations", NETWORKS_ANNOTATION), value)]


def _resource_ops(containers: Sequence[_Container], plan: _Plan) -> list[Op]:
    ops: list[Op] = []
    for container in containers:
        wanted = plan.units.get(container.index)
        if not wanted:
            continue
        base = ("spec", "containers", container.index, "resources")
        if container.resources is None:
            section = {resource: str(units) for resource, units in wanted.items()}
            ops.append(Op("add", pointer(*base), {"limits": section, "requests": dict(section)}))
            continue
        for key, current in (("limits", container.limits), ("requests", container.requests)):
            changes = {
                resource: str(units)
                for resource, units in wanted.items()
                if current is None
                or resource not in current
                or container.units_in(current, resource) != units
            }
            if not changes:
                continue
            if current is None:
                ops.append(Op("add", pointer(*base, key), changes))
                continue
            for resource, units in changes.items():
                op: OpName = "replace" if resource in current else "add"
                ops.append(Op(op, pointer(*base, key, resource), units))
    return ops


def _describe(plan: _Plan, containers: Sequence[_Container]) -> list[str]:
    """Short warnings saying what was injected and why."""
    warnings = []
    if plan.added:
        times = Counter(entry.display() for entry in plan.added)  # keeps first-seen order
        counted = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in times.items())
        warnings.append(_warning(f"added networks {counted} ({'; '.join(plan.added_reasons)})"))
    for container in containers:
        wanted = plan.units.get(container.index)
        if wanted:
            parts = ", ".join(f"{resource}={units}" for resource, units in wanted.items())
            warnings.append(
                _warning(f"set {parts} (requests = limits) in container {container.name!r}")
            )
    return warnings


def _warning(text: str) -> str:
    message = WARNING_PREFIX + text
    if len(message) > MAX_WARNING_LENGTH:
        message = message[: MAX_WARNING_LENGTH - 3] + "..."
    return message
