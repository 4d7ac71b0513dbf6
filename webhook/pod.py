"""Reading a pod for the decision (core layer): its containers, their units, its annotations.

The decision reads, never writes, the pod the API server sent. A pod that is not shaped as the
API server would send one raises PodShapeError naming the field; the webhook's own bounds
(containers per pod, the API server's 256 KiB of annotations) are applied here first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook.messages import QUOTE_LIMIT, quote
from webhook.policy import Policy
from webhook.quantity import QuantityError, whole_units

CONTAINER_ANNOTATION = "gpu-rdma-injector/container"

# The API server refuses a pod whose annotations (keys and values) exceed this many bytes; a
# mutating webhook sees the pod before that check, so it applies it first.
TOTAL_ANNOTATION_BYTES = 256 * 1024

# Bounds of ours: no real pod comes near them, and each keeps one review cheap. The API server
# keeps at most 4 KiB of warnings per response, about 34 of ours.
MAX_CONTAINERS = 128
# Resources one container may list in its requests or limits (real pods list a handful: cpu,
# memory, hugepages, a GPU, a device or two).
MAX_RESOURCES = 32


class PodShapeError(ValueError):
    """The object is not a pod the API server would send; the message names the field."""


class PodTooLarge(ValueError):
    """More containers (or resources in one) than the webhook judges in one review."""


class UnknownContainer(ValueError):
    """The container annotation names a container the pod does not have."""


@dataclass(slots=True)
class Container:
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


def read_containers(pod: Mapping[str, Any]) -> list[Container]:
    spec = pod.get("spec")
    if not isinstance(spec, Mapping):
        raise PodShapeError("the pod has no spec")
    raw = spec.get("containers")
    if not isinstance(raw, list) or not raw:
        raise PodShapeError("the pod has no spec.containers list")
    if len(raw) > MAX_CONTAINERS:
        raise PodTooLarge(
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
            if section is not None and len(section) > MAX_RESOURCES:
                raise PodTooLarge(
                    f"container {quote(container['name'])} lists {len(section)} resources in "
                    f"its {key}; gpu-rdma-injector supports at most {MAX_RESOURCES}"
                )
            sections.append(section)
        requests, limits = sections
        containers.append(Container(index, container["name"], resources, requests, limits))
    return containers


def read_annotations(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    metadata = pod.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise PodShapeError("the pod's metadata is not a map")
    annotations = metadata.get("annotations")
    if annotations is not None and not isinstance(annotations, Mapping):
        raise PodShapeError("the pod's metadata.annotations is not a map")
    return annotations


def annotation_bytes(annotations: Mapping[str, Any]) -> int:
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


def gpu_count(container: Container, policy: Policy) -> int:
    """GPUs the container asks for: every unit of every GPU resource, listed or matched.

    A MIG slice (nvidia.com/mig-1g.10gb, matched by nvidia.com/mig-*) counts as one GPU, as
    every unit of a matched resource does.
    """
    total = sum(container.units(resource) for resource in policy.gpu_exact)
    patterns = policy.gpu_patterns
    if patterns is not None:
        names = {*(container.requests or ()), *(container.limits or ())}
        total += sum(
            container.units(name)
            for name in names
            if isinstance(name, str)
            and name not in policy.gpu_exact
            and patterns.fullmatch(name) is not None
        )
    return total


def explicit_container(
    annotations: Mapping[str, Any], containers: Sequence[Container]
) -> Container | None:
    name = annotations.get(CONTAINER_ANNOTATION)
    if name is None:
        return None
    for container in containers:
        if container.name == name:
            return container
    names = ", ".join(quote(container.name) for container in containers[:8])
    more = f" and {len(containers) - 8} more" if len(containers) > 8 else ""
    raise UnknownContainer(
        f"{CONTAINER_ANNOTATION} names container {quote(name)}, but the pod's containers are "
        f"{names}{more}; set it to one of them"
    )


def has_volume(pod: Mapping[str, Any], name: str) -> bool:
    """Whether the pod declares a volume called `name`."""
    spec = pod.get("spec")
    volumes = spec.get("volumes") if isinstance(spec, Mapping) else None
    return isinstance(volumes, list) and any(
        isinstance(volume, Mapping) and volume.get("name") == name for volume in volumes
    )
