"""The NADs a pod's attachments point at (core layer): their resource, and missing ones.

An attachment needs the device resource its NAD names (what Multus looks the device up by), else
the policy network's; a reference to a NAD the cluster does not have is recorded on the plan as
a problem (denied or warned, as the policy says).
"""

from __future__ import annotations

from collections.abc import Iterable

from webhook.messages import quote
from webhook.nads import NadLookup
from webhook.networks import NETWORKS_ANNOTATION, NetworkRef
from webhook.plan import Plan, warning
from webhook.policy import Network


def resource_of(
    nads: NadLookup, key: tuple[str, str], network: Network | None, plan: Plan
) -> str | None:
    """The device resource an attachment needs: the NAD's own annotation when it has one (it is
    what Multus looks the device up by), else the policy network's resourceName, else none."""
    facts = nads.get(*key)
    from_nad = facts.resource_name if facts is not None else None
    from_policy = network.resource_name if network is not None else None
    if from_nad and from_policy and from_nad != from_policy:
        said = warning(f"{key[1]}: NAD says {from_nad}, policy {from_policy}; using the NAD's")
        if said not in plan.warnings:
            plan.warnings.append(said)
    return from_nad or from_policy


def unknown_nad(
    nads: NadLookup, key: tuple[str, str], subject: str, consequence: str
) -> tuple[str, str] | None:
    """(denial message, short warning) about a reference to a NAD the cluster does not have."""
    namespace, name = key
    if not nads.authoritative or not nads.covers(namespace) or nads.get(namespace, name):
        return None
    existing = nads.names_in(namespace)
    there = ", ".join(existing[:8]) + (", ..." if len(existing) > 8 else "") if existing else "none"
    message = (
        f"{subject}: NetworkAttachmentDefinition {quote(name)} does not exist in namespace "
        f"{quote(namespace)} (NADs there: {there}); fix the name or create the NAD"
    )
    return message, warning(f"NAD {name!r} not found in namespace {namespace!r}; {consequence}")


def note_problem(plan: Plan, problem: tuple[str, str] | None) -> bool:
    """Record a problem once; True when there was none."""
    if problem is None:
        return True
    if problem not in plan.problems:
        plan.problems.append(problem)
    return False


def usable(network: Network, namespace: str, nads: NadLookup, plan: Plan) -> bool:
    subject = f"policy network {quote(network.name)}"
    problem = unknown_nad(nads, network.resolved(namespace), subject, "not injected")
    return note_problem(plan, problem)


def check_user_entries(
    references: Iterable[tuple[NetworkRef, tuple[str, str]]], nads: NadLookup, plan: Plan
) -> None:
    for entry, key in references:
        subject = f"{NETWORKS_ANNOTATION} entry {quote(entry.display())}"
        problem = unknown_nad(nads, key, subject, "pod will not start")
        note_problem(plan, problem)
