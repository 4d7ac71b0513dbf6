"""Cluster mode (edge layer): the watched caches of NADs and namespaces, and what they expose.

Built by `serve` (and `mutate --kubeconfig`) when the webhook talks to a Kubernetes API server:
a `KubeNadCache` (the `NadLookup` of the decision) and a `KubeNamespaceCache` (its
`NamespaceLookup`), each one or more informers (webhook.kube_watch) seen as one cache. The
decision only ever reads their memory. Readiness waits for every cache's first full list; the
caches' size, sync state, watch restarts and re-lists are Prometheus values read at scrape time.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import kubernetes.client

from webhook.claims import CLAIM_GROUP, ClaimFacts, ClaimKind, claim_facts_from_object
from webhook.kube_api import KubeConfigError, key_of, load_kube_api_client
from webhook.kube_watch import REPLACE, Informer, Key, WatchOptions
from webhook.metrics import ScrapeValue
from webhook.nads import RESOURCE_NAME_ANNOTATION, NadFacts, nad_facts_from_object
from webhook.peers import PeerInjectors

__all__ = [
    "Cluster",
    "KubeClaimCache",
    "KubeConfigError",
    "KubeNadCache",
    "KubeNamespaceCache",
    "load_kube_api_client",
]

CLAIM_VERSION = "v1"
NAD_GROUP = "k8s.cni.cncf.io"
NAD_VERSION = "v1"
NAD_PLURAL = "network-attachment-definitions"

V = TypeVar("V")


class _InformerGroup(Generic[V]):
    """One or more informers seen as one cache (one per namespace in namespace-scoped mode)."""

    authoritative = True

    def __init__(self) -> None:
        self.synced = threading.Event()
        self._informers: tuple[Informer[V], ...] = ()

    def _set_informers(self, informers: Sequence[Informer[V]]) -> None:
        self._informers = tuple(informers)

    def _informer_synced(self) -> None:
        if all(informer.synced.is_set() for informer in self._informers):
            self.synced.set()

    @property
    def informers(self) -> tuple[Informer[V], ...]:
        return self._informers

    def start(self) -> None:
        for informer in self._informers:
            informer.start()

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Stop every informer; True when all threads ended within `timeout` seconds."""
        for informer in self._informers:
            informer.request_stop()
        deadline = None if timeout is None else time.monotonic() + timeout
        stopped = True
        for informer in self._informers:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            stopped = informer.join(remaining) and stopped
        return stopped

    @property
    def size(self) -> int:
        return sum(informer.size for informer in self._informers)

    @property
    def generation(self) -> int:
        """Grows whenever the contents change (see `Informer.generation`)."""
        return sum(informer.generation for informer in self._informers)

    @property
    def watch_restarts(self) -> int:
        return sum(informer.watch_restarts for informer in self._informers)

    @property
    def relists(self) -> int:
        return sum(informer.relists for informer in self._informers)

    @property
    def consecutive_failures(self) -> int:
        return max((informer.consecutive_failures for informer in self._informers), default=0)

    @property
    def last_error(self) -> str | None:
        failed = [informer for informer in self._informers if informer.last_error_at is not None]
        if not failed:
            return None
        return max(failed, key=lambda informer: informer.last_error_at or 0.0).last_error


class KubeNadCache(_InformerGroup[NadFacts]):
    """`NadLookup` over the cluster's NetworkAttachmentDefinitions, kept current by watches.

    Cluster-wide by default; with `namespaces`, one list/watch per namespace (for RBAC that only
    reaches some namespaces), and NADs elsewhere are unknown (see `covers`).
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        resource_annotations: Sequence[str] = (RESOURCE_NAME_ANNOTATION,),
        namespaces: Sequence[str] | None = None,
        *,
        options: WatchOptions | None = None,
    ) -> None:
        super().__init__()
        if isinstance(resource_annotations, str):
            raise TypeError("resource_annotations must be a sequence of annotation keys")
        transform = functools.partial(
            nad_facts_from_object, resource_annotations=tuple(resource_annotations)
        )
        api = kubernetes.client.CustomObjectsApi(api_client)
        self._by_namespace: dict[str, Informer[NadFacts]] | None
        if namespaces is None:
            self._by_namespace = None
            list_all = functools.partial(
                api.list_cluster_custom_object, NAD_GROUP, NAD_VERSION, NAD_PLURAL
            )
            self._set_informers(
                [
                    Informer(
                        list_all,
                        transform,
                        name="nads",
                        options=options,
                        on_synced=self._informer_synced,
                    )
                ]
            )
            return
        if isinstance(namespaces, str):
            raise TypeError("namespaces must be a sequence of namespace names, or None")
        scoped = sorted(set(namespaces))
        if not scoped:
            raise ValueError("namespaces is empty; pass None to watch NADs in every namespace")
        self._by_namespace = {
            namespace: Informer(
                functools.partial(
                    api.list_namespaced_custom_object, NAD_GROUP, NAD_VERSION, namespace, NAD_PLURAL
                ),
                transform,
                name=f"nads/{namespace}",
                options=options,
                on_synced=self._informer_synced,
            )
            for namespace in scoped
        }
        self._set_informers(list(self._by_namespace.values()))

    def covers(self, namespace: str) -> bool:
        """Whether NADs in `namespace` are watched (always, unless namespace-scoped)."""
        return self._by_namespace is None or namespace in self._by_namespace

    def get(self, namespace: str, name: str) -> NadFacts | None:
        informer = self._informer_for(namespace)
        return informer.get(namespace, name) if informer is not None else None

    def names_in(self, namespace: str) -> tuple[str, ...]:
        informer = self._informer_for(namespace)
        return informer.names_in(namespace) if informer is not None else ()

    def snapshot(self) -> dict[Key, NadFacts]:
        merged: dict[Key, NadFacts] = {}
        for informer in self._informers:
            merged.update(informer.snapshot())
        return merged

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        """Feed an event (or `REPLACE` with a List) through the same path the watches use."""
        if self._by_namespace is None:
            self._informers[0].apply(event_type, obj)
            return
        if event_type == REPLACE:
            per_namespace: dict[str, list[Any]] = {
                namespace: [] for namespace in self._by_namespace
            }
            for item in obj.get("items") or ():
                key = key_of(item)
                if key is not None and key[0] in per_namespace:
                    per_namespace[key[0]].append(item)
            for namespace, items in per_namespace.items():
                self._by_namespace[namespace].apply(
                    REPLACE, {"metadata": obj.get("metadata") or {}, "items": items}
                )
            return
        if event_type in {"BOOKMARK", "ERROR"}:
            for informer in self._informers:
                informer.apply(event_type, obj)
            return
        key = key_of(obj)
        target = self._informer_for(key[0]) if key is not None else None
        if target is not None:
            target.apply(event_type, obj)

    def _informer_for(self, namespace: str) -> Informer[NadFacts] | None:
        if self._by_namespace is None:
            return self._informers[0]
        return self._by_namespace.get(namespace)


def namespace_annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    """The cached value of a namespace: its annotations only, read-only."""
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if not isinstance(annotations, Mapping):
        return MappingProxyType({})
    return MappingProxyType(
        {key: value for key, value in annotations.items() if isinstance(value, str)}
    )


class KubeNamespaceCache(_InformerGroup[Mapping[str, str]]):
    """`NamespaceLookup` over the cluster's namespaces; keeps annotations only."""

    def __init__(
        self, api_client: kubernetes.client.ApiClient, *, options: WatchOptions | None = None
    ) -> None:
        super().__init__()
        api = kubernetes.client.CoreV1Api(api_client)
        self._set_informers(
            [
                Informer(
                    api.list_namespace,
                    namespace_annotations,
                    name="namespaces",
                    options=options,
                    on_synced=self._informer_synced,
                )
            ]
        )

    def annotations(self, namespace: str) -> Mapping[str, str] | None:
        return self._informers[0].get("", namespace)

    def names(self) -> tuple[str, ...]:
        return self._informers[0].names_in("")

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        self._informers[0].apply(event_type, obj)


class KubeClaimCache(_InformerGroup[ClaimFacts]):
    """`ClaimLookup` over the cluster's ResourceClaimTemplates and ResourceClaims
    (resource.k8s.io/v1, cluster-wide), kept current by watches."""

    def __init__(
        self, api_client: kubernetes.client.ApiClient, *, options: WatchOptions | None = None
    ) -> None:
        super().__init__()
        api = kubernetes.client.CustomObjectsApi(api_client)
        self._by_kind = {
            kind: Informer(
                functools.partial(
                    api.list_cluster_custom_object, CLAIM_GROUP, CLAIM_VERSION, plural
                ),
                functools.partial(_claim_facts, kind),
                name=plural,
                options=options,
                on_synced=self._informer_synced,
            )
            for kind, plural in (
                ("ResourceClaimTemplate", "resourceclaimtemplates"),
                ("ResourceClaim", "resourceclaims"),
            )
        }
        self._set_informers(list(self._by_kind.values()))

    def get(self, kind: ClaimKind, namespace: str, name: str) -> ClaimFacts | None:
        informer = self._by_kind.get(kind)
        return informer.get(namespace, name) if informer is not None else None


def _claim_facts(kind: str, obj: Mapping[str, Any]) -> ClaimFacts:
    # The API server's list items carry no kind: it is the resource's.
    return claim_facts_from_object({**obj, "kind": kind})


@dataclass
class Cluster:
    nads: KubeNadCache
    namespaces: KubeNamespaceCache
    # Not needed to decide, so not waited for; None when not watched.
    peers: PeerInjectors | None = None
    # Watched when the policy names gpuDeviceClasses (then waited for, as NADs are).
    claims: KubeClaimCache | None = None

    @classmethod
    def connect(
        cls,
        api_client: Any,
        resource_annotations: Sequence[str],
        nad_namespaces: Sequence[str] | None = None,
        options: WatchOptions | None = None,
        watch_peers: bool = False,
        watch_claims: bool = False,
    ) -> Cluster:
        return cls(
            KubeNadCache(api_client, resource_annotations, nad_namespaces, options=options),
            KubeNamespaceCache(api_client, options=options),
            PeerInjectors(api_client, options=options) if watch_peers else None,
            KubeClaimCache(api_client, options=options) if watch_claims else None,
        )

    def _caches(self) -> list[tuple[str, _InformerGroup[Any]]]:
        """The caches decisions read (and readiness waits for), with what they hold."""
        caches: list[tuple[str, _InformerGroup[Any]]] = [
            ("NetworkAttachmentDefinitions", self.nads),
            ("namespaces", self.namespaces),
        ]
        if self.claims is not None:
            caches.append(("ResourceClaimTemplates and ResourceClaims", self.claims))
        return caches

    def start(self) -> None:
        for _, cache in self._caches():
            cache.start()
        if self.peers is not None:
            self.peers.start()

    def stop(self, timeout: float = 5.0) -> bool:
        stopped = all([cache.stop(timeout) for _, cache in self._caches()])  # noqa: C419 every cache stops
        return (self.peers.stop(timeout) if self.peers is not None else True) and stopped

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(
            cache.synced.wait(max(0.0, deadline - time.monotonic())) for _, cache in self._caches()
        )

    def not_ready(self) -> str | None:
        """Why the webhook cannot decide yet, or None once every cache has synced."""
        caches = self._caches()
        waiting = [what for what, cache in caches if not cache.synced.is_set()]
        if not waiting:
            return None
        error = next((cache.last_error for _, cache in caches if cache.last_error), None)
        suffix = f" (last error: {error})" if error else ""
        return f"waiting for the first list of {' and '.join(waiting)}{suffix}"

    def scrape(self) -> Iterable[ScrapeValue]:
        if self.peers is not None:
            yield from self.peers.scrape()
        named: list[tuple[_InformerGroup[Any], str]] = [
            (self.nads, "nad"),
            (self.namespaces, "namespace"),
        ]
        if self.claims is not None:
            named.append((self.claims, "claim"))
        for cache, what in named:
            yield ScrapeValue(
                f"gpu_rdma_injector_{what}_cache_size",
                f"Objects held in the {what} cache.",
                cache.size,
            )
            yield ScrapeValue(
                f"gpu_rdma_injector_{what}_cache_synced",
                f"1 once the {what} cache has completed its first full list.",
                1 if cache.synced.is_set() else 0,
            )
            yield ScrapeValue(
                f"gpu_rdma_injector_{what}_watch_restarts",
                f"Times the {what} watch was restarted after an error or a dropped connection.",
                cache.watch_restarts,
                counter=True,
            )
            yield ScrapeValue(
                f"gpu_rdma_injector_{what}_relists",
                f"Times the {what} cache was listed again (410 Gone or recovery).",
                cache.relists,
                counter=True,
            )
