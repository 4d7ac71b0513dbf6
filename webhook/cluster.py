"""Cluster mode (edge layer): the watched caches of NADs and namespaces, and what they expose.

Built by the CLI when the webhook talks to a Kubernetes API server; the decision only ever reads
the caches' memory. Readiness waits for every cache's first full list; the caches' size, sync
state, watch restarts and re-lists are exported as Prometheus metrics at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.kube_watch import KubeNadCache, KubeNamespaceCache, WatchOptions
from webhook.metrics import Metrics, ScrapeValue


@dataclass
class Cluster:
    nads: KubeNadCache
    namespaces: KubeNamespaceCache

    @classmethod
    def connect(
        cls,
        api_client: Any,
        resource_annotations: Sequence[str],
        nad_namespaces: Sequence[str] | None = None,
        options: WatchOptions | None = None,
    ) -> Cluster:
        return cls(
            KubeNadCache(api_client, resource_annotations, nad_namespaces, options=options),
            KubeNamespaceCache(api_client, options=options),
        )

    def start(self) -> None:
        self.nads.start()
        self.namespaces.start()

    def stop(self, timeout: float = 5.0) -> bool:
        return self.nads.stop(timeout) & self.namespaces.stop(timeout)

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return self.nads.synced.wait(timeout) and self.namespaces.synced.wait(
            max(0.0, deadline - time.monotonic())
        )

    def namespace_annotations(self, namespace: str) -> Mapping[str, str] | None:
        return self.namespaces.annotations(namespace)

    def not_ready(self) -> str | None:
        """Why the webhook cannot decide yet, or None once both caches have synced."""
        waiting = [
            what
            for what, cache in (
                ("NetworkAttachmentDefinitions", self.nads),
                ("namespaces", self.namespaces),
            )
            if not cache.synced.is_set()
        ]
        if not waiting:
            return None
        error = self.nads.last_error or self.namespaces.last_error
        suffix = f" (last error: {error})" if error else ""
        return f"waiting for the first list of {' and '.join(waiting)}{suffix}"

    def register_metrics(self, metrics: Metrics) -> None:
        metrics.add_scrape_values(self._scrape)

    def _scrape(self) -> Iterable[ScrapeValue]:
        for cache, what in ((self.nads, "nad"), (self.namespaces, "namespace")):
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
