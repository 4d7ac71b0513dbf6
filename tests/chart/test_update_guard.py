"""The chart's update guard: a ValidatingAdmissionPolicy keeping pods' networks annotations.

The policy is rendered by the real helm binary and validated against the Kubernetes schema;
its CEL expressions are then evaluated with cel-python the way the API server evaluates them
(variables first, then every validation; a false one denies) on real UPDATE AdmissionReviews:
kube-apiserver's capture of `kubectl label`, and the same request with the annotations changed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import celpy
import kubernetes_validate
import pytest
import yaml
from test_chart import NEWEST_KUBERNETES, RELEASE, run_helm, template_args

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "admission-reviews"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NETWORK = "v1.multus-cni.io/default-network"
STATUS = "k8s.v1.cni.cncf.io/network-status"
KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def render(*extra: str) -> list[dict[str, Any]]:
    result = run_helm(*template_args(RELEASE, []), *extra)
    assert result.returncode == 0, result.stderr
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render()


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["kind"] == kind]
    return found


@pytest.mark.parametrize("version", ["1.30.0", NEWEST_KUBERNETES])
def test_policy_and_binding_are_valid_kubernetes_objects(
    objects: list[dict[str, Any]], version: str
) -> None:
    for kind in KINDS:
        kubernetes_validate.validate(of_kind(objects, kind), version, strict=True)


def test_binding_covers_exactly_the_webhooks_namespaces(objects: list[dict[str, Any]]) -> None:
    policy = of_kind(objects, "ValidatingAdmissionPolicy")
    binding = of_kind(objects, "ValidatingAdmissionPolicyBinding")
    webhook = of_kind(objects, "MutatingWebhookConfiguration")["webhooks"][0]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == webhook["namespaceSelector"]
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["operations"] == ["UPDATE"]
    assert rule["resources"] == ["pods", "pods/status"]
    assert policy["spec"]["failurePolicy"] == "Fail"


def test_older_clusters_are_told_to_turn_it_off() -> None:
    result = run_helm(*template_args(RELEASE, []), "--kube-version", "1.29.9")
    assert result.returncode != 0
    assert "updateGuard needs Kubernetes 1.30 or newer" in result.stderr
    assert "set updateGuard.enabled=false" in result.stderr
    off = render("--kube-version", "1.29.9", "--set", "updateGuard.enabled=false")
    assert not [obj for obj in off if obj["kind"] in KINDS]


# --- the CEL, evaluated --------------------------------------------------------------------------


class Guard:
    """The policy's variables and validations compiled once, evaluated per request."""

    def __init__(self, policy: dict[str, Any]) -> None:
        environment = celpy.Environment()
        self.variables = [
            (v["name"], environment.program(environment.compile(v["expression"])))
            for v in policy["spec"]["variables"]
        ]
        self.validations = [
            (v["message"], environment.program(environment.compile(v["expression"])))
            for v in policy["spec"]["validations"]
        ]

    def denials(self, review: dict[str, Any]) -> list[str]:
        request = review["request"]
        activation: dict[str, Any] = {
            "object": celpy.json_to_cel(request["object"]),
            "oldObject": celpy.json_to_cel(request["oldObject"]),
            "request": celpy.json_to_cel(request),
        }
        variables = celpy.celtypes.MapType()
        for name, program in self.variables:
            value = program.evaluate({**activation, "variables": variables})
            variables[celpy.celtypes.StringType(name)] = value
        activation["variables"] = variables
        return [
            message for message, program in self.validations if not program.evaluate(activation)
        ]


@pytest.fixture(scope="module")
def guard(objects: list[dict[str, Any]]) -> Guard:
    return Guard(of_kind(objects, "ValidatingAdmissionPolicy"))


def update(old: dict[str, str] | None, new: dict[str, str] | None) -> dict[str, Any]:
    """The captured UPDATE with the given annotations before and after (None: no map at all)."""
    review = json.loads((FIXTURES / "update-label.json").read_text())
    request = review["request"]
    assert request["operation"] == "UPDATE"
    for key, wanted in (("oldObject", old), ("object", new)):
        pod = copy.deepcopy(request[key])
        pod["metadata"].pop("annotations", None)
        if wanted is not None:
            pod["metadata"]["annotations"] = wanted
        request[key] = pod
    return review


def test_the_captured_update_is_allowed(guard: Guard) -> None:
    review = json.loads((FIXTURES / "update-label.json").read_text())
    assert guard.denials(review) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (None, None),
        ({NETWORKS: "sriov-rdma-net"}, {NETWORKS: "sriov-rdma-net", "team": "a"}),
        ({NETWORKS: "sriov-rdma-net"}, {NETWORKS: "sriov-rdma-net", STATUS: "[]"}),
        ({DEFAULT_NETWORK: "d"}, {DEFAULT_NETWORK: "d", STATUS: "[]"}),
        ({}, None),
    ],
    ids=["no-annotations", "other-annotation", "multus-writes-status", "default-kept", "empty-map"],
)
def test_updates_that_keep_the_annotations_are_allowed(
    guard: Guard, old: dict[str, str] | None, new: dict[str, str] | None
) -> None:
    assert guard.denials(update(old, new)) == []


@pytest.mark.parametrize(
    ("old", "new", "annotation"),
    [
        ({NETWORKS: "sriov-rdma-net"}, {NETWORKS: "kube-system/sriov-rdma-net"}, NETWORKS),
        ({NETWORKS: "sriov-rdma-net"}, {}, NETWORKS),
        ({NETWORKS: "sriov-rdma-net"}, None, NETWORKS),
        (None, {NETWORKS: "sriov-rdma-net"}, NETWORKS),
        ({NETWORKS: ""}, None, NETWORKS),
        ({DEFAULT_NETWORK: "a"}, {DEFAULT_NETWORK: "b"}, DEFAULT_NETWORK),
        (None, {DEFAULT_NETWORK: "b"}, DEFAULT_NETWORK),
    ],
    ids=["changed", "removed", "map-removed", "added", "empty-removed", "default", "default-added"],
)
def test_updates_that_change_an_annotation_are_denied(
    guard: Guard, old: dict[str, str] | None, new: dict[str, str] | None, annotation: str
) -> None:
    (message,) = guard.denials(update(old, new))
    assert message.startswith(f"the {annotation} annotation of a pod cannot change")
    assert "delete the pod" in message
