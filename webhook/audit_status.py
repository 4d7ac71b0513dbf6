"""Audit checks on what running pods got (core layer): no-ip, no-rdma-device, duplicate-ip.

Multus writes what each attachment got into the pod's `k8s.v1.cni.cncf.io/network-status`
annotation: the NAD as namespace/name, the interface, the IPs, and `device-info` (the VF's
`pci-address` and `rdma-device`) when a device plugin gave one. An attachment should have an IP
when its NAD configures IPAM, a PCI address when it needs a device resource, and an RDMA device
when that resource is one a policy network names (the RDMA networks this webhook serves) or the
NAD chains the rdma plugin (or is ib-sriov).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from webhook.audit_nads import NadView
from webhook.findings import Finding
from webhook.pod_networks import NETWORK_STATUS_ANNOTATION, Attachment, PodView, status_for

SHOWN = 3


def missing_addresses_and_devices(
    pods: Sequence[PodView], nads: Sequence[NadView], rdma_resources: Iterable[str]
) -> Iterator[Finding]:
    by_key = {nad.key: nad for nad in nads}
    rdma = frozenset(rdma_resources)
    for pod in pods:
        if not pod.running or not pod.attachments:
            continue
        entries = pod.network_status()
        statuses = status_for(pod.attachments, entries or [])
        no_ip: list[str] = []
        no_device: list[str] = []
        for attachment, status in zip(pod.attachments, statuses, strict=True):
            nad = by_key.get(attachment.key)
            if nad is None or nad.config is None:
                continue  # nothing to expect from (unknown-nad, or a file on the node)
            name = _shown(attachment, status)
            if nad.config.ipam_type and not _ips(status):
                no_ip.append(name)
            if attachment.resource is None:
                continue
            lacking = _device_gap(status, attachment.resource in rdma or nad.config.rdma)
            if lacking:
                no_device.append(f"{name} ({lacking})")
        why = "" if entries is not None else f" (the pod has no {NETWORK_STATUS_ANNOTATION})"
        if no_ip:
            yield Finding(
                "no-ip",
                "error",
                pod.ref,
                f"Multus reports no IP for {_listed(no_ip)}, whose NAD configures IPAM{why}.",
                "Check the IPAM (a full whereabouts pool, stale leases, a host-local range) and "
                "the Multus logs on its node, then recreate the pod.",
            )
        if no_device:
            yield Finding(
                "no-rdma-device",
                "error",
                pod.ref,
                f"Multus reports no device for {_listed(no_device)}{why}: NCCL falls back to "
                "TCP or fails.",
                "Expose the VFs as RDMA devices (the device plugin's isRdma: true, the rdma CNI "
                "plugin in the NAD), check the device plugin's device-info files, and recreate "
                "the pod.",
            )


def duplicate_addresses(pods: Sequence[PodView]) -> Iterator[Finding]:
    """Running pods holding an IP another running pod got first on the same network."""
    holder: dict[tuple[str, str], PodView] = {}
    clashes: dict[int, tuple[PodView, list[str]]] = {}
    for pod in sorted(
        (pod for pod in pods if pod.running),
        key=lambda pod: (pod.created, pod.namespace, pod.ref.name),
    ):
        for entry in pod.network_status() or ():
            network = entry.get("name")
            if entry.get("default") or not isinstance(network, str):
                continue
            for address in _ips(entry):
                first = holder.setdefault((network, address), pod)
                if first is not pod:
                    clashes.setdefault(id(pod), (pod, []))[1].append(
                        f"{address} on {network}, which pod {first.ref.namespace}/"
                        f"{first.ref.name} got first"
                    )
    for pod, clashed in clashes.values():
        yield Finding(
            "duplicate-ip",
            "error",
            pod.ref,
            f"It holds {_listed(clashed)}: traffic and RDMA connections reach the wrong pod.",
            "Delete the newer pod so it gets a free address, and clear stale leases (whereabouts' "
            "ip-reconciler) so the pool stops handing out addresses still in use.",
        )


def _device_gap(status: Mapping[str, Any] | None, wants_rdma: bool) -> str:
    """What the entry lacks of its device-info ("" when nothing)."""
    info = status.get("device-info") if status is not None else None
    pci = info.get("pci") if isinstance(info, Mapping) else None
    if not isinstance(pci, Mapping) or not pci.get("pci-address"):
        return "no PCI address"
    if wants_rdma and not pci.get("rdma-device"):
        return f"PCI {pci['pci-address']} but no rdma-device"
    return ""


def _ips(status: Mapping[str, Any] | None) -> list[str]:
    """The entry's addresses, normalised (a prefix length dropped); [] when none."""
    raw = status.get("ips") if status is not None else None
    found = []
    for text in raw if isinstance(raw, list) else ():
        try:
            found.append(str(ipaddress.ip_interface(str(text)).ip))
        except ValueError:
            continue
    return found


def _shown(attachment: Attachment, status: Mapping[str, Any] | None) -> str:
    interface = attachment.entry.interface or (status.get("interface") if status else None)
    return f"{attachment.network} ({interface})" if interface else attachment.network


def _listed(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more
