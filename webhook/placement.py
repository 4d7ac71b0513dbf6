"""Where device units go (core layer): both halves made equal, per resource, in the right place.

Per resource, the attachments that need it and the units the containers request are made equal
by raising the lower side: missing units go to the GPU container(s) (or the one the pod names),
missing attachments come from the network that provides the resource. A resource provided by a
`perContainer` network (a shared RDMA device) needs one unit in each GPU container instead,
however many attachments use it. Units an exclusive resource has in containers without GPUs are
moved into the GPU containers. Requests and limits of such a resource are completed to agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from webhook.nads import NadLookup
from webhook.plan import Plan, warning
from webhook.pod import Container
from webhook.policy import Network
from webhook.references import usable


@dataclass(slots=True)
class Placement:
    """The pod's containers and the networks that provide each resource, for one decision."""

    containers: Sequence[Container]
    gpus: Sequence[int]
    explicit: Container | None
    networks: Sequence[Network]
    resource_of_network: Mapping[str, str | None]
    nads: NadLookup
    plan: Plan

    def settle(self, resource: str, attached: int, move: bool) -> None:
        """Make `resource`'s units and attachments agree, in the right containers."""
        if self._per_container(resource):
            self._one_per_container(resource, attached)
            return
        if self.explicit is None:
            self._gather(resource, move)
        self._balance(resource, attached)

    def planned_units(self, container: Container, resource: str) -> int:
        planned = self.plan.units.get(container.index, {}).get(resource)
        return planned if planned is not None else container.units(resource)

    def complete_requests_and_limits(self, resources: Sequence[str]) -> None:
        """Extended resources need requests == limits; complete the missing or lower half."""
        for container in self.containers:
            for resource in resources:
                if resource in self.plan.units.get(container.index, {}):
                    continue
                request, limit = container.amount(resource)
                if (request, limit) != (None, None) and request != limit:
                    self._set(container, resource, max(request or 0, limit or 0))

    # -- the rules ------------------------------------------------------------------------------

    def _balance(self, resource: str, attached: int) -> None:
        """Raise the lower of attachments and units of `resource` to the higher."""
        requested = sum(self.planned_units(container, resource) for container in self.containers)
        if requested < attached:
            for container, extra in self._targets(attached - requested, resource):
                self._set(container, resource, self.planned_units(container, resource) + extra)
        elif requested > attached:
            self.plan.surplus = True
            self._attach(resource, requested - attached, requested, attached)

    def _one_per_container(self, resource: str, attached: int) -> None:
        """A shared device: each GPU container (else the named or first one) needs one unit."""
        requested = sum(self.planned_units(container, resource) for container in self.containers)
        if not attached and requested:
            attached = self._attach(resource, 1, requested, attached)
        if not attached:
            return
        for container in self._receivers():
            if self.planned_units(container, resource) < 1:
                self._set(container, resource, 1)

    def _gather(self, resource: str, move: bool) -> None:
        """Units held by containers without GPUs belong in the GPU containers.

        The device plugin mounts a VF's RDMA device only into the container that requests it,
        so a unit in a sidecar leaves the GPU container with net1 but no /dev/infiniband (as
        another injector that fills the first container does). With `move` the units go where
        missing ones would; otherwise the pod is only warned.
        """
        if not any(self.gpus):
            return
        stray = [
            (container, units)
            for container, count in zip(self.containers, self.gpus, strict=True)
            if not count and (units := self.planned_units(container, resource))
        ]
        if not stray:
            return
        total = sum(units for _, units in stray)
        names = [container.name for container, _ in stray]
        if not move:
            shown = ", ".join(repr(name) for name in names)
            self.plan.warnings.append(
                warning(
                    f"{resource}={total} is in {shown}, which has no GPU: "
                    "the GPU containers get no RDMA device"
                )
            )
            return
        for container, _ in stray:
            self._set(container, resource, 0)
            self.plan.removals.add((container.index, resource))
        for container, extra in self._targets(total, resource):
            self._set(container, resource, self.planned_units(container, resource) + extra)
        self.plan.moves.append((resource, total, names))

    # -- helpers --------------------------------------------------------------------------------

    def _attach(self, resource: str, count: int, requested: int, attached: int) -> int:
        """Append `count` attachments of the network that provides `resource`; how many were."""
        source = next(
            (n for n in self.networks if self.resource_of_network[n.name] == resource), None
        )
        if source is None:
            self.plan.warnings.append(
                warning(
                    f"{requested} {resource} requested, {attached} attached; "
                    "no policy network for it, left as is"
                )
            )
            return 0
        if not usable(source, self.plan.namespace, self.nads, self.plan):
            return 0
        self.plan.append(source, f"pod requests {requested} {resource}", count)
        return count

    def _per_container(self, resource: str) -> bool:
        return any(
            n.resource_units == "perContainer" and self.resource_of_network[n.name] == resource
            for n in self.networks
        )

    def _per_gpu(self, resource: str) -> bool:
        return any(
            n.per_gpu and self.resource_of_network[n.name] == resource for n in self.networks
        )

    def _receivers(self) -> list[Container]:
        """Who gets units: the named container, else every GPU container, else the first."""
        if self.explicit is not None:
            return [self.explicit]
        gpu_containers = [c for c, count in zip(self.containers, self.gpus, strict=True) if count]
        return gpu_containers or [self.containers[0]]

    def _set(self, container: Container, resource: str, units: int) -> None:
        self.plan.units.setdefault(container.index, {})[resource] = units

    def _targets(self, missing: int, resource: str) -> list[tuple[Container, int]]:
        """Which containers receive the `missing` units, and how many each."""
        receivers = self._receivers()
        if self.explicit is not None or not any(self.gpus) or not self._per_gpu(resource):
            return [(receivers[0], missing)]
        targets: list[tuple[Container, int]] = []
        # perGpu: each GPU container gets the units for its own GPUs first.
        for container in receivers:
            short = self.gpus[container.index] - self.planned_units(container, resource)
            give = min(missing, max(short, 0))
            if give:
                targets.append((container, give))
                missing -= give
        if missing:
            first = receivers[0]
            given = sum(extra for container, extra in targets if container is first)
            targets = [(c, extra) for c, extra in targets if c is not first]
            targets.insert(0, (first, given + missing))
            targets.sort(key=lambda item: item[0].index)
        return targets
