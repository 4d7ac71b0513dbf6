"""Audit check vf-exhausted (core layer): SR-IOV devices a node cannot give.

Two signs of it. A node whose unfinished pods request more of an SR-IOV resource than the node
has allocatable (the device plugin lost VFs after the pods were bound: a reboot, a changed
SriovNetworkNodePolicy); pods count as the scheduler counts them (the containers' sum, or a
larger init container). And a pod still pending whose latest scheduling event says
`Insufficient <resource>` for one of those resources (an event about an older pod of the same
name, told apart by uid, does not count).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from webhook.findings import Finding, ref_of
from webhook.messages import quote
from webhook.pod_networks import PodView
from webhook.quantity import QuantityError, whole_units

SCHEDULING_FAILED = "FailedScheduling"


def overcommitted_nodes(
    nodes: Sequence[Mapping[str, Any]], pods: Sequence[PodView], resources: Iterable[str]
) -> Iterator[Finding]:
    names = sorted(set(resources))
    requested: dict[tuple[str, str], int] = {}
    for pod in pods:
        if pod.active and pod.node:
            for resource in names:
                if units := pod.requested(resource):
                    key = (pod.node, resource)
                    requested[key] = requested.get(key, 0) + units
    for node in nodes:
        ref = ref_of(node, "Node")
        allocatable = _allocatable(node)
        over = [
            (resource, wanted, allocatable.get(resource, 0))
            for resource in names
            if (wanted := requested.get((ref.name, resource), 0)) > allocatable.get(resource, 0)
        ]
        if not over:
            continue
        shown = "; ".join(
            f"{wanted} {resource} requested, {have} allocatable" for resource, wanted, have in over
        )
        yield Finding(
            "vf-exhausted",
            "error",
            ref,
            f"Pods bound to it ask for more than it has ({shown}): some cannot get their VF "
            "when they start again.",
            f"Check the SR-IOV device plugin and the VF count (numVfs) on {ref.name}, or move "
            "pods off it.",
        )


def pending_for_devices(
    events: Sequence[Mapping[str, Any]], pods: Sequence[PodView], resources: Iterable[str]
) -> Iterator[Finding]:
    wanted = set(resources)
    pending = {
        (pod.namespace, pod.ref.name): pod
        for pod in pods
        if pod.phase == "Pending" and not pod.node
    }
    latest: dict[tuple[str, str], tuple[str, str]] = {}
    for event in events:
        subject, reason, message, when = _event(event)
        if reason != SCHEDULING_FAILED or subject.get("kind") != "Pod":
            continue
        key = (str(subject.get("namespace", "")), str(subject.get("name", "")))
        pod = pending.get(key)
        if pod is None or (subject.get("uid") and pod.ref.uid and subject["uid"] != pod.ref.uid):
            continue
        if key not in latest or when >= latest[key][0]:
            latest[key] = (when, message)
    for key, (_, message) in sorted(latest.items()):
        short = [resource for resource in sorted(wanted) if f"Insufficient {resource}" in message]
        if not short:
            continue
        yield Finding(
            "vf-exhausted",
            "error",
            pending[key].ref,
            f"It is pending: no node has a free {' or '.join(short)} (the scheduler says "
            f"{quote(message, 100)}).",
            "Free VFs (finished pods still bound, more VFs per node) or add nodes that have "
            f"{short[0]}; a pod that asks for more units than any node has never fits.",
        )


def _allocatable(node: Mapping[str, Any]) -> dict[str, int]:
    status = node.get("status")
    section = status.get("allocatable") if isinstance(status, Mapping) else None
    found = {}
    for resource, value in section.items() if isinstance(section, Mapping) else ():
        try:
            found[str(resource)] = whole_units(value)
        except QuantityError:
            continue
    return found


def _event(event: Mapping[str, Any]) -> tuple[Mapping[str, Any], str, str, str]:
    """(regarding object, reason, message, time) of a core/v1 or events.k8s.io/v1 Event."""
    subject = event.get("involvedObject") or event.get("regarding") or {}
    message = event.get("message") or event.get("note") or ""
    metadata = event.get("metadata") if isinstance(event.get("metadata"), Mapping) else {}
    when = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (metadata or {}).get("creationTimestamp")
        or ""
    )
    return (
        subject if isinstance(subject, Mapping) else {},
        str(event.get("reason") or ""),
        str(message),
        str(when),
    )
