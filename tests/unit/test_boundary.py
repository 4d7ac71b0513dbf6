"""The namespace boundary: which NADs a pod may reach, whoever names them.

Each test here failed on the code before the boundary was closed (issue 9): opt-out skipped
the check, namespace-annotation networks were injected unchecked and then refused on
reinvocation, a policy network opened its whole namespace, default-network was ignored, and
case-variant JSON keys crossed namespaces unseen.
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
import pytest

from webhook.mutation import Decision, decide
from webhook.nads import NadFacts, StaticNads
from webhook.networks import DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION
from webhook.patch import serialize
from webhook.pod import TOTAL_ANNOTATION_BYTES
from webhook.policy import parse_policy

VF = "openshift.io/mellanoxnics"
GPU = {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}
NS_NETWORKS = "gpu-rdma-injector/networks"

POLICY = parse_policy(
    """
networks:
  - {name: sriov-rdma-net, resourceName: openshift.io/mellanoxnics}
  - {name: gpu-infra/rail-1, resourceName: nvidia.com/rail_1}
allowedNadNamespaces: [shared, infra/ib-1]
""",
    "policy.yaml",
)
NADS = StaticNads(
    [
        NadFacts("team-a", "sriov-rdma-net", VF),
        NadFacts("team-a", "net1", VF),
        NadFacts("kube-system", "net1", VF),
        NadFacts("gpu-infra", "rail-1", "nvidia.com/rail_1"),
        NadFacts("gpu-infra", "rail-2", "nvidia.com/rail_2"),
        NadFacts("infra", "ib-1", VF),
        NadFacts("infra", "ib-2", VF),
        NadFacts("shared", "ib", VF),
        NadFacts("kube-system", "default-sriov", VF),
        NadFacts("team-a", "default-sriov", VF),
    ],
    authoritative=True,
)


def gpu_pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "annotations": dict(annotations or {})},
        "spec": {
            "containers": [{"name": "c", "image": "x", "resources": json.loads(json.dumps(GPU))}]
        },
    }


def apply(pod: dict[str, Any], decision: Decision) -> dict[str, Any]:
    return jsonpatch.apply_patch(pod, json.loads(serialize(decision.patch)))


def networks(value: str, **extra: str) -> dict[str, Any]:
    return gpu_pod({NETWORKS_ANNOTATION: value, **extra})


@pytest.mark.parametrize(
    "value",
    [
        '[{"name":"net1","Namespace":"kube-system"}]',
        '[{"name":"net1","NAMESPACE":"kube-system"}]',
        '[{"name":"net1","name\u017fpace":"kube-system"}]',
        '[{"name":"net1","namespace":"team-a","Namespace":"kube-system"}]',
        "kube-system/net1",
        "gpu-infra/rail-2",
        "infra/ib-2",
    ],
)
def test_references_outside_the_boundary_are_refused(value: str) -> None:
    decision = decide(networks(value), "team-a", POLICY, NADS)
    assert (decision.allowed, decision.code, decision.reason) == (
        False,
        403,
        "namespace-not-allowed",
    )
    assert "allowedNadNamespaces" in decision.message


@pytest.mark.parametrize(
    "value",
    [
        "shared/ib",
        "infra/ib-1",
        "gpu-infra/rail-1",
        "team-a/net1",
        '[{"name":"net1","namespace":"kube-system","Namespace":"team-a"}]',
        '[{"name":"net1","namespace":"kube-system","namespace":""}]',
    ],
)
def test_references_inside_the_boundary_are_admitted(value: str) -> None:
    decision = decide(networks(value), "team-a", POLICY, NADS)
    assert decision.allowed, decision.message


def test_opting_out_skips_injection_never_the_boundary() -> None:
    outside = networks("kube-system/net1", **{"gpu-rdma-injector/inject": "false"})
    assert decide(outside, "team-a", POLICY, NADS).reason == "namespace-not-allowed"
    inside = networks("net1", **{"gpu-rdma-injector/inject": "false"})
    decision = decide(inside, "team-a", POLICY, NADS)
    assert (decision.allowed, decision.reason, decision.patch) == (True, "opted-out", ())


def test_namespace_annotation_networks_meet_the_boundary_before_injection() -> None:
    outside = {NS_NETWORKS: "gpu-infra/rail-2"}
    decision = decide(gpu_pod(), "team-a", POLICY, NADS, outside)
    assert (decision.allowed, decision.reason) == (False, "namespace-not-allowed")
    assert "namespace 'team-a' has gpu-rdma-injector/networks naming 'gpu-infra/rail-2'" in (
        decision.message
    )


@pytest.mark.parametrize("chosen", ["shared/ib", "net1", "gpu-infra/rail-1,infra/ib-1"])
def test_a_rereview_of_our_own_output_is_an_empty_patch(chosen: str) -> None:
    annotations = {NS_NETWORKS: chosen}
    first = decide(gpu_pod(), "team-a", POLICY, NADS, annotations)
    assert first.allowed, first.message
    assert first.patch
    second = decide(apply(gpu_pod(), first), "team-a", POLICY, NADS, annotations)
    assert (second.allowed, second.patch) == (True, ())


def test_default_network_resolves_in_multus_namespace_and_meets_the_boundary() -> None:
    unqualified = gpu_pod({DEFAULT_NETWORK_ANNOTATION: "default-sriov"})
    decision = decide(unqualified, "team-a", POLICY, NADS)
    assert (decision.allowed, decision.reason) == (False, "namespace-not-allowed")
    assert "NAD 'default-sriov' in namespace 'kube-system'" in decision.message
    allowing = parse_policy(
        "networks: [{name: sriov-rdma-net, resourceName: openshift.io/mellanoxnics}]\n"
        "allowedNadNamespaces: [kube-system/default-sriov]",
        "p",
    )
    assert decide(unqualified, "team-a", allowing, NADS).allowed
    own = gpu_pod({DEFAULT_NETWORK_ANNOTATION: "team-a/default-sriov"})
    assert decide(own, "team-a", POLICY, NADS).allowed


def test_default_network_counts_its_device() -> None:
    pod = gpu_pod({DEFAULT_NETWORK_ANNOTATION: "team-a/default-sriov"})
    mutated = apply(pod, decide(pod, "team-a", POLICY, NADS))
    resources = mutated["spec"]["containers"][0]["resources"]
    # sriov-rdma-net (injected) and the default network both need an openshift.io/mellanoxnics VF
    assert resources["limits"][VF] == resources["requests"][VF] == "2"
    assert mutated["metadata"]["annotations"][NETWORKS_ANNOTATION] == (
        "sriov-rdma-net,gpu-infra/rail-1"
    )


@pytest.mark.parametrize("value", ["", "a,b", "[]", "[null]"])
def test_default_network_must_name_one_nad(value: str) -> None:
    decision = decide(gpu_pod({DEFAULT_NETWORK_ANNOTATION: value}), "team-a", POLICY, NADS)
    assert (decision.allowed, decision.reason) == (False, "malformed-annotation")
    assert DEFAULT_NETWORK_ANNOTATION in decision.message


def test_unknown_default_network_nad_is_judged_like_any_reference() -> None:
    pod = gpu_pod({DEFAULT_NETWORK_ANNOTATION: "team-a/missing"})
    decision = decide(pod, "team-a", POLICY, NADS)
    assert (decision.allowed, decision.reason) == (False, "unknown-network")
    assert "'missing' does not exist in namespace 'team-a'" in decision.message


def test_annotations_past_the_api_servers_limit_are_refused_in_its_words() -> None:
    filler = "x" * (TOTAL_ANNOTATION_BYTES - len("filler") - len(NETWORKS_ANNOTATION) - 3)
    at_limit = gpu_pod({"filler": filler, NETWORKS_ANNOTATION: "net"})
    assert decide(at_limit, "team-a", POLICY, NADS).reason != "annotations-too-long"
    past = gpu_pod({"filler": filler + "x", NETWORKS_ANNOTATION: "net"})
    decision = decide(past, "team-a", POLICY, NADS)
    assert (decision.allowed, decision.code) == (False, 422)
    assert decision.message == ("metadata.annotations: Too long: may not be more than 262144 bytes")


def test_respelt_keys_are_warned_about() -> None:
    decision = decide(networks('[{"name":"net1","Namespace":"team-a"}]'), "team-a", POLICY, NADS)
    assert decision.allowed
    assert any('Multus reads key "Namespace" as "namespace"' in w for w in decision.warnings)
