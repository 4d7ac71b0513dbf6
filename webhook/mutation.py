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

from collections.abc import Mapping
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
        annotations = read_annotations(pod) or {}
        containers = read_containers(pod)
    except PodShapeError as error:
        return denied(f"the object is not a valid pod: {error}", 400, "malformed-pod")
    except PodTooLarge as error:
        return denied(str(error), 400, "pod-too-large")
    if MIRROR_ANNOTATION in annotations:
        return skipped("mirror-pod")
    if annotation_bytes(annotations) > TOTAL_ANNOTATION_BYTES:
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
        claimed = claimed_gpus(
            pod, namespace, pod["spec"]["containers"], policy.gpu_device_classes, claims
        )
        gpus = [
            gpu_count(container, policy) + claimed.per_container.get(container.index, 0)
            for container in containers
        ]
        explicit = explicit_container(annotations, containers)
    except PodShapeError as error:
        return denied(f"the object is not a valid pod: {error}", 400, "malformed-pod")
    except UnknownContainer as error:
        return denied(str(error), 400, "unknown-container")

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

    total_gpus = sum(gpus)
    try:
        for network in networks if total_gpus else ():
            wanted = total_gpus if network.per_gpu else 1
            missing = wanted - plan.count(network.resolved(namespace))
            if missing > 0 and usable(network, namespace, nads, plan):
                plan.append(
                    network, f"{total_gpus} GPUs" if network.per_gpu else "GPU pod", missing
                )
    except TooManyAttachments as error:
        return denied(str(error), 400, "too-many-attachments")

    user_references = [(entry, entry.resolved(namespace)) for entry in current.entries]
    if default_network is not None:
        user_references.append((default_network, default_network.resolved(policy.multus_namespace)))
    check_user_entries(user_references, nads, plan)

    by_reference = {network.resolved(namespace): network for network in balancing}

    def needed_by(key: tuple[str, str]) -> str | None:
        return resource_of(nads, key, by_reference.get(key), plan)

    attachments: dict[str, int] = {}
    # The NAD that replaces eth0 takes a device of its resource like any attachment.
    replaced = [default_network.resolved(policy.multus_namespace)] if default_network else []
    keys = [entry.resolved(namespace) for entry in plan.entries] + replaced
    for key in keys:
        resource = needed_by(key)
        if resource is not None:
            attachments[resource] = attachments.get(resource, 0) + 1
    resources = list(
        dict.fromkeys([r for r in resource_of_network.values() if r] + list(attachments))
    )

    move = policy.units_outside_gpu_containers == "move"
    placement = Placement(containers, gpus, explicit, balancing, resource_of_network, nads, plan)
    try:
        for resource in resources:
            placement.settle(resource, attachments.get(resource, 0), move)
        placement.complete_requests_and_limits(resources)
    except PodShapeError as error:
        return denied(f"the object is not a valid pod: {error}", 400, "malformed-pod")
    except TooManyAttachments as error:
        return denied(str(error), 400, "too-many-attachments")

    podnetinfo = policy.pod_net_info
    if plan.surplus and not podnetinfo.enabled and has_volume(pod, PEER_INJECTOR_VOLUME):
        plan.warnings.append(warning(PEER_INJECTOR_HINT))

    if plan.problems and policy.unknown_networks == "deny":
        return denied(plan.problems[0][0], 400, "unknown-network")
    plan.warnings[:0] = [warning for _, warning in plan.problems]

    ops = annotation_ops(pod, annotations, current, plan) + resource_ops(containers, plan)
    # Every attachment the pod ends with, those balancing appended included.
    keys = [entry.resolved(namespace) for entry in plan.entries] + replaced
    try:
        if policy.inject_node_selector:
            known = [facts for key in keys if (facts := nads.get(*key)) is not None]
            additions = node_selector_additions(pod, known)
            ops += node_selector_ops(pod, additions)
            if additions:
                shown = ", ".join(f"{key}={value}" for key, value in additions.items())
                plan.warnings.append(warning(f"set nodeSelector {shown} (where its networks are)"))
        if podnetinfo.enabled and keys and total_gpus:
            gpu_containers = [c for c, count in zip(containers, gpus, strict=True) if count]
            added, said = podnetinfo_ops(pod, pod["spec"]["containers"], gpu_containers, podnetinfo)
            ops += added
            plan.warnings += said
    except SchedulingConflict as error:
        return denied(str(error), 400, "node-selector-conflict")
    except PodShapeError as error:
        return denied(f"the object is not a valid pod: {error}", 400, "malformed-pod")
    warnings = capped(describe(plan, containers) + plan.warnings)
    if not ops:
        return Decision(True, "unchanged", "nothing-missing", warnings=tuple(warnings))
    return Decision(True, "mutated", "injected", tuple(ops), tuple(warnings))


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
