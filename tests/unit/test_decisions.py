"""webhook.decisions: kept answers equal fresh ones, and the key covers every read of the decision.

Two oracles besides the cache itself:

- a *read recorder*: the pod handed to the real `decide_request` is a dict that records every
  key, membership test and iteration the decision makes; each read must be one the key covers
  (a value the key holds, or an aggregate the key holds the result of, read only inside the
  function that computes it). A new read in the core fails here until the key covers it.
- *fresh decisions*: sequences of generated pods, many of them near copies of each other that
  differ in one field the decision reads or in one it does not, go through one cache; every
  answer must equal `decide_request`'s own for that pod.
"""

from __future__ import annotations

import copy
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from conftest import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook.admission import AdmissionRequest, decide_request, parse_review, response_tail
from webhook.claims import (
    NO_CLAIMS,
    ClaimFacts,
    ClaimLookup,
    StaticClaims,
    claim_facts_from_object,
)
from webhook.decisions import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_ENTRY_BYTES,
    READ_ANNOTATIONS,
    DecisionCache,
    pod_key,
)
from webhook.mutation import (
    INJECT_ANNOTATION,
    MIRROR_ANNOTATION,
    PEER_INJECTOR_VOLUME,
    Decision,
)
from webhook.nads import (
    NadFacts,
    NadLookup,
    NamespaceLookup,
    StaticNads,
    StaticNamespaces,
    load_facts_file,
)
from webhook.networks import DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION
from webhook.pod import CONTAINER_ANNOTATION, TOTAL_ANNOTATION_BYTES
from webhook.policy import Policy, default_policy, load_policy, parse_policy

CAPTURE = FIXTURES / "admission-reviews" / "create-gpu-pod-no-annotations.json"
VF, RAIL, GPU = "openshift.io/mellanoxnics", "example.com/rail", "nvidia.com/gpu"
NO_EXCLUSIONS: frozenset[str] = frozenset()
NO_NAMESPACES = StaticNamespaces({})


def request_for(pod: Any, namespace: str = "team-a", **fields: Any) -> AdmissionRequest:
    values: dict[str, Any] = {
        "uid": "00000000-0000-0000-0000-000000000001",
        "kind": "Pod",
        "group": "",
        "sub_resource": "",
        "operation": "CREATE",
        "namespace": namespace,
        "name": "p",
        "object": pod,
        "dry_run": False,
    }
    values.update(fields)
    return AdmissionRequest(**values)


# -- the read recorder ---------------------------------------------------------------------------

Path = tuple[str, ...]


class Reads:
    def __init__(self) -> None:
        self.seen: list[tuple[Path, str, str, dict[str, Any]]] = []

    def record(self, path: Path, how: str) -> None:
        """The read, the function making it, and the local variables of that function and of
        the two that called it (a generator's caller holds what it walks)."""
        frame = sys._getframe(2)
        local: dict[str, Any] = {}
        caller: Any = frame
        for depth in range(3):
            if caller is None:
                break
            for name, value in caller.f_locals.items():
                local.setdefault(f"{depth}:{name}", value)
            caller = caller.f_back
        self.seen.append((path, how, frame.f_code.co_name, local))


def _step(key: object) -> str:
    return "*" if isinstance(key, int) else str(key)


def recorded(value: Any, reads: Reads, path: Path = ()) -> Any:
    if isinstance(value, dict):
        return RecordingDict(value, reads, path)
    if isinstance(value, list):
        return RecordingList(value, reads, path)
    return value


class RecordingDict(dict):  # type: ignore[type-arg]
    def __init__(self, data: dict[str, Any], reads: Reads, path: Path) -> None:
        super().__init__({k: recorded(v, reads, (*path, k)) for k, v in data.items()})
        self._reads, self._path = reads, path

    def __getitem__(self, key: Any) -> Any:
        self._reads.record((*self._path, key), "value")
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._reads.record((*self._path, key), "value")
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._reads.record((*self._path, str(key)), "presence")
        return super().__contains__(key)

    def __iter__(self) -> Iterator[Any]:
        self._reads.record(self._path, "every key")
        return super().__iter__()

    def keys(self) -> Any:
        self._reads.record(self._path, "every key")
        return super().keys()

    def items(self) -> Any:
        self._reads.record(self._path, "every value")
        return super().items()

    def values(self) -> Any:
        self._reads.record(self._path, "every value")
        return super().values()

    def __len__(self) -> int:
        self._reads.record(self._path, "size")
        return super().__len__()


class RecordingList(list):  # type: ignore[type-arg]
    def __init__(self, data: list[Any], reads: Reads, path: Path) -> None:
        super().__init__(recorded(v, reads, (*path, "*")) for v in data)
        self._reads, self._path = reads, path

    def __getitem__(self, index: Any) -> Any:
        self._reads.record((*self._path, "*"), "value")
        return super().__getitem__(index)

    def __iter__(self) -> Iterator[Any]:
        self._reads.record(self._path, "every value")
        return super().__iter__()

    def __len__(self) -> int:
        self._reads.record(self._path, "size")
        return super().__len__()


CONTAINERS = ("spec", "containers")


def covered(path: Path, how: str, function: str, local: dict[str, Any]) -> bool:
    """Whether `pod_key` holds what this read can tell the decision."""
    steps = tuple(_step(step) for step in path)
    one_value = how in {"value", "presence"}
    if steps in {("metadata",), ("metadata", "annotations"), ("spec",)}:
        return one_value  # held: absent, None, or what is below
    if steps == CONTAINERS:
        return True  # held whole, in order
    if steps[:2] == ("metadata", "annotations") and len(steps) == 3:
        return steps[2] in READ_ANNOTATIONS
    if steps[:3] == (*CONTAINERS, "*"):
        # Each container: its name and its resources (whole, to the last byte) are held; of
        # its volumeMounts, the list's shape and each mount's name and path.
        if len(steps) == 3:
            return one_value
        if steps[3] == "volumeMounts":
            return len(steps) <= 5 or (steps[5] in {"name", "mountPath"} and one_value)
        return steps[3] == "resources" or (steps[3] == "name" and one_value)
    if steps[:2] in {("spec", "nodeSelector"), ("spec", "resourceClaims")}:
        return True  # held whole
    if steps[:2] == ("spec", "volumes"):
        # Held: the list's shape and the volumes called podnetinfo, whole. A volume's name is
        # read to tell whether it is podnetinfo; anything else only of podnetinfo's own volume.
        if len(steps) <= 3 or (len(steps) == 4 and steps[3] == "name" and one_value):
            return True
        return any(
            isinstance(value, dict) and dict.get(value, "name") == PEER_INJECTOR_VOLUME
            for value in local.values()
        )
    return False


def aggregate_ok(path: Path, how: str, function: str) -> bool:
    """Reads of every annotation happen only where their total size is counted (the key holds
    whether it exceeds the API server's limit) or to tell an empty map from a missing one."""
    steps = tuple(_step(step) for step in path)
    if steps == ("metadata", "annotations") and how in {"every value", "every key"}:
        return function == "annotation_bytes"
    # `annotations or {}`: an empty map is read like a missing one.
    return steps == ("metadata", "annotations") and how == "size"


def uncovered_reads(
    pod: dict[str, Any], policy: Policy, facts: Facts | None = None, namespace: str = "team-a"
) -> list[str]:
    reads = Reads()
    facts = facts or NO_FACTS
    request = request_for(recorded(copy.deepcopy(pod), reads), namespace)
    decide_request(request, policy, facts.nads, facts.namespaces, NO_EXCLUSIONS, facts.claims)
    return [
        f"{'/'.join(map(str, path))} ({how}, in {function})"
        for path, how, function, local in reads.seen
        if not (covered(path, how, function, local) or aggregate_ok(path, how, function))
    ]


@dataclass(frozen=True)
class Facts:
    """What a golden case's decision reads besides the pod."""

    nads: NadLookup
    namespaces: NamespaceLookup
    claims: ClaimLookup


NO_FACTS = Facts(StaticNads((), authoritative=False), NO_NAMESPACES, NO_CLAIMS)


def _golden_cases() -> list[tuple[str, str, dict[str, Any], Policy, Facts]]:
    cases = []
    for case in sorted((FIXTURES / "admission").iterdir()):
        review = json.loads((case / "request.json").read_text())
        pod = review["request"].get("object")
        if not isinstance(pod, dict):
            continue
        policy_file = case / "policy.yaml"
        policy = load_policy(policy_file) if policy_file.exists() else default_policy()
        facts = NO_FACTS
        nads_file = case / "nads.yaml"
        if nads_file.exists():
            loaded = load_facts_file(nads_file.read_text(), policy.resource_name_annotations)
            facts = Facts(loaded.nads, NO_NAMESPACES, loaded.claims)
        namespace_file = case / "namespace.yaml"
        if namespace_file.exists():
            metadata = yaml.safe_load(namespace_file.read_text())["metadata"]
            namespaces = StaticNamespaces({metadata["name"]: metadata.get("annotations") or {}})
            facts = Facts(facts.nads, namespaces, facts.claims)
        namespace = review["request"].get("namespace") or "team-a"
        cases.append((case.name, namespace, pod, policy, facts))
    return cases


@pytest.mark.parametrize(("name", "namespace", "pod", "policy", "facts"), _golden_cases())
def test_every_read_of_the_decision_is_covered_by_the_key(
    name: str, namespace: str, pod: dict[str, Any], policy: Policy, facts: Facts
) -> None:
    assert uncovered_reads(pod, policy, facts, namespace) == []


def test_the_recorder_notices_a_read_the_key_does_not_cover() -> None:
    """The recorder itself: a decision reading a field the key lacks is reported."""
    reads = Reads()
    pod = recorded({"metadata": {"labels": {"a": "b"}}, "spec": {"nodeName": "n"}}, reads)
    pod["spec"].get("nodeName")
    pod["metadata"]["labels"]
    assert [
        path
        for path, how, function, local in reads.seen
        if not (covered(path, how, function, local) or aggregate_ok(path, how, function))
    ] == [("spec", "nodeName"), ("metadata", "labels")]


# -- generated pods ------------------------------------------------------------------------------

POLICIES = [
    parse_policy("networks: [{name: sriov-rdma-net, resourceName: " + VF + "}]", "p"),
    parse_policy(
        "networks:\n"
        f"  - {{name: sriov-rdma-net, resourceName: {VF}}}\n"
        f"  - {{name: rail, resourceName: {RAIL}, perGpu: true}}\n"
        "allowedNadNamespaces: [shared]\nunknownNetworks: warn",
        "p",
    ),
    # What the pod spec gets besides networks and units, and GPUs claimed through DRA.
    parse_policy(
        f"networks: [{{name: sriov-rdma-net, resourceName: {VF}}}]\n"
        "allowedNadNamespaces: [shared]\ninjectNodeSelector: true\n"
        "podNetInfo: {enabled: true}\ngpuDeviceClasses: [gpu.nvidia.com]",
        "p",
    ),
]
NADS = [
    StaticNads((), authoritative=False),
    StaticNads(
        [
            NadFacts("team-a", "sriov-rdma-net", VF, node_selector=(("rail", "a"),)),
            NadFacts("shared", "ib", VF, node_selector=(("fabric", "ib"),)),
        ],
        authoritative=True,
    ),
]
CLAIMS = StaticClaims(
    [
        claim_facts_from_object(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaimTemplate",
                "metadata": {"namespace": namespace, "name": "gpus"},
                "spec": {
                    "spec": {
                        "devices": {
                            "requests": [
                                {
                                    "name": "gpus",
                                    "exactly": {"deviceClassName": "gpu.nvidia.com", "count": 4},
                                }
                            ]
                        }
                    }
                },
            }
        )
        for namespace in ("team-a", "team-b")
    ],
    authoritative=True,
)


def base_pod(gpus: int, sidecar: bool, annotations: dict[str, Any] | None) -> dict[str, Any]:
    review = json.loads(CAPTURE.read_text())
    pod = review["request"]["object"]
    main = pod["spec"]["containers"][0]
    main["resources"]["limits"][GPU] = main["resources"]["requests"][GPU] = str(gpus)
    if sidecar:
        pod["spec"]["containers"].append(
            {"name": "sidecar", "image": "x", "resources": {"limits": {VF: "1"}}}
        )
    if annotations is not None:
        pod["metadata"]["annotations"] = annotations
    return pod


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        target: Any = pod
        for step, after in itertools.pairwise(path):
            if isinstance(step, int):
                target = target[step]
            elif isinstance(after, int):
                items = target.get(step)
                if not isinstance(items, list) or len(items) <= after:
                    return  # nothing there to change
                target = items
            else:
                if not isinstance(target.get(step), dict):
                    target[step] = {}
                target = target[step]
        if isinstance(target, dict):
            target[path[-1]] = value

    return change


def _annotate(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        metadata = pod.setdefault("metadata", {}) or {}
        pod["metadata"] = metadata
        if not isinstance(metadata.get("annotations"), dict):
            metadata["annotations"] = {}
        metadata["annotations"][key] = value

    return change


def _drop(*path: Any) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        target: Any = pod
        for step in path[:-1]:
            if isinstance(target, dict):
                target = target.get(step)
            elif isinstance(target, list) and isinstance(step, int) and step < len(target):
                target = target[step]
            else:
                return
        if isinstance(target, dict):
            target.pop(path[-1], None)

    return change


def _volume(name: str, **source: Any) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        volumes = pod["spec"].get("volumes")
        if not isinstance(volumes, list):
            pod["spec"]["volumes"] = volumes = []
        volumes.append({"name": name, **(source or {"emptyDir": {}})})

    return change


def _mount(name: str, path: str) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        if not isinstance(container.get("volumeMounts"), list):
            container["volumeMounts"] = []
        container["volumeMounts"].append({"name": name, "mountPath": path})

    return change


PODNETINFO_PATH = "/etc/podnetinfo"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
CLAIM = [{"name": "gpus", "resourceClaimTemplateName": "gpus"}]

WITH_FACTS = Facts(NADS[1], NO_NAMESPACES, CLAIMS)

# Changes of fields the decision does not read (a Job's pods differ in these).
UNREAD = [
    _set(("metadata", "name"), "job-0-abcde"),
    _set(("metadata", "generateName"), "job-0-"),
    _set(("metadata", "labels"), {"batch.kubernetes.io/job-completion-index": "7"}),
    _annotate("batch.kubernetes.io/job-completion-index", "7"),
    _annotate("example.com/note", "x" * 300),
    _set(("spec", "hostname"), "job-0-7"),
    _set(("spec", "containers", 0, "env"), [{"name": "RANK", "value": "7"}]),
    _set(("spec", "containers", 0, "image"), "registry.example.com/other:2"),
    _volume("kube-api-access-x7k2p"),
    # The service-account token's volume and mount: a new name in every pod, the same path.
    _set(("spec", "volumes", 0, "name"), "kube-api-access-q9z4d"),
    _set(("spec", "containers", 0, "volumeMounts", 0, "name"), "kube-api-access-q9z4d"),
    _set(("spec", "containers", 0, "volumeMounts", 0, "readOnly"), False),
    _set(("spec", "volumes", 0, "projected"), {"sources": []}),
    _set(("spec", "containers", 0, "volumeMounts", 0, "subPath"), "x"),
]
# Changes of fields it reads.
READ = [
    _set(("spec", "containers", 0, "resources", "limits", GPU), "4"),
    _set(("spec", "containers", 0, "resources", "requests", VF), "1"),
    _set(("spec", "containers", 0, "resources", "limits", VF), "2"),
    _set(("spec", "containers", 0, "resources", "limits", RAIL), "8"),
    _drop("spec", "containers", 0, "resources", "requests"),
    _drop("spec", "containers", 0, "resources"),
    _set(("spec", "containers", 0, "name"), "trainer"),
    _annotate(NETWORKS_ANNOTATION, "sriov-rdma-net"),
    _annotate(NETWORKS_ANNOTATION, '[{"name":"ib","namespace":"shared"}]'),
    _annotate(NETWORKS_ANNOTATION, "shared/missing"),
    _annotate(NETWORKS_ANNOTATION, "other/ib"),
    _annotate(NETWORKS_ANNOTATION, "not a valid,,entry@@"),
    _annotate(DEFAULT_NETWORK_ANNOTATION, "shared/ib"),
    _annotate(INJECT_ANNOTATION, "false"),
    _annotate(INJECT_ANNOTATION, "False"),
    _annotate(CONTAINER_ANNOTATION, "sidecar"),
    _annotate(CONTAINER_ANNOTATION, "nobody"),
    _annotate(MIRROR_ANNOTATION, "x"),
    _annotate("example.com/huge", "x" * TOTAL_ANNOTATION_BYTES),
    _set(("metadata", "annotations"), None),
    _set(("metadata", "annotations"), {}),
    _set(("metadata",), None),
    _drop("metadata"),
    _volume(PEER_INJECTOR_VOLUME),
    _volume(
        PEER_INJECTOR_VOLUME,
        downwardAPI={"items": [{"path": "a", "fieldRef": {"fieldPath": "metadata.annotations"}}]},
    ),
    _set(("spec", "nodeSelector"), {"rail": "b"}),
    _set(("spec", "nodeSelector"), {"rail": "a"}),
    _set(("spec", "nodeSelector"), "not a map"),
    _set(("spec", "resourceClaims"), CLAIM),
    _set(("spec", "resourceClaims"), [{"name": "gpus", "resourceClaimName": "elsewhere"}]),
    _set(("spec", "containers", 0, "resources", "claims"), [{"name": "gpus"}]),
    _drop("spec", "volumes"),
    _set(("spec", "volumes"), "not a list"),
    _mount("other", PODNETINFO_PATH),
    _mount(PEER_INJECTOR_VOLUME, "/elsewhere"),
    _set(("spec", "containers", 0, "volumeMounts"), "not a list"),
    _set(("spec", "containers", 0, "volumeMounts", 0, "mountPath"), PODNETINFO_PATH),
]


@st.composite
def pod_sequences(draw: st.DrawFn) -> list[tuple[dict[str, Any], str]]:
    base = base_pod(
        draw(st.integers(0, 8)),
        draw(st.booleans()),
        draw(st.sampled_from([None, {}, {NETWORKS_ANNOTATION: "sriov-rdma-net"}])),
    )
    pods = [(base, "team-a")]
    for _ in range(draw(st.integers(1, 10))):
        pod = copy.deepcopy(draw(st.sampled_from([p for p, _ in pods])))
        for change in draw(st.lists(st.sampled_from(UNREAD + READ), min_size=1, max_size=3)):
            change(pod)
        namespace = draw(st.sampled_from(["team-a", "team-a", "team-b"]))
        pods.append((pod, namespace))
    return pods


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pods=pod_sequences(),
    policy=st.sampled_from(POLICIES),
    nads=st.sampled_from(NADS),
)
def test_kept_answers_equal_fresh_decisions(
    pods: list[tuple[dict[str, Any], str]], policy: Policy, nads: StaticNads
) -> None:
    cache = DecisionCache(decide_request)
    namespaces = NO_NAMESPACES
    for pod, namespace in pods * 2:
        request = request_for(copy.deepcopy(pod), namespace)
        fresh = decide_request(request, policy, nads, namespaces, NO_EXCLUSIONS, CLAIMS)
        kept = cache.answer(request, policy, nads, namespaces, NO_EXCLUSIONS, CLAIMS)
        assert kept.decision == fresh
        assert kept.tail == response_tail(fresh)
    # The second round is answered from memory (where a pod is shaped to be kept at all).
    assert cache.hits >= sum(pod_key(request_for(pod, ns)) is not None for pod, ns in pods)


@pytest.mark.parametrize("change", UNREAD, ids=range(len(UNREAD)))
def test_a_change_the_decision_does_not_read_keeps_the_key(
    change: Callable[[dict[str, Any]], None],
) -> None:
    pod = base_pod(8, True, {NETWORKS_ANNOTATION: "sriov-rdma-net"})
    changed = copy.deepcopy(pod)
    change(changed)
    assert pod_key(request_for(changed)) == pod_key(request_for(pod))
    for policy in POLICIES:
        assert uncovered_reads(changed, policy, WITH_FACTS) == []


@pytest.mark.parametrize("change", READ, ids=range(len(READ)))
def test_a_change_the_decision_reads_changes_the_key(
    change: Callable[[dict[str, Any]], None],
) -> None:
    pod = base_pod(8, True, {NETWORKS_ANNOTATION: "shared/ib"})
    changed = copy.deepcopy(pod)
    change(changed)
    assert pod_key(request_for(changed)) != pod_key(request_for(pod))
    for policy in POLICIES:
        assert uncovered_reads(changed, policy, WITH_FACTS) == []


def test_a_jobs_pods_are_answered_from_memory_after_the_first() -> None:
    """Pods of one Job, as the API server sends them: own names, uids, index annotation and
    label, hostname, service-account volume; one decision, then kept answers."""
    policy = default_policy()
    cache = DecisionCache(decide_request)
    answers = []
    for index in range(5):
        review = json.loads(CAPTURE.read_text())
        request = review["request"]
        request["uid"] = f"00000000-0000-0000-0000-00000000000{index}"
        pod = request["object"]
        pod["metadata"]["name"] = request["name"] = f"train-{index}-x7k2p"
        pod["metadata"].setdefault("labels", {})["batch.kubernetes.io/job-completion-index"] = str(
            index
        )
        pod["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": str(index)}
        pod["spec"]["hostname"] = f"train-{index}"
        pod["spec"]["volumes"] = [{"name": f"kube-api-access-{index:05d}", "projected": {}}]
        parsed = parse_review(json.dumps(review).encode())
        answers.append(cache.answer(parsed, policy, NADS[0], NO_NAMESPACES, NO_EXCLUSIONS))
    assert (cache.misses, cache.hits) == (1, 4)
    assert all(answer is answers[0] for answer in answers)
    assert answers[0].decision.outcome == "mutated"


# -- bounds, epochs and what is never kept ------------------------------------------------------


def _distinct(index: int) -> AdmissionRequest:
    pod = base_pod(1, False, {NETWORKS_ANNOTATION: f"net-{index}"})
    return request_for(pod)


def _answer(cache: DecisionCache, request: AdmissionRequest, policy: Policy | None = None) -> None:
    cache.answer(request, policy or POLICIES[0], NADS[0], NO_NAMESPACES, NO_EXCLUSIONS)


def test_at_most_max_entries_answers_are_kept_the_least_recently_used_goes() -> None:
    cache = DecisionCache(decide_request)
    assert cache.max_entries == DEFAULT_MAX_ENTRIES == 256
    for index in range(DEFAULT_MAX_ENTRIES):
        _answer(cache, _distinct(index))
    assert len(cache) == DEFAULT_MAX_ENTRIES
    assert cache.evictions == 0
    _answer(cache, _distinct(0))  # used again: now the most recent
    _answer(cache, _distinct(DEFAULT_MAX_ENTRIES))  # one more than the bound
    assert len(cache) == DEFAULT_MAX_ENTRIES
    assert cache.evictions == 1
    hits = cache.hits
    _answer(cache, _distinct(0))
    assert cache.hits == hits + 1  # kept
    _answer(cache, _distinct(1))
    assert cache.hits == hits + 1  # the least recently used went


def _padded(size: int, policy: Policy) -> AdmissionRequest:
    """A pod whose key and answer together take exactly `size` bytes (padding in a resource
    the decision never reads)."""

    def request(padding: int) -> AdmissionRequest:
        pod = base_pod(1, False, None)
        pod["spec"]["containers"][0]["resources"]["requests"]["memory"] = "1" * padding
        return request_for(pod)

    def total(candidate: AdmissionRequest) -> int:
        key = pod_key(candidate)
        assert key is not None
        tail = response_tail(
            decide_request(candidate, policy, NADS[0], NO_NAMESPACES, NO_EXCLUSIONS)
        )
        return len(key) + len(tail)

    base = total(request(1))
    return request(1 + size - base)


def test_an_answer_at_the_entry_size_bound_is_kept_one_byte_more_is_not() -> None:
    policy = POLICIES[0]
    at_limit = _padded(DEFAULT_MAX_ENTRY_BYTES, policy)
    past = _padded(DEFAULT_MAX_ENTRY_BYTES + 1, policy)
    cache = DecisionCache(decide_request)
    _answer(cache, at_limit, policy)
    assert len(cache) == 1
    _answer(cache, past, policy)
    assert len(cache) == 1
    _answer(cache, past, policy)
    assert cache.hits == 0  # decided afresh each time


def test_no_answers_are_kept_with_max_entries_zero() -> None:
    cache = DecisionCache(decide_request, max_entries=0)
    _answer(cache, _distinct(1))
    _answer(cache, _distinct(1))
    assert (len(cache), cache.hits) == (0, 0)


def test_a_new_policy_starts_a_new_epoch() -> None:
    cache = DecisionCache(decide_request)
    request = request_for(base_pod(2, False, None))
    before = cache.answer(request, POLICIES[0], NADS[0], NO_NAMESPACES, NO_EXCLUSIONS)
    after = cache.answer(request, POLICIES[1], NADS[0], NO_NAMESPACES, NO_EXCLUSIONS)
    assert before.decision != after.decision
    assert after.decision == decide_request(
        request, POLICIES[1], NADS[0], NO_NAMESPACES, NO_EXCLUSIONS
    )
    assert (len(cache), cache.hits) == (1, 0)


class ChangingNads:
    """A NAD lookup whose contents change, with a generation that says so."""

    authoritative = True

    def __init__(self) -> None:
        self.facts: dict[tuple[str, str], NadFacts] = {}
        self.generation = 0

    def get(self, namespace: str, name: str) -> NadFacts | None:
        return self.facts.get((namespace, name))

    def names_in(self, namespace: str) -> tuple[str, ...]:
        return tuple(sorted(name for ns, name in self.facts if ns == namespace))

    def covers(self, namespace: str) -> bool:
        return True


class ChangingNamespaces:
    def __init__(self) -> None:
        self.by_name: dict[str, dict[str, str]] = {}
        self.generation = 0

    def annotations(self, namespace: str) -> dict[str, str] | None:
        return self.by_name.get(namespace)


def test_a_change_of_the_nad_cache_starts_a_new_epoch() -> None:
    nads = ChangingNads()
    namespaces = ChangingNamespaces()
    cache = DecisionCache(decide_request)
    request = request_for(base_pod(2, False, None))
    missing = cache.answer(request, POLICIES[0], nads, namespaces, NO_EXCLUSIONS).decision
    assert missing.outcome == "denied"  # the policy's NAD does not exist yet
    nads.facts[("team-a", "sriov-rdma-net")] = NadFacts("team-a", "sriov-rdma-net", VF)
    nads.generation += 1
    present = cache.answer(request, POLICIES[0], nads, namespaces, NO_EXCLUSIONS).decision
    assert present.outcome == "mutated"
    namespaces.by_name["team-a"] = {"gpu-rdma-injector/networks": "other-net"}
    namespaces.generation += 1
    chosen = cache.answer(request, POLICIES[0], nads, namespaces, NO_EXCLUSIONS).decision
    assert chosen == decide_request(request, POLICIES[0], nads, namespaces, NO_EXCLUSIONS)
    assert chosen != present
    assert cache.hits == 0


class ChangingClaims:
    """A claim lookup whose contents change, as the cluster's claim cache does."""

    authoritative = True

    def __init__(self) -> None:
        self.facts: dict[tuple[str, str, str], ClaimFacts] = {}
        self.generation = 0

    def get(self, kind: str, namespace: str, name: str) -> ClaimFacts | None:
        return self.facts.get((kind, namespace, name))


def test_a_change_of_the_claim_cache_starts_a_new_epoch() -> None:
    """A ResourceClaimTemplate that appears (or changes its GPU count) changes the answer of
    a pod that claims it, at once."""
    claims = ChangingClaims()
    policy = POLICIES[2]
    cache = DecisionCache(decide_request)
    pod = base_pod(0, False, None)
    _set(("spec", "resourceClaims"), CLAIM)(pod)
    _set(("spec", "containers", 0, "resources", "claims"), [{"name": "gpus"}])(pod)
    request = request_for(pod)
    missing = cache.answer(request, policy, NADS[1], NO_NAMESPACES, NO_EXCLUSIONS, claims)
    template = CLAIMS.get("ResourceClaimTemplate", "team-a", "gpus")
    assert template is not None
    claims.facts[("ResourceClaimTemplate", "team-a", "gpus")] = template
    claims.generation += 1
    present = cache.answer(request, policy, NADS[1], NO_NAMESPACES, NO_EXCLUSIONS, claims)
    assert present.decision == decide_request(
        request, policy, NADS[1], NO_NAMESPACES, NO_EXCLUSIONS, claims
    )
    assert present.decision != missing.decision
    assert cache.hits == 0
    again = cache.answer(request, policy, NADS[1], NO_NAMESPACES, NO_EXCLUSIONS, claims)
    assert again is present  # unchanged contents: kept


def test_lookups_without_a_generation_keep_nothing() -> None:
    class Unversioned(ChangingNads):
        def __init__(self) -> None:
            super().__init__()
            del self.generation

    cache = DecisionCache(decide_request)
    request = request_for(base_pod(2, False, None))
    for _ in range(2):
        cache.answer(request, POLICIES[0], Unversioned(), NO_NAMESPACES, NO_EXCLUSIONS)
    assert (len(cache), cache.hits) == (0, 0)


def test_a_crash_is_never_kept() -> None:
    calls: list[int] = []

    def crashing(*args: Any) -> Decision:
        calls.append(1)
        raise RuntimeError("a bug")

    cache = DecisionCache(crashing)
    request = request_for(base_pod(2, False, None))
    for _ in range(2):
        with pytest.raises(RuntimeError):
            cache.answer(request, POLICIES[0], NADS[0], NO_NAMESPACES, NO_EXCLUSIONS)
    assert (len(cache), len(calls)) == (0, 2)


@pytest.mark.parametrize(
    "request_fields",
    [
        {"operation": "UPDATE"},
        {"kind": "Deployment", "group": "apps"},
        {"sub_resource": "status"},
        {"namespace": ""},
        {"object": None},
    ],
)
def test_only_pod_creates_are_kept(request_fields: dict[str, Any]) -> None:
    assert pod_key(request_for(base_pod(2, False, None), **request_fields)) is None


@pytest.mark.parametrize(
    "pod",
    [
        {"metadata": "not a map", "spec": {"containers": [{"name": "a"}]}},
        {"metadata": {"annotations": ["not", "a", "map"]}, "spec": {"containers": []}},
        {"spec": "not a map"},
        {"spec": {"containers": "not a list"}},
        {"spec": {"containers": ["not a map"]}},
        {"spec": {"containers": [{"name": "c"}] * 129}},
        {"spec": {"containers": [{"name": "c", "resources": {"limits": {GPU: 2**70}}}]}},
    ],
)
def test_pods_of_a_shape_the_decision_refuses_are_not_kept(pod: dict[str, Any]) -> None:
    assert pod_key(request_for(pod)) is None


def test_the_uid_name_and_dry_run_are_not_in_the_key() -> None:
    pod = base_pod(2, False, None)
    assert pod_key(request_for(pod)) == pod_key(
        request_for(pod, uid="other", name="other", dry_run=True)
    )
