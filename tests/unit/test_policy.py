"""Policy loading and validation: every bad file is one sentence naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.policy import PolicyError, default_policy, load_policy, parse_policy


def test_default_policy_is_the_seed_recipe() -> None:
    policy = default_policy()
    assert policy.gpu_resources == ("nvidia.com/gpu",)
    assert [(n.name, n.resource_name, n.per_gpu) for n in policy.networks] == [
        ("sriov-rdma-net", "openshift.io/mellanoxnics", False)
    ]
    assert policy.allowed_nad_namespaces == ()
    assert policy.unknown_networks == "deny"


def test_full_policy() -> None:
    policy = parse_policy(
        """
gpuResources: [nvidia.com/gpu, nvidia.com/mig-1g.10gb]
networks:
  - name: gpu-infra/rail-1
    resourceName: nvidia.com/sriov_rdma_rail_1
    interface: rdma1
  - name: pool
    perGpu: true
allowedNadNamespaces: [gpu-infra]
unknownNetworks: warn
resourceNameAnnotations: [example.com/resource, k8s.v1.cni.cncf.io/resourceName]
namespaceNetworksAnnotation: example.com/networks
""",
        "p.yaml",
    )
    rail, pool = policy.networks
    assert rail.namespace == "gpu-infra"
    assert rail.nad_name == "rail-1"
    assert rail.resolved("team-a") == ("gpu-infra", "rail-1")
    assert pool.resolved("team-a") == ("team-a", "pool")
    assert pool.resource_name is None
    assert policy.multus_namespace == "kube-system"


def test_the_boundary_allows_exactly_what_the_policy_names() -> None:
    policy = parse_policy(
        """
networks:
  - name: gpu-infra/rail-1
allowedNadNamespaces: [shared, infra/ib-1]
multusNamespace: multus
""",
        "p.yaml",
    )
    allows = policy.allows
    assert allows("team-a", ("team-a", "anything"))
    assert allows("team-a", ("shared", "anything"))
    assert allows("team-a", ("infra", "ib-1"))
    assert not allows("team-a", ("infra", "ib-2"))
    # A policy network opens its own NAD, not its namespace.
    assert allows("team-a", ("gpu-infra", "rail-1"))
    assert not allows("team-a", ("gpu-infra", "rail-2"))
    assert not allows("team-a", ("kube-system", "rail-1"))
    assert policy.multus_namespace == "multus"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("networks: [{nam: a}]", "'p.yaml': networks[0].nam is not a policy field"),
        ("networks: [{resourceName: a.io/b}]", "networks[0].name is required"),
        ("gpuResources: 3", "gpuResources: Input should be a list (got 3)"),
        ("gpuResources: []", "gpuResources: must list at least one GPU resource"),
        ("networks: [{name: Net}]", "networks[0].name: 'Net' is not a NAD reference"),
        ("networks: [{name: a/b/c}]", "'a/b/c' is not a NAD reference"),
        ("networks: [{name: a, resourceName: vf}]", "'vf' is not an extended resource name"),
        ("networks: [{name: a, interface: a-very-long-ifname}]", "is not a Linux interface"),
        ("networks: [{name: a, perGpu: true, interface: net1}]", "sets both perGpu and interface"),
        (
            "networks: [{name: a, perGpu: maybe}]",
            "networks[0].perGpu: Input should be a valid boolean",
        ),
        ("networks: [{name: a}, {name: a}]", "network 'a' is listed twice"),
        ("networks: [{name: a, resourceName: nvidia.com/gpu}]", "uses the GPU resource"),
        ("allowedNadNamespaces: [Team_A]", "'Team_A' is neither a namespace nor namespace/name"),
        ("allowedNadNamespaces: [a/b/c]", "'a/b/c' is neither a namespace nor namespace/name"),
        ("allowedNadNamespaces: [" + "a" * 64 + "]", "is neither a namespace"),
        ("multusNamespace: Kube", "multusNamespace: 'Kube' is not a namespace name"),
        ("unknownNetworks: maybe", "unknownNetworks: Input should be 'deny' or 'warn'"),
        ("resourceNameAnnotations: []", "must list at least one annotation key"),
        ("namespaceNetworksAnnotation: 'a b'", "'a b' is not an annotation key"),
        ("gpuResources: [a", "is not valid YAML at line 1"),
        ("- a\n- b", "must be a YAML mapping"),
        ("surprise: 1", "surprise is not a policy field"),
    ],
)
def test_bad_policies_name_the_field(text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml")
    message = str(caught.value)
    assert expected in message
    assert message.startswith("policy file 'p.yaml'")
    assert "\n" not in message


def test_empty_file_is_the_built_in_defaults_without_networks() -> None:
    assert parse_policy("", "p.yaml").networks == ()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"cannot be read .* check the --config path"):
        load_policy(tmp_path / "nope.yaml")


def test_policy_is_immutable() -> None:
    policy = default_policy()
    with pytest.raises(ValueError, match="frozen"):
        policy.networks = ()  # type: ignore[misc]
