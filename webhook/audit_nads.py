"""Audit checks on NetworkAttachmentDefinitions (core layer): nad-no-resource,
nad-bad-config, ipam-host-local, ipam-pool-small.

The first two judge a NAD alone: its CNI configuration as libcni reads it (webhook.cni_config)
and the resource annotation Multus looks its device up by (the policy's
resourceNameAnnotations, read by webhook.nads). The IPAM checks weigh a NAD's addresses against
the pods that use it: host-local hands out the same range on every node, and a whereabouts pool
(shared by every NAD with the same range and network_name) must hold an address for each
attachment of a pod that is not finished.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.cni_config import CniConfig, CniConfigError, Pool, read_config, whereabouts_pools
from webhook.findings import Finding, ObjectRef, ref_of
from webhook.nads import NAD_API_VERSION, NAD_KIND, nad_facts_from_object
from webhook.pod_networks import PodView
from webhook.policy import Policy

FULL_RATIO = 0.9
"""A whereabouts pool more used than this is nearly full (a warning)."""
NODES_SHOWN = 4


@dataclass(frozen=True, slots=True)
class NadView:
    ref: ObjectRef
    key: tuple[str, str]
    config: CniConfig | None
    """None: no spec.config (a file on each node), or one that does not parse."""
    problem: str | None
    resource: str | None


def read_nads(objects: Sequence[Mapping[str, Any]], policy: Policy) -> list[NadView]:
    views = []
    for obj in objects:
        ref = ref_of(obj, NAD_KIND, NAD_API_VERSION)
        if not ref.name or not ref.namespace:
            continue
        try:
            resource = nad_facts_from_object(obj, policy.resource_name_annotations).resource_name
        except ValueError:
            resource = None
        try:
            config, problem = read_config(obj), None
        except CniConfigError as error:
            config, problem = None, str(error)
        views.append(NadView(ref, (ref.namespace, ref.name), config, problem, resource))
    return views


def bad_configs(nads: Sequence[NadView]) -> Iterator[Finding]:
    for nad in nads:
        if nad.problem is not None:
            yield Finding(
                "nad-bad-config",
                "error",
                nad.ref,
                f"Its {nad.problem}: Multus fails every pod that attaches it.",
                'Write spec.config as libcni reads it: a JSON object with "type" (one plugin) or '
                'a "plugins" list whose entries each have "type".',
            )


def without_resource(nads: Sequence[NadView], policy: Policy) -> Iterator[Finding]:
    annotation = policy.resource_name_annotations[0]
    for nad in nads:
        if nad.config is None or not nad.config.needs_device or nad.resource:
            continue
        yield Finding(
            "nad-no-resource",
            "error",
            nad.ref,
            f"Its CNI type is {nad.config.main.get('type')} but it names no device resource "
            f"({annotation}): Multus gives its pods no device, and the CNI plugin fails them.",
            f"Annotate the NAD with {annotation}: <the device plugin's resource>, e.g. "
            "openshift.io/mellanoxnics (the SR-IOV operator does it for the networks it renders).",
        )


def host_local_across_nodes(nads: Sequence[NadView], pods: Sequence[PodView]) -> Iterator[Finding]:
    nodes_of: dict[tuple[str, str], set[str]] = {}
    for pod in pods:
        if pod.active and pod.node:
            for attachment in pod.attachments:
                nodes_of.setdefault(attachment.key, set()).add(pod.node)
    for nad in nads:
        if nad.config is None or nad.config.ipam_type != "host-local":
            continue
        nodes = sorted(nodes_of.get(nad.key, ()))
        if len(nodes) < 2:
            continue
        shown = ", ".join(nodes[:NODES_SHOWN]) + (", ..." if len(nodes) > NODES_SHOWN else "")
        yield Finding(
            "ipam-host-local",
            "warning",
            nad.ref,
            f"It uses host-local IPAM and its pods run on {len(nodes)} nodes ({shown}): each "
            "node hands out the same addresses, so pods on different nodes can collide.",
            "Use a cluster-wide IPAM such as whereabouts, or give each node a range of its own.",
        )


def small_pools(nads: Sequence[NadView], pods: Sequence[PodView]) -> Iterator[Finding]:
    attachments: dict[tuple[str, str], int] = {}
    for pod in pods:
        if pod.active:
            for attachment in pod.attachments:
                attachments[attachment.key] = attachments.get(attachment.key, 0) + 1
    pools: dict[tuple[str, str], list[tuple[NadView, Pool]]] = {}
    for nad in nads:
        for pool in whereabouts_pools(nad.config.ipam) if nad.config is not None else ():
            pools.setdefault(pool.key, []).append((nad, pool))
    for members in pools.values():
        used = sum(attachments.get(key, 0) for key in {nad.key for nad, _ in members})
        for nad, pool in members:
            finding = _pool_finding(nad, pool, used, len({n.key for n, _ in members}))
            if finding is not None:
                yield finding


def _pool_finding(nad: NadView, pool: Pool, used: int, sharing: int) -> Finding | None:
    shared = f" (shared by {sharing} NADs)" if sharing > 1 else ""
    if used > pool.size:
        return Finding(
            "ipam-pool-small",
            "error",
            nad.ref,
            f"Its whereabouts range {pool.range}{shared} has {pool.size} addresses but "
            f"{used} attachments of unfinished pods need one: the rest get no IP.",
            "Widen the range (or exclude less), or spread the pods over more networks.",
        )
    if used > FULL_RATIO * pool.size:
        return Finding(
            "ipam-pool-small",
            "warning",
            nad.ref,
            f"Its whereabouts range {pool.range}{shared} is {100 * used // pool.size} % used "
            f"({used} of {pool.size} addresses).",
            "Widen the range before it runs out, and clear stale leases (whereabouts' "
            "ip-reconciler) so deleted pods give their addresses back.",
        )
    return None
