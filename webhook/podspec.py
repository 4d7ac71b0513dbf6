"""What the decision adds to a pod besides networks and units (core layer): a nodeSelector from
the NADs it attaches, and the podnetinfo volume.

- A NAD's `k8s.v1.cni.cncf.io/nodeSelector` says which nodes its network exists on; with the
  policy's `injectNodeSelector` the pod gets those labels in `spec.nodeSelector`. Two NADs, or
  a NAD and the pod, that want different values for one key are refused: no node has both.
- With `podNetInfo.enabled`, a GPU pod with attachments gets a downward-API volume `podnetinfo`
  of its annotations (where Multus writes `k8s.v1.cni.cncf.io/network-status`: each interface's
  IP, PCI address and RDMA device) and labels, mounted read-only into every GPU container.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from webhook.messages import quote
from webhook.nads import NODE_SELECTOR_ANNOTATION, NadFacts
from webhook.patch import Op, pointer
from webhook.plan import warning
from webhook.pod import Container, PodShapeError
from webhook.policy import PodNetInfo

PODNETINFO_VOLUME = "podnetinfo"


class SchedulingConflict(ValueError):
    """Node labels that no node can have at once; the message names both sides."""


def node_selector_additions(pod: Mapping[str, Any], facts: Iterable[NadFacts]) -> dict[str, str]:
    """The labels the pod's nodeSelector lacks for the NADs it attaches (in a stable order)."""
    current = _node_selector(pod)
    wanted: dict[str, tuple[str, NadFacts]] = {}
    for nad in facts:
        if nad.node_selector_problem:
            raise SchedulingConflict(
                f"NetworkAttachmentDefinition {nad.namespace}/{nad.name} has a malformed "
                f"{NODE_SELECTOR_ANNOTATION} ({nad.node_selector_problem}); the NAD's owner "
                "must fix it"
            )
        for key, value in nad.node_selector:
            earlier = wanted.get(key)
            if earlier is not None and earlier[0] != value:
                other = earlier[1]
                raise SchedulingConflict(
                    f"NADs {other.namespace}/{other.name} and {nad.namespace}/{nad.name} need "
                    f"nodeSelector {quote(key)} to be {quote(earlier[0])} and {quote(value)}: "
                    "no node has both; attach networks that exist on the same nodes"
                )
            wanted[key] = (value, nad)
    additions = {}
    for key, (value, nad) in wanted.items():
        if key in current and current[key] != value:
            raise SchedulingConflict(
                f"the pod's nodeSelector {quote(key)}={quote(current[key])} conflicts with "
                f"{quote(key)}={quote(value)}, where NAD {nad.namespace}/{nad.name} exists; "
                "drop the pod's value or attach a network that exists on its nodes"
            )
        if key not in current:
            additions[key] = value
    return additions


def node_selector_ops(pod: Mapping[str, Any], additions: Mapping[str, str]) -> list[Op]:
    if not additions:
        return []
    if _node_selector(pod) == {} and pod["spec"].get("nodeSelector") is None:
        return [Op("add", pointer("spec", "nodeSelector"), dict(additions))]
    return [
        Op("add", pointer("spec", "nodeSelector", key), value) for key, value in additions.items()
    ]


def _node_selector(pod: Mapping[str, Any]) -> dict[str, str]:
    selector = pod["spec"].get("nodeSelector")
    if selector is None:
        return {}
    if not isinstance(selector, Mapping) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in selector.items()
    ):
        raise PodShapeError("the pod's spec.nodeSelector is not a map of strings")
    return dict(selector)


def podnetinfo_ops(
    pod: Mapping[str, Any],
    raw_containers: Sequence[Mapping[str, Any]],
    gpu_containers: Sequence[Container],
    settings: PodNetInfo,
) -> tuple[list[Op], list[str]]:
    """Ops adding the podnetinfo volume and its mounts where missing, and warnings for where a
    user's own volume or mount is in the way (those are left alone)."""
    volumes = pod["spec"].get("volumes")
    if volumes is not None and not isinstance(volumes, list):
        raise PodShapeError("the pod's spec.volumes is not a list")
    existing = next(
        (v for v in volumes or () if isinstance(v, Mapping) and v.get("name") == PODNETINFO_VOLUME),
        None,
    )
    ops: list[Op] = []
    if existing is None:
        volume = {
            "name": PODNETINFO_VOLUME,
            "downwardAPI": {
                "items": [
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                ]
            },
        }
        ops.append(
            Op("add", pointer("spec", "volumes"), [volume])
            if volumes is None
            else Op("add", pointer("spec", "volumes", "-"), volume)
        )
    elif not _shows_annotations(existing):
        return [], [
            warning(
                f"a volume {PODNETINFO_VOLUME!r} exists and does not show the pod's annotations; "
                "podnetinfo not added"
            )
        ]
    warnings = []
    for container in gpu_containers:
        mounts = raw_containers[container.index].get("volumeMounts")
        if mounts is not None and not isinstance(mounts, list):
            raise PodShapeError(
                f"container {quote(container.name)} has volumeMounts that are not a list"
            )
        taken = [m for m in mounts or () if isinstance(m, Mapping)]
        if any(m.get("name") == PODNETINFO_VOLUME for m in taken):
            continue
        if any(m.get("mountPath") == settings.mount_path for m in taken):
            warnings.append(
                warning(
                    f"{settings.mount_path} is taken in container {container.name!r}; "
                    "podnetinfo not mounted there"
                )
            )
            continue
        mount = {"name": PODNETINFO_VOLUME, "mountPath": settings.mount_path, "readOnly": True}
        base = ("spec", "containers", container.index, "volumeMounts")
        ops.append(
            Op("add", pointer(*base), [mount])
            if mounts is None
            else Op("add", pointer(*base, "-"), mount)
        )
    return ops, warnings


def _shows_annotations(volume: Mapping[str, Any]) -> bool:
    downward = volume.get("downwardAPI")
    items = downward.get("items") if isinstance(downward, Mapping) else None
    return isinstance(items, list) and any(
        isinstance(item, Mapping)
        and isinstance(item.get("fieldRef"), Mapping)
        and item["fieldRef"].get("fieldPath") == "metadata.annotations"
        for item in items
    )
