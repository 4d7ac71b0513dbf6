"""Beside network-resources-injector (NRI): every golden pod through both webhooks.

NRI is the SR-IOV network operator's own injector, on by default. This is our own model of its
documented behaviour (facts from its source, pkg/webhook/webhook.go, and the operator's
manifests; no code of it): it acts only on pods that carry a networks (or default-network)
annotation; it reads each attachment's NAD; per resource it puts one unit per attachment into
`containers[0]`, as requests and limits; it adds a `podnetinfo` downward-API volume when it adds
a resource; it is registered without reinvocation. Its modes: the default, which skips a
resource the pod already asks for in any container (newer releases) or overwrites
`containers[0]`'s count (older ones), and `--honor-resources`, which adds its count on top.

The API server runs mutating configurations in name order (the chart's sorts after
`network-resources-injector-config`) and calls this webhook again (reinvocationPolicy: IfNeeded)
when a later one changed the pod; both orders are run. The stored pod must have exactly the
devices its attachments need, in the GPU containers, or this webhook's last answer must carry a
warning saying why not.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import jsonpatch
import pytest
import yaml

from webhook.claims import NO_CLAIMS
from webhook.mutation import Decision, decide
from webhook.nads import StaticNads, load_facts_file
from webhook.networks import (
    DEFAULT_NETWORK_ANNOTATION,
    NETWORKS_ANNOTATION,
    AnnotationError,
    parse,
)
from webhook.patch import serialize
from webhook.policy import Policy, default_policy, load_policy, parse_policy
from webhook.quantity import whole_units

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "admission"
Mode = Literal["skip-existing", "overwrite", "honor-resources"]
MODES: tuple[Mode, ...] = ("skip-existing", "overwrite", "honor-resources")
CONTAINER_ANNOTATION = "gpu-rdma-injector/container"


class Refused(Exception):
    """network-resources-injector refuses the pod (an annotation or a NAD it cannot read)."""


def nri(
    pod: dict[str, Any], namespace: str, needs: dict[tuple[str, str], str | None], mode: Mode
) -> dict[str, Any]:
    """The pod after network-resources-injector, as our model of it says."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if NETWORKS_ANNOTATION not in annotations and DEFAULT_NETWORK_ANNOTATION not in annotations:
        return pod
    try:
        entries = parse(annotations.get(NETWORKS_ANNOTATION, "")).entries
    except AnnotationError:
        raise Refused from None
    references = [entry.resolved(namespace) for entry in entries]
    counts: dict[str, int] = {}
    for reference in references:
        resource = needs.get(reference)
        if resource:
            counts[resource] = counts.get(resource, 0) + 1
    if not counts:
        return pod
    pod = copy.deepcopy(pod)
    containers = pod["spec"]["containers"]
    first = containers[0].setdefault("resources", {})
    for resource, count in counts.items():
        present = any(
            resource in ((c.get("resources") or {}).get(section) or {})
            for c in containers
            for section in ("limits", "requests")
        )
        if mode == "skip-existing" and present:
            continue
        for section in ("limits", "requests"):
            values = first.setdefault(section, {})
            base = whole_units(values.get(resource, 0)) if mode == "honor-resources" else 0
            values[resource] = str(base + count)
    volumes = pod["spec"].setdefault("volumes", [])
    if not any(volume["name"] == "podnetinfo" for volume in volumes):
        volumes.append(
            {
                "name": "podnetinfo",
                "downwardAPI": {
                    "items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                    ]
                },
            }
        )
    return pod


def apply(pod: dict[str, Any], decision: Decision) -> dict[str, Any]:
    return jsonpatch.apply_patch(pod, json.loads(serialize(decision.patch)))


class Case:
    def __init__(self, folder: Path) -> None:
        self.name = folder.name
        review = json.loads((folder / "request.json").read_text())["request"]
        self.pod: dict[str, Any] = review["object"]
        self.namespace: str = review["namespace"]
        policy_file = folder / "policy.yaml"
        self.policy: Policy = load_policy(policy_file) if policy_file.exists() else default_policy()
        nads_file = folder / "nads.yaml"
        facts = (
            load_facts_file(nads_file.read_text(), self.policy.resource_name_annotations)
            if nads_file.exists()
            else None
        )
        self.nads = facts.nads if facts else StaticNads((), authoritative=False)
        self.claims = facts.claims if facts else NO_CLAIMS
        namespace_file = folder / "namespace.yaml"
        document = yaml.safe_load(namespace_file.read_text()) if namespace_file.exists() else None
        self.namespace_annotations = (document or {}).get("metadata", {}).get("annotations")
        # What each NAD needs, as the cluster says: the NAD file, else the policy's networks.
        self.needs: dict[tuple[str, str], str | None] = {
            network.resolved(self.namespace): network.resource_name
            for network in self.policy.networks
        }
        for facts in self.nads:
            self.needs[(facts.namespace, facts.name)] = facts.resource_name

    def ours(self, pod: dict[str, Any]) -> Decision:
        return decide(
            pod, self.namespace, self.policy, self.nads, self.namespace_annotations, self.claims
        )


def _cases() -> list[Case]:
    cases = []
    for folder in sorted(path for path in FIXTURES.iterdir() if path.is_dir()):
        request = json.loads((folder / "request.json").read_text())["request"]
        if request["operation"] == "CREATE" and request["namespace"] != "kube-system":
            cases.append(Case(folder))
    return cases


CASES = _cases()


def stored(case: Case, mode: Mode, order: str) -> tuple[dict[str, Any] | None, Decision | None]:
    """The pod the API server stores (None when refused) and this webhook's last answer."""
    if order == "nri-first":
        try:
            pod = nri(case.pod, case.namespace, case.needs, mode)
        except Refused:
            return None, None
        decision = case.ours(pod)
        return (apply(pod, decision) if decision.allowed else None), decision
    decision = case.ours(case.pod)
    if not decision.allowed:
        return None, decision
    ours = apply(case.pod, decision)
    try:
        after = nri(ours, case.namespace, case.needs, mode)
    except Refused:
        return None, decision
    if after == ours:
        return ours, decision
    again = case.ours(after)  # reinvoked: a later webhook changed the pod
    return (apply(after, again) if again.allowed else None), again


def device_units(pod: dict[str, Any], resource: str) -> dict[str, int]:
    found = {}
    for container in pod["spec"]["containers"]:
        limits = (container.get("resources") or {}).get("limits") or {}
        requests = (container.get("resources") or {}).get("requests") or {}
        assert whole_units(limits.get(resource, 0)) == whole_units(requests.get(resource, 0))
        if whole_units(limits.get(resource, 0)):
            found[container["name"]] = whole_units(limits[resource])
    return found


@pytest.mark.parametrize("order", ["nri-first", "ours-first"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_stored_pod_has_the_devices_its_attachments_need(
    case: Case, mode: Mode, order: str
) -> None:
    pod, decision = stored(case, mode, order)
    if pod is None:
        assert decision is None or decision.message  # refused, with a reason
        return
    annotations = pod["metadata"].get("annotations") or {}
    attachments: dict[str, int] = {}
    references = [
        e.resolved(case.namespace) for e in parse(annotations.get(NETWORKS_ANNOTATION, "")).entries
    ]
    default = annotations.get(DEFAULT_NETWORK_ANNOTATION)
    if default is not None:
        references += [e.resolved(case.policy.multus_namespace) for e in parse(default).entries]
    for reference in references:
        if (resource := case.needs.get(reference)) is not None:
            attachments[resource] = attachments.get(resource, 0) + 1
    gpu_containers = {
        c["name"]
        for c in pod["spec"]["containers"]
        if any(
            case.policy.is_gpu_resource(name) and whole_units(amount)
            for section in ("limits", "requests")
            for name, amount in (((c.get("resources") or {}).get(section)) or {}).items()
        )
    }
    shared = {n.resource_name for n in case.policy.networks if n.resource_units == "perContainer"}
    explicit = annotations.get(CONTAINER_ANNOTATION)
    opted_out = annotations.get("gpu-rdma-injector/inject") == "false"
    problems = []
    for resource in set(attachments) | {r for r in case.needs.values() if r}:
        units = device_units(pod, resource)
        if resource in shared:  # one unit per GPU container, whatever the attachments
            if attachments.get(resource) and set(units) < gpu_containers:
                problems.append(f"{resource}: a GPU container lacks its unit")
            continue
        if sum(units.values()) != attachments.get(resource, 0):
            counted = f"{sum(units.values())} units for {attachments.get(resource, 0)} attachments"
            problems.append(f"{resource}: {counted}")
        holders = set(units) - gpu_containers
        if gpu_containers and holders and explicit is None:
            problems.append(f"{resource} in {sorted(holders)}, not in the GPU containers")
    if problems and not opted_out:
        assert decision is not None
        explained = [
            w for w in decision.warnings if "network-resources-injector" in w or "no GPU" in w
        ]
        assert explained, f"{case.name} ({mode}, {order}): {problems}; warnings {decision.warnings}"


# --- the rule that makes this hold: units belong in GPU containers ------------------------------

VF = "openshift.io/mellanoxnics"


def _pod(sidecar_units: int, gpu_units: tuple[int, ...], gpus: tuple[int, ...]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = [
        {"name": "sidecar", "image": "x", "resources": {"limits": {}, "requests": {}}}
    ]
    if sidecar_units:
        for section in ("limits", "requests"):
            containers[0]["resources"][section][VF] = str(sidecar_units)
    for index, (count, units) in enumerate(zip(gpus, gpu_units, strict=True)):
        values = {"nvidia.com/gpu": str(count)} | ({VF: str(units)} if units else {})
        containers.append(
            {
                "name": f"gpu{index}",
                "image": "x",
                "resources": {"limits": values, "requests": dict(values)},
            }
        )
    return {"metadata": {"name": "p", "annotations": {}}, "spec": {"containers": containers}}


def _units(pod: dict[str, Any]) -> dict[str, int]:
    return device_units(pod, VF)


def test_units_in_a_sidecar_move_to_the_gpu_container() -> None:
    pod = _pod(1, (0,), (8,))
    pod["metadata"]["annotations"][NETWORKS_ANNOTATION] = "sriov-rdma-net"
    decision = decide(pod, "team-a", default_policy())
    assert _units(apply(pod, decision)) == {"gpu0": 1}
    assert [op.op for op in decision.patch if "sidecar" in op.path or "/0/" in op.path] == [
        "remove",
        "remove",
    ]
    assert any("moved openshift.io/mellanoxnics=1 from 'sidecar'" in w for w in decision.warnings)
    assert decide(apply(pod, decision), "team-a", default_policy()).patch == ()


def test_moved_units_follow_the_gpus_with_per_gpu() -> None:
    policy = parse_policy(
        "networks: [{name: pool, resourceName: openshift.io/mellanoxnics, perGpu: true}]", "p"
    )
    pod = _pod(4, (0, 0), (2, 2))
    mutated = apply(pod, decide(pod, "team-a", policy))
    assert _units(mutated) == {"gpu0": 2, "gpu1": 2}
    assert mutated["metadata"]["annotations"][NETWORKS_ANNOTATION] == "pool,pool,pool,pool"


def test_warn_mode_leaves_the_units_and_says_so() -> None:
    policy = parse_policy(
        "networks: [{name: sriov-rdma-net, resourceName: openshift.io/mellanoxnics}]\n"
        "unitsOutsideGpuContainers: warn",
        "p",
    )
    pod = _pod(1, (0,), (1,))
    pod["metadata"]["annotations"][NETWORKS_ANNOTATION] = "sriov-rdma-net"
    decision = decide(pod, "team-a", policy)
    assert _units(apply(pod, decision)) == {"sidecar": 1}
    assert any("'sidecar', which has no GPU" in w for w in decision.warnings)


def test_the_named_container_keeps_its_units() -> None:
    pod = _pod(1, (0,), (1,))
    pod["metadata"]["annotations"].update(
        {NETWORKS_ANNOTATION: "sriov-rdma-net", CONTAINER_ANNOTATION: "sidecar"}
    )
    decision = decide(pod, "team-a", default_policy())
    assert decision.patch == ()
