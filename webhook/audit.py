"""The audit (core layer): cluster objects and the policy in, findings out.

`audit(inventory, policy, options)` reads every pod and NAD once, the way the webhook reads them,
runs the selected checks (webhook.findings.CHECKS) whose input the inventory can show (the rest
are reported as skipped, with why), keeps the findings about `options.namespace` when one is
given, and returns them most severe first, at most `options.max_findings` of them (the counts
cover them all). A pure function: no cluster, no files, no clock unless `options.now` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from webhook import audit_capacity, audit_nads, audit_pods, audit_registration, audit_status
from webhook.audit_nads import NadView
from webhook.findings import (
    CHECKS,
    KIND_NAMES,
    AuditOptions,
    AuditResult,
    Finding,
    Inventory,
    Severity,
    sort_key,
)
from webhook.nads import NadFacts, NadLookup, StaticNads
from webhook.pod_networks import PodView, read_pods
from webhook.policy import Policy


class ScopedNads(StaticNads):
    """NAD facts read in some namespaces only (live `--namespace`): a miss elsewhere is unknown."""

    __slots__ = ("_namespaces",)

    def __init__(self, facts: Iterable[NadFacts], namespaces: frozenset[str]) -> None:
        super().__init__(facts, authoritative=True)
        self._namespaces = namespaces

    def covers(self, namespace: str) -> bool:
        return namespace in self._namespaces


def audit(inventory: Inventory, policy: Policy, options: AuditOptions | None = None) -> AuditResult:
    options = options or AuditOptions()
    nad_views = audit_nads.read_nads(inventory.nads or (), policy)
    lookup = _lookup(nad_views, inventory)
    pods, unreadable = read_pods(inventory.pods or (), policy, lookup)
    resources = _sriov_resources(policy, nad_views, pods)
    policy_resources = {n.resource_name for n in policy.networks if n.resource_name}
    entries = audit_registration.our_entries(inventory.webhooks or (), options)

    runs: dict[str, Callable[[], Iterator[Finding]]] = {
        "half-configured": lambda: audit_pods.half_configured(pods, resources),
        "unknown-nad": lambda: audit_pods.unknown_nads(pods, lookup, policy),
        "namespace-not-allowed": lambda: audit_pods.outside_boundary(pods, policy),
        "nad-no-resource": lambda: audit_nads.without_resource(nad_views, policy),
        "nad-bad-config": lambda: audit_nads.bad_configs(nad_views),
        "ipam-host-local": lambda: audit_nads.host_local_across_nodes(nad_views, pods),
        "ipam-pool-small": lambda: audit_nads.small_pools(nad_views, pods),
        "no-ip": lambda: _only(
            "no-ip", audit_status.missing_addresses_and_devices(pods, nad_views, policy_resources)
        ),
        "no-rdma-device": lambda: _only(
            "no-rdma-device",
            audit_status.missing_addresses_and_devices(pods, nad_views, policy_resources),
        ),
        "duplicate-ip": lambda: audit_status.duplicate_addresses(pods),
        "vf-exhausted": lambda: _capacity(inventory, pods, resources),
        "not-opted-in": lambda: audit_registration.not_opted_in(
            pods, inventory.namespaces or (), entries, policy, options
        ),
        "webhook-config": lambda: audit_registration.registration(
            entries, inventory.serving_certificate, options
        ),
    }
    findings: list[Finding] = []
    skipped: list[tuple[str, str]] = []
    for check in sorted(options.checks):
        missing = _missing(check, inventory)
        if missing:
            skipped.append((check, f"the input holds no {missing}"))
            continue
        findings.extend(finding for finding in runs[check]() if _about(finding, options.namespace))
    findings.sort(key=sort_key)
    counts: dict[tuple[str, Severity], int] = {}
    for finding in findings:
        key = (finding.check, finding.severity)
        counts[key] = counts.get(key, 0) + 1
    notes = list(inventory.notes)
    if unreadable:
        notes.append(
            f"{unreadable} pod{'s' if unreadable > 1 else ''} could not be read as the webhook "
            "reads pods (malformed annotations or spec) and were not judged"
        )
    return AuditResult(
        findings=tuple(findings[: options.max_findings]),
        counts=counts,
        skipped=tuple(skipped),
        objects=inventory.counts(),
        notes=tuple(notes),
    )


def _lookup(nads: Sequence[NadView], inventory: Inventory) -> NadLookup:
    """The NADs as the decision's lookup (unknown-nad is skipped when the input shows none)."""
    facts = {
        nad.key: NadFacts(nad.key[0], nad.key[1], nad.resource) for nad in nads
    }.values()  # a dump may hold one NAD twice: the last wins, as `kubectl apply` would
    if inventory.namespaces_read is not None:
        return ScopedNads(facts, inventory.namespaces_read)
    return StaticNads(facts, authoritative=True)


def _sriov_resources(policy: Policy, nads: Sequence[NadView], pods: Sequence[PodView]) -> set[str]:
    """Resources that stand for a device behind an attachment: the policy networks', the NADs'
    and whatever an attachment of a pod needs."""
    found = {network.resource_name for network in policy.networks if network.resource_name}
    found.update(nad.resource for nad in nads if nad.resource)
    for pod in pods:
        found.update(a.resource for a in pod.attachments if a.resource)
    return found


def _missing(check: str, inventory: Inventory) -> str:
    """The kinds a check needs that the input does not show, in words ("" when none)."""
    if check == "vf-exhausted":
        if not inventory.has("pods"):
            return KIND_NAMES["pods"]
        return "" if inventory.has("nodes") or inventory.has("events") else "Nodes or Events"
    absent = [KIND_NAMES[kind] for kind in CHECKS[check].needs if not inventory.has(kind)]
    return " or ".join(absent)


def _capacity(
    inventory: Inventory, pods: Sequence[PodView], resources: set[str]
) -> Iterator[Finding]:
    yield from audit_capacity.overcommitted_nodes(inventory.nodes or (), pods, resources)
    yield from audit_capacity.pending_for_devices(inventory.events or (), pods, resources)


def _only(check: str, findings: Iterable[Finding]) -> Iterator[Finding]:
    return (finding for finding in findings if finding.check == check)


def _about(finding: Finding, namespace: str | None) -> bool:
    if namespace is None:
        return True
    ref = finding.object
    return ref.namespace == namespace or (ref.kind == "Namespace" and ref.name == namespace)


def describe_checks() -> Mapping[str, Any]:
    """Each check's usual severity and summary, for `audit --help` and the docs."""
    return {check.id: (check.severity, check.summary) for check in CHECKS.values()}
