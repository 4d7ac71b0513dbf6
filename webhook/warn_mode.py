"""Warn mode (wire layer): a decision answered as warnings only, for a safe roll-out.

With the policy's `mode: warn` the webhook makes every decision as in enforce mode, then admits
the pod unchanged and says what enforcing would have done: "would add networks ...", "would set
openshift.io/mellanoxnics=1 (requests = limits) in container 'trainer'", "would refuse: <the
denial's message>". What would be set is read from the pod the patch would produce (so a resource
list the enforce warning cut short at the API server's 120 characters is said whole, over as
many lines as it takes); the other warnings are the enforce ones, reworded. The answer's reason
tells metrics and logs apart: `would-mutate`, `would-deny:<the denial's reason>`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from typing import Any

import jsonpatch

from webhook.mutation import Decision
from webhook.networks import NETWORKS_ANNOTATION, AnnotationError, parse
from webhook.plan import MAX_WARNING_LENGTH, WARNING_PREFIX, capped, warning
from webhook.quantity import QuantityError, whole_units

WOULD_MUTATE = "would-mutate"
WOULD_DENY = "would-deny"
REFUSAL = "would refuse: "
CONTINUED = "(cont.) "
_REWORDED = (("added ", "would add "), ("set ", "would set "), ("moved ", "would move "))
_ROOM = MAX_WARNING_LENGTH - len(WARNING_PREFIX)


def warn_only(decision: Decision, pod: object) -> Decision:
    """The warn-mode answer to `decision`, made for `pod` (the review's object)."""
    if not decision.allowed:
        said = [*refusal(decision.message), *decision.warnings]
        return Decision(
            allowed=True,
            outcome="unchanged",
            reason=f"{WOULD_DENY}:{decision.reason}",
            warnings=tuple(capped(said)),
        )
    if not decision.patch:
        return decision
    return Decision(
        allowed=True,
        outcome="unchanged",
        reason=WOULD_MUTATE,
        warnings=tuple(capped(_would_do(decision, pod))),
    )


def would(text: str) -> str:
    """An enforce-mode warning as warn mode says it: "added ..." becomes "would add ..."."""
    body = text.removeprefix(WARNING_PREFIX)
    for done, undone in _REWORDED:
        if body.startswith(done):
            return warning(undone + body[len(done) :])
    return text


def refusal(message: str) -> list[str]:
    """A denial's message as warnings within the length limit, cut at spaces: the first line
    says "would refuse:", the others continue it."""
    lines = textwrap.wrap(message, _ROOM - len(REFUSAL), break_on_hyphens=False) or [""]
    rest = textwrap.wrap(" ".join(lines[1:]), _ROOM - len(CONTINUED), break_on_hyphens=False)
    return [warning(REFUSAL + lines[0]), *(warning(CONTINUED + line) for line in rest)]


def _would_do(decision: Decision, pod: object) -> list[str]:
    """The enforce warnings reworded, with what the patch sets said from the patched pod."""
    after = _patched(pod, decision)
    said: list[str] = []
    placed = False
    for text in decision.warnings:
        body = text.removeprefix(WARNING_PREFIX)
        if body.startswith("set ") and after is not None:
            if not placed:  # every container's units, said once where the first line was
                said.extend(_unit_lines(pod, after))
                placed = True
            continue
        if body.startswith("added networks ") and text.endswith("...") and after is not None:
            said.extend(_network_lines(pod, after))
            continue
        said.append(would(text))
    if not placed and after is not None:
        said.extend(_unit_lines(pod, after))
    return said


def _patched(pod: object, decision: Decision) -> Mapping[str, Any] | None:
    """The pod as the patch would leave it; None if it cannot be had (then the enforce
    warnings are only reworded)."""
    try:
        result = jsonpatch.apply_patch(pod, [op.as_dict() for op in decision.patch])
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError):
        return None
    return result if isinstance(result, Mapping) else None


def _unit_lines(before: object, after: Mapping[str, Any]) -> list[str]:
    """Per container, the units the patch sets or removes, packed into as few lines as fit."""
    lines = []
    for name, changes, removed in _unit_changes(before, after):
        if changes:
            lines.extend(
                _packed("would set ", changes, f" (requests = limits) in container {name!r}")
            )
        if removed:
            lines.extend(_packed("would remove ", removed, f" from container {name!r}"))
    return lines


def _unit_changes(
    before: object, after: Mapping[str, Any]
) -> Iterable[tuple[str, list[str], list[str]]]:
    old_containers = _containers(before)
    for index, container in enumerate(_containers(after)):
        old = old_containers[index] if index < len(old_containers) else {}
        old_limits, new_limits = _limits(old), _limits(container)
        old_requests, new_requests = _requests(old), _requests(container)
        changes = [
            f"{resource}={new_limits.get(resource, new_requests.get(resource))}"
            for resource in {**new_limits, **new_requests}
            if (old_limits.get(resource), old_requests.get(resource))
            != (new_limits.get(resource), new_requests.get(resource))
        ]
        removed = [
            resource
            for resource in {**old_limits, **old_requests}
            if resource not in new_limits and resource not in new_requests
        ]
        if changes or removed:
            yield str(container.get("name", index)), changes, removed


def _network_lines(before: object, after: Mapping[str, Any]) -> list[str]:
    """The attachments the patch appends to the networks annotation, said whole."""
    try:
        old = parse(_annotation(before)).entries
        new = parse(_annotation(after)).entries
    except AnnotationError:
        return []
    added = [entry.display() for entry in new[len(old) :]]
    return _packed("would add networks ", added, "")


def _packed(lead: str, items: list[str], tail: str) -> list[str]:
    """`lead` + items joined by ", " + `tail`, over several warnings when one is too long."""
    lines: list[str] = []
    current: list[str] = []
    for item in items:
        trial = lead + ", ".join([*current, item]) + tail
        if current and len(trial) > _ROOM:
            lines.append(warning(lead + ", ".join(current) + tail))
            current = []
        current.append(item)
    if current:
        lines.append(warning(lead + ", ".join(current) + tail))
    return lines


def _annotation(pod: object) -> str:
    metadata = pod.get("metadata") if isinstance(pod, Mapping) else None
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    value = annotations.get(NETWORKS_ANNOTATION) if isinstance(annotations, Mapping) else None
    return value if isinstance(value, str) else ""


def _containers(pod: object) -> list[Mapping[str, Any]]:
    spec = pod.get("spec") if isinstance(pod, Mapping) else None
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    if not isinstance(containers, list):
        return []
    return [container if isinstance(container, Mapping) else {} for container in containers]


def _limits(container: Mapping[str, Any]) -> dict[str, int]:
    return _section(container, "limits")


def _requests(container: Mapping[str, Any]) -> dict[str, int]:
    return _section(container, "requests")


def _section(container: Mapping[str, Any], key: str) -> dict[str, int]:
    resources = container.get("resources")
    section = resources.get(key) if isinstance(resources, Mapping) else None
    if not isinstance(section, Mapping):
        return {}
    units = {}
    for resource, value in section.items():
        try:
            units[str(resource)] = whole_units(value)
        except QuantityError:
            continue  # cpu "500m" and the like: never touched, never said
    return units
