"""Each audit check against objects in real shapes: a case that finds it and near misses that
must not, plus the dump with one problem of each kind (every check once, nothing else).

Expectations are written by hand from the objects (which pod, which check, which severity), not
from the audit's output.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from audit_shapes import (
    OPT_IN,
    RDMA,
    failed_scheduling,
    host_local,
    inventory,
    macvlan_config,
    nad,
    namespace,
    network_status,
    node,
    one_of_each,
    pod,
    sriov_rdma_config,
    status_entry,
    webhook_configuration,
    whereabouts,
)
from conftest import FIXTURES

from webhook.audit import audit
from webhook.audit_dump import read_dump
from webhook.audit_fields import SLIM
from webhook.certs import generate_ca, generate_serving
from webhook.findings import CHECKS, AuditOptions
from webhook.policy import Policy, default_policy, parse_policy

RDMA_NET = nad(
    "sriov-rdma-net",
    sriov_rdma_config("sriov-rdma-net", whereabouts("192.168.100.0/24")),
    resource=RDMA,
)
HEALTHY = "team-a/sriov-rdma-net"


def found(
    *objects: dict[str, Any], policy: Policy | None = None, check: str | None = None, **more: Any
) -> list[tuple[str, str, str]]:
    options = AuditOptions(
        checks=frozenset([check] if check else CHECKS), now=dt.datetime.now(dt.UTC).timestamp()
    )
    result = audit(inventory(*objects, **more), policy or default_policy(), options)
    return [(f.check, f.severity, f.object.display()) for f in result.findings]


def running(name: str, ip: str = "192.168.100.2", **kwargs: Any) -> dict[str, Any]:
    """A healthy RDMA pod: annotation, one unit, an IP and an RDMA device."""
    return pod(
        name,
        networks="sriov-rdma-net",
        units={RDMA: 1},
        status=network_status(
            "10.128.2.15", status_entry(HEALTHY, "net1", [ip], "0000:3b:02.1", "mlx5_3")
        ),
        **kwargs,
    )


# -- the dump with one of each ---------------------------------------------------------------------


def test_the_dump_with_one_of_each_problem_reports_each_once_and_nothing_else() -> None:
    result = audit(
        read_dump(str(FIXTURES / "audit" / "one-of-each.yaml")),
        default_policy(),
        AuditOptions(now=dt.datetime.now(dt.UTC).timestamp()),
    )
    got = sorted((f.check, f.severity, f.object.display()) for f in result.findings)
    assert got == sorted(
        [
            ("half-configured", "error", "Pod team-a/half-configured"),
            ("unknown-nad", "error", "Pod team-a/typo-in-name"),
            ("namespace-not-allowed", "error", "Pod team-a/other-team-net"),
            ("nad-no-resource", "error", "NAD team-a/sriov-no-resource"),
            ("nad-bad-config", "error", "NAD team-a/broken-config"),
            ("ipam-host-local", "warning", "NAD team-a/hostlocal-net"),
            ("ipam-pool-small", "error", "NAD team-a/small-pool-net"),
            ("no-ip", "error", "Pod team-a/no-ip"),
            ("no-rdma-device", "error", "Pod team-a/no-rdma"),
            ("duplicate-ip", "error", "Pod team-a/dup-b"),
            ("vf-exhausted", "error", "Pod team-a/waiting-for-vf"),
            ("not-opted-in", "warning", "Namespace team-b"),
            ("webhook-config", "info", "MutatingWebhookConfiguration zz-gpu-rdma-injector"),
        ]
    )
    assert {f.check for f in result.findings} == set(CHECKS)
    assert result.skipped == ()
    assert result.exit_code == 1
    for finding in result.findings:
        assert finding.message.endswith(".")
        assert finding.fix.endswith(".")
        assert (
            finding.message[0].isupper()
            or finding.message[0].isdigit()
            or finding.message.startswith("k8s")
        )


def test_the_fixture_dump_is_what_the_shapes_build() -> None:
    """The committed dump and the builders agree on every object (as the audit keeps them) but
    the generated CA."""
    committed = read_dump(str(FIXTURES / "audit" / "one-of-each.yaml"))
    bundle = committed.webhooks[0]["webhooks"][0]["clientConfig"]["caBundle"]  # type: ignore[index]
    rebuilt = inventory(*(SLIM[obj["kind"]](obj) for obj in one_of_each(bundle)))
    assert committed == rebuilt


# -- half-configured -------------------------------------------------------------------------------


def test_half_configured_both_ways() -> None:
    assert found(
        RDMA_NET, pod("net-no-vf", networks="sriov-rdma-net"), check="half-configured"
    ) == [("half-configured", "error", "Pod team-a/net-no-vf")]
    assert found(RDMA_NET, pod("vf-no-net", units={RDMA: 2}), check="half-configured") == [
        ("half-configured", "error", "Pod team-a/vf-no-net")
    ]
    # The default network's device counts as an attachment, as the webhook counts it.
    default_net = pod("default-net", units={RDMA: 1})
    default_net["metadata"]["annotations"] = {
        "v1.multus-cni.io/default-network": "team-a/sriov-rdma-net"
    }
    assert found(RDMA_NET, default_net, check="half-configured") == []


def test_half_configured_near_misses() -> None:
    equal = pod("equal", networks="sriov-rdma-net,sriov-rdma-net", units={RDMA: 2})
    finished = pod("finished", networks="sriov-rdma-net", phase="Succeeded")
    not_a_device = pod("other-resource", units={"example.com/dongle": 1})
    assert found(RDMA_NET, equal, finished, not_a_device, check="half-configured") == []


def test_half_configured_reads_the_nads_own_resource_first() -> None:
    """The NAD names another resource than the policy: the webhook uses the NAD's."""
    other = nad(
        "sriov-rdma-net",
        sriov_rdma_config("x", whereabouts("10.1.0.0/24")),
        resource="nvidia.com/rdma_vf",
    )
    right = pod("right", networks="sriov-rdma-net", units={"nvidia.com/rdma_vf": 1})
    wrong = pod("wrong", networks="sriov-rdma-net", units={RDMA: 1})
    assert found(other, right, wrong, check="half-configured") == [
        ("half-configured", "error", "Pod team-a/wrong")
    ]


# -- unknown-nad and namespace-not-allowed ---------------------------------------------------------


def test_unknown_nad_and_its_near_misses() -> None:
    allowed = parse_policy(
        "networks: [{name: sriov-rdma-net, resourceName: openshift.io/mellanoxnics}]\n"
        "allowedNadNamespaces: [gpu-infra]",
        "p.yaml",
    )
    shared = nad(
        "shared-net", macvlan_config("shared-net", whereabouts("10.2.0.0/24")), "gpu-infra"
    )
    typo = pod("typo", networks="sriov-rdma-nett", gpus=0, phase="Pending")
    cross = pod("cross", networks="gpu-infra/shared-net", gpus=0)
    cross_typo = pod("cross-typo", networks="gpu-infra/shared-nett", gpus=0, phase="Pending")
    assert found(
        RDMA_NET, shared, typo, cross, cross_typo, policy=allowed, check="unknown-nad"
    ) == [
        ("unknown-nad", "error", "Pod team-a/cross-typo"),
        ("unknown-nad", "error", "Pod team-a/typo"),
    ]
    # Without NADs in the input nothing can be judged missing: the check is skipped.
    result = audit(inventory(typo), default_policy())
    assert ("unknown-nad", "the input holds no NetworkAttachmentDefinitions") in result.skipped


def test_namespace_not_allowed_and_its_near_misses() -> None:
    cross = pod("cross", networks="gpu-infra/shared-net", gpus=0)
    in_kube_system = pod("system", "kube-system", networks="gpu-infra/shared-net", gpus=0)
    assert found(cross, in_kube_system, check="namespace-not-allowed") == [
        ("namespace-not-allowed", "error", "Pod team-a/cross")
    ]
    single = parse_policy("allowedNadNamespaces: [gpu-infra/shared-net]", "p.yaml")
    assert found(cross, policy=single, check="namespace-not-allowed") == []
    default_net = pod("default-net", gpus=0)
    default_net["metadata"]["annotations"] = {"v1.multus-cni.io/default-network": "eth-replacement"}
    # An unqualified default network is Multus's namespace's (kube-system): outside team-a.
    assert found(default_net, check="namespace-not-allowed") == [
        ("namespace-not-allowed", "error", "Pod team-a/default-net")
    ]


# -- nad-no-resource and nad-bad-config ------------------------------------------------------------


def test_nad_no_resource_and_its_near_misses() -> None:
    bare = nad("bare-sriov", {"cniVersion": "0.3.1", "name": "x", "type": "sriov"})
    ib = nad("bare-ib", {"cniVersion": "0.3.1", "name": "x", "type": "ib-sriov"})
    host_device = nad(
        "pinned-device",
        {"cniVersion": "0.3.1", "name": "x", "type": "host-device", "pciBusID": "0000:af:00.1"},
    )
    host_device_pool = nad(
        "device-pool", {"cniVersion": "0.3.1", "name": "x", "type": "host-device"}
    )
    plain = nad("plain", macvlan_config("plain", whereabouts("10.3.0.0/24")))
    assert found(
        bare, ib, host_device, host_device_pool, plain, RDMA_NET, check="nad-no-resource"
    ) == [
        ("nad-no-resource", "error", "NAD team-a/bare-ib"),
        ("nad-no-resource", "error", "NAD team-a/bare-sriov"),
        ("nad-no-resource", "error", "NAD team-a/device-pool"),
    ]
    # The policy's own resourceNameAnnotations are where Multus's resource is read.
    other_key = parse_policy("resourceNameAnnotations: [example.com/resource]", "p.yaml")
    assert ("nad-no-resource", "error", "NAD team-a/sriov-rdma-net") in found(
        RDMA_NET, policy=other_key, check="nad-no-resource"
    )


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ('{"cniVersion": "0.3.1", "type": "sriov"', "is not valid JSON"),
        ('{"cniVersion": "0.3.1", "name": "x"}', 'has no "type"'),
        ('["sriov"]', "is not a JSON object"),
        (
            '{"cniVersion": "1.0.0", "plugins": [{"type": "sriov"}, {"capabilities": {}}]}',
            'plugin 2 of spec.config has no "type"',
        ),
    ],
)
def test_nad_bad_config(config: str, problem: str) -> None:
    result = audit(
        inventory(nad("broken", config)),
        default_policy(),
        AuditOptions(checks=frozenset(["nad-bad-config"])),
    )
    (finding,) = result.findings
    assert problem in finding.message
    assert finding.object.display() == "NAD team-a/broken"


def test_nad_bad_config_near_misses() -> None:
    from_file = nad("from-file", None)  # Multus reads the configuration from the node
    blank = nad("blank", "  ")
    assert found(from_file, blank, RDMA_NET, check="nad-bad-config") == []


# -- ipam-host-local and ipam-pool-small -----------------------------------------------------------


def test_ipam_host_local_across_nodes_and_near_misses() -> None:
    hostlocal = nad("hl", macvlan_config("hl", host_local("10.56.217.0/24")))
    on = [pod(f"p{i}", networks="hl", gpus=0, node=f"gpu-node-{i}") for i in (1, 2)]
    assert found(hostlocal, *on, check="ipam-host-local") == [
        ("ipam-host-local", "warning", "NAD team-a/hl")
    ]
    same_node = [pod(f"p{i}", networks="hl", gpus=0) for i in (1, 2)]
    finished_elsewhere = pod("old", networks="hl", gpus=0, node="gpu-node-2", phase="Succeeded")
    assert found(hostlocal, *same_node, finished_elsewhere, check="ipam-host-local") == []


def test_ipam_pool_small_error_warning_and_near_miss() -> None:
    def pods(count: int) -> list[dict[str, Any]]:
        return [pod(f"p{i}", networks="pool", gpus=0) for i in range(count)]

    def pool(cidr: str, **more: Any) -> dict[str, Any]:
        return nad("pool", macvlan_config("pool", whereabouts(cidr, **more)))

    assert found(pool("192.168.50.0/30"), *pods(3), check="ipam-pool-small") == [
        ("ipam-pool-small", "error", "NAD team-a/pool")
    ]
    # /28: 14 addresses; 13 is 92 %, a warning; 12 is 85 %, nothing.
    assert found(pool("192.168.50.0/28"), *pods(13), check="ipam-pool-small") == [
        ("ipam-pool-small", "warning", "NAD team-a/pool")
    ]
    assert found(pool("192.168.50.0/28"), *pods(12), check="ipam-pool-small") == []
    # exclude takes addresses out of the pool: /28 less a /29 leaves 7 (.1-.7 ... .8-.15 out).
    assert found(
        pool("192.168.50.0/28", exclude=["192.168.50.8/29"]), *pods(8), check="ipam-pool-small"
    ) == [("ipam-pool-small", "error", "NAD team-a/pool")]
    # Finished pods hold no address.
    done = [pod(f"d{i}", networks="pool", gpus=0, phase="Failed") for i in range(5)]
    assert found(pool("192.168.50.0/29"), *pods(5), *done, check="ipam-pool-small") == []


def test_a_pool_shared_by_two_nads_counts_both() -> None:
    a = nad("a", macvlan_config("a", whereabouts("192.168.60.0/29")))
    b = nad("b", macvlan_config("b", whereabouts("192.168.60.0/29")))
    pods = [pod(f"a{i}", networks="a", gpus=0) for i in range(4)] + [
        pod(f"b{i}", networks="b", gpus=0) for i in range(3)
    ]
    assert found(a, b, *pods, check="ipam-pool-small") == [
        ("ipam-pool-small", "error", "NAD team-a/a"),
        ("ipam-pool-small", "error", "NAD team-a/b"),
    ]


# -- no-ip, no-rdma-device, duplicate-ip -----------------------------------------------------------


def test_no_ip_and_near_misses() -> None:
    no_ip = pod(
        "no-ip",
        networks="sriov-rdma-net",
        units={RDMA: 1},
        status=network_status(
            "10.128.2.15", status_entry(HEALTHY, "net1", [], "0000:3b:02.1", "mlx5_3")
        ),
    )
    no_status = pod("no-status", networks="sriov-rdma-net", units={RDMA: 1})
    l2 = nad("l2-only", macvlan_config("l2-only", {}))
    l2_pod = pod(
        "l2",
        networks="l2-only",
        gpus=0,
        status=network_status("10.128.2.16", status_entry("team-a/l2-only", "net1", [])),
    )
    pending = pod("pending", networks="sriov-rdma-net", units={RDMA: 1}, phase="Pending")
    assert found(RDMA_NET, l2, no_ip, no_status, l2_pod, pending, running("ok"), check="no-ip") == [
        ("no-ip", "error", "Pod team-a/no-ip"),
        ("no-ip", "error", "Pod team-a/no-status"),
    ]


def test_no_rdma_device_and_near_misses() -> None:
    no_rdma = pod(
        "no-rdma",
        networks="sriov-rdma-net",
        units={RDMA: 1},
        status=network_status(
            "10.128.2.15", status_entry(HEALTHY, "net1", ["192.168.100.9"], "0000:3b:02.1")
        ),
    )
    no_device = pod(
        "no-device",
        networks="sriov-rdma-net",
        units={RDMA: 1},
        status=network_status("10.128.2.15", status_entry(HEALTHY, "net1", ["192.168.100.8"])),
    )
    # Plain SR-IOV Ethernet (a resource no policy network names, no rdma plugin): a PCI
    # address is all it should have.
    eth = nad(
        "sriov-eth",
        {
            "cniVersion": "0.3.1",
            "name": "sriov-eth",
            "type": "sriov",
            "ipam": whereabouts("10.9.0.0/24"),
        },
        resource="openshift.io/intelnics",
    )
    eth_pod = pod(
        "eth",
        networks="sriov-eth",
        gpus=0,
        units={"openshift.io/intelnics": 1},
        status=network_status(
            "10.128.2.15", status_entry("team-a/sriov-eth", "net1", ["10.9.0.2"], "0000:5e:00.2")
        ),
    )
    macvlan = nad("mv", macvlan_config("mv", whereabouts("10.4.0.0/24")))
    mv_pod = pod(
        "mv",
        networks="mv",
        gpus=0,
        status=network_status("10.128.2.15", status_entry("team-a/mv", "net1", ["10.4.0.2"])),
    )
    assert found(
        RDMA_NET,
        eth,
        macvlan,
        no_rdma,
        no_device,
        eth_pod,
        mv_pod,
        running("ok"),
        check="no-rdma-device",
    ) == [
        ("no-rdma-device", "error", "Pod team-a/no-device"),
        ("no-rdma-device", "error", "Pod team-a/no-rdma"),
    ]


def test_two_attachments_of_one_nad_take_their_own_entries() -> None:
    both = network_status(
        "10.128.2.15",
        status_entry(HEALTHY, "net1", ["192.168.100.2"], "0000:3b:02.1", "mlx5_3"),
        status_entry(HEALTHY, "net2", [], "0000:3b:02.2", "mlx5_4"),
    )
    two = pod("two", networks="sriov-rdma-net,sriov-rdma-net", units={RDMA: 2}, status=both)
    assert found(RDMA_NET, two, check="no-ip") == [("no-ip", "error", "Pod team-a/two")]


def test_duplicate_ip_names_the_newer_pod_and_near_misses() -> None:
    first = running("first", ip="192.168.100.7", created="2026-11-29T10:00:00Z")
    second = running(
        "second", ip="192.168.100.7", created="2026-11-29T11:00:00Z", node="gpu-node-2"
    )
    assert found(RDMA_NET, second, first, check="duplicate-ip") == [
        ("duplicate-ip", "error", "Pod team-a/second")
    ]
    other_net = pod(
        "other-net",
        networks="mv",
        gpus=0,
        status=network_status("10.128.2.15", status_entry("team-a/mv", "net1", ["192.168.100.7"])),
    )
    finished = running("finished", ip="192.168.100.7", phase="Succeeded")
    same_pod_ip = running("host-net-like", ip="192.168.100.8")  # eth0 is the same in each: default
    assert found(RDMA_NET, first, other_net, finished, same_pod_ip, check="duplicate-ip") == []


# -- vf-exhausted ----------------------------------------------------------------------------------


def test_vf_exhausted_on_a_node_and_near_misses() -> None:
    small = node("gpu-node-1", {RDMA: 1})
    roomy = node("gpu-node-2", {RDMA: 8})
    pods = [running("a"), running("b"), running("c", node="gpu-node-2")]
    assert found(RDMA_NET, small, roomy, *pods, check="vf-exhausted") == [
        ("vf-exhausted", "error", "Node gpu-node-1")
    ]
    # The device plugin advertises nothing at all: allocatable 0.
    bare = node("gpu-node-1", {})
    assert found(RDMA_NET, bare, running("a"), check="vf-exhausted") == [
        ("vf-exhausted", "error", "Node gpu-node-1")
    ]
    finished = running("b", phase="Succeeded")
    assert found(RDMA_NET, small, running("a"), finished, check="vf-exhausted") == []


def test_vf_exhausted_for_a_pending_pod_and_near_misses() -> None:
    waiting = pod("waiting", networks="sriov-rdma-net", units={RDMA: 1}, node=None, phase="Pending")
    event = failed_scheduling(
        waiting, "0/3 nodes are available: 3 Insufficient openshift.io/mellanoxnics."
    )
    assert found(RDMA_NET, waiting, event, check="vf-exhausted") == [
        ("vf-exhausted", "error", "Pod team-a/waiting")
    ]
    cpu = failed_scheduling(waiting, "0/3 nodes are available: 3 Insufficient cpu.")
    assert found(RDMA_NET, waiting, cpu, check="vf-exhausted") == []
    older = failed_scheduling(
        waiting, "0/3 nodes are available: 3 Insufficient openshift.io/mellanoxnics."
    )
    older["involvedObject"]["uid"] = "6a1b6a02-0000-4000-8000-000000000000"  # a deleted namesake
    assert found(RDMA_NET, waiting, older, check="vf-exhausted") == []
    scheduled = running("waiting")
    assert found(RDMA_NET, scheduled, event, check="vf-exhausted") == []
    # The latest event wins: it now waits for CPU, not for a VF.
    later = failed_scheduling(
        waiting, "0/3 nodes are available: 3 Insufficient cpu.", when="2026-11-29T14:00:00Z"
    )
    assert found(RDMA_NET, waiting, event, later, check="vf-exhausted") == []


# -- not-opted-in and webhook-config ---------------------------------------------------------------


def test_not_opted_in_and_near_misses() -> None:
    gpu_b = pod("gpu", "team-b")
    labelled = pod("gpu", "team-c")
    system = pod("gpu", "kube-system")
    own = pod("gpu", "gpu-rdma-injector")
    finished = pod("gpu", "team-d", phase="Succeeded")
    cpu_only = pod("cpu", "team-e", gpus=0)
    spaces = [
        namespace(n) for n in ("team-b", "kube-system", "gpu-rdma-injector", "team-d", "team-e")
    ]
    spaces.append(namespace("team-c", OPT_IN))
    mwc = webhook_configuration(None)
    objects = [gpu_b, labelled, system, own, finished, cpu_only, *spaces]
    assert found(*objects, mwc, check="not-opted-in") == [
        ("not-opted-in", "warning", "Namespace team-b")
    ]
    # Without a registration to read, the chart's default label is assumed; the webhook's own
    # namespace then counts like any other.
    assert found(*objects, check="not-opted-in") == [
        ("not-opted-in", "warning", "Namespace gpu-rdma-injector"),
        ("not-opted-in", "warning", "Namespace team-b"),
    ]


def _pem_bundle(*pems: bytes) -> str:
    return base64.b64encode(b"".join(pems)).decode()


def test_webhook_config_findings() -> None:
    ca, other = generate_ca(), generate_ca("another CA")
    serving = generate_serving(ca, ["gpu-rdma-injector.gpu-rdma-injector.svc"])
    good = webhook_configuration(_pem_bundle(ca.cert_pem()))
    cert = serving.cert_pem()
    assert found(good, check="webhook-config", serving_certificate=cert) == []
    assert (
        found(
            webhook_configuration(_pem_bundle(other.cert_pem(), ca.cert_pem())),
            check="webhook-config",
            serving_certificate=cert,
        )
        == []
    )
    wrong = webhook_configuration(_pem_bundle(other.cert_pem()))
    assert found(wrong, check="webhook-config", serving_certificate=cert) == [
        ("webhook-config", "error", "MutatingWebhookConfiguration zz-gpu-rdma-injector")
    ]
    # Without the serving certificate only the bundle itself is judged.
    assert found(wrong, check="webhook-config") == []
    for bad in (
        webhook_configuration(None),
        webhook_configuration(""),
        webhook_configuration("bm90IGEgY2VydA=="),
    ):
        assert found(bad, check="webhook-config") == [
            ("webhook-config", "error", "MutatingWebhookConfiguration zz-gpu-rdma-injector")
        ]
    assert found(
        webhook_configuration(_pem_bundle(ca.cert_pem()), "Ignore"), check="webhook-config"
    ) == [("webhook-config", "info", "MutatingWebhookConfiguration zz-gpu-rdma-injector")]
    someone_else = webhook_configuration(None, name="network-resources-injector-config")
    someone_else["webhooks"][0]["name"] = "network-resources-injector-mutating-config.k8s.io"
    assert found(someone_else, check="webhook-config") == [
        ("webhook-config", "error", "MutatingWebhookConfiguration pods.gpu-rdma-injector.io")
    ]


def test_an_expired_serving_certificate_does_not_verify() -> None:
    ca = generate_ca()
    serving = generate_serving(ca, ["gpu-rdma-injector.gpu-rdma-injector.svc"], days=1)
    mwc = webhook_configuration(_pem_bundle(ca.cert_pem()))
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).timestamp()
    result = audit(
        inventory(mwc, serving_certificate=serving.cert_pem()),
        default_policy(),
        AuditOptions(checks=frozenset(["webhook-config"]), now=later),
    )
    assert [f.severity for f in result.findings] == ["error"]


# -- the audit as a whole --------------------------------------------------------------------------


def test_checks_the_input_cannot_show_are_skipped_saying_why() -> None:
    result = audit(inventory(pod("p")), default_policy())
    skipped = dict(result.skipped)
    assert skipped["webhook-config"] == "the input holds no MutatingWebhookConfigurations"
    assert skipped["vf-exhausted"] == "the input holds no Nodes or Events"
    assert skipped["nad-bad-config"] == "the input holds no NetworkAttachmentDefinitions"
    assert "half-configured" not in skipped


def test_namespace_keeps_findings_about_that_namespace() -> None:
    objects = one_of_each(_pem_bundle(generate_ca().cert_pem()))
    result = audit(inventory(*objects), default_policy(), AuditOptions(namespace="team-b"))
    assert [(f.check, f.object.display()) for f in result.findings] == [
        ("not-opted-in", "Namespace team-b")
    ]


def test_findings_are_capped_at_the_bound_and_counted_whole() -> None:
    pods = [pod(f"p{i}", networks="sriov-rdma-net") for i in range(12)]
    options = AuditOptions(checks=frozenset(["half-configured"]), max_findings=10)
    result = audit(inventory(RDMA_NET, *pods), default_policy(), options)
    assert len(result.findings) == 10
    assert result.counts == {("half-configured", "error"): 12}
    assert result.dropped == 2
    at_limit = audit(inventory(RDMA_NET, *pods[:10]), default_policy(), options)
    assert (len(at_limit.findings), at_limit.dropped) == (10, 0)


def test_a_pod_the_webhook_cannot_read_is_noted_not_judged() -> None:
    broken = pod("broken", networks="sriov-rdma-net,,x")
    result = audit(inventory(RDMA_NET, broken), default_policy())
    assert result.findings == ()
    assert result.notes == (
        "1 pod could not be read as the webhook reads pods (malformed annotations or spec) and "
        "were not judged",
    )


def test_a_pool_exactly_90_percent_used_is_not_yet_nearly_full() -> None:
    ten = nad(
        "pool", macvlan_config("pool", whereabouts("192.168.50.0/28", range_end="192.168.50.10"))
    )
    nine = [pod(f"p{i}", networks="pool", gpus=0) for i in range(9)]
    assert found(ten, *nine, check="ipam-pool-small") == []
    assert found(ten, *nine, pod("p9", networks="pool", gpus=0), check="ipam-pool-small") == [
        ("ipam-pool-small", "warning", "NAD team-a/pool")
    ]


def test_a_node_counts_init_containers_as_the_scheduler_does() -> None:
    def with_init(name: str, init_units: int) -> dict[str, Any]:
        obj = running(name)
        obj["spec"]["initContainers"] = [
            {
                "name": "setup",
                "image": "busybox",
                "resources": {
                    "limits": {RDMA: str(init_units)},
                    "requests": {RDMA: str(init_units)},
                },
            }
        ]
        return obj

    one = node("gpu-node-1", {RDMA: 1})
    # max(containers 1, init 1) = 1: fits; max(containers 1, init 2) = 2: does not.
    assert found(RDMA_NET, one, with_init("a", 1), check="vf-exhausted") == []
    assert found(RDMA_NET, one, with_init("a", 2), check="vf-exhausted") == [
        ("vf-exhausted", "error", "Node gpu-node-1")
    ]
