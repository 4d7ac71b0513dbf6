"""Golden cases against facts written by hand, not against what the code wrote last time.

`response.json` proves the code still answers byte for byte as it did; `expected.yaml` says
what must be true: the verdict, the pod's attachments after the patch (namespace/name and
interface, in order, as Multus resolves them) and the SR-IOV units of each container. Beside
them, "both halves equal" is checked on every admitted pod: per resource, the attachments whose
NAD (or policy network) names it, the default network's included, and the units the containers
request are the same number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FIXTURES, apply_patch, decoded_patch
from test_admission_golden import _client, _review

from webhook.networks import DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION, parse
from webhook.policy import Policy, default_policy, load_policy
from webhook.quantity import whole_units

CASES = sorted(path for path in (FIXTURES / "admission").iterdir() if path.is_dir())
NOT_DEVICES = {"cpu", "memory", "ephemeral-storage"}


def attachments(pod: dict[str, Any], namespace: str) -> list[str]:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(NETWORKS_ANNOTATION, "")
    shown = []
    for entry in parse(value).entries:
        target, name = entry.resolved(namespace)
        shown.append(f"{target}/{name}" + (f"@{entry.interface}" if entry.interface else ""))
    return shown


def units(pod: dict[str, Any], policy: Policy) -> dict[str, dict[str, int]]:
    """Units of every device resource per container; requests and limits must agree."""
    found: dict[str, dict[str, int]] = {}
    for container in pod["spec"]["containers"]:
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        for name in set(limits) | set(requests):
            if name in NOT_DEVICES or policy.is_gpu_resource(name) or name.startswith("hugepages-"):
                continue
            limit, request = whole_units(limits.get(name, 0)), whole_units(requests.get(name, 0))
            assert limit == request, (container["name"], name, limit, request)
            if limit:
                found.setdefault(name, {})[container["name"]] = limit
    return found


def resource_of(case: Path, policy_networks: dict[str, str | None]) -> dict[str, str | None]:
    """namespace/name -> the device resource its attachment needs (NAD first, then policy)."""
    resources = dict(policy_networks)
    nads_file = case / "nads.yaml"
    for document in yaml.safe_load_all(nads_file.read_text()) if nads_file.exists() else ():
        for nad in (document or {}).get("items", [document]) if document else ():
            if nad.get("kind") != "NetworkAttachmentDefinition":
                continue
            metadata = nad["metadata"]
            named = (metadata.get("annotations") or {}).get("k8s.v1.cni.cncf.io/resourceName")
            key = f"{metadata['namespace']}/{metadata['name']}"
            resources[key] = named or resources.get(key)
    return resources


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case_meets_its_hand_written_facts(case: Path) -> None:
    expected = yaml.safe_load((case / "expected.yaml").read_text())
    body = (case / "request.json").read_bytes()
    request = json.loads(body)["request"]
    _, review = _review(_client(case), body)
    answer = review["response"]
    assert answer["allowed"] is expected["allowed"]
    if not expected["allowed"]:
        assert answer["status"]["code"] == expected["code"]
        return

    pod = apply_patch(request["object"], decoded_patch(answer))
    namespace = request["namespace"]
    assert attachments(pod, namespace) == expected["attachments"]
    assert pod["spec"].get("nodeSelector", {}) == expected.get("nodeSelector", {})
    mounted = [
        c["name"]
        for c in pod["spec"]["containers"]
        if any(m["name"] == "podnetinfo" for m in c.get("volumeMounts", []))
    ]
    assert mounted == expected.get("podnetinfo", [])
    policy_file = case / "policy.yaml"
    policy = load_policy(policy_file) if policy_file.exists() else default_policy()
    found = units(pod, policy)
    assert found == expected["units"]

    # Both halves equal, for every resource either half names.
    by_network = {
        "/".join(network.resolved(namespace)): network.resource_name for network in policy.networks
    }
    needs = resource_of(case, by_network)
    attached: dict[str, int] = {}
    default = pod["metadata"].get("annotations", {}).get(DEFAULT_NETWORK_ANNOTATION)
    # The NAD that replaces eth0 takes a device too (unqualified: Multus's own namespace).
    replaced = ["/".join(e.resolved(policy.multus_namespace)) for e in parse(default or "").entries]
    for reference in attachments(pod, namespace) + replaced:
        resource = needs.get(reference.split("@")[0])
        if resource:
            attached[resource] = attached.get(resource, 0) + 1
    requested = {name: sum(per_container.values()) for name, per_container in found.items()}
    # A shared device (resourceUnits: perContainer) is one unit per container, not per attachment.
    shared = {n.resource_name for n in policy.networks if n.resource_units == "perContainer"}
    for name in shared & (set(attached) | set(requested)):
        assert attached.pop(name, 0) >= 1
        assert set(found.pop(name).values()) == {1}
        requested.pop(name)
    assert attached == requested
