"""Cluster objects in the shapes the API server returns them, for the audit's tests.

Pods start from a pod kube-apiserver v1.36 really admitted (tests/fixtures/admission-reviews/)
and get what the cluster adds afterwards: `spec.nodeName` from the scheduler, a kubelet
`status`, and Multus's `k8s.v1.cni.cncf.io/network-status` annotation, written as Multus writes
it (Go's json.MarshalIndent with four spaces: the cluster network first with "default": true,
then one entry per attachment named namespace/name, with `device-info` from the SR-IOV device
plugin). NADs are shaped as the SR-IOV network operator renders them (sriov + rdma plugins,
whereabouts) and as people write macvlan / host-local ones; Nodes carry allocatable SR-IOV
resources; Events are core/v1 FailedScheduling events as the default scheduler writes them.
`dump(...)` prints a List the way `kubectl get ... -A -o yaml` does.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import yaml
from conftest import FIXTURES

from webhook.audit_dump import KINDS
from webhook.findings import Inventory

ADMITTED = json.loads(
    (FIXTURES / "admission-reviews" / "create-gpu-pod-annotation-and-resource.json").read_text()
)["request"]["object"]
RDMA = "openshift.io/mellanoxnics"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
RESOURCE_NAME = "k8s.v1.cni.cncf.io/resourceName"
OPT_IN = {"gpu-rdma-injector.io/inject": "enabled"}


def _uid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "creationTimestamp": "2026-11-01T09:00:00Z",
            "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
            "name": name,
            "resourceVersion": "1200",
            "uid": _uid("ns/" + name),
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def nad(
    name: str,
    config: dict[str, Any] | str | None,
    namespace: str = "team-a",
    resource: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "creationTimestamp": "2026-11-02T10:00:00Z",
        "generation": 1,
        "name": name,
        "namespace": namespace,
        "resourceVersion": "2300",
        "uid": _uid(f"nad/{namespace}/{name}"),
    }
    if resource:
        metadata["annotations"] = {
            RESOURCE_NAME: resource,
            "sriovnetwork.openshift.io/owner-ref": (
                f"SriovNetwork.sriovnetwork.openshift.io/openshift-sriov-network-operator/{name}"
            ),
        }
    obj: dict[str, Any] = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": metadata,
        "spec": {},
    }
    if config is not None:
        obj["spec"]["config"] = config if isinstance(config, str) else json.dumps(config)
    return obj


def sriov_rdma_config(name: str, ipam: dict[str, Any]) -> dict[str, Any]:
    """As the SR-IOV network operator renders a SriovNetwork with RDMA (sriov, then rdma)."""
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "sriov",
                "vlan": 0,
                "spoofchk": "off",
                "trust": "on",
                "vlanQoS": 0,
                "logLevel": "info",
                "ipam": ipam,
            },
            {"type": "rdma"},
        ],
    }


def macvlan_config(name: str, ipam: dict[str, Any]) -> dict[str, Any]:
    return {
        "cniVersion": "0.3.1",
        "name": name,
        "type": "macvlan",
        "master": "ens2f0",
        "mode": "bridge",
        "ipam": ipam,
    }


def whereabouts(cidr: str, **more: Any) -> dict[str, Any]:
    return {"type": "whereabouts", "range": cidr, **more}


def host_local(subnet: str) -> dict[str, Any]:
    return {"type": "host-local", "subnet": subnet, "routes": [{"dst": "0.0.0.0/0"}]}


def status_entry(
    network: str,
    interface: str,
    ips: list[str],
    pci: str | None = None,
    rdma: str | None = None,
    mac: str = "8a:2e:6c:45:b1:07",
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": network, "interface": interface, "ips": ips, "mac": mac}
    entry["dns"] = {}
    if pci is not None:
        pci_info = {"pci-address": pci}
        if rdma is not None:
            pci_info["rdma-device"] = rdma
        entry["device-info"] = {"type": "pci", "version": "1.1.0", "pci": pci_info}
    return entry


def network_status(pod_ip: str, *entries: dict[str, Any]) -> str:
    """The annotation's value as Multus writes it: the cluster network first."""
    default = {
        "name": "ovn-kubernetes",
        "interface": "eth0",
        "ips": [pod_ip],
        "mac": "0a:58:0a:80:02:0f",
        "default": True,
        "dns": {},
    }
    return json.dumps([default, *entries], indent=4)


def pod(
    name: str,
    namespace: str = "team-a",
    *,
    networks: str | None = None,
    gpus: int = 1,
    units: dict[str, int] | None = None,
    node: str | None = "gpu-node-1",
    phase: str = "Running",
    status: str | None = None,
    created: str = "2026-11-29T13:49:50Z",
    pod_ip: str = "10.128.2.15",
) -> dict[str, Any]:
    """A pod as the API server returns it once scheduled (and running, unless `phase` says)."""
    obj = copy.deepcopy(ADMITTED)
    metadata = obj["metadata"]
    metadata.pop("managedFields", None)
    metadata.update(
        name=name,
        namespace=namespace,
        uid=_uid(f"pod/{namespace}/{name}"),
        resourceVersion="48213",
        creationTimestamp=created,
        labels={"app": "nccl-test"},
    )
    annotations: dict[str, str] = {}
    if networks is not None:
        annotations[NETWORKS] = networks
    if status is not None:
        annotations[NETWORK_STATUS] = status
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    resources = {**({"nvidia.com/gpu": gpus} if gpus else {}), **(units or {})}
    container = obj["spec"]["containers"][0]
    section = {key: str(value) for key, value in resources.items()}
    container["resources"] = {"limits": dict(section), "requests": dict(section)} if section else {}
    if node:
        obj["spec"]["nodeName"] = node
    obj["status"] = _status(phase, node, pod_ip)
    return obj


def _status(phase: str, node: str | None, pod_ip: str) -> dict[str, Any]:
    if phase == "Pending" and not node:
        return {
            "conditions": [
                {
                    "lastProbeTime": None,
                    "lastTransitionTime": "2026-11-29T13:49:50Z",
                    "message": "0/3 nodes are available",
                    "reason": "Unschedulable",
                    "status": "False",
                    "type": "PodScheduled",
                }
            ],
            "phase": "Pending",
            "qosClass": "BestEffort",
        }
    status: dict[str, Any] = {
        "hostIP": "10.0.0.11",
        "hostIPs": [{"ip": "10.0.0.11"}],
        "phase": phase,
        "qosClass": "BestEffort",
        "startTime": "2026-11-29T13:49:51Z",
    }
    if phase == "Running":
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
        status["containerStatuses"] = [
            {
                "containerID": "cri-o://4c1f5f3a7d0e",
                "image": "nvcr.io/nvidia/pytorch:25.01-py3",
                "imageID": "nvcr.io/nvidia/pytorch@sha256:5e0f5a6e",
                "lastState": {},
                "name": "worker",
                "ready": True,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": "2026-11-29T13:50:12Z"}},
            }
        ]
    else:
        status["containerStatuses"] = [
            {
                "image": "nvcr.io/nvidia/pytorch:25.01-py3",
                "imageID": "",
                "lastState": {},
                "name": "worker",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }
        ]
    return status


def node(name: str, allocatable: dict[str, int]) -> dict[str, Any]:
    base = {"cpu": "127500m", "memory": "1056389072Ki", "pods": "250", "nvidia.com/gpu": "8"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "creationTimestamp": "2026-10-01T08:00:00Z",
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
            "name": name,
            "resourceVersion": "90112",
            "uid": _uid("node/" + name),
        },
        "spec": {"podCIDR": "10.128.2.0/23"},
        "status": {
            "allocatable": {**base, **{k: str(v) for k, v in allocatable.items()}},
            "capacity": {**base, **{k: str(v) for k, v in allocatable.items()}},
            "nodeInfo": {"kubeletVersion": "v1.36.2", "operatingSystem": "linux"},
        },
    }


def failed_scheduling(
    pod_obj: dict[str, Any], message: str, when: str = "2026-11-29T13:50:20Z"
) -> dict[str, Any]:
    """A core/v1 Event as the default scheduler writes it for a pod it cannot place."""
    metadata = pod_obj["metadata"]
    return {
        "apiVersion": "v1",
        "count": 3,
        "eventTime": None,
        "firstTimestamp": "2026-11-29T13:49:51Z",
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "resourceVersion": "48213",
            "uid": metadata["uid"],
        },
        "kind": "Event",
        "lastTimestamp": when,
        "message": message,
        "metadata": {
            "creationTimestamp": "2026-11-29T13:49:51Z",
            "name": f"{metadata['name']}.187c2a1e5f3b9d2a",
            "namespace": metadata["namespace"],
            "resourceVersion": "48250",
            "uid": _uid("event/" + metadata["name"] + when),
        },
        "reason": "FailedScheduling",
        "reportingComponent": "default-scheduler",
        "reportingInstance": "",
        "source": {"component": "default-scheduler"},
        "type": "Warning",
    }


def webhook_configuration(
    ca_bundle: str | None,
    failure_policy: str = "Fail",
    name: str = "zz-gpu-rdma-injector",
) -> dict[str, Any]:
    """As the chart renders it (after the caBundle was filled in)."""
    client: dict[str, Any] = {
        "service": {
            "name": "gpu-rdma-injector",
            "namespace": "gpu-rdma-injector",
            "path": "/mutate",
            "port": 443,
        }
    }
    if ca_bundle is not None:
        client["caBundle"] = ca_bundle
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "creationTimestamp": "2026-11-01T09:30:00Z",
            "generation": 2,
            "labels": {"app.kubernetes.io/name": "gpu-rdma-injector"},
            "name": name,
            "resourceVersion": "1501",
            "uid": _uid("mwc/" + name),
        },
        "webhooks": [
            {
                "admissionReviewVersions": ["v1"],
                "clientConfig": client,
                "failurePolicy": failure_policy,
                "matchPolicy": "Equivalent",
                "name": "pods.gpu-rdma-injector.io",
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": ["kube-system", "gpu-rdma-injector"],
                        }
                    ],
                    "matchLabels": dict(OPT_IN),
                },
                "objectSelector": {},
                "reinvocationPolicy": "IfNeeded",
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "sideEffects": "None",
                "timeoutSeconds": 5,
            }
        ],
    }


def as_list(*objects: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "items": list(objects),
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    }


def dump(*objects: dict[str, Any]) -> str:
    """What `kubectl get ... -A -o yaml` prints: one List, keys sorted."""
    return yaml.safe_dump(as_list(*objects), sort_keys=True)


def one_of_each(ca_bundle: str) -> list[dict[str, Any]]:
    """A cluster with exactly one problem of each kind the audit checks (the webhook-config one
    being failurePolicy Ignore, as a dump can show), everything else healthy.

    Expected, one finding each: half-configured team-a/half-configured, unknown-nad
    team-a/typo-in-name, namespace-not-allowed team-a/other-team-net, nad-no-resource
    team-a/sriov-no-resource, nad-bad-config team-a/broken-config, ipam-host-local
    team-a/hostlocal-net, ipam-pool-small team-a/small-pool-net, no-ip team-a/no-ip, no-rdma-device
    team-a/no-rdma, duplicate-ip team-a/dup-b, vf-exhausted team-a/waiting-for-vf, not-opted-in
    Namespace team-b, webhook-config zz-gpu-rdma-injector (info).
    """
    rdma = sriov_rdma_config("sriov-rdma-net", whereabouts("192.168.100.0/24"))
    healthy = "team-a/sriov-rdma-net"
    waiting = pod(
        "waiting-for-vf", networks="sriov-rdma-net", units={RDMA: 1}, node=None, phase="Pending"
    )
    return [
        namespace("kube-system"),
        namespace("gpu-rdma-injector"),
        namespace("team-a", OPT_IN),
        namespace("team-b"),
        namespace("gpu-infra"),
        nad("sriov-rdma-net", rdma, resource=RDMA),
        nad(
            "sriov-no-resource",
            sriov_rdma_config("sriov-no-resource", whereabouts("192.168.110.0/24")),
        ),
        nad("broken-config", {"cniVersion": "0.3.1", "name": "broken-config", "ipam": {}}),
        nad("hostlocal-net", macvlan_config("hostlocal-net", host_local("10.56.217.0/24"))),
        nad("small-pool-net", macvlan_config("small-pool-net", whereabouts("192.168.50.0/30"))),
        nad("shared-net", macvlan_config("shared-net", whereabouts("10.200.0.0/24")), "gpu-infra"),
        node("gpu-node-1", {RDMA: 8}),
        node("gpu-node-2", {RDMA: 8}),
        pod(
            "healthy",
            networks="sriov-rdma-net",
            units={RDMA: 1},
            status=network_status(
                "10.128.2.15",
                status_entry(healthy, "net1", ["192.168.100.2"], "0000:3b:02.1", "mlx5_3"),
            ),
        ),
        pod("half-configured", networks="sriov-rdma-net", phase="Pending"),
        pod("typo-in-name", networks="sriov-rdma-nett", gpus=0, phase="Pending"),
        pod(
            "other-team-net",
            networks="gpu-infra/shared-net",
            gpus=0,
            status=network_status(
                "10.128.2.16", status_entry("gpu-infra/shared-net", "net1", ["10.200.0.4"])
            ),
        ),
        pod(
            "no-ip",
            networks="sriov-rdma-net",
            units={RDMA: 1},
            status=network_status(
                "10.128.2.17", status_entry(healthy, "net1", [], "0000:3b:02.2", "mlx5_4")
            ),
        ),
        pod(
            "no-rdma",
            networks="sriov-rdma-net",
            units={RDMA: 1},
            status=network_status(
                "10.128.2.18", status_entry(healthy, "net1", ["192.168.100.3"], "0000:3b:02.3")
            ),
        ),
        pod(
            "dup-a",
            networks="sriov-rdma-net",
            units={RDMA: 1},
            created="2026-11-29T10:00:00Z",
            status=network_status(
                "10.128.2.19",
                status_entry(healthy, "net1", ["192.168.100.7"], "0000:3b:02.4", "mlx5_6"),
            ),
        ),
        pod(
            "dup-b",
            networks="sriov-rdma-net",
            units={RDMA: 1},
            node="gpu-node-2",
            created="2026-11-29T11:00:00Z",
            status=network_status(
                "10.128.3.20",
                status_entry(healthy, "net1", ["192.168.100.7"], "0000:3b:02.1", "mlx5_3"),
            ),
        ),
        *(
            pod(
                f"hostlocal-{index}",
                networks="hostlocal-net",
                gpus=0,
                node=f"gpu-node-{index}",
                status=network_status(
                    f"10.128.{index}.30",
                    status_entry("team-a/hostlocal-net", "net1", [f"10.56.217.{index + 1}"]),
                ),
            )
            for index in (1, 2)
        ),
        *(
            pod(
                f"pool-{index}",
                networks="small-pool-net",
                gpus=0,
                status=network_status(
                    f"10.128.2.{40 + index}",
                    status_entry("team-a/small-pool-net", "net1", [f"192.168.50.{index}"]),
                ),
            )
            for index in (1, 2)
        ),
        pod("pool-3", networks="small-pool-net", gpus=0, phase="Pending"),
        waiting,
        pod("unlabelled-namespace", "team-b", gpus=2),
        failed_scheduling(
            waiting,
            "0/3 nodes are available: 1 node(s) had untolerated taint "
            "{node-role.kubernetes.io/control-plane: }, 2 Insufficient openshift.io/mellanoxnics. "
            "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
            "2 No preemption victims found for incoming pod.",
        ),
        webhook_configuration(ca_bundle, failure_policy="Ignore"),
    ]


def inventory(*objects: dict[str, Any], **more: Any) -> Inventory:
    found: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        found.setdefault(KINDS[obj["kind"]], []).append(obj)
    return Inventory(**{kind: tuple(items) for kind, items in found.items()}, **more)
