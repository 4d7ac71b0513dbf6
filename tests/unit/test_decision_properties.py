"""Properties of the decision over generated pods, policies, NAD facts and namespace annotations.

For any pod the decision admits: a re-review of its own output is an empty patch and admitted
(reinvocation must never deny what the first pass produced), every attachment lies inside the
namespace boundary, both halves are equal for every resource a policy network provides, and an
opted-out pod is never patched. The facts are computed here from the pod, independently of the
decision's own bookkeeping.
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook.claims import StaticClaims, claim_facts_from_object
from webhook.mutation import Decision, decide
from webhook.nads import NadFacts, StaticNads
from webhook.networks import DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION, parse
from webhook.patch import serialize
from webhook.policy import Policy, parse_policy
from webhook.quantity import whole_units

NAMESPACE = "team-a"
VF, RAIL, SHARED = "openshift.io/mellanoxnics", "example.com/rail", "rdma/shared"
MIG = "nvidia.com/mig-1g.10gb"
NS_NETWORKS = "gpu-rdma-injector/networks"
UNIVERSE = [
    NadFacts("team-a", "sriov-rdma-net", VF),
    NadFacts("team-a", "macvlan", None),
    NadFacts("team-a", "rail", RAIL),
    NadFacts("shared", "ib", VF),
    NadFacts("gpu-infra", "rail", RAIL),
    NadFacts("gpu-infra", "other", VF),
    NadFacts("kube-system", "default-sriov", VF),
    NadFacts("other", "sriov-rdma-net", VF),
    NadFacts("team-a", "shared-macvlan", None),
    # Networks that exist on some nodes only (their nodeSelector annotation).
    NadFacts("team-a", "rail", RAIL, (("fabric", "a"),)),
    NadFacts("gpu-infra", "rail", RAIL, (("fabric", "b"),)),
]
REFERENCES = [
    "sriov-rdma-net",
    "macvlan",
    "rail",
    "missing",
    "shared/ib",
    "gpu-infra/rail",
    "gpu-infra/other",
    "kube-system/default-sriov",
    "other/sriov-rdma-net",
    "team-a/rail",
    "shared-macvlan",
]
POLICIES = [
    parse_policy(text, "policy.yaml")
    for text in (
        "networks: [{name: sriov-rdma-net, resourceName: openshift.io/mellanoxnics}]",
        "networks: [{name: sriov-rdma-net, resourceName: openshift.io/mellanoxnics}]\n"
        "allowedNadNamespaces: [shared, gpu-infra/rail]\nunknownNetworks: warn",
        "networks: [{name: gpu-infra/rail, resourceName: example.com/rail, perGpu: true}]\n"
        "allowedNadNamespaces: [kube-system/default-sriov]",
        "networks:\n  - {name: sriov-rdma-net, resourceName: openshift.io/mellanoxnics}\n"
        "  - {name: rail, resourceName: example.com/rail, interface: net9}\n"
        "allowedNadNamespaces: [gpu-infra, shared]\nunknownNetworks: warn",
        # The other shapes of GPU cluster: a shared device, MIG by pattern, DRA, node selectors
        # and podnetinfo.
        "gpuResources: [nvidia.com/gpu, nvidia.com/mig-*]\n"
        "networks:\n  - {name: shared-macvlan, resourceName: rdma/shared, "
        "resourceUnits: perContainer, perGpu: true}\n"
        "  - {name: sriov-rdma-net, resourceName: openshift.io/mellanoxnics}\n"
        "gpuDeviceClasses: [gpu.nvidia.com]\npodNetInfo: {enabled: true}\n"
        "injectNodeSelector: true\nallowedNadNamespaces: [gpu-infra]\nunknownNetworks: warn",
    )
]
CLAIMS = StaticClaims(
    [
        claim_facts_from_object(
            {
                "kind": "ResourceClaimTemplate",
                "metadata": {"namespace": "team-a", "name": f"gpus-{count}"},
                "spec": {
                    "spec": {
                        "devices": {
                            "requests": [
                                {
                                    "name": "gpu",
                                    "exactly": {
                                        "deviceClassName": "gpu.nvidia.com",
                                        "count": count,
                                    },
                                }
                            ]
                        }
                    }
                },
            }
        )
        for count in (1, 2)
    ],
    authoritative=True,
)


@st.composite
def nad_lookups(draw: st.DrawFn) -> StaticNads:
    if not draw(st.integers(0, 4)):
        return StaticNads((), authoritative=False)
    facts = st.lists(st.sampled_from(UNIVERSE), unique_by=lambda f: (f.namespace, f.name))
    return StaticNads(draw(facts), authoritative=True)


def render(references: list[str], form: str) -> str:
    if form == "comma":
        return ",".join(references)
    objects = []
    for reference in references:
        namespace, _, name = reference.rpartition("/")
        obj = {"name": name}
        if namespace:
            obj["Namespace" if form == "json-respelt" else "namespace"] = namespace
        objects.append(obj)
    return json.dumps(objects)


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    containers = []
    for index in range(draw(st.integers(1, 3))):
        limits: dict[str, str] = {}
        for resource in draw(
            st.lists(st.sampled_from(["nvidia.com/gpu", MIG, VF, RAIL, SHARED]), max_size=3)
        ):
            limits[resource] = str(draw(st.integers(0, 4)))
        resources: dict[str, Any] = {"limits": limits, "requests": dict(limits)} if limits else {}
        if not draw(st.integers(0, 5)):
            resources["claims"] = [{"name": draw(st.sampled_from(["g1", "g2", "gone"]))}]
        containers.append({"name": f"c{index}", "image": "x", "resources": resources})
    annotations: dict[str, str] = {}
    references = draw(st.lists(st.sampled_from(REFERENCES), max_size=3))
    if references:
        form = draw(st.sampled_from(["comma", "json", "json-respelt"]))
        annotations[NETWORKS_ANNOTATION] = render(references, form)
    if not draw(st.integers(0, 5)):
        annotations[DEFAULT_NETWORK_ANNOTATION] = draw(
            st.sampled_from(["default-sriov", "team-a/sriov-rdma-net", "shared/ib"])
        )
    if not draw(st.integers(0, 6)):
        annotations["gpu-rdma-injector/inject"] = "false"
    return {
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": containers},
    }


NAMESPACE_ANNOTATIONS = st.one_of(
    st.none(),
    st.lists(st.sampled_from(REFERENCES), min_size=1, max_size=2).map(
        lambda refs: {NS_NETWORKS: ",".join(refs)}
    ),
)


def apply(pod: dict[str, Any], decision: Decision) -> dict[str, Any]:
    return jsonpatch.apply_patch(pod, json.loads(serialize(decision.patch)))


def attachments(pod: dict[str, Any], policy: Policy) -> list[tuple[str, str]]:
    """(namespace, name) of every NAD the pod attaches, as Multus resolves them."""
    annotations = pod["metadata"].get("annotations") or {}
    refs = [e.resolved(NAMESPACE) for e in parse(annotations.get(NETWORKS_ANNOTATION, "")).entries]
    default = annotations.get(DEFAULT_NETWORK_ANNOTATION)
    if default is not None:
        refs += [e.resolved(policy.multus_namespace) for e in parse(default).entries]
    return refs


def inside(policy: Policy, reference: tuple[str, str]) -> bool:
    namespace, name = reference
    own = {(n.name.split("/")[0], n.name.split("/")[1]) for n in policy.networks if "/" in n.name}
    return (
        namespace == NAMESPACE
        or namespace in policy.allowed_nad_namespaces
        or f"{namespace}/{name}" in policy.allowed_nad_namespaces
        or reference in own
    )


PROPERTIES = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTIES
@given(pods(), st.sampled_from(POLICIES), nad_lookups(), NAMESPACE_ANNOTATIONS)
def test_admitted_pods_stay_admitted_and_inside_the_boundary(
    pod: dict[str, Any], policy: Policy, nads: StaticNads, ns_annotations: dict[str, str] | None
) -> None:
    first = decide(pod, NAMESPACE, policy, nads, ns_annotations, CLAIMS)
    if not first.allowed:
        assert first.message
        return
    mutated = apply(pod, first)
    second = decide(mutated, NAMESPACE, policy, nads, ns_annotations, CLAIMS)
    assert second.allowed, second.message
    assert second.patch == ()
    assert all(inside(policy, reference) for reference in attachments(mutated, policy))
    if pod["metadata"]["annotations"].get("gpu-rdma-injector/inject") == "false":
        assert first.patch == ()


@PROPERTIES
@given(pods(), st.sampled_from(POLICIES), nad_lookups(), NAMESPACE_ANNOTATIONS)
def test_both_halves_are_equal_for_every_resource_a_policy_network_provides(
    pod: dict[str, Any], policy: Policy, nads: StaticNads, ns_annotations: dict[str, str] | None
) -> None:
    first = decide(pod, NAMESPACE, policy, nads, ns_annotations, CLAIMS)
    opted_out = pod["metadata"]["annotations"].get("gpu-rdma-injector/inject") == "false"
    if not first.allowed or opted_out or any("not found" in w for w in first.warnings):
        return
    mutated = apply(pod, first)
    by_policy = {}
    for network in policy.networks:
        namespace, _, name = network.name.rpartition("/")
        by_policy[(namespace or NAMESPACE, name)] = network.resource_name

    def resource(reference: tuple[str, str]) -> str | None:
        facts = nads.get(*reference)
        return (facts.resource_name if facts else None) or by_policy.get(reference)

    attached: dict[str, int] = {}
    for reference in attachments(mutated, policy):
        if (name := resource(reference)) is not None:
            attached[name] = attached.get(name, 0) + 1
    shared = {n.resource_name for n in policy.networks if n.resource_units == "perContainer"}
    for name in {network.resource_name for network in policy.networks if network.resource_name}:
        if name in shared:
            continue  # one unit per GPU container: tests/unit/test_cluster_shapes.py
        units = 0
        for container in mutated["spec"]["containers"]:
            section = container.get("resources") or {}
            limit = whole_units((section.get("limits") or {}).get(name, 0))
            request = whole_units((section.get("requests") or {}).get(name, 0))
            assert limit == request
            units += limit
        if ns_annotations is None or name in attached:
            assert units == attached.get(name, 0), (name, units, attached)
