"""The decision core, called directly: rules, edge cases, NAD facts, and properties."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook.mutation import Decision, decide
from webhook.nads import NadFacts, StaticNads
from webhook.networks import NETWORKS_ANNOTATION, parse
from webhook.patch import serialize
from webhook.policy import Policy, default_policy, parse_policy
from webhook.quantity import whole_units

VF = "openshift.io/mellanoxnics"


def container(name: str, **resources: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "resources": dict(resources)}


def pod(*containers: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "p"}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": {"containers": list(containers)}}


def gpus(n: int) -> dict[str, dict[str, str]]:
    return {"limits": {"nvidia.com/gpu": str(n)}, "requests": {"nvidia.com/gpu": str(n)}}


def apply(p: dict[str, Any], decision: Decision) -> dict[str, Any]:
    return jsonpatch.apply_patch(p, json.loads(serialize(decision.patch)))


def test_gpu_pod_gets_both_halves_and_input_is_not_mutated() -> None:
    original = pod(container("c", **gpus(1)))
    before = copy.deepcopy(original)
    decision = decide(original, "team-a", default_policy())
    assert original == before
    mutated = apply(original, decision)
    assert mutated["metadata"]["annotations"][NETWORKS_ANNOTATION] == "sriov-rdma-net"
    assert mutated["spec"]["containers"][0]["resources"]["limits"][VF] == "1"
    assert mutated["spec"]["containers"][0]["resources"]["requests"][VF] == "1"
    assert decision.outcome == "mutated"
    assert decide(mutated, "team-a", default_policy()).patch == ()


def test_same_input_same_bytes() -> None:
    p = pod(container("a", **gpus(2)), container("b", **gpus(2)))
    first = serialize(decide(p, "ns", default_policy()).patch)
    assert all(serialize(decide(p, "ns", default_policy()).patch) == first for _ in range(5))


def test_annotation_with_three_attachments_gets_three_units() -> None:
    p = pod(
        container("c"),
        annotations={NETWORKS_ANNOTATION: "sriov-rdma-net,sriov-rdma-net@net2,sriov-rdma-net"},
    )
    mutated = apply(p, decide(p, "ns", default_policy()))
    assert mutated["spec"]["containers"][0]["resources"] == {
        "limits": {VF: "3"},
        "requests": {VF: "3"},
    }


def test_more_units_than_attachments_adds_attachments() -> None:
    p = pod(container("c", limits={VF: "3"}, requests={VF: "3"}))
    mutated = apply(p, decide(p, "ns", default_policy()))
    assert parse(mutated["metadata"]["annotations"][NETWORKS_ANNOTATION]).entries[2].name == (
        "sriov-rdma-net"
    )
    assert len(parse(mutated["metadata"]["annotations"][NETWORKS_ANNOTATION]).entries) == 3


def test_never_lowers_units() -> None:
    p = pod(
        container(
            "c", limits={VF: "4", "nvidia.com/gpu": "1"}, requests={VF: "4", "nvidia.com/gpu": "1"}
        )
    )
    mutated = apply(p, decide(p, "ns", default_policy()))
    assert mutated["spec"]["containers"][0]["resources"]["limits"][VF] == "4"
    assert len(parse(mutated["metadata"]["annotations"][NETWORKS_ANNOTATION]).entries) == 4


def test_resource_without_policy_network_is_left_with_a_warning() -> None:
    p = pod(container("c", limits={"example.com/other": "1"}, requests={"example.com/other": "1"}))
    policy = parse_policy("networks: [{name: x, resourceName: example.com/vf}]", "p")
    decision = decide(p, "ns", policy)
    assert decision.patch == ()
    # example.com/other is not a network resource: nothing to say about it at all.
    assert decision.warnings == ()
    nads = StaticNads([NadFacts("ns", "other", "example.com/other")], authoritative=True)
    p2 = pod(
        container("c", limits={"example.com/other": "2"}, requests={"example.com/other": "2"}),
        annotations={NETWORKS_ANNOTATION: "other"},
    )
    decision = decide(p2, "ns", parse_policy("networks: []", "p"), nads)
    assert decision.patch == ()
    assert decision.warnings == (
        "gpu-rdma-injector: 2 example.com/other requested, 1 attached; "
        "no policy network for it, left as is",
    )


def test_interface_already_taken_is_not_reused() -> None:
    policy = parse_policy(
        "networks: [{name: rdma, resourceName: example.com/vf, interface: net1}]", "p"
    )
    p = pod(container("c", **gpus(1)), annotations={NETWORKS_ANNOTATION: "storage@net1"})
    mutated = apply(p, decide(p, "ns", policy))
    assert mutated["metadata"]["annotations"][NETWORKS_ANNOTATION] == "storage@net1,rdma"


def test_per_gpu_completes_partial_attachments() -> None:
    policy = parse_policy(
        "networks: [{name: pool, resourceName: example.com/vf, perGpu: true}]", "p"
    )
    p = pod(container("c", **gpus(4)), annotations={NETWORKS_ANNOTATION: "pool,pool"})
    mutated = apply(p, decide(p, "ns", policy))
    assert mutated["metadata"]["annotations"][NETWORKS_ANNOTATION] == "pool,pool,pool,pool"
    assert mutated["spec"]["containers"][0]["resources"]["limits"]["example.com/vf"] == "4"


def test_per_gpu_spreads_units_over_gpu_containers() -> None:
    policy = parse_policy(
        "networks: [{name: pool, resourceName: example.com/vf, perGpu: true}]", "p"
    )
    p = pod(container("sidecar"), container("a", **gpus(3)), container("b", **gpus(1)))
    mutated = apply(p, decide(p, "ns", policy))
    limits = [
        c["resources"].get("limits", {}).get("example.com/vf")
        for c in mutated["spec"]["containers"]
    ]
    assert limits == [None, "3", "1"]


def test_unknown_explicit_container_is_denied() -> None:
    p = pod(container("a", **gpus(1)), annotations={"gpu-rdma-injector/container": "nope"})
    decision = decide(p, "ns", default_policy())
    assert not decision.allowed
    assert decision.message == (
        "gpu-rdma-injector/container names container 'nope', but the pod's containers are 'a'; "
        "set it to one of them"
    )


@pytest.mark.parametrize(
    ("bad_pod", "fragment"),
    [
        ({"metadata": {}}, "the pod has no spec"),
        ({"spec": {"containers": "x"}}, "no spec.containers list"),
        ({"spec": {"containers": [{"image": "x"}]}}, "spec.containers[0] is not a container"),
        (
            {"spec": {"containers": [{"name": "c", "resources": []}]}},
            "resources that are not a map",
        ),
        (
            {"spec": {"containers": [{"name": "c", "resources": {"limits": 1}}]}},
            "limits that are not",
        ),
        (
            {
                "spec": {
                    "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "x"}}}]
                }
            },
            "asks for nvidia.com/gpu 'x'",
        ),
        ({"metadata": {"annotations": "x"}, "spec": {}}, "metadata.annotations is not a map"),
    ],
)
def test_malformed_pods_are_denied_not_crashed(bad_pod: dict[str, Any], fragment: str) -> None:
    decision = decide(bad_pod, "ns", default_policy())
    assert not decision.allowed
    assert decision.code == 400
    assert fragment in decision.message


def test_opt_out_and_mirror_pods_are_left_alone() -> None:
    for opt_out in (
        {"gpu-rdma-injector/inject": "false"},
        {"kubernetes.io/config.mirror": "x"},
    ):
        decision = decide(
            pod(container("c", **gpus(1)), annotations=opt_out), "ns", default_policy()
        )
        assert decision.outcome == "skipped"
        assert decision.patch == ()


# --- NAD facts ---------------------------------------------------------------------------

NADS = StaticNads(
    [
        NadFacts("team-a", "sriov-rdma-net", "nvidia.com/sriov_rdma_vf"),
        NadFacts("team-a", "ipoib-net", None),
        NadFacts("gpu-infra", "rail-1", "nvidia.com/rail_1"),
    ],
    authoritative=True,
)
NAD_POLICY = parse_policy("networks: [{name: sriov-rdma-net}]", "p")


def test_resource_name_comes_from_the_nad() -> None:
    p = pod(container("c", **gpus(1)))
    mutated = apply(p, decide(p, "team-a", NAD_POLICY, NADS))
    assert (
        mutated["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/sriov_rdma_vf"] == "1"
    )


def test_the_nads_resource_wins_over_a_different_policy_resource() -> None:
    # Multus finds the device by the NAD's annotation, so a different policy value would
    # give the pod a VF that net1 cannot use.
    p = pod(container("c", **gpus(1)))
    decision = decide(p, "team-a", default_policy(), NADS)
    limits = apply(p, decision)["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/sriov_rdma_vf"] == "1"
    assert VF not in limits
    assert (
        "gpu-rdma-injector: sriov-rdma-net: NAD says nvidia.com/sriov_rdma_vf, "
        "policy openshift.io/mellanoxnics; using the NAD's"
    ) in decision.warnings


def test_policy_resource_fills_in_for_a_nad_without_one() -> None:
    policy = parse_policy("networks: [{name: ipoib-net, resourceName: example.com/ib}]", "p")
    p = pod(container("c", **gpus(1)))
    limits = apply(p, decide(p, "team-a", policy, NADS))["spec"]["containers"][0]["resources"]
    assert limits["limits"]["example.com/ib"] == "1"


class _OneNamespaceNads:
    """A namespace-scoped cache: knows team-a only."""

    authoritative = True

    def get(self, namespace: str, name: str) -> NadFacts | None:
        return NADS.get(namespace, name) if namespace == "team-a" else None

    def names_in(self, namespace: str) -> tuple[str, ...]:
        return NADS.names_in(namespace) if namespace == "team-a" else ()

    def covers(self, namespace: str) -> bool:
        return namespace == "team-a"


def test_namespaces_a_lookup_does_not_cover_are_not_judged() -> None:
    p = pod(container("c", **gpus(1)), annotations={NETWORKS_ANNOTATION: "other-ns/x"})
    policy = parse_policy(
        "networks: [{name: sriov-rdma-net}]\nallowedNadNamespaces: [other-ns]", "p"
    )
    decision = decide(p, "team-a", policy, _OneNamespaceNads())
    assert decision.allowed
    assert decision.outcome == "mutated"


def test_nad_without_resource_needs_none() -> None:
    p = pod(container("c"), annotations={NETWORKS_ANNOTATION: "ipoib-net"})
    assert decide(p, "team-a", NAD_POLICY, NADS).patch == ()


def test_unknown_nad_is_denied_with_the_names_that_exist() -> None:
    p = pod(container("c"), annotations={NETWORKS_ANNOTATION: "sriov-rdma-nett"})
    decision = decide(p, "team-a", NAD_POLICY, NADS)
    assert not decision.allowed
    assert decision.message == (
        "k8s.v1.cni.cncf.io/networks entry 'sriov-rdma-nett': NetworkAttachmentDefinition "
        "'sriov-rdma-nett' does not exist in namespace 'team-a' (NADs there: ipoib-net, "
        "sriov-rdma-net); fix the name or create the NAD"
    )


def test_unknown_nad_only_warned_in_warn_mode() -> None:
    policy = parse_policy("networks: [{name: sriov-rdma-net}]\nunknownNetworks: warn", "p")
    p = pod(container("c"), annotations={NETWORKS_ANNOTATION: "typo"})
    decision = decide(p, "team-a", policy, NADS)
    assert decision.allowed
    assert decision.patch == ()
    assert decision.warnings == (
        "gpu-rdma-injector: NAD 'typo' not found in namespace 'team-a'; pod will not start",
    )


def test_policy_network_missing_in_namespace() -> None:
    p = pod(container("c", **gpus(1)))
    decision = decide(p, "team-b", NAD_POLICY, NADS)
    assert not decision.allowed
    assert "policy network 'sriov-rdma-net'" in decision.message
    assert "(NADs there: none)" in decision.message
    warn = parse_policy("networks: [{name: sriov-rdma-net}]\nunknownNetworks: warn", "p")
    decision = decide(p, "team-b", warn, NADS)
    assert decision.allowed
    assert decision.patch == ()


def test_namespace_annotation_replaces_policy_networks() -> None:
    p = pod(container("c", **gpus(1)))
    policy = parse_policy(
        "networks: [{name: sriov-rdma-net}]\nallowedNadNamespaces: [gpu-infra]", "p"
    )
    decision = decide(p, "team-a", policy, NADS, {"gpu-rdma-injector/networks": "gpu-infra/rail-1"})
    mutated = apply(p, decision)
    assert mutated["metadata"]["annotations"][NETWORKS_ANNOTATION] == "gpu-infra/rail-1"
    assert mutated["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/rail_1"] == "1"


def test_malformed_namespace_annotation_is_denied() -> None:
    p = pod(container("c", **gpus(1)))
    decision = decide(p, "team-a", NAD_POLICY, NADS, {"gpu-rdma-injector/networks": "a,,b"})
    assert not decision.allowed
    assert decision.message.startswith(
        "namespace 'team-a' has a malformed gpu-rdma-injector/networks"
    )


# --- properties ---------------------------------------------------------------------------

POLICIES = [
    default_policy(),
    parse_policy("networks: [{name: pool, resourceName: example.com/vf, perGpu: true}]", "p"),
    parse_policy(
        "networks:\n"
        + "".join(
            f"  - {{name: rail-{i}, resourceName: example.com/rail_{i}}}\n" for i in range(1, 5)
        ),
        "p",
    ),
    parse_policy(
        "networks: [{name: a, resourceName: example.com/vf, interface: net1}, "
        "{name: b, resourceName: example.com/vf}]",
        "p",
    ),
]
NETWORK_NAMES = ["sriov-rdma-net", "pool", "rail-1", "rail-3", "a", "b", "other"]
RESOURCES = [VF, "example.com/vf", "example.com/rail_1", "example.com/rail_2"]


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    containers = []
    for index in range(draw(st.integers(1, 3))):
        resources: dict[str, dict[str, str]] = {}
        for resource in draw(st.lists(st.sampled_from(["nvidia.com/gpu", *RESOURCES]), max_size=3)):
            amount = str(draw(st.integers(0, 8)))
            for section in draw(
                st.sampled_from([["limits"], ["requests"], ["limits", "requests"]])
            ):
                resources.setdefault(section, {})[resource] = amount
        entry = {"name": f"c{index}", "image": "busybox"}
        if resources or draw(st.booleans()):
            entry["resources"] = resources
        containers.append(entry)
    networks = draw(st.lists(st.sampled_from(NETWORK_NAMES), max_size=4))
    annotations: dict[str, str] | None = None
    if networks:
        value = (
            json.dumps([{"name": n} for n in networks])
            if draw(st.booleans())
            else ",".join(networks)
        )
        annotations = {NETWORKS_ANNOTATION: value}
    elif draw(st.booleans()):
        annotations = {}
    return pod(*containers, annotations=annotations)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(pods(), st.sampled_from(POLICIES))
def test_mutating_a_mutated_pod_adds_nothing(p: dict[str, Any], policy: Policy) -> None:
    first = decide(p, "ns", policy)
    assert first.allowed
    mutated = apply(p, first)
    second = decide(mutated, "ns", policy)
    assert second.patch == ()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(pods(), st.sampled_from(POLICIES))
def test_halves_are_equal_after_mutation(p: dict[str, Any], policy: Policy) -> None:
    mutated = apply(p, decide(p, "ns", policy))
    entries = parse(mutated["metadata"].get("annotations", {}).get(NETWORKS_ANNOTATION, "")).entries
    for resource in {n.resource_name for n in policy.networks}:
        attached = sum(
            1
            for e in entries
            for n in policy.networks
            if n.name == e.name and n.resource_name == resource
        )
        units = 0
        for c in mutated["spec"]["containers"]:
            section = c.get("resources", {})
            request = section.get("requests", {}).get(resource)
            limit = section.get("limits", {}).get(resource)
            assert request == limit or whole_units(request or 0) == whole_units(limit or 0)
            units += whole_units(limit or 0)
        assert units == attached or (units >= attached and not entries)
        assert units >= attached


@pytest.mark.parametrize(
    ("policy_text", "resources"),
    [
        (
            "networks: [{name: n, resourceName: example.com/vf}]",
            {"limits": {"example.com/vf": "1000000"}, "requests": {"example.com/vf": "1000000"}},
        ),
        (
            "networks: [{name: n, resourceName: example.com/vf, perGpu: true}]",
            {"limits": {"nvidia.com/gpu": "1e18"}},
        ),
    ],
)
def test_absurd_counts_are_denied_at_once(policy_text: str, resources: dict[str, Any]) -> None:
    decision = decide(pod(container("c", **resources)), "ns", parse_policy(policy_text, "p"))
    assert (decision.allowed, decision.reason) == (False, "too-many-attachments")
    assert "at most 256 per pod are supported" in decision.message
