"""Where SR-IOV units go (core layer): both halves made equal, per resource, in the right place.

Per resource, the attachments that need it and the units the containers request are made equal
by raising the lower side: missing units go to the GPU container(s) (or the one the pod names),
missing attachments come from the network that provides the resource. Requests and limits of
such a resource are completed to agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from webhook.nads import NadLookup
from webhook.plan import Plan, warning
from webhook.pod import Container
from webhook.policy import Network
from webhook.references import usable


def balance(
    resource: str,
    attached: int,
    containers: Sequence[Container],
    gpus: Sequence[int],
    explicit: Container | None,
    networks: Sequence[Network],
    resource_of_network: Mapping[str, str | None],
    nads: NadLookup,
    plan: Plan,
) -> None:
    """Raise the lower of attachments and units of `resource` to the higher."""
    requested = sum(planned_units(plan, container, resource) for container in containers)
    if requested < attached:
        per_gpu = is_per_gpu(resource, networks, resource_of_network)
        for container, extra in targets(
            attached - requested, resource, containers, gpus, explicit, per_gpu, plan
        ):
            plan.units.setdefault(container.index, {})[resource] = (
                planned_units(plan, container, resource) + extra
            )
    elif requested > attached:
        plan.surplus = True
        source = next(
            (network for network in networks if resource_of_network[network.name] == resource),
            None,
        )
        if source is None:
            plan.warnings.append(
                warning(
                    f"{requested} {resource} requested, {attached} attached; "
                    "no policy network for it, left as is"
                )
            )
            return
        if usable(source, plan.namespace, nads, plan):
            plan.append(source, f"pod requests {requested} {resource}", requested - attached)


def is_per_gpu(
    resource: str, networks: Sequence[Network], resource_of_network: Mapping[str, str | None]
) -> bool:
    """Whether a perGpu network provides `resource` (its units then follow the GPUs)."""
    return any(
        network.per_gpu for network in networks if resource_of_network[network.name] == resource
    )


def gather(
    resource: str,
    containers: Sequence[Container],
    gpus: Sequence[int],
    per_gpu: bool,
    move: bool,
    plan: Plan,
) -> None:
    """Units of `resource` held by containers without GPUs belong in the GPU containers.

    The device plugin mounts a VF's RDMA device only into the container that requests it, so a
    unit in a sidecar leaves the GPU container with net1 but no /dev/infiniband (as another
    injector that fills the first container does). With `move` the units go where `targets`
    puts missing ones; otherwise the pod is only warned.
    """
    if not any(gpus):
        return
    stray = [
        (container, units)
        for container, count in zip(containers, gpus, strict=True)
        if not count and (units := planned_units(plan, container, resource))
    ]
    if not stray:
        return
    total = sum(units for _, units in stray)
    names = [container.name for container, _ in stray]
    if not move:
        shown = ", ".join(repr(name) for name in names)
        plan.warnings.append(
            warning(
                f"{resource}={total} is in {shown}, which has no GPU: "
                "the GPU containers get no RDMA device"
            )
        )
        return
    for container, _ in stray:
        plan.units.setdefault(container.index, {})[resource] = 0
    for container, extra in targets(total, resource, containers, gpus, None, per_gpu, plan):
        plan.units.setdefault(container.index, {})[resource] = (
            planned_units(plan, container, resource) + extra
        )
    plan.moves.append((resource, total, names))


def planned_units(plan: Plan, container: Container, resource: str) -> int:
    planned = plan.units.get(container.index, {}).get(resource)
    return planned if planned is not None else container.units(resource)


def targets(
    missing: int,
    resource: str,
    containers: Sequence[Container],
    gpus: Sequence[int],
    explicit: Container | None,
    per_gpu: bool,
    plan: Plan,
) -> list[tuple[Container, int]]:
    """Which containers receive the `missing` units, and how many each."""
    if explicit is not None:
        return [(explicit, missing)]
    gpu_containers = [c for c, count in zip(containers, gpus, strict=True) if count]
    if not gpu_containers:
        return [(containers[0], missing)]
    if not per_gpu:
        return [(gpu_containers[0], missing)]
    targets: list[tuple[Container, int]] = []
    if per_gpu:
        # Each GPU container gets the units for its own GPUs first.
        for container in gpu_containers:
            short = gpus[container.index] - planned_units(plan, container, resource)
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


def complete_requests_and_limits(
    resources: Sequence[str], containers: Sequence[Container], plan: Plan
) -> None:
    """Extended resources need requests == limits; complete whichever half is missing or lower."""
    for container in containers:
        for resource in resources:
            if resource in plan.units.get(container.index, {}):
                continue
            request, limit = container.amount(resource)
            if (request, limit) != (None, None) and request != limit:
                plan.units.setdefault(container.index, {})[resource] = max(request or 0, limit or 0)
