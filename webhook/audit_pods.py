"""Audit checks on what pods ask for (core layer): half-configured, unknown-nad,
namespace-not-allowed.

Each judges pods already read as the webhook reads them (webhook.pod_networks): the halves are
compared per resource exactly as the decision balances them, a missing NAD is found by the
decision's own lookup (webhook.references.unknown_nad), and the namespace boundary is the
policy's own `allows`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from webhook.findings import Finding
from webhook.messages import quote
from webhook.nads import NadLookup
from webhook.networks import DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION
from webhook.pod_networks import Attachment, PodView
from webhook.policy import Policy
from webhook.references import unknown_nad


def half_configured(pods: Sequence[PodView], resources: Iterable[str]) -> Iterator[Finding]:
    """Pods whose attachments and units differ for some SR-IOV resource."""
    names = sorted(set(resources))
    for pod in pods:
        if not pod.active:
            continue
        differences = [
            (resource, attached, units)
            for resource in names
            if (attached := pod.attached(resource)) != (units := pod.units(resource))
        ]
        if not differences:
            continue
        parts = []
        for resource, attached, units in differences:
            what = (
                "an interface without its device (no RDMA device in the container)"
                if attached > units
                else "a device without its interface (a VF but no net1)"
            )
            parts.append(
                f"{_count(attached, 'attachment')} {'needs' if attached == 1 else 'need'} "
                f"{resource} but the containers request "
                f"{_count(units, 'unit')}: {what}"
            )
        resource, attached, units = differences[0]
        fix = (
            f"recreate it with {resource}: {attached} in the GPU container's requests and limits"
            if attached > units
            else f"recreate it with one {NETWORKS_ANNOTATION} entry per unit of {resource}"
        )
        yield Finding(
            "half-configured",
            "error",
            pod.ref,
            f"{'; '.join(parts)}.",
            f"Make both halves equal: {fix} (in an opted-in namespace the webhook does it).",
        )


def unknown_nads(pods: Sequence[PodView], nads: NadLookup, policy: Policy) -> Iterator[Finding]:
    """Pods that reference a NAD the cluster does not have (inside the boundary: a reference
    outside it is namespace-not-allowed's)."""
    for pod in pods:
        if not pod.active:
            continue
        missing = []
        for subject, attachment in _references(pod):
            if not policy.allows(pod.namespace, attachment.key):
                continue
            if unknown_nad(nads, attachment.key, subject, "") is not None:
                missing.append((subject, attachment))
        if not missing:
            continue
        shown = ", ".join(
            f"{subject} names NAD {attachment.network}" for subject, attachment in missing
        )
        there = nads.names_in(missing[0][1].key[0])
        known = ", ".join(there[:8]) + (", ..." if len(there) > 8 else "") if there else "none"
        yield Finding(
            "unknown-nad",
            "error",
            pod.ref,
            f"{shown}, which does not exist (NADs in {missing[0][1].key[0]}: {known}): "
            "Multus cannot set the pod's network up again.",
            "Correct the name in the pod's template, or create the NetworkAttachmentDefinition.",
        )


def outside_boundary(pods: Sequence[PodView], policy: Policy) -> Iterator[Finding]:
    """Pods that reference a NAD outside the namespaces the policy lets them use."""
    for pod in pods:
        if not pod.active or pod.namespace in policy.excluded_namespaces:
            continue
        outside = [
            (subject, attachment)
            for subject, attachment in _references(pod)
            if not policy.allows(pod.namespace, attachment.key)
        ]
        if not outside:
            continue
        subject, attachment = outside[0]
        target, name = attachment.key
        more = f" (and {len(outside) - 1} more)" if len(outside) > 1 else ""
        yield Finding(
            "namespace-not-allowed",
            "error",
            pod.ref,
            f"{subject} points at NAD {attachment.network}{more}, outside the namespaces pods in "
            f"{pod.namespace} may use: the webhook would refuse this pod today.",
            f"Reference a NAD in {pod.namespace}, or add {quote(target)} (or "
            f"{quote(target + '/' + name)}) to the policy's allowedNadNamespaces.",
        )


def _references(pod: PodView) -> list[tuple[str, Attachment]]:
    found = [
        (f"{NETWORKS_ANNOTATION} entry {quote(attachment.entry.display())}", attachment)
        for attachment in pod.attachments
    ]
    if pod.default_network is not None:
        found.append((DEFAULT_NETWORK_ANNOTATION, pod.default_network))
    return found


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
