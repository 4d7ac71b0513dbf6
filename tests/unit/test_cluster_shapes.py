"""Every kind of GPU cluster: shared RDMA devices, GPU resources by pattern, node selectors from
NADs, podnetinfo, and GPUs claimed through Dynamic Resource Allocation."""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
import pytest

from webhook.claims import StaticClaims, claim_facts_from_object
from webhook.mutation import Decision, decide
from webhook.nads import NadFacts, StaticNads, nad_facts_from_object
from webhook.networks import NETWORKS_ANNOTATION
from webhook.patch import serialize
from webhook.pod import MAX_RESOURCES
from webhook.policy import PolicyError, parse_policy
from webhook.quantity import whole_units

SHARED = "rdma/rdma_shared_device_a"


def container(name: str, **limits: str) -> dict[str, Any]:
    resources = {"limits": dict(limits), "requests": dict(limits)} if limits else {}
    return {"name": name, "image": "x", "resources": resources}


def pod(*containers: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "annotations": dict(annotations or {})},
        "spec": {"containers": list(containers)},
    }


def apply(p: dict[str, Any], decision: Decision) -> dict[str, Any]:
    assert decision.allowed, decision.message
    return jsonpatch.apply_patch(p, json.loads(serialize(decision.patch)))


def units(p: dict[str, Any], resource: str) -> dict[str, int]:
    found = {}
    for c in p["spec"]["containers"]:
        limits = (c.get("resources") or {}).get("limits") or {}
        requests = (c.get("resources") or {}).get("requests") or {}
        assert whole_units(limits.get(resource, 0)) == whole_units(requests.get(resource, 0))
        if whole_units(limits.get(resource, 0)):
            found[c["name"]] = whole_units(limits[resource])
    return found


def networks_of(p: dict[str, Any]) -> str:
    return str(p["metadata"]["annotations"].get(NETWORKS_ANNOTATION, ""))


# --- 1. shared RDMA devices: one unit per GPU container ---------------------------------------

SHARED_POLICY = parse_policy(
    f"""
networks:
  - name: rdma-shared-macvlan
    resourceName: {SHARED}
    resourceUnits: perContainer
    perGpu: true
""",
    "shared.yaml",
)
# NVIDIA network-operator's MacvlanNetwork/IPoIBNetwork NADs carry no resource annotation.
SHARED_NADS = StaticNads([NadFacts("team-a", "rdma-shared-macvlan", None)], authoritative=True)


def test_shared_device_is_one_unit_per_gpu_container_however_many_attachments() -> None:
    p = pod(container("a", **{"nvidia.com/gpu": "4"}), container("b", **{"nvidia.com/gpu": "4"}))
    decision = decide(p, "team-a", SHARED_POLICY, SHARED_NADS)
    mutated = apply(p, decision)
    assert networks_of(mutated) == ",".join(["rdma-shared-macvlan"] * 8)
    assert units(mutated, SHARED) == {"a": 1, "b": 1}
    assert decide(mutated, "team-a", SHARED_POLICY, SHARED_NADS).patch == ()


def test_shared_device_never_grows_attachments_from_units() -> None:
    p = pod(
        container("a", **{"nvidia.com/gpu": "1", SHARED: "3"}),
        annotations={NETWORKS_ANNOTATION: "rdma-shared-macvlan"},
    )
    decision = decide(p, "team-a", SHARED_POLICY, SHARED_NADS)
    assert decision.patch == ()


def test_a_pod_asking_only_for_the_shared_device_gets_one_attachment() -> None:
    p = pod(container("worker", **{SHARED: "1"}))
    mutated = apply(p, decide(p, "team-a", SHARED_POLICY, SHARED_NADS))
    assert networks_of(mutated) == "rdma-shared-macvlan"
    assert units(mutated, SHARED) == {"worker": 1}


def test_shared_units_stay_in_a_sidecar_that_asks_for_them() -> None:
    p = pod(container("side", **{SHARED: "1"}), container("gpu", **{"nvidia.com/gpu": "1"}))
    mutated = apply(p, decide(p, "team-a", SHARED_POLICY, SHARED_NADS))
    assert units(mutated, SHARED) == {"side": 1, "gpu": 1}


# --- 2. GPU resources by pattern ------------------------------------------------------------------

MIG_POLICY = parse_policy(
    """
gpuResources: [nvidia.com/gpu, nvidia.com/mig-*, gpu.intel.com/*, amd.com/gpu]
networks:
  - {name: pool, resourceName: example.com/vf, perGpu: true}
""",
    "mig.yaml",
)


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({"nvidia.com/mig-1g.10gb": "2"}, 2),
        ({"nvidia.com/mig-1g.10gb": "1", "nvidia.com/mig-3g.40gb": "1"}, 2),
        ({"gpu.intel.com/i915": "1"}, 1),
        ({"amd.com/gpu": "3"}, 3),
        ({"nvidia.com/migrate": "1"}, 0),
        ({"example.com/mig-1g": "1"}, 0),
    ],
)
def test_gpu_resources_by_pattern_count_every_unit(
    resources: dict[str, str], expected: int
) -> None:
    p = pod(container("c", **resources))
    mutated = apply(p, decide(p, "team-a", MIG_POLICY))
    assert networks_of(mutated) == ",".join(["pool"] * expected)
    assert units(mutated, "example.com/vf") == ({"c": expected} if expected else {})


@pytest.mark.parametrize("bad", ["nvidia.com/*/x", "*", "nvidia.com/mig-*x*/"])
def test_bad_patterns_are_refused(bad: str) -> None:
    with pytest.raises(PolicyError, match="not an extended resource name"):
        parse_policy(f"gpuResources: ['{bad}']", "p.yaml")


def test_a_network_may_not_use_a_gpu_resource_by_pattern() -> None:
    with pytest.raises(PolicyError, match="uses the GPU resource"):
        parse_policy(
            "gpuResources: [nvidia.com/mig-*]\n"
            "networks: [{name: a, resourceName: nvidia.com/mig-1g.10gb}]",
            "p.yaml",
        )


def test_resources_per_container_are_bounded() -> None:
    many = {f"example.com/r{i}": "1" for i in range(MAX_RESOURCES + 1)}
    decision = decide(pod(container("c", **many)), "team-a", MIG_POLICY)
    assert (decision.allowed, decision.reason) == (False, "pod-too-large")
    assert f"at most {MAX_RESOURCES}" in decision.message
    at_bound = dict(list(many.items())[:MAX_RESOURCES])
    assert decide(pod(container("c", **at_bound)), "team-a", MIG_POLICY).allowed


# --- 3. node selectors from the NAD ------------------------------------------------------------

SELECTING = parse_policy(
    "networks: [{name: rail-1, resourceName: example.com/rail_1}]\ninjectNodeSelector: true",
    "nodes.yaml",
)


def nads_with(*selectors: tuple[str, str]) -> StaticNads:
    """rail-1 (policy network) and rail-2, with the given nodeSelector annotations."""
    facts = []
    for name, annotation in selectors:
        facts.append(
            nad_facts_from_object(
                {
                    "metadata": {
                        "name": name,
                        "namespace": "team-a",
                        "annotations": {
                            "k8s.v1.cni.cncf.io/nodeSelector": annotation,
                            "k8s.v1.cni.cncf.io/resourceName": "example.com/"
                            + name.replace("-", "_"),
                        },
                    }
                }
            )
        )
    return StaticNads(facts, authoritative=True)


def test_the_nads_node_selector_is_merged_into_the_pod() -> None:
    nads = nads_with(("rail-1", "kubernetes.io/hostname=node-1"))
    p = pod(container("c", **{"nvidia.com/gpu": "1"}))
    decision = decide(p, "team-a", SELECTING, nads)
    mutated = apply(p, decision)
    assert mutated["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "node-1"}
    assert any("set nodeSelector kubernetes.io/hostname=node-1" in w for w in decision.warnings)
    p["spec"]["nodeSelector"] = {"zone": "a"}
    assert apply(p, decide(p, "team-a", SELECTING, nads))["spec"]["nodeSelector"] == {
        "zone": "a",
        "kubernetes.io/hostname": "node-1",
    }
    assert decide(mutated, "team-a", SELECTING, nads).patch == ()


def test_a_conflict_with_the_pod_is_refused_naming_both_values() -> None:
    nads = nads_with(("rail-1", "fabric=ib-a"))
    p = pod(container("c", **{"nvidia.com/gpu": "1"}))
    p["spec"]["nodeSelector"] = {"fabric": "ib-b"}
    decision = decide(p, "team-a", SELECTING, nads)
    assert (decision.allowed, decision.reason) == (False, "node-selector-conflict")
    assert "'fabric'='ib-b'" in decision.message
    assert "'fabric'='ib-a'" in decision.message


def test_two_nads_on_different_nodes_are_refused() -> None:
    nads = nads_with(("rail-1", "fabric=ib-a"), ("rail-2", "fabric=ib-b"))
    p = pod(container("c", **{"nvidia.com/gpu": "1"}), annotations={NETWORKS_ANNOTATION: "rail-2"})
    decision = decide(p, "team-a", SELECTING, nads)
    assert decision.reason == "node-selector-conflict"
    assert "team-a/rail-1 and team-a/rail-2" in decision.message or (
        "team-a/rail-2 and team-a/rail-1" in decision.message
    )


def test_a_malformed_node_selector_is_refused_naming_the_nad() -> None:
    nads = nads_with(("rail-1", "no pairs here"))
    decision = decide(pod(container("c", **{"nvidia.com/gpu": "1"})), "team-a", SELECTING, nads)
    assert decision.reason == "node-selector-conflict"
    assert "team-a/rail-1 has a malformed k8s.v1.cni.cncf.io/nodeSelector" in decision.message


def test_node_selectors_are_left_alone_unless_the_policy_says_so() -> None:
    nads = nads_with(("rail-1", "fabric=ib-a"))
    policy = parse_policy("networks: [{name: rail-1, resourceName: example.com/rail_1}]", "p")
    mutated = apply(
        pod(container("c", **{"nvidia.com/gpu": "1"})),
        decide(pod(container("c", **{"nvidia.com/gpu": "1"})), "team-a", policy, nads),
    )
    assert "nodeSelector" not in mutated["spec"]


# --- 4. podnetinfo -------------------------------------------------------------------------------

NETINFO = parse_policy(
    "networks: [{name: sriov-rdma-net, resourceName: openshift.io/mellanoxnics}]\n"
    "podNetInfo: {enabled: true, mountPath: /etc/podnetinfo}",
    "netinfo.yaml",
)


def test_podnetinfo_is_mounted_read_only_into_every_gpu_container() -> None:
    p = pod(
        container("side"),
        container("a", **{"nvidia.com/gpu": "1"}),
        container("b", **{"nvidia.com/gpu": "1"}),
    )
    mutated = apply(p, decide(p, "team-a", NETINFO))
    (volume,) = mutated["spec"]["volumes"]
    assert volume["name"] == "podnetinfo"
    paths = {item["fieldRef"]["fieldPath"] for item in volume["downwardAPI"]["items"]}
    assert paths == {"metadata.annotations", "metadata.labels"}
    mounts = {c["name"]: c.get("volumeMounts") for c in mutated["spec"]["containers"]}
    expected = [{"name": "podnetinfo", "mountPath": "/etc/podnetinfo", "readOnly": True}]
    assert mounts == {"side": None, "a": expected, "b": expected}
    assert decide(mutated, "team-a", NETINFO).patch == ()


def test_podnetinfo_reuses_an_equal_volume_and_never_duplicates_a_users() -> None:
    p = pod(container("a", **{"nvidia.com/gpu": "1"}))
    p["spec"]["volumes"] = [
        {
            "name": "podnetinfo",
            "downwardAPI": {
                "items": [
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
                ]
            },
        }
    ]
    mutated = apply(p, decide(p, "team-a", NETINFO))
    assert len(mutated["spec"]["volumes"]) == 1
    assert mutated["spec"]["containers"][0]["volumeMounts"][0]["name"] == "podnetinfo"

    p["spec"]["volumes"] = [{"name": "podnetinfo", "emptyDir": {}}]
    decision = decide(p, "team-a", NETINFO)
    mutated = apply(p, decision)
    assert mutated["spec"]["volumes"] == [{"name": "podnetinfo", "emptyDir": {}}]
    assert "volumeMounts" not in mutated["spec"]["containers"][0]
    assert any("does not show the pod's annotations" in w for w in decision.warnings)


def test_podnetinfo_keeps_out_of_a_taken_mount_path() -> None:
    p = pod(container("a", **{"nvidia.com/gpu": "1"}))
    p["spec"]["containers"][0]["volumeMounts"] = [{"name": "mine", "mountPath": "/etc/podnetinfo"}]
    p["spec"]["volumes"] = [{"name": "mine", "emptyDir": {}}]
    decision = decide(p, "team-a", NETINFO)
    mutated = apply(p, decision)
    assert mutated["spec"]["containers"][0]["volumeMounts"] == [
        {"name": "mine", "mountPath": "/etc/podnetinfo"}
    ]
    assert any("/etc/podnetinfo is taken in container 'a'" in w for w in decision.warnings)


# --- 5. GPUs through Dynamic Resource Allocation -----------------------------------------------

DRA_POLICY = parse_policy(
    "networks: [{name: pool, resourceName: example.com/vf, perGpu: true}]\n"
    "gpuDeviceClasses: [gpu.nvidia.com]",
    "dra.yaml",
)


def template(name: str, *requests: dict[str, Any], version: str = "v1") -> dict[str, Any]:
    """A ResourceClaimTemplate as the NVIDIA DRA driver's examples write them."""
    return {
        "apiVersion": f"resource.k8s.io/{version}",
        "kind": "ResourceClaimTemplate",
        "metadata": {"namespace": "team-a", "name": name},
        "spec": {"spec": {"devices": {"requests": list(requests)}}},
    }


def dra_pod(claims: list[dict[str, Any]], *containers: dict[str, Any]) -> dict[str, Any]:
    p = pod(*containers)
    p["spec"]["resourceClaims"] = claims
    return p


def claiming(name: str, *claims: str | dict[str, str]) -> dict[str, Any]:
    c = container(name)
    c["resources"] = {
        "claims": [{"name": claim} if isinstance(claim, str) else claim for claim in claims]
    }
    return c


def claims_of(*objects: dict[str, Any]) -> StaticClaims:
    return StaticClaims([claim_facts_from_object(o) for o in objects], authoritative=True)


SINGLE = template("single-gpu", {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}})
FOUR = template(
    "four-gpus",
    {"name": "gpus", "exactly": {"deviceClassName": "gpu.nvidia.com", "count": 4}},
)


def test_a_container_claiming_a_gpu_is_a_gpu_container() -> None:
    p = dra_pod(
        [{"name": "gpu", "resourceClaimTemplateName": "single-gpu"}],
        container("side"),
        claiming("ctr", "gpu"),
    )
    decision = decide(p, "team-a", DRA_POLICY, claims=claims_of(SINGLE))
    mutated = apply(p, decision)
    assert networks_of(mutated) == "pool"
    assert units(mutated, "example.com/vf") == {"ctr": 1}
    assert decide(mutated, "team-a", DRA_POLICY, claims=claims_of(SINGLE)).patch == ()


def test_the_claims_count_drives_per_gpu() -> None:
    p = dra_pod(
        [{"name": "gpus", "resourceClaimTemplateName": "four-gpus"}], claiming("ctr", "gpus")
    )
    mutated = apply(p, decide(p, "team-a", DRA_POLICY, claims=claims_of(FOUR)))
    assert networks_of(mutated) == "pool,pool,pool,pool"


@pytest.mark.parametrize(
    "request_",
    [
        {"name": "gpus", "deviceClassName": "gpu.nvidia.com", "count": 2},  # v1beta1
        {"name": "gpus", "exactly": {"deviceClassName": "gpu.nvidia.com", "count": 2}},
        {
            "name": "gpus",
            "firstAvailable": [
                {"name": "big", "deviceClassName": "gpu.nvidia.com", "count": 2},
                {"name": "cpu", "deviceClassName": "cpu.example.com"},
            ],
        },
    ],
    ids=["v1beta1", "v1-exactly", "v1-first-available"],
)
def test_both_request_shapes_are_read(request_: dict[str, Any]) -> None:
    claim = {
        "apiVersion": "resource.k8s.io/v1beta1",
        "kind": "ResourceClaim",
        "metadata": {"namespace": "team-a", "name": "shared-gpus"},
        "spec": {"devices": {"requests": [request_]}},
    }
    p = dra_pod([{"name": "g", "resourceClaimName": "shared-gpus"}], claiming("ctr", "g"))
    assert networks_of(apply(p, decide(p, "team-a", DRA_POLICY, claims=claims_of(claim)))) == (
        "pool,pool"
    )


def test_a_container_counts_only_the_request_it_names() -> None:
    mixed = template(
        "mixed",
        {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com", "count": 2}},
        {"name": "nic", "exactly": {"deviceClassName": "nic.example.com"}},
    )
    p = dra_pod(
        [{"name": "m", "resourceClaimTemplateName": "mixed"}],
        claiming("net", {"name": "m", "request": "nic"}),
        claiming("train", {"name": "m", "request": "gpu"}),
    )
    mutated = apply(p, decide(p, "team-a", DRA_POLICY, claims=claims_of(mixed)))
    assert units(mutated, "example.com/vf") == {"train": 2}


def test_all_devices_cannot_be_counted_and_say_so() -> None:
    every = template(
        "every-gpu",
        {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com", "allocationMode": "All"}},
    )
    p = dra_pod([{"name": "g", "resourceClaimTemplateName": "every-gpu"}], claiming("ctr", "g"))
    decision = decide(p, "team-a", DRA_POLICY, claims=claims_of(every))
    assert networks_of(apply(p, decision)) == "pool"
    assert any("claims All GPUs of a class" in w for w in decision.warnings)


def test_a_missing_template_is_judged_as_unknown_networks_says() -> None:
    p = dra_pod([{"name": "g", "resourceClaimTemplateName": "nope"}], claiming("ctr", "g"))
    decision = decide(p, "team-a", DRA_POLICY, claims=claims_of(SINGLE))
    assert (decision.allowed, decision.reason) == (False, "unknown-network")
    assert "ResourceClaimTemplate 'nope', which does not exist in namespace 'team-a'" in (
        decision.message
    )
    warn = parse_policy(
        "networks: [{name: pool, resourceName: example.com/vf}]\n"
        "gpuDeviceClasses: [gpu.nvidia.com]\nunknownNetworks: warn",
        "p",
    )
    decision = decide(p, "team-a", warn, claims=claims_of(SINGLE))
    assert decision.allowed
    assert any("'nope' not found" in w for w in decision.warnings)


def test_without_a_cluster_claims_cannot_be_read_and_the_pod_is_told() -> None:
    p = dra_pod([{"name": "g", "resourceClaimTemplateName": "single-gpu"}], claiming("ctr", "g"))
    decision = decide(p, "team-a", DRA_POLICY)
    assert decision.allowed
    assert decision.patch == ()
    assert any("cannot be read here" in w for w in decision.warnings)


def test_claims_are_ignored_without_gpu_device_classes() -> None:
    p = dra_pod([{"name": "g", "resourceClaimTemplateName": "single-gpu"}], claiming("ctr", "g"))
    policy = parse_policy("networks: [{name: pool, resourceName: example.com/vf}]", "p")
    assert decide(p, "team-a", policy, claims=claims_of(SINGLE)).patch == ()


@pytest.mark.parametrize(
    ("broken", "fragment"),
    [
        ({"name": "g"}, "without a deviceClassName"),
        ({"name": "g", "exactly": {"deviceClassName": "x", "count": 0}}, "not a positive number"),
        ({"exactly": {"deviceClassName": "x"}}, "a request without a name"),
    ],
)
def test_malformed_claims_are_refused_in_files(broken: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        claim_facts_from_object(template("t", broken))
