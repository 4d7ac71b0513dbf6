"""Answers kept in memory: reviews that read the same are answered without deciding again.

A Job's or a JobSet's pods come from one template and differ only in what the decision never
reads (names, labels, the service-account volume's random suffix, an index annotation), so all
but the first of a batch can be answered from memory. The key is built from exactly what
`decide_request` reads of a review (tests/unit/test_decisions.py records every read the
decision makes and fails on any the key does not cover):

- the namespace; only pod CREATEs are kept (everything else is answered at once anyway);
- of the pod: whether it has metadata and annotations at all; the values of the annotations the
  decision reads by name (`READ_ANNOTATIONS`); whether all annotations together exceed the API
  server's 256 KiB (the only way the others count); every container's name and `resources`
  (with its DRA `claims`), in order, and of its volumeMounts only whether each is called
  `podnetinfo` and where it is mounted; `spec.nodeSelector` and `spec.resourceClaims` whole;
  of `spec.volumes` its shape and the volumes called `podnetinfo`, whole.

Everything else the decision reads is the same for every entry of one *epoch*: the policy
object, the NAD, namespace and DRA claim caches (each by identity and `generation`, which grows
after their contents change) and the excluded namespaces. A new epoch empties the cache.
Lookups without a generation (and not immutable) disable it.

Bounded: at most `max_entries` answers (least recently used goes first), none whose key and
answer together exceed `max_entry_bytes`; a pod that is not shaped like a pod is never kept.
Answers to a crash in the decision are never kept either.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.admission import AdmissionRequest, Decide, response_tail
from webhook.claims import NO_CLAIMS, ClaimLookup, StaticClaims
from webhook.mutation import INJECT_ANNOTATION, MIRROR_ANNOTATION, PEER_INJECTOR_VOLUME, Decision
from webhook.nads import NadLookup, NamespaceLookup, StaticNads, StaticNamespaces
from webhook.networks import DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION
from webhook.pod import (
    CONTAINER_ANNOTATION,
    MAX_CONTAINERS,
    TOTAL_ANNOTATION_BYTES,
    annotation_bytes,
)
from webhook.policy import Policy

READ_ANNOTATIONS = (
    MIRROR_ANNOTATION,
    NETWORKS_ANNOTATION,
    DEFAULT_NETWORK_ANNOTATION,
    INJECT_ANNOTATION,
    CONTAINER_ANNOTATION,
)
"""The pod annotations the decision reads by name."""

_IMMUTABLE = (StaticNads, StaticNamespaces, StaticClaims)

DEFAULT_MAX_ENTRIES = 256
DEFAULT_MAX_ENTRY_BYTES = 16 * 1024
"""With the defaults the answers kept hold at most 4 MiB of keys and answers."""


def pod_key(request: AdmissionRequest) -> bytes | None:
    """What `decide_request` reads of `request`, as bytes; None when it is not worth keeping
    (not a pod CREATE, or a pod whose shape the decision refuses)."""
    pod = request.object
    if (
        request.kind != "Pod"
        or request.group
        or request.sub_resource
        or request.operation != "CREATE"
        or not isinstance(pod, dict)
        or not request.namespace
    ):
        return None
    metadata = pod.get("metadata")
    if metadata is None:
        meta: list[Any] | None = None
    elif isinstance(metadata, dict):
        annotations = metadata.get("annotations")
        if annotations is None:
            meta = [None]
        elif isinstance(annotations, dict):
            read = {key: annotations[key] for key in READ_ANNOTATIONS if key in annotations}
            meta = [read, annotation_bytes(annotations) > TOTAL_ANNOTATION_BYTES]
        else:
            return None
    else:
        return None
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return None
    containers = spec.get("containers")
    if not isinstance(containers, list) or len(containers) > MAX_CONTAINERS:
        return None
    parts = []
    for container in containers:
        if not isinstance(container, dict):
            return None
        mounts = container.get("volumeMounts")
        parts.append(
            (
                container.get("name"),
                container.get("resources"),
                [_mount(mount) for mount in mounts] if isinstance(mounts, list) else mounts,
            )
        )
    volumes = spec.get("volumes")
    if isinstance(volumes, list):
        volumes = [
            volume
            for volume in volumes
            if isinstance(volume, dict) and volume.get("name") == PEER_INJECTOR_VOLUME
        ]
    pod_spec = (spec.get("nodeSelector"), spec.get("resourceClaims"), volumes)
    try:
        return orjson.dumps((request.namespace, meta, parts, pod_spec))
    except (TypeError, orjson.JSONEncodeError):
        return None  # a value orjson cannot write (an integer past 64 bits): decide afresh


def _mount(mount: object) -> object:
    """What the decision reads of a volumeMount: whether it is podnetinfo's, and its path (a
    service-account token's mount is named differently in every pod, at the same path)."""
    if not isinstance(mount, dict):
        return None
    return [mount.get("name") == PEER_INJECTOR_VOLUME, mount.get("mountPath")]


def _generation(lookup: object) -> int | None:
    if type(lookup) in _IMMUTABLE:
        return 0
    generation = getattr(lookup, "generation", None)
    return generation if isinstance(generation, int) else None


def _same_epoch(old: tuple[object, ...], new: tuple[object, ...]) -> bool:
    """The policy and the lookups by identity; generations and excluded namespaces by value."""
    return all(
        was is now or (type(now) in (int, frozenset) and was == now)
        for was, now in zip(old, new, strict=True)
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """A decision and the bytes of its answer after the uid (`admission.response_tail`)."""

    decision: Decision
    tail: bytes


class DecisionCache:
    """Answers by `pod_key`, for one epoch at a time (see the module)."""

    def __init__(
        self,
        decide: Decide,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
    ) -> None:
        if max_entries < 0 or max_entry_bytes < 0:
            raise ValueError("max_entries and max_entry_bytes must not be negative")
        self.decide = decide
        self.max_entries = max_entries
        self.max_entry_bytes = max_entry_bytes
        self._answers: OrderedDict[bytes, Answer] = OrderedDict()
        # (policy, excluded namespaces, then each lookup and its generation: NADs, namespaces,
        # claims)
        self._epoch: tuple[object, ...] = (None,) * 8
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._answers)

    def answer(
        self,
        request: AdmissionRequest,
        policy: Policy,
        nads: NadLookup,
        namespaces: NamespaceLookup,
        excluded_namespaces: frozenset[str] = frozenset(),
        claims: ClaimLookup = NO_CLAIMS,
    ) -> Answer:
        """The answer for `request`: kept, or decided now (and kept when it may be). Raises what
        `decide` raises (nothing is kept then)."""
        # Generations are read before deciding: an answer is kept for contents at least as
        # new as the epoch it is filed under.
        key = pod_key(request) if self.max_entries else None
        if key is not None:
            lookups = (nads, namespaces, claims)
            generations = [_generation(lookup) for lookup in lookups]
            if None in generations:
                key = None  # contents that may change unseen: nothing can be kept
        if key is not None:
            epoch = (
                policy,
                excluded_namespaces,
                *(value for pair in zip(lookups, generations, strict=True) for value in pair),
            )
            if not _same_epoch(self._epoch, epoch):
                self._answers.clear()
                self._epoch = epoch
            kept = self._answers.get(key)
            if kept is not None:
                self._answers.move_to_end(key)
                self.hits += 1
                return kept
            self.misses += 1
        decision = self.decide(request, policy, nads, namespaces, excluded_namespaces, claims)
        answer = Answer(decision, response_tail(decision))
        if key is not None:
            self._keep(key, answer)
        return answer

    def _keep(self, key: bytes, answer: Answer) -> None:
        if len(key) + len(answer.tail) > self.max_entry_bytes:
            return
        self._answers[key] = answer
        if len(self._answers) > self.max_entries:
            self._answers.popitem(last=False)
            self.evictions += 1
