"""The decision (core layer): which networks and device units a pod gets, as JSON Patch ops.

`decide(pod, namespace, policy, nads, namespace_annotations, claims)` is a pure function: it
reads the pod (never mutates it), the policy and facts about NADs and DRA claims already in
memory, and returns a Decision. It knows nothing of HTTP, AdmissionReview or the Kubernetes client.

The rules, in order:
1. Both networks annotations are read as Multus reads them, and every reference they make must
   lie inside the namespace boundary (docs/security.md), opted-out pods included.
2. A pod with a GPU container (by resource, pattern or DRA claim) gets every network it lacks
   appended to the networks annotation (a perGpu network once per GPU), in the form the pod
   already uses: the policy's, or those its namespace's annotation chooses.
3. Per resource, the attachments that need it and the units the containers request are made to
   agree (webhook.placement): raised, never lowered, in the GPU containers.
4. With the policy's say: the attached NADs' nodeSelector, and the podnetinfo volume.
Nothing else in the pod is touched; a mutated pod mutates to an empty patch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from webhook.claims import NO_CLAIMS, ClaimedGpus, ClaimLookup, claimed_gpus
from webhook.messages import quote
from webhook.nads import NadLookup, StaticNads
from webhook.networks import (
    DEFAULT_NETWORK_ANNOTATION,
    EMPTY,
    NETWORKS_ANNOTATION,
    AnnotationError,
    NetworkRef,
    NetworksAnnotation,
    parse,
    parse_default_network,
)
from webhook.patch import Op
from webhook.placement import Placement
from webhook.plan import (
    Plan,
    TooManyAttachments,
    annotation_ops,
    capped,
    describe,
    resource_ops,
    warning,
)
from webhook.pod import (
    TOTAL_ANNOTATION_BYTES,
    Container,
    PodShapeError,
    PodTooLarge,
    UnknownContainer,
    annotation_bytes,
    explicit_container,
    gpu_count,
    has_volume,
    read_annotations,
    read_containers,
)
from webhook.podspec import (
    SchedulingConflict,
    node_selector_additions,
    node_selector_ops,
    podnetinfo_ops,
)
from webhook.policy import Network, Policy
from webhook.references import check_user_entries, resource_of, usable

INJECT_ANNOTATION = "gpu-rdma-injector/inject"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# network-resources-injector adds this volume when it adds device units; in its
# --honor-resources mode it adds them on top of the pod's own, which shows up here as more
# units than attachments.
PEER_INJECTOR_VOLUME = "podnetinfo"
PEER_INJECTOR_HINT = (
    "more units than networks and a podnetinfo volume: disable network-resources-injector"
)

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


class _Refused(Exception):
    """A phase of the decision refuses the pod; carries the answer."""

    def __init__(self, message: str, code: int, reason: str) -> None:
        super().__init__(message)
        self.decision = denied(message, code, reason)


def decide(
    pod: Mapping[str, Any],
    namespace: str,
    policy: Policy,
    nads: NadLookup = NO_NADS,
    namespace_annotations: Mapping[str, str] | None = None,
    claims: ClaimLookup = NO_CLAIMS,
) -> Decision:
    """Decide what `pod`, created in `namespace`, needs. Never raises for bad pods: it denies."""
    try:
        return _decide(pod, namespace, policy, nads, namespace_annotations, claims)
    except _Refused as refused:
        return refused.decision
    except PodShapeError as error:
        return denied(f"the object is not a valid pod: {error}", 400, "malformed-pod")
    except PodTooLarge as error:
        return denied(str(error), 400, "pod-too-large")
    except AnnotationError as error:
        return denied(str(error), 400, "malformed-annotation")
    except UnknownContainer as error:
        return denied(str(error), 400, "unknown-container")
    except TooManyAttachments as error:
        return denied(str(error), 400, "too-many-attachments")
    except SchedulingConflict as error:
        return denied(str(error), 400, "node-selector-conflict")


def _decide(
    pod: Mapping[str, Any],
    namespace: str,
    policy: Policy,
    nads: NadLookup,
    namespace_annotations: Mapping[str, str] | None,
    claims: ClaimLookup,
) -> Decision:
    annotations = read_annotations(pod) or {}
    containers = read_containers(pod)
    if MIRROR_ANNOTATION in annotations:
        return skipped("mirror-pod")
    if annotation_bytes(annotations) > TOTAL_ANNOTATION_BYTES:
        raise _Refused(
            f"metadata.annotations: Too long: may not be more than {TOTAL_ANNOTATION_BYTES} bytes",
            422,
            "annotations-too-long",
        )
    raw = annotations.get(NETWORKS_ANNOTATION)
    current = parse(raw) if raw is not None else EMPTY
    default_network = (
        parse_default_network(annotations[DEFAULT_NETWORK_ANNOTATION])
        if DEFAULT_NETWORK_ANNOTATION in annotations
        else None
    )
    # The NAD that replaces eth0, where Multus resolves it (its namespace when unqualified).
    replaced = [default_network.resolved(policy.multus_namespace)] if default_network else []
    # The boundary holds for every pod, opted out or not: opting out skips injection only.
    _check_boundary(current, default_network, namespace, policy)
    if str(annotations.get(INJECT_ANNOTATION, "")).lower() == "false":
        return skipped("opted-out")

    networks = _chosen_networks(namespace, policy, namespace_annotations)
    claimed = claimed_gpus(
        pod, namespace, pod["spec"]["containers"], policy.gpu_device_classes, claims
    )
    gpus = [
        gpu_count(container, policy) + claimed.per_container.get(container.index, 0)
        for container in containers
    ]
    explicit = explicit_container(annotations, containers)

    plan = Plan(namespace, list(current.entries))
    _note_claims(claimed, namespace, plan)
    plan.warnings.extend(_respelt_warnings(current))
    # Networks that can make up missing attachments: those chosen for injection, then the
    # policy's own (a namespace annotation chooses what is injected, not what exists).
    chosen = {network.resolved(namespace) for network in networks}
    balancing = (
        *networks,
        *(network for network in policy.networks if network.resolved(namespace) not in chosen),
    )
    resource_of_network = {
        network.name: resource_of(nads, network.resolved(namespace), network, plan)
        for network in balancing
    }
    if sum(gpus):
        _inject(networks, sum(gpus), namespace, nads, plan)
    user_references = [(entry, entry.resolved(namespace)) for entry in current.entries]
    if default_network is not None:
        user_references.append((default_network, replaced[0]))
    check_user_entries(user_references, nads, plan)

    # Per resource, the attachments that need it: the NAD says, else the policy network.
    by_reference = {network.resolved(namespace): network for network in balancing}
    attachments: dict[str, int] = {}
    for key in [entry.resolved(namespace) for entry in plan.entries] + replaced:
        resource = resource_of(nads, key, by_reference.get(key), plan)
        if resource is not None:
            attachments[resource] = attachments.get(resource, 0) + 1
    resources = list(
        dict.fromkeys([r for r in resource_of_network.values() if r] + list(attachments))
    )
    placement = Placement(containers, gpus, explicit, balancing, resource_of_network, nads, plan)
    move = policy.units_outside_gpu_containers == "move"
    for resource in resources:
        placement.settle(resource, attachments.get(resource, 0), move)
    placement.complete_requests_and_limits(resources)

    if plan.surplus and not policy.pod_net_info.enabled and has_volume(pod, PEER_INJECTOR_VOLUME):
        plan.warnings.append(warning(PEER_INJECTOR_HINT))
    if plan.problems and policy.unknown_networks == "deny":
        raise _Refused(plan.problems[0][0], 400, "unknown-network")
    plan.warnings[:0] = [warning for _, warning in plan.problems]

    ops = annotation_ops(pod, annotations, current, plan) + resource_ops(containers, plan)
    # Every attachment the pod ends with, those balancing appended included.
    final = [entry.resolved(namespace) for entry in plan.entries] + replaced
    ops += _pod_spec_ops(pod, containers, gpus, final, policy, nads, plan)
    warnings = capped(describe(plan, containers) + plan.warnings)
    if not ops:
        return Decision(True, "unchanged", "nothing-missing", warnings=tuple(warnings))
    return Decision(True, "mutated", "injected", tuple(ops), tuple(warnings))


def _check_boundary(
    current: NetworksAnnotation,
    default_network: NetworkRef | None,
    namespace: str,
    policy: Policy,
) -> None:
    """Refuse a reference the namespace boundary does not allow (docs/security.md)."""
    for entry in current.entries:
        if not policy.allows(namespace, entry.resolved(namespace)):
            subject = f"{NETWORKS_ANNOTATION} entry {quote(entry.display())}"
            raise _outside(subject, entry, namespace, namespace)
    if default_network is not None:
        key = default_network.resolved(policy.multus_namespace)
        if not policy.allows(namespace, key):
            raise _outside(
                DEFAULT_NETWORK_ANNOTATION, default_network, namespace, policy.multus_namespace
            )


def _chosen_networks(
    namespace: str, policy: Policy, namespace_annotations: Mapping[str, str] | None
) -> tuple[Network, ...]:
    """The networks to inject: the policy's, or the namespace's choice, inside the boundary."""
    networks = _networks_for(namespace, policy, namespace_annotations)
    for network in networks:
        if not policy.allows(namespace, network.resolved(namespace)):
            raise _Refused(
                f"namespace {quote(namespace)} has {policy.namespace_networks_annotation} naming "
                f"{quote(network.name)}, a NAD outside the namespaces its pods may use; the "
                "namespace's owner must name a NAD in the namespace, or the cluster admin add "
                f"{quote(network.name)} to allowedNadNamespaces",
                403,
                "namespace-not-allowed",
            )
    return networks


def _inject(
    networks: Sequence[Network], total_gpus: int, namespace: str, nads: NadLookup, plan: Plan
) -> None:
    """A GPU pod gets every network it lacks (a perGpu one once per GPU)."""
    for network in networks:
        wanted = total_gpus if network.per_gpu else 1
        missing = wanted - plan.count(network.resolved(namespace))
        if missing > 0 and usable(network, namespace, nads, plan):
            plan.append(network, f"{total_gpus} GPUs" if network.per_gpu else "GPU pod", missing)


def _pod_spec_ops(
    pod: Mapping[str, Any],
    containers: Sequence[Container],
    gpus: Sequence[int],
    attached: Sequence[tuple[str, str]],
    policy: Policy,
    nads: NadLookup,
    plan: Plan,
) -> list[Op]:
    """The nodeSelector the attached NADs need and the podnetinfo volume, as the policy says."""
    ops: list[Op] = []
    if policy.inject_node_selector:
        known = [facts for key in attached if (facts := nads.get(*key)) is not None]
        additions = node_selector_additions(pod, known)
        ops += node_selector_ops(pod, additions)
        if additions:
            shown = ", ".join(f"{key}={value}" for key, value in additions.items())
            plan.warnings.append(warning(f"set nodeSelector {shown} (where its networks are)"))
    if policy.pod_net_info.enabled and attached and any(gpus):
        gpu_containers = [c for c, count in zip(containers, gpus, strict=True) if count]
        added, said = podnetinfo_ops(
            pod, pod["spec"]["containers"], gpu_containers, policy.pod_net_info
        )
        ops += added
        plan.warnings += said
    return ops


def _note_claims(claimed: ClaimedGpus, namespace: str, plan: Plan) -> None:
    """Claims that could not be counted: missing ones are problems (deny or warn, as for NADs)."""
    for kind, name in claimed.missing:
        problem = (
            f"the pod's spec.resourceClaims name {kind} {quote(name)}, which does not exist in "
            f"namespace {quote(namespace)}; create it first or fix the name",
            warning(f"{kind} {name!r} not found; its GPUs are not counted"),
        )
        if problem not in plan.problems:
            plan.problems.append(problem)
    for kind, name in claimed.unseen:
        plan.warnings.append(warning(f"{kind} {name!r} cannot be read here; its GPUs not counted"))
    for what in claimed.uncountable:
        plan.warnings.append(
            warning(f"{what} claims All GPUs of a class: perGpu cannot count them, counted once")
        )


def _outside(subject: str, entry: NetworkRef, pod_namespace: str, default: str) -> _Refused:
    target, name = entry.resolved(default)
    return _Refused(
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
            warnings.append(warning(f'entry {index}: Multus reads key "{key}" as "{name}"'))
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
