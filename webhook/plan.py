"""What the decision has chosen, and how it becomes JSON Patch ops and warnings (core layer).

A Plan collects the attachments appended to the networks annotation and the units each
container must request and limit; `annotation_ops` and `resource_ops` turn it into patch ops in
a stable order, `describe` into the short warnings the user sees.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook.networks import (
    MAX_ATTACHMENTS,
    NETWORKS_ANNOTATION,
    NetworkRef,
    NetworksAnnotation,
    appended,
    new_entry,
)
from webhook.patch import Op, OpName, pointer
from webhook.pod import Container
from webhook.policy import Network

WARNING_PREFIX = "gpu-rdma-injector: "
# The API server's advice for warnings: under 120 characters each.
MAX_WARNING_LENGTH = 119
# The API server keeps at most 4 KiB of warnings per response, about 34 of ours.
MAX_WARNINGS = 32


@dataclass(slots=True)
class Plan:
    """What the decision has chosen so far; turned into patch ops at the end."""

    namespace: str
    entries: list[NetworkRef]
    added: list[NetworkRef] = field(default_factory=list)
    added_reasons: list[str] = field(default_factory=list)
    # container index -> resource -> the units it must request and limit
    units: dict[int, dict[str, int]] = field(default_factory=dict)
    # (container index, resource) whose units were moved away: removed from the container
    removals: set[tuple[int, str]] = field(default_factory=set)
    # (resource, units, names of the containers they left) for units moved to GPU containers
    moves: list[tuple[str, int, list[str]]] = field(default_factory=list)
    # Some resource had more units than attachments (raised by adding attachments, or left).
    surplus: bool = False
    warnings: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (denial, warning)

    def count(self, key: tuple[str, str]) -> int:
        return sum(1 for entry in self.entries if entry.resolved(self.namespace) == key)

    def append(self, network: Network, reason: str, count: int = 1) -> None:
        """Append `count` attachments of `network`; the first takes its interface if free."""
        if len(self.entries) + count > MAX_ATTACHMENTS:
            raise TooManyAttachments(
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


class TooManyAttachments(ValueError):
    """A pod whose counts would need more attachments than any pod can use."""


def annotation_ops(
    pod: Mapping[str, Any],
    annotations: Mapping[str, Any],
    current: NetworksAnnotation,
    plan: Plan,
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


def resource_ops(containers: Sequence[Container], plan: Plan) -> list[Op]:
    ops: list[Op] = []
    for container in containers:
        wanted = plan.units.get(container.index)
        if not wanted:
            continue
        base = ("spec", "containers", container.index, "resources")
        removed = {r for r in wanted if (container.index, r) in plan.removals}
        kept = {r: units for r, units in wanted.items() if r not in removed}
        if container.resources is None:
            if kept:
                section = {resource: str(units) for resource, units in kept.items()}
                ops.append(Op("add", pointer(*base), {"limits": section, "requests": section}))
            continue
        for key, current in (("limits", container.limits), ("requests", container.requests)):
            ops.extend(
                Op("remove", pointer(*base, key, resource))
                for resource in removed
                if current is not None and resource in current
            )
            changes = {
                resource: str(units)
                for resource, units in kept.items()
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


def describe(plan: Plan, containers: Sequence[Container]) -> list[str]:
    """Short warnings saying what was injected and why."""
    warnings = []
    if plan.added:
        times = Counter(entry.display() for entry in plan.added)  # keeps first-seen order
        counted = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in times.items())
        warnings.append(warning(f"added networks {counted} ({'; '.join(plan.added_reasons)})"))
    for resource, units, sources in plan.moves:
        names = ", ".join(repr(name) for name in sources)
        warnings.append(
            warning(f"moved {resource}={units} from {names} (no GPU) to GPU containers")
        )
    for container in containers:
        wanted = {
            r: units
            for r, units in plan.units.get(container.index, {}).items()
            if (container.index, r) not in plan.removals
        }
        if wanted:
            parts = ", ".join(f"{resource}={units}" for resource, units in wanted.items())
            warnings.append(
                warning(f"set {parts} (requests = limits) in container {container.name!r}")
            )
    return warnings


def warning(text: str) -> str:
    message = WARNING_PREFIX + text
    if len(message) > MAX_WARNING_LENGTH:
        message = message[: MAX_WARNING_LENGTH - 3] + "..."
    return message


def capped(warnings: list[str]) -> list[str]:
    if len(warnings) <= MAX_WARNINGS:
        return warnings
    more = len(warnings) - MAX_WARNINGS + 1
    return [*warnings[: MAX_WARNINGS - 1], warning(f"and {more} more warnings")]
