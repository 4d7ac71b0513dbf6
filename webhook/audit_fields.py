"""The parts of each object the audit's checks read (core layer).

A pod as the API server lists it is several KiB (managed fields, volumes, statuses); the checks
read its name, uid, creation time, a few annotations, its node, its containers' resources and
its phase. The readers (webhook.audit_cluster, webhook.audit_dump) keep only these, object by
object as they arrive, so an audit's memory follows the cluster's size in pods and not in bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

NETWORK_STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"
POD_ANNOTATIONS = (
    "k8s.v1.cni.cncf.io/networks",
    "v1.multus-cni.io/default-network",
    NETWORK_STATUS_ANNOTATION,
    "gpu-rdma-injector/inject",
    "gpu-rdma-injector/container",
    "kubernetes.io/config.mirror",
)


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    metadata = _map(pod.get("metadata"))
    annotations = _map(metadata.get("annotations"))
    spec = _map(pod.get("spec"))
    return {
        "kind": "Pod",
        "metadata": {
            **_keep(metadata, ("name", "namespace", "uid", "creationTimestamp")),
            "annotations": {k: annotations[k] for k in POD_ANNOTATIONS if k in annotations},
        },
        "spec": {
            "nodeName": spec.get("nodeName"),
            "containers": _containers(spec.get("containers")),
            "initContainers": _containers(spec.get("initContainers")),
        },
        "status": {"phase": _map(pod.get("status")).get("phase")},
    }


def slim_namespace(namespace: Mapping[str, Any]) -> dict[str, Any]:
    metadata = _map(namespace.get("metadata"))
    return {"kind": "Namespace", "metadata": _keep(metadata, ("name", "uid", "labels"))}


def slim_node(node: Mapping[str, Any]) -> dict[str, Any]:
    metadata = _map(node.get("metadata"))
    status = _map(node.get("status"))
    return {
        "kind": "Node",
        "metadata": _keep(metadata, ("name", "uid")),
        "status": {"allocatable": _map(status.get("allocatable"))},
    }


def slim_event(event: Mapping[str, Any]) -> dict[str, Any]:
    kept = ("involvedObject", "regarding", "reason", "message", "note", "lastTimestamp")
    metadata = _map(event.get("metadata"))
    return {
        "kind": "Event",
        **_keep(event, (*kept, "eventTime")),
        "metadata": _keep(metadata, ("name", "namespace", "creationTimestamp")),
    }


def whole(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """NADs and webhook configurations are kept whole: few, and read in full."""
    return obj


SLIM: dict[str, Callable[[Mapping[str, Any]], Mapping[str, Any]]] = {
    "Pod": slim_pod,
    "Namespace": slim_namespace,
    "Node": slim_node,
    "Event": slim_event,
    "NetworkAttachmentDefinition": whole,
    "MutatingWebhookConfiguration": whole,
}


def _containers(raw: object) -> list[Any]:
    if not isinstance(raw, list):
        return []
    return [
        {"name": c.get("name"), "resources": c.get("resources") or {}}
        if isinstance(c, Mapping)
        else c
        for c in raw
    ]


def _keep(section: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: section[key] for key in keys if key in section}


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
